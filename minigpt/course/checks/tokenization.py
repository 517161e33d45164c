"""Checks for exercises/05_tokenization.ipynb: counting adjacent pairs, one BPE merge step,
bytes per token.

The references are written out here in a few lines each (the package's trainer keeps
incremental counts, which is harder to read); the inputs are chosen so that the usual mistakes
give different answers: overlapping pairs such as (a, a) in "aaa", the pair's order, a merge that
forgets the last token or scans from the right, characters counted instead of bytes. Each check
runs every case first, then names the mistake whose answers the learner's function gives on
every case.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise

from minigpt.course.checks._base import _number
from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import matching_tip as _tip
from minigpt.course.checks._base import passed as _passed
from minigpt.data.bpe import merge_word

__all__ = ["check_bytes_per_token", "check_count_pairs", "check_merge"]


def _forgot_return(task: str, call: str, got) -> None:
    if got is None:
        raise AssertionError(f"{task}: {call} returned None: did you forget `return`?")


# ---------------------------------------------------------------------------------------------
# Task 1: count_pairs
# ---------------------------------------------------------------------------------------------

def _pairs(ids: Sequence[int]) -> dict:
    return dict(Counter(pairwise(ids)))


# "aaab": (97, 97) overlaps itself, and (97, 98) is not (98, 97); "hello hello" has pairs that occur
# twice and a last pair (l, o) of its own; "低低低" is 9 UTF-8 bytes with overlapping byte pairs.
_COUNT_CASES = [list(b"aaab"), list(b"hello hello"), [3, 1, 2, 1, 2, 7], [5], [], list("低低低".encode())]

_COUNT_MISTAKES = [
    ("Pairs overlap: in [a, a, a] the pair (a, a) occurs twice, so step by 1, not by 2.",
     lambda ids: dict(Counter(zip(ids[::2], ids[1::2])))),
    ("The last pair went missing: zip(ids, ids[1:]) (or range(len(ids) - 1)) reaches it.",
     lambda ids: _pairs(ids[:-1])),
    ("The first pair went missing: zip(ids, ids[1:]) (or range(len(ids) - 1)) starts at it.",
     lambda ids: _pairs(ids[1:])),
    ("You counted (b, a): the key is (first, second), i.e. (ids[i], ids[i + 1]).",
     lambda ids: dict(Counter(zip(ids[1:], ids)))),
    (("You counted a pair (last, first) that wraps around (ids[i - 1] at i = 0 is the last id): "
      "only neighbours count, so start at i = 1 or use zip(ids, ids[1:])."),
     lambda ids: dict(Counter((ids[i - 1], ids[i]) for i in range(len(ids))))),
    ("Count every occurrence: you gave each distinct pair the count 1.",
     lambda ids: dict.fromkeys(pairwise(ids), 1)),
]


def _as_counts(got) -> dict:
    """``got`` as a plain dict, zero counts left out (a Counter may hold them)."""
    return {key: n for key, n in dict(got).items() if n != 0}


def check_count_pairs(count_pairs: Callable[[list[int]], dict]) -> None:
    """Task: ``count_pairs(ids)`` -> {(a, b): how often b directly follows a}."""
    task, hint = "Task 1 (count_pairs)", "zip(ids, ids[1:]) walks over the adjacent pairs."
    results = []
    for ids in _COUNT_CASES:
        got = _call(task, hint, count_pairs, list(ids))
        _forgot_return(task, f"count_pairs({ids})", got)
        if not isinstance(got, Mapping):
            kind = type(got).__name__
            items = list(got) if isinstance(got, (list, tuple)) else []
            if items and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], tuple) for p in items):
                what = f"a {kind} of (pair, count) items, which has no lookup by pair"
            elif items and all(isinstance(p, tuple) and len(p) == 2 for p in items):
                what = "the pairs themselves: count them, e.g. with Counter(zip(ids, ids[1:]))"
            else:
                what = f"a {kind}"
            raise AssertionError(f"{task}: count_pairs({ids}) returned {what}; return a dict (a Counter is fine) "  # noqa: TRY004 (checks raise AssertionError)
                                 f"from each pair (a, b) to its count, e.g. {_pairs(ids) or {(1, 2): 1}}.")
        bad = [key for key in got if not (isinstance(key, tuple) and len(key) == 2)]
        if bad:
            raise AssertionError(f"{task}: count_pairs({ids}) has the key {bad[0]!r}; each key must be a pair "
                                 f"(a, b) of neighbouring ids, a tuple: {_pairs(ids)}.")
        results.append(((ids,), _as_counts(got)))
    for (ids,), got in results:
        want = _pairs(ids)
        if got != want:
            raise AssertionError(f"{task}: count_pairs({ids}) returned {got}, expected {want}."
                                 f"{_tip(results, _COUNT_MISTAKES, lambda g, m: g == m)}")
    _passed(task, "pairs overlap, so (97, 97) occurs twice in b'aaab'")


# ---------------------------------------------------------------------------------------------
# Task 2: merge
# ---------------------------------------------------------------------------------------------

def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    return merge_word(list(ids), pair, new_id)[0]


def _no_skip(ids, pair, new_id):  # appends new_id on a match but steps on by 1, not 2
    return [new_id if (ids[i], ids[i + 1]) == pair else ids[i] for i in range(len(ids) - 1)] + ids[-1:]


def _every_match(ids, pair, new_id):  # each overlapping occurrence becomes new_id, as if found at once
    starts = {i for i in range(len(ids) - 1) if (ids[i], ids[i + 1]) == pair}
    return [new_id if i in starts else ids[i] for i in range(len(ids)) if i in starts or i - 1 not in starts]


def _first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return ids[:i] + [new_id] + ids[i + 2:]
    return list(ids)


def _drops_last(ids, pair, new_id):  # while i < len(ids) - 1: the last token is dropped if unpaired
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _via_string(ids, pair, new_id):  # " ".join(ids).replace("a b", "new"): digits run across ids
    text = " ".join(map(str, ids)).replace(f"{pair[0]} {pair[1]}", str(new_id))
    return [int(t) for t in text.split()]


_MERGE_MISTAKES = [
    (("You never merged: a list slice never equals a tuple ([97, 97] != (97, 97)); compare "
      "(ids[i], ids[i + 1]) == pair or tuple(ids[i:i + 2]) == pair."), lambda ids, pair, new_id: list(ids)),
    (("After a merge, step on by 2: the second token of the pair is used up (and must not be "
      "copied or start another pair)."), _no_skip),
    (("Overlapping occurrences merge once: in [a, a, a] the first two a's become new_id and the "
      "third stays, [new_id, a], not [new_id, new_id]."), _every_match),
    ("Scan left to right: merge([97, 97, 97], (97, 97), 256) is [256, 97]; you merged from the right.",
     lambda ids, pair, new_id: _merge(ids[::-1], pair[::-1], new_id)[::-1]),
    ("Replace every occurrence, not only the first one: keep scanning after a merge.", _first_only),
    ("The last token went missing: keep it when it starts no pair (loop while i < len(ids)).", _drops_last),
    (("Don't merge in a string of digits: ' '.join gives '21 2', where '1 2' matches across two "
      "ids. Compare the ids themselves."), _via_string),
]

# Two occurrences and the pair ending the list; overlaps of (a, a) in odd and even runs; a pair
# absent, present only reversed, or never complete; an id whose digits end in the pair's first id.
_MERGE_CASES = [
    ([1, 2, 3, 1, 2], (1, 2), 256),
    ([97, 97, 97], (97, 97), 256),  # left to right: [256, 97], not [97, 256] nor [256, 256]
    ([97, 97, 97, 97, 97, 98], (97, 97), 256),
    ([7, 8, 9], (8, 9), 300),  # the pair ends the list
    ([7, 8, 9], (9, 7), 300),  # no occurrence
    ([3, 2, 1, 2, 1], (1, 2), 300),  # (2, 1) is not (1, 2)
    ([21, 2, 1, 2, 5], (1, 2), 256),
    ([5], (5, 5), 256),
    ([], (1, 2), 256),
]


def check_merge(merge: Callable[[list[int], tuple[int, int], int], list[int]]) -> None:
    """Task: ``merge(ids, pair, new_id)`` replaces each occurrence of ``pair``, left to right."""
    task, hint = "Task 2 (merge)", "walk with an index i; on a match append new_id and step by 2, else by 1."
    results = []
    for ids, pair, new_id in _MERGE_CASES:
        arg = list(ids)
        got = _call(task, hint, merge, arg, pair, new_id)
        call = f"merge({ids}, {pair}, {new_id})"
        _forgot_return(task, call, got)
        if not isinstance(got, list):
            raise AssertionError(f"{task}: {call} returned a {type(got).__name__}; return a new list of ids, "  # noqa: TRY004
                                 f"here {_merge(ids, pair, new_id)}.")
        if arg != ids:
            raise AssertionError(f"{task}: {call} changed the list passed in (to {arg}): leave ids as it is and "
                                 f"build a new list, here {_merge(ids, pair, new_id)}.")
        results.append(((ids, pair, new_id), got))
    for (ids, pair, new_id), got in results:
        want = _merge(ids, pair, new_id)
        if got != want:
            raise AssertionError(f"{task}: merge({ids}, {pair}, {new_id}) returned {got}, expected {want}."
                                 f"{_tip(results, _MERGE_MISTAKES, lambda g, m: g == m)}")
    _passed(task, "merging (97, 97) turns [97, 97, 97] into [256, 97]")


# ---------------------------------------------------------------------------------------------
# Task 3: bytes_per_token
# ---------------------------------------------------------------------------------------------

def _one_per_char(text: str) -> list[int]:
    return [ord(ch) for ch in text]


def _one_per_byte(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def _one_per_word(text: str) -> list[int]:
    return [sum(word.encode("utf-8")) for word in text.split()]


def _bytes(text: str) -> int:
    return len(text.encode("utf-8"))


# Each text has UTF-8 bytes of 2 or 3 per character; "hello world" repeats ids ("l", "o").
_TEXTS = ["hello world", "语言模型", "café 你好", "naïve über straße"]
_ENCODERS = (_one_per_char, _one_per_byte, _one_per_word)

_BPT_MISTAKES = [
    (("You counted characters: len(text) is not the number of bytes; a Chinese character is "
      "3 bytes in UTF-8, so count len(text.encode('utf-8'))."), lambda text, enc: len(text) / len(enc(text))),
    ("That is tokens per byte: divide bytes by tokens.", lambda text, enc: len(enc(text)) / _bytes(text)),
    ("That is integer division (// or int()): use / for a float.", lambda text, enc: _bytes(text) // len(enc(text))),
    ("Don't round: return the exact ratio (round only when you print).",
     lambda text, enc: round(_bytes(text) / len(enc(text)))),
    ("Don't round: return the exact ratio (round only when you print).",
     lambda text, enc: round(_bytes(text) / len(enc(text)), 2)),
    ("Divide by the number of tokens, len(encode(text)), not by the number of characters.",
     lambda text, enc: _bytes(text) / len(text)),
    ("Count every token: len(encode(text)), not the number of distinct ids.",
     lambda text, enc: _bytes(text) / len(set(enc(text)))),
]


def _close(got, want: float) -> bool:
    value = _number(got)
    return value is not None and math.isclose(value, want, rel_tol=1e-9)


def check_bytes_per_token(bytes_per_token: Callable[[str, Callable[[str], list[int]]], float]) -> None:
    """Task: ``bytes_per_token(text, encode)`` = UTF-8 bytes of ``text`` / number of tokens."""
    task, hint = "Task 3 (bytes_per_token)", "len(text.encode('utf-8')) counts bytes; len(encode(text)) counts tokens."
    results = []
    for text in _TEXTS:
        for encode in _ENCODERS:
            got = _call(task, hint, bytes_per_token, text, encode)
            call = f"bytes_per_token({text!r}, {encode.__name__.lstrip('_')})"
            _forgot_return(task, call, got)
            if _number(got) is None:
                raise AssertionError(f"{task}: {call} returned {got!r}; return a number (a float), "
                                     f"here {_bytes(text) / len(encode(text)):.4f}.")
            results.append(((text, encode), got))
    for (text, encode), got in results:
        want = _bytes(text) / len(encode(text))
        if not _close(got, want):
            raise AssertionError(
                f"{task}: bytes_per_token({text!r}, {encode.__name__.lstrip('_')}) returned {got}, expected "
                f"{_bytes(text)} bytes / {len(encode(text))} tokens = {want:.4f}.{_tip(results, _BPT_MISTAKES, _close)}"
            )
    _passed(task, "one token per Chinese character is 3 bytes per token")
