"""Checks for exercises/00_welcome.ipynb: bits per byte, a character tokenizer, training compute.

The checks compare against the package's own implementation on inputs chosen to catch the
usual mistakes (nats vs bits, tokens vs bytes, off-by-one vocabularies).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from minigpt.core import metrics
from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed

__all__ = ["check_bits_per_byte", "check_char_codec", "check_training_compute"]


def check_bits_per_byte(bits_per_byte: Callable[[float, int, int], float]) -> None:
    """Task: ``bits_per_byte(mean_loss_nats, n_tokens, n_bytes)``."""
    task, hint = "Task 1 (bits_per_byte)", "total nats = mean loss x tokens; 1 bit = ln 2 nats."
    cases = [(math.log(256), 1000, 1000), (2.0, 250, 1000), (1.3, 4096, 17_000), (0.0, 10, 10)]
    for loss, n_tokens, n_bytes in cases:
        got = _call(task, hint, bits_per_byte, loss, n_tokens, n_bytes)
        want = metrics.bits_per_byte(loss, n_tokens, n_bytes)
        if got is None or not math.isclose(float(got), want, rel_tol=1e-6, abs_tol=1e-9):
            tip = ""
            if got is not None and math.isclose(float(got), loss * n_tokens / n_bytes, rel_tol=1e-6):
                tip = " You returned nats per byte: divide by ln 2 to get bits."
            elif got is not None and math.isclose(float(got), loss / math.log(2), rel_tol=1e-6) and n_tokens != n_bytes:
                tip = " You returned bits per token: scale by tokens / bytes."
            raise AssertionError(
                f"{task}: bits_per_byte({loss}, {n_tokens}, {n_bytes}) returned {got}, expected {want:.6f}.{tip}"
            )
    _passed(task, "a uniform guess over 256 byte values costs exactly 8 bits per byte")


def check_char_codec(
    build_vocab: Callable[[str], tuple[dict, dict]],
    encode: Callable[[str, dict], list],
    decode: Callable[[list, dict], str],
) -> None:
    """Task: ``build_vocab(text) -> (stoi, itos)``, ``encode(text, stoi)``, ``decode(ids, itos)``."""
    task, hint = "Task 2 (character tokenizer)", "sorted(set(text)) gives the vocabulary in a fixed order."
    text = "hello, world! 你好 \u2014 caf\u00e9\n"
    stoi, itos = _call(task, hint, build_vocab, text)
    chars = sorted(set(text))
    if sorted(stoi) != chars:
        raise AssertionError(f"{task}: stoi should have one entry per distinct character ({len(chars)}), got {len(stoi)}")
    if sorted(stoi.values()) != list(range(len(chars))):
        raise AssertionError(f"{task}: ids should be 0..{len(chars) - 1}, one per character, got {sorted(stoi.values())}")
    if any(itos[i] != ch for ch, i in stoi.items()):
        raise AssertionError(f"{task}: itos must invert stoi: itos[stoi[ch]] == ch for every character")
    ids = _call(task, hint, encode, text, stoi)
    if list(ids) != [stoi[ch] for ch in text]:
        raise AssertionError(f"{task}: encode should map each character to its id, in order")
    back = _call(task, hint, decode, ids, itos)
    if back != text:
        raise AssertionError(f"{task}: decode(encode(text)) should give the text back, got {back!r}")
    _passed(task, f"{len(chars)} characters, decode(encode(text)) == text")


def check_training_compute(
    training_flops: Callable[[float, float], float], pf_days: Callable[[float], float]
) -> None:
    """Task: ``training_flops(n_params, n_tokens)`` (6 N D) and ``pf_days(flops)``."""
    task, hint = "Task 3 (training compute)", "6 FLOPs per parameter per token; a PF-day is 1e15 FLOP/s for 86,400 s."
    flops = _call(task, hint, training_flops, 175e9, 300e9)
    if flops is None or not math.isclose(float(flops), 6 * 175e9 * 300e9, rel_tol=1e-9):
        raise AssertionError(f"{task}: training_flops(175e9, 300e9) returned {flops}, expected 6 * N * D = 3.15e23")
    days = _call(task, hint, pf_days, 3.15e23)
    if days is None or not math.isclose(float(days), 3.15e23 / 8.64e19, rel_tol=1e-9):
        raise AssertionError(f"{task}: pf_days(3.15e23) returned {days}, expected 3.15e23 / 8.64e19 = 3,646")
    _passed(task, f"GPT-3 needed about {float(days):,.0f} PF-days; the articles say ~3,640")
