"""Checks for exercises/00_welcome.ipynb: bits per byte, a character tokenizer, training compute.

The checks compare against the package's own implementation on inputs chosen to catch the
usual mistakes (nats vs bits, tokens vs bytes, ids out of sorted order or starting at 1, a
forward-pass-only FLOP count, hours for days), and name the mistake when they recognise it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping

from minigpt.core import metrics
from minigpt.course.checks._base import _number
from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed

__all__ = ["check_bits_per_byte", "check_char_codec", "check_training_compute"]


def _close(a: float, b: float, rel_tol: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-12)


# --------------------------------------------------------------------------- Task 1


def _tip(value: float, slips: list[tuple[float, str]], rel_tol: float) -> str:
    """The tip of the first usual mistake whose result ``value`` matches, or ''."""
    return next((" " + tip for wrong, tip in slips if _close(value, wrong, rel_tol)), "")


def _bpb_slips(loss: float, n_tokens: int, n_bytes: int) -> list[tuple[float, str]]:
    """What the usual wrong formulas give on one case, each with the tip that names the mistake."""
    ln2 = math.log(2)
    return [
        (loss * n_tokens / n_bytes,
         "You returned nats per byte (natural log): divide by ln 2 to get bits."),
        (loss * n_tokens / n_bytes * ln2,
         "You converted the wrong way (x ln 2): 1 bit = ln 2 nats, so bits = nats / ln 2."),
        (loss / ln2,
         "You returned bits per token: scale by n_tokens / n_bytes."),
        (loss / ln2 / n_bytes,
         "You forgot the n_tokens factor: total nats = mean loss x n_tokens."),
        (loss / ln2 * n_bytes / n_tokens,
         "You divided by n_tokens instead of n_bytes: bits per byte = total bits / n_bytes."),
    ]


def check_bits_per_byte(bits_per_byte: Callable[[float, int, int], float]) -> None:
    """Task: ``bits_per_byte(mean_loss_nats, n_tokens, n_bytes)``."""
    task, hint = "Task 1 (bits_per_byte)", "total nats = mean loss x tokens; 1 bit = ln 2 nats."
    cases = [
        (math.log(256), 1000, 1000),
        (2.0, 250, 1000),
        (1.3, 4096, 17_000),
        (0.7, 3000, 1200),
        (0.0, 10, 10),
    ]
    for loss, n_tokens, n_bytes in cases:
        got = _call(task, hint, bits_per_byte, loss, n_tokens, n_bytes)
        value = _number(got)
        want = metrics.bits_per_byte(loss, n_tokens, n_bytes)
        if value is None:
            raise AssertionError(
                f"{task}: bits_per_byte({loss}, {n_tokens}, {n_bytes}) returned {got!r}; return "
                f"one finite number. Hint: {hint}"
            )
        if not _close(value, want):
            tip = _tip(value, _bpb_slips(loss, n_tokens, n_bytes), 1e-6)
            raise AssertionError(
                f"{task}: bits_per_byte({loss}, {n_tokens}, {n_bytes}) returned {value}, expected "
                f"{want:.6f}.{tip} Hint: {hint}"
            )
    _passed(task, "a uniform guess over 256 byte values costs exactly 8 bits per byte")


# --------------------------------------------------------------------------- Task 2


def _ids_list(ids) -> list[int] | None:
    """The learner's ids as a list of Python ints, or None if they are not integers."""
    if isinstance(ids, (str, bytes)) or ids is None:
        return None
    try:
        return [operator.index(i) for i in ids]
    except TypeError:
        return None


def _lookup(table, key):
    try:
        return table[key]
    except (KeyError, IndexError, TypeError):
        return None


def check_char_codec(
    build_vocab: Callable[[str], tuple[dict, dict]],
    encode: Callable[[str, dict], list],
    decode: Callable[[list, dict], str],
) -> None:
    """Task: ``build_vocab(text) -> (stoi, itos)``, ``encode(text, stoi)``,
    ``decode(ids, itos)``."""
    task, hint = (
        "Task 2 (character tokenizer)",
        "sorted(set(text)) gives the vocabulary in a fixed order.",
    )
    text = "hello, world! 你好 \u2014 caf\u00e9\n"
    chars = sorted(set(text))
    n = len(chars)
    result = _call(task, hint, build_vocab, text)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise AssertionError(
            f"{task}: build_vocab should return two dictionaries, (stoi, itos); got "
            f"{type(result).__name__}. Hint: {hint}"
        )
    stoi, itos = result
    if (
        isinstance(itos, Mapping)
        and set(itos) == set(chars)
        and not (isinstance(stoi, Mapping) and set(stoi) == set(chars))
    ):
        raise AssertionError(
            f"{task}: build_vocab returned (itos, stoi): the second dictionary maps characters "
            f"to ids. Return (stoi, itos) in that order."
        )
    if not isinstance(stoi, Mapping):
        raise AssertionError(  # noqa: TRY004 (a check reports every mistake as an AssertionError)
            f"{task}: stoi (the first thing build_vocab returns) should be a dict from character "
            f"to id, got {type(stoi).__name__}. Hint: {hint}"
        )
    if set(stoi) != set(chars):
        missing = sorted(set(chars) - set(stoi))
        extra = [k for k in stoi if k not in chars]
        raise AssertionError(
            f"{task}: stoi should have one entry per distinct character of the text ({n}), got "
            f"{len(stoi)}{f'; missing {missing}' if missing else ''}"
            f"{f'; not in the text {extra}' if extra else ''}. Hint: {hint}"
        )
    ids = _ids_list(stoi.values())
    if ids is None:
        raise AssertionError(
            f"{task}: the ids in stoi should be integers, got {list(stoi.values())}. Hint: {hint}"
        )
    values = sorted(ids)
    if values != list(range(n)):
        tip = ""
        if values == list(range(1, n + 1)):
            tip = " Your ids start at 1: number them from 0 (enumerate counts from 0 by default)."
        elif dict(stoi) == {ch: i for i, ch in enumerate(sorted(text))}:
            tip = (
                " You numbered sorted(text), which keeps repeated characters, so ids skip numbers: "
                "number sorted(set(text)) instead."
            )
        raise AssertionError(
            f"{task}: ids should be 0..{n - 1}, one per character, got {values}.{tip} Hint: {hint}"
        )
    wrong = [(ch, stoi[ch], i) for i, ch in enumerate(chars) if stoi[ch] != i]
    if wrong:
        if dict(stoi) == {ch: i for i, ch in enumerate(dict.fromkeys(text))}:
            tip = (
                "You numbered the characters in order of first appearance; the task asks for "
                "sorted character order: number sorted(set(text))."
            )
        else:
            tip = "Number the characters of sorted(set(text)) in that order."
        ch, got_id, want_id = wrong[0]
        raise AssertionError(
            f"{task}: ids must follow sorted character order (0 for {chars[0]!r}, {n - 1} for "
            f"{chars[-1]!r}); {ch!r} got id {got_id}, expected {want_id}. {tip}"
        )
    try:
        size = len(itos)
    except TypeError:
        size = None
    if size != n or any(_lookup(itos, i) != ch for ch, i in stoi.items()):
        raise AssertionError(
            f"{task}: itos must invert stoi: one entry per id, itos[stoi[ch]] == ch for every "
            f"character (itos maps ids to characters). Hint: {hint}"
        )
    for sample in (text, "cold caf\u00e9, hello\n"):
        got_ids = _call(task, hint, encode, sample, stoi)
        ids = _ids_list(got_ids)
        want_ids = [stoi[ch] for ch in sample]
        if ids is None:
            raise AssertionError(
                f"{task}: encode should return a list of integer ids, got {got_ids!r}. Hint: {hint}"
            )
        if ids != want_ids:
            raise AssertionError(
                f"{task}: encode({sample!r}) should map each character to its id, in order: "
                f"expected {want_ids}, got {ids}"
            )
        back = _call(task, hint, decode, list(ids), itos)
        chars_back = isinstance(back, list) and all(isinstance(x, str) for x in back)
        if chars_back and "".join(back) == sample:
            raise AssertionError(
                f"{task}: decode returned a list of characters; join them into one string with "
                f"''.join(...)."
            )
        if back != sample:
            raise AssertionError(
                f"{task}: decode(encode(text)) should give the text back as a str: expected "
                f"{sample!r}, got {back!r}"
            )
    _passed(task, f"{n} characters, decode(encode(text)) == text")


# --------------------------------------------------------------------------- Task 3

PF_DAY = 1e15 * 86_400  # FLOPs in one petaFLOP/s-day


def _flops_tip(value: float, n_params: float, n_tokens: float, earlier: float | None) -> str:
    nd = n_params * n_tokens
    if earlier is not None and _close(value, earlier, 1e-9):
        return (
            " Your function returned the same value for different arguments (a hard-coded "
            "answer?): compute it from n_params and n_tokens."
        )
    slips = [
        (2 * nd, "2 N D is only the forward pass; add the backward pass (4 N D): 6 N D in all."),
        (4 * nd, "4 N D is only the backward pass; add the forward pass (2 N D): 6 N D in all."),
        (nd, "N x D misses the factor 6 (FLOPs per parameter per token)."),
    ]
    return _tip(value, slips, 1e-9)


def _pf_days_tip(value: float, flops: float, earlier: float | None) -> str:
    if earlier is not None and _close(value, earlier, 1e-9):
        return (
            " Your function returned the same value for different FLOP counts (a hard-coded "
            "answer?): compute it from flops."
        )
    slips = [
        (flops / (1e15 * 3_600), "You divided by 3,600 s (an hour); a day is 86,400 s."),
        (flops / (1e15 * 1_440),
         "You divided by 1,440 (minutes in a day); divide by the 86,400 seconds in a day."),
        (flops / (1e15 * 24),
         "You divided by 24 (hours in a day); divide by the 86,400 seconds in a day."),
        (flops / 1e15, "You returned PF-seconds: divide by the 86,400 seconds in a day too."),
        (flops / 86_400, "You forgot the 1e15 (peta): a PF-day is 1e15 FLOP/s for 86,400 s."),
        (flops * PF_DAY,
         "You multiplied; divide the FLOPs by the FLOPs in one PF-day (1e15 x 86,400)."),
    ]
    return _tip(value, slips, 1e-9)


def check_training_compute(
    training_flops: Callable[[float, float], float], pf_days: Callable[[float], float]
) -> None:
    """Task: ``training_flops(n_params, n_tokens)`` (6 N D) and ``pf_days(flops)``."""
    task, hint = (
        "Task 3 (training compute)",
        "6 FLOPs per parameter per token; a PF-day is 1e15 FLOP/s for 86,400 s.",
    )
    # GPT-3 first, then models of other sizes, so a hard-coded GPT-3 answer is caught.
    pairs = [(175e9, 300e9), (124e6, 10e9), (1_000_000, 20_000_000), (7e9, 2e12)]
    first = None
    for n_params, n_tokens in pairs:
        got = _call(task, hint, training_flops, n_params, n_tokens)
        value = _number(got)
        want = 6 * n_params * n_tokens
        if value is None:
            raise AssertionError(
                f"{task}: training_flops({n_params:g}, {n_tokens:g}) returned {got!r}; return "
                f"one finite number. Hint: {hint}"
            )
        if not _close(value, want, 1e-9):
            tip = _flops_tip(value, n_params, n_tokens, first)
            raise AssertionError(
                f"{task}: training_flops({n_params:g}, {n_tokens:g}) returned {value:g}, expected "
                f"6 * N * D = {want:g}.{tip} Hint: {hint}"
            )
        first = value if first is None else first
    flop_counts = [3.15e23, PF_DAY, 1e21, 6 * 124e6 * 10e9]
    first = None
    for flops in flop_counts:
        got = _call(task, hint, pf_days, flops)
        value = _number(got)
        want = flops / PF_DAY
        if value is None:
            raise AssertionError(
                f"{task}: pf_days({flops:g}) returned {got!r}; return one finite number. "
                f"Hint: {hint}"
            )
        if not _close(value, want, 1e-9):
            tip = _pf_days_tip(value, flops, first)
            raise AssertionError(
                f"{task}: pf_days({flops:g}) returned {value:g}, expected {flops:g} / 8.64e19 = "
                f"{want:,.4g}.{tip} Hint: {hint}"
            )
        first = value if first is None else first
    _passed(task, f"GPT-3 needed about {first:,.0f} PF-days; the articles say ~3,640")
