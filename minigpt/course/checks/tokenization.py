"""Checks for exercises/05_tokenization.ipynb: counting adjacent pairs, one BPE merge step,
bytes per token.

The references are written out here in a few lines each (the package's trainer keeps
incremental counts, which is harder to read); the inputs are chosen to catch the usual
mistakes: overlapping pairs such as (a, a) in "aaa", a merge that forgets the last token,
characters counted instead of bytes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import pairwise

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.data.bpe import merge_word

__all__ = ["check_bytes_per_token", "check_count_pairs", "check_merge"]


def _pairs(ids: Sequence[int]) -> Counter:
    return Counter(pairwise(ids))


def check_count_pairs(count_pairs: Callable[[list[int]], dict]) -> None:
    """Task: ``count_pairs(ids)`` -> {(a, b): how often b directly follows a}."""
    task, hint = "Task 1 (count_pairs)", "zip(ids, ids[1:]) walks over the adjacent pairs."
    cases = [list(b"aaab"), list(b"hello hello"), [5], [], list("低低低".encode())]
    for ids in cases:
        got = _call(task, hint, count_pairs, list(ids))
        want = _pairs(ids)
        if got is None or dict(got) != dict(want):
            tip = ""
            if got is not None and sum(dict(got).values()) == len(ids) // 2:
                tip = " Pairs overlap: in [a, a, a] the pair (a, a) occurs twice."
            raise AssertionError(
                f"{task}: count_pairs({ids}) returned {dict(got) if got is not None else None}, "
                f"expected {dict(want)}.{tip}"
            )
    _passed(task, "pairs overlap, so (97, 97) occurs twice in b'aaab'")


def check_merge(merge: Callable[[list[int], tuple[int, int], int], list[int]]) -> None:
    """Task: ``merge(ids, pair, new_id)`` replaces each occurrence of ``pair``, left to right."""
    task, hint = "Task 2 (merge)", "walk with an index i; on a match append new_id and step by 2, else by 1."
    cases = [
        ([1, 2, 3, 1, 2], (1, 2), 256),
        ([97, 97, 97], (97, 97), 256),  # left to right: [256, 97], not [97, 256]
        ([97, 97, 97, 97], (97, 97), 256),
        ([7, 8, 9], (8, 9), 300),  # the pair ends the list
        ([7, 8, 9], (9, 7), 300),  # no occurrence
        ([], (1, 2), 256),
    ]
    for ids, pair, new_id in cases:
        got = _call(task, hint, merge, list(ids), pair, new_id)
        want = merge_word(list(ids), pair, new_id)[0]
        if got is None or list(got) != want:
            tip = ""
            if got is not None and len(ids) > 1 and list(got) == want[:-1]:
                tip = " The last token went missing: keep it when it starts no pair."
            raise AssertionError(f"{task}: merge({ids}, {pair}, {new_id}) returned {got}, expected {want}.{tip}")
    _passed(task, "merging (97, 97) turns [97, 97, 97] into [256, 97]")


def check_bytes_per_token(bytes_per_token: Callable[[str, Callable[[str], list[int]]], float]) -> None:
    """Task: ``bytes_per_token(text, encode)`` = UTF-8 bytes of ``text`` / number of tokens."""
    task, hint = "Task 3 (bytes_per_token)", "len(text.encode('utf-8')) counts bytes; len(encode(text)) counts tokens."

    def one_per_char(text: str) -> list[int]:
        return [ord(ch) for ch in text]

    def one_per_byte(text: str) -> list[int]:
        return list(text.encode("utf-8"))

    for text in ["hello world", "语言模型", "café 你好"]:
        for encode in (one_per_char, one_per_byte):
            got = _call(task, hint, bytes_per_token, text, encode)
            want = len(text.encode("utf-8")) / len(encode(text))
            if got is None or not math.isclose(float(got), want, rel_tol=1e-9):
                tip = ""
                if got is not None and math.isclose(float(got), len(text) / len(encode(text)), rel_tol=1e-9):
                    tip = " You counted characters: a Chinese character is 3 bytes in UTF-8."
                elif got is not None and want and math.isclose(float(got), 1 / want, rel_tol=1e-9):
                    tip = " That is tokens per byte: divide bytes by tokens."
                raise AssertionError(
                    f"{task}: bytes_per_token({text!r}, {encode.__name__}) returned {got}, expected {want:.4f}.{tip}"
                )
    _passed(task, "one token per Chinese character is 3 bytes per token")
