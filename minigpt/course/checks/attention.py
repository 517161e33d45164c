"""Checks for exercises/04_transformer.ipynb: a causal mask, attention with ALiBi's distance
penalty, the sinusoidal position encoding, BERT's masking (the build task, multi-head attention
with padding, is checked in ``attention_build``).

Each check runs the learner's function and compares it with ``minigpt.models.attention`` or
``torch.nn.functional.scaled_dot_product_attention`` (given ALiBi's penalty as a float mask) or,
for the random masking, with the proportions BERT prescribes. Where a wrong answer matches a
known slip (a missing 1/sqrt(d), the penalty's sign, the softmax over the wrong axis, sin and cos
swapped or in two halves), the message names it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import matching_tip
from minigpt.course.checks._base import passed as _passed
from minigpt.models.attention import causal_mask, sinusoidal_encoding
from minigpt.models.transformer import IGNORE

__all__ = ["check_alibi_attention", "check_causal_mask", "check_mask_tokens", "check_sinusoidal_encoding"]


def _close(got, want: torch.Tensor, atol: float = 1e-5) -> bool:
    return (isinstance(got, torch.Tensor) and got.shape == want.shape
            and torch.allclose(got.float(), want.float(), atol=atol))


def _shape(value) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def check_causal_mask(causal_mask_fn: Callable) -> None:
    """Task: ``causal_mask(T)`` -> (T, T) booleans, True where query i may look at key j."""
    task = "Task 1 (causal mask)"
    hint = "position i may look at positions 0 .. i: torch.ones(T, T, dtype=torch.bool).tril()."
    for T in (4, 7, 1):
        want = causal_mask(T)
        got = _call(task, hint, causal_mask_fn, T)
        if isinstance(got, torch.Tensor) and got.shape == want.shape and got.dtype != torch.bool:
            raise AssertionError(f"{task}: return booleans (dtype torch.bool), got {got.dtype}. Hint: {hint}")
        if not _close(got, want):
            tip = ""
            if isinstance(got, torch.Tensor) and got.shape == want.shape:
                if torch.equal(got, want.T):
                    tip = " This is the transpose: row i (the query) must be True up to column i."
                elif torch.equal(got, ~want):
                    tip = " True and False are swapped: True means *may* look."
                elif torch.equal(got, want.tril(-1)):
                    tip = " The diagonal is missing: a position may look at itself."
            raise AssertionError(f"{task}: causal_mask({T}) returned {_shape(got)} that differs from the "
                                 f"expected ({T}, {T}) lower triangle.{tip} Hint: {hint}")
    _passed(task, "your mask equals minigpt.models.attention.causal_mask")


_ALIBI_TASK = "Task 2 (attention with a distance penalty, ALiBi)"
_ALIBI_HINT = ("distance = i - j from torch.arange(T)[:, None] - torch.arange(T)[None, :] (T, T); scores = "
               "q @ k.transpose(-2, -1) / sqrt(d) - slopes[:, None, None] * distance (one slope per head); "
               "where j > i set the scores to -inf; weights = softmax over the last axis; return weights @ v.")
# (B, H, T, d) and the slopes: first H == T, where slopes that broadcast along the keys instead of
# the heads raise no error (so that slip is named, not reported as a shape error), with a head of
# no penalty; then ALiBi's own slopes 2^(-8h/H) and a third shape
_ALIBI_CASES = (((2, 6, 6, 16), (1.0, 0.5, 0.0, 2.0, 0.25, 0.125)), ((2, 3, 5, 8), (0.5, 0.25, 0.125)),
                ((1, 4, 7, 4), tuple(2 ** (-8 * h / 4) for h in range(1, 5))))


def _alibi(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor, sign: float = -1.0,
           scale: bool = True, causal: bool = True, per_head: bool = True, dim: int = -1) -> torch.Tensor:
    """ALiBi attention (Press et al. 2022) by hand, or a usual mistake: the penalty's ``sign``
    flipped (the same as a distance j - i), no 1/sqrt(d), no causal mask, the slopes broadcast over
    the keys (``per_head`` False), the softmax over another ``dim``."""
    T = q.size(-2)
    if not per_head and len(slopes) != T:  # the slip raises an error here: it is not the learner's
        return torch.full_like(q, float("nan"))
    distance = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).float()  # (T, T): i - j
    bias = sign * (slopes[:, None, None] if per_head else slopes) * distance  # (H, T, T)
    scores = q @ k.transpose(-2, -1) / (math.sqrt(q.size(-1)) if scale else 1.0) + bias
    if causal:
        scores = scores.masked_fill(~causal_mask(T), float("-inf"))
    return torch.softmax(scores, dim).nan_to_num() @ v


_ALIBI_SLIPS = [
    ("It looks like the scores are not divided by sqrt(d).", lambda *a: _alibi(*a, scale=False)),
    (("The penalty raises the scores of distant keys: subtract slope * (i - j), with i the query and j "
      "the key (i - j >= 0 for every key a query may see)."), lambda *a: _alibi(*a, sign=1.0)),
    ("The causal mask is missing: keys j > i must get -inf, the penalty alone does not hide them.",
     lambda *a: _alibi(*a, causal=False)),
    (("The slopes run along the keys, not the heads: give them the shape (H, 1, 1), slopes[:, None, "
      "None], so that each head gets its own."), lambda *a: _alibi(*a, per_head=False)),
    ("The softmax runs over the wrong axis: each query's row must sum to 1 (dim=-1).",
     lambda *a: _alibi(*a, dim=-2)),
]


def _alibi_fail(what: str) -> None:
    raise AssertionError(f"{_ALIBI_TASK}: {what} Hint: {_ALIBI_HINT}")


def check_alibi_attention(alibi_fn: Callable) -> None:
    """Task: ``alibi_attention(q, k, v, slopes)`` for q, k, v (B, H, T, d) and slopes (H,): causal
    attention whose scores lose ``slopes[h] * (i - j)``; compared with torch's fused function
    given the same penalty as a float mask."""
    results = []
    for (B, H, T, D), slopes in _ALIBI_CASES:
        g = torch.Generator().manual_seed(T)
        q, k, v = (torch.randn(B, H, T, D, generator=g) for _ in range(3))
        slopes = torch.tensor(slopes)
        distance = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).float()
        bias = (-slopes[:, None, None] * distance).masked_fill(~causal_mask(T), float("-inf"))
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        args = (q, k, v, slopes)
        try:
            got = _call(_ALIBI_TASK, _ALIBI_HINT, alibi_fn, *(a.clone() for a in args))
        except (RuntimeError, ValueError, TypeError, IndexError) as error:
            raise AssertionError(f"{_ALIBI_TASK}: your function raised {error!r} for q, k, v {(B, H, T, D)} and "
                                 f"slopes ({H},). If it is about shapes: the penalty must be (H, T, T), "
                                 f"slopes[:, None, None] * distance. Hint: {_ALIBI_HINT}") from error
        if isinstance(got, tuple):
            _alibi_fail("return only the output tensor, not a tuple.")
        results.append((args, got))
        if not _close(got, want):
            tip = matching_tip(results, _ALIBI_SLIPS, _close) if isinstance(got, torch.Tensor) else ""
            raise AssertionError(f"{_ALIBI_TASK}: for q, k, v {(B, H, T, D)} the output differs from "
                                 f"torch.nn.functional.scaled_dot_product_attention given the same penalty "
                                 f"(got {_shape(got)}, expected {tuple(want.shape)}).{tip} Hint: {_ALIBI_HINT}")
    _passed(_ALIBI_TASK, "your attention equals torch.nn.functional.scaled_dot_product_attention with ALiBi's "
                         "penalty as its mask, on 3 shapes")


def _encoding_slips(T: int, d: int) -> list[tuple[str, torch.Tensor]]:
    """(tip, what the slip gives) for the usual wrong sinusoidal encodings of (T, d)."""
    want = sinusoidal_encoding(T, d)
    swapped = torch.empty_like(want)
    swapped[:, 0::2], swapped[:, 1::2] = want[:, 1::2], want[:, 0::2]
    t = torch.arange(T, dtype=torch.float32)[:, None]
    by_feature = t / 10000 ** (2 * torch.arange(d, dtype=torch.float32) / d)  # (T, d): 2k/d, k the feature
    per_feature = torch.where(torch.arange(d) % 2 == 0, torch.sin(by_feature), torch.cos(by_feature))
    return [
        ("sin and cos are swapped: sin goes on the even features (0, 2, 4, ...).", swapped),
        ("sin and cos sit in two halves: interleave them, PE[:, 0::2] = sin and PE[:, 1::2] = cos.",
         torch.cat([want[:, 0::2], want[:, 1::2]], dim=1)),
        ("The positions start at 1: the first row is position t = 0 (sin 0 = 0, cos 0 = 1).",
         sinusoidal_encoding(T + 1, d)[1:]),
        (("The frequency uses the feature's index k: use the pair's index i, so that features 2i and "
          "2i + 1 share the angle t / 10000 ** (2i / d)."), per_feature),
    ]


def check_sinusoidal_encoding(encoding_fn: Callable) -> None:
    """Task: ``sinusoidal_encoding(T, d)`` -> (T, d), sin on even features, cos on odd ones."""
    task = "Task 3 (sinusoidal position encoding)"
    hint = ("angle[t, i] = t / 10000 ** (2i / d) for i = 0 .. d/2 - 1; PE[:, 0::2] = sin(angle), "
            "PE[:, 1::2] = cos(angle).")
    for T, d in ((6, 4), (50, 16)):
        want = sinusoidal_encoding(T, d)
        got = _call(task, hint, encoding_fn, T, d)
        if _close(got, want, atol=1e-4):
            continue
        tip = ""
        if isinstance(got, torch.Tensor) and got.shape == want.shape:
            tip = next((" " + tip for tip, slip in _encoding_slips(T, d) if _close(got, slip, atol=1e-4)), "")
            if not tip and torch.allclose(got[:, 0::2].float(), want[:, 0::2], atol=1e-4):
                tip = " The even (sin) features are right; check the odd (cos) ones."
            elif not tip and torch.allclose(got[:, :2].float(), want[:, :2], atol=1e-4):
                tip = " The first pair is right: check the frequency, 10000 ** (2i / d) with i the pair's index."
        raise AssertionError(f"{task}: sinusoidal_encoding({T}, {d}) returned {_shape(got)} that differs "
                             f"from the expected ({T}, {d}).{tip} Hint: {hint}")
    _passed(task, "your encoding equals minigpt.models.attention.sinusoidal_encoding")


# BERT's masking is random, and a right answer may draw its numbers in another order than the
# package, so its check tests proportions and invariants, never equality with the package's draws.
# Each proportion may stray _Z standard errors from BERT's (a right answer fails one such test with
# probability ~2e-9), and the random tokens must be spread evenly (chi-square p-value >= _P_EVEN).
_Z = 6.0
_P_EVEN = 1e-9
_MASK_TASK = "Task 4 (BERT's masking)"
_MASK_HINT = ("chosen = torch.rand(ids.shape, generator=generator) < 0.15; draw a second uniform number r "
              "per position: r < 0.8 -> mask_id, 0.8 <= r < 0.9 -> a random token of 0 .. vocab_size - 1 "
              "(torch.randint(0, vocab_size, ids.shape, generator=generator), one per position), else keep "
              "the token; targets = ids where chosen, else -100.")


def _mask_fail(what: str, tip: str = "") -> None:
    raise AssertionError(f"{_MASK_TASK}: {what}{' ' + tip if tip else ''} Hint: {_MASK_HINT}")


def _z(count: int, n: int, p: float) -> float:
    """How many standard errors ``count`` of ``n`` lies from ``n * p``."""
    return (count - n * p) / math.sqrt(n * p * (1 - p))


def _run_mask_tokens(fn: Callable, ids: torch.Tensor, mask_id: int, V: int, seed: int):
    """``fn(ids, mask_id, V, generator)`` checked for its form: a pair of integer tensors shaped like
    ``ids``, which stays as it was."""
    given = ids.clone()
    got = _call(_MASK_TASK, _MASK_HINT, fn, given, mask_id, V, torch.Generator().manual_seed(seed))
    if not (isinstance(got, tuple) and len(got) == 2 and all(isinstance(t, torch.Tensor) for t in got)):
        raise AssertionError(f"{_MASK_TASK}: return the pair (inputs, targets) of tensors, got {type(got).__name__}")
    inputs, targets = got
    if inputs.shape != ids.shape or targets.shape != ids.shape:
        raise AssertionError(f"{_MASK_TASK}: inputs and targets must have the shape of ids {tuple(ids.shape)}, "
                             f"got {_shape(inputs)} and {_shape(targets)}")
    if inputs.dtype != ids.dtype or targets.dtype != ids.dtype:
        _mask_fail(f"inputs and targets must be token ids of the dtype of ids ({ids.dtype}; F.cross_entropy needs "
                   f"integer targets), got {inputs.dtype} and {targets.dtype}.")
    if not torch.equal(given, ids):
        _mask_fail("your function changed ids in place: corrupt a copy, inputs = ids.clone(), so that the "
                   "caller's batch (and the targets) keep the original tokens.")
    return inputs.cpu(), targets.cpu()


def _mask_stats(ids: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, mask_id: int, V: int) -> dict:
    """The numbers the check judges one call by (ids in 0 .. V - 1, mask_id outside). Among the
    chosen positions (target not IGNORE), the counts ``masked``, ``kept`` (equal to the original:
    left unchanged, or replaced by chance by itself) and ``other``, and ``z_*`` for each against
    BERT's 0.8, 0.1 + 0.1 / V and 0.1 (V - 1) / V. ``became[v]``: chosen positions not masked,
    whose original is not v, that became v; ``could[v]``: how many such positions there are. For a
    right answer each has the same chance (0.1 / V) / 0.2 of becoming v, whatever v: ``p_even`` is
    the chi-square test of that (V - 1 degrees of freedom), ``top`` the commonest replacement."""
    chosen = targets != IGNORE
    n = int(chosen.sum())
    s = {"n": n, "share": n / ids.numel(), "z_share": _z(n, ids.numel(), 0.15)}
    if n == 0:
        return s
    got, orig = inputs[chosen], ids[chosen]
    s["masked"], s["kept"] = int((got == mask_id).sum()), int((got == orig).sum())
    s["other"] = n - s["masked"] - s["kept"]
    for key, p in (("masked", 0.8), ("kept", 0.1 + 0.1 / V), ("other", 0.1 * (V - 1) / V)):
        s["z_" + key] = _z(s[key], n, p)
    got, orig = got[got != mask_id], orig[got != mask_id]
    s["outside"] = got[(got < 0) | (got >= V)].unique().tolist()
    if s["outside"] or s["other"] == 0:
        return s
    became = torch.bincount(got[got != orig], minlength=V).double()
    could = (len(orig) - torch.bincount(orig, minlength=V)).double()
    q = float(became.sum() / could.sum())
    s["became"], s["expected"] = became, could * q
    s["top"] = int(became.argmax())
    s["top_share"] = float(became[s["top"]] / became.sum())
    chi2 = float(((became - could * q) ** 2 / (could * q * (1 - q)).clamp(min=1e-12)).sum())
    s["p_even"] = float(torch.special.gammaincc(torch.tensor((V - 1) / 2, dtype=torch.float64),
                                                torch.tensor(chi2 / 2, dtype=torch.float64)))
    return s


def _judge_mask_run(ids: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, mask_id: int, V: int) -> dict:
    """Raise with the likeliest mistake if one call's (inputs, targets) is not BERT's masking."""
    chosen = targets != IGNORE
    if not (targets[chosen] == ids[chosen]).all():
        tip = "Your targets are the corrupted inputs: they must hold the original ids." if torch.equal(
            targets, inputs) else ""
        _mask_fail(f"at a chosen position the target is the original token; elsewhere it is {IGNORE}, so the "
                   "loss skips it.", tip)
    if not (inputs[~chosen] == ids[~chosen]).all():
        _mask_fail(f"positions that were not chosen (target {IGNORE}) must keep their token in inputs.",
                   "The 80/10/10 split applies only to the chosen 15% of positions, not to all of them.")
    s = _mask_stats(ids, inputs, targets, mask_id, V)
    n = s["n"]
    if abs(s["z_share"]) > _Z:
        tip = ""
        if n == ids.numel():
            tip = f"Every position has a target: the positions that were not chosen get {IGNORE}."
        elif n and s["kept"] == 0:
            tip = ("Every chosen position changed: the 10% left unchanged are chosen too, and keep their "
                   "original token as target.")
        _mask_fail(f"{s['share']:.1%} of positions were chosen; BERT chooses 15%.", tip)
    if s["outside"]:
        _mask_fail(f"random replacements must be tokens 0 .. {V - 1}, got {s['outside'][:5]}.")
    uneven = "p_even" in s and s["p_even"] < _P_EVEN
    if uneven and s["top_share"] > 0.5:
        _mask_fail(f"the random replacements are not spread over the vocabulary 0 .. {V - 1}: {s['top_share']:.0%} "
                   f"of them are token {s['top']}.", "Draw a new random token for every position, torch.randint(0, "
                   "vocab_size, shape, generator=generator), not one token (or a fixed one) for all.")
    if max(abs(s[k]) for k in ("z_masked", "z_kept", "z_other")) > _Z:
        tip, p_mask = "", 0.1 / (V + 1)  # a draw from 0 .. V gives mask_id = V with this chance
        if abs(_z(s["masked"], n, 0.8 + p_mask)) < 3 and abs(_z(s["kept"], n, 0.1 + p_mask)) < 3:
            tip = (f"The random tokens seem to include mask_id = {mask_id}: draw them from 0 .. vocab_size - 1 "
                   "only, torch.randint(0, vocab_size, ...) (its high end is excluded).")
        elif abs(_z(s["kept"], n, 0.1)) < 3 and abs(s["z_masked"]) < 3:
            tip = ("The random token is never the original one: draw it from all of 0 .. vocab_size - 1, "
                   "so that by chance it may be the original token.")
        elif abs(s["masked"] / n - 0.15) < 0.02:
            tip = "80% of the chosen positions become [MASK], not 15%: 15% is the share of positions chosen."
        _mask_fail(f"of the chosen positions {s['masked'] / n:.1%} became [MASK], {s['kept'] / n:.1%} kept their "
                   f"token and {s['other'] / n:.1%} another one; BERT's split is 80% [MASK], 10% random, 10% "
                   f"unchanged, so {0.1 + 0.1 / V:.1%} keep their token (a random draw may hit it) and "
                   f"{0.1 * (V - 1) / V:.1%} get another token.", tip)
    if "became" not in s:
        return s
    became, expected = s["became"], s["expected"]
    if uneven:
        _mask_fail(f"the random replacements are not spread evenly over the vocabulary 0 .. {V - 1}: token "
                   f"{s['top']} came {int(became[s['top']])} times where about {float(expected[s['top']]):.0f} were "
                   "expected.", "Draw each uniformly from 0 .. vocab_size - 1 (not, e.g., from the batch's tokens).")
    missing = [v for v in range(V) if became[v] == 0]
    if missing:
        _mask_fail(f"no chosen position was replaced by token {missing[:5]}, though about "
                   f"{float(expected[missing[0]]):.0f} were expected.", "Draw the random tokens from the whole "
                   "vocabulary 0 .. vocab_size - 1: torch.randint(0, vocab_size, ...) (its high end is excluded).")
    return s


def check_mask_tokens(mask_tokens_fn: Callable) -> None:
    """Task: ``mask_tokens(ids, mask_id, vocab_size, generator)`` -> (inputs, targets), BERT's
    15% with 80/10/10; targets are IGNORE (-100) where not chosen.

    Two calls are judged by their proportions (see ``_mask_stats``): one with 50 tokens whose ids
    are skewed like a text's, one with 2 tokens, where random tokens that may be ``mask_id``, miss
    an end of the vocabulary or avoid the original token show; then the function must give the
    same result for generators seeded alike, and another for another seed."""
    V, mask_id = 50, 50
    zipf = 1 / torch.arange(1, V + 1, dtype=torch.float64)
    ids = torch.multinomial(zipf, 250 * 400, replacement=True, generator=torch.Generator().manual_seed(7))
    ids = ids.view(250, 400)
    s = _judge_mask_run(ids, *_run_mask_tokens(mask_tokens_fn, ids, mask_id, V, 8), mask_id, V)
    small = torch.randint(0, 2, (400, 400), generator=torch.Generator().manual_seed(5))
    _judge_mask_run(small, *_run_mask_tokens(mask_tokens_fn, small, 2, 2, 9), 2, 2)
    few = ids[:16, :64]
    first, again, other = (_run_mask_tokens(mask_tokens_fn, few, mask_id, V, seed) for seed in (3, 3, 4))
    if not all(torch.equal(a, b) for a, b in zip(first, again)):
        _mask_fail("two calls with generators seeded alike gave different results.",
                   "Draw every random number (torch.rand, torch.randint, ...) with generator=generator.")
    if all(torch.equal(a, b) for a, b in zip(first, other)):
        _mask_fail("generators seeded differently gave the same result.",
                   "Use the generator passed in (generator=generator), not torch.manual_seed.")
    _passed(_MASK_TASK, f"{s['share']:.1%} chosen; of those {s['masked'] / s['n']:.0%} [MASK], "
                        f"{s['kept'] / s['n']:.0%} unchanged, "
                        f"the rest random tokens spread over 0 .. vocab_size - 1; reproducible with the generator")
