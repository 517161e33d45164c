"""Checks for exercises/04_transformer.ipynb: a causal mask, attention by hand, the sinusoidal
position encoding, BERT's masking.

Each check runs the learner's function and compares it with ``minigpt.models.attention`` (itself
tested against ``torch.nn.functional.scaled_dot_product_attention``) or, for the random
masking, with the proportions BERT prescribes. Where a wrong answer matches a known slip (a
missing 1/sqrt(d), the softmax over the wrong axis, sin and cos swapped), the message names it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.models.attention import causal_mask, scaled_dot_product_attention, sinusoidal_encoding
from minigpt.models.transformer import IGNORE

__all__ = ["check_attention", "check_causal_mask", "check_mask_tokens", "check_sinusoidal_encoding"]


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


def check_attention(attention_fn: Callable) -> None:
    """Task: ``attention(q, k, v, mask=None)`` -> output, by hand."""
    task = "Task 2 (attention by hand)"
    hint = ("scores = q @ k.transpose(-2, -1) / sqrt(d); where mask is False set scores to -inf "
            "(scores.masked_fill(~mask, float('-inf'))); weights = softmax over the last axis; "
            "return weights @ v.")
    g = torch.Generator().manual_seed(6)
    B, H, T, D = 2, 3, 5, 16
    q, k, v = (torch.randn(B, H, T, D, generator=g) for _ in range(3))
    for mask in (None, causal_mask(T)):
        want, _ = scaled_dot_product_attention(q, k, v, mask)
        got = _call(task, hint, attention_fn, q, k, v, mask)
        if isinstance(got, tuple):
            raise AssertionError(f"{task}: return only the output tensor, not a tuple. Hint: {hint}")
        if _close(got, want):
            continue
        tip, which = "", "with" if mask is not None else "without"
        if isinstance(got, torch.Tensor) and got.shape == want.shape:
            scores = q @ k.transpose(-2, -1)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            if torch.allclose(got, torch.softmax(scores, -1) @ v, atol=1e-5):
                tip = " It looks like the scores are not divided by sqrt(d)."
            elif torch.allclose(got, torch.softmax(scores / math.sqrt(D), -2).nan_to_num() @ v, atol=1e-5):
                tip = " The softmax runs over the wrong axis: each query's row must sum to 1 (dim=-1)."
            elif mask is not None and torch.allclose(got, scaled_dot_product_attention(q, k, v)[0], atol=1e-5):
                tip = " The mask is ignored: later positions must get no weight."
        raise AssertionError(f"{task}: the output {which} a mask differs from "
                             f"torch.nn.functional.scaled_dot_product_attention's (got {_shape(got)}, "
                             f"expected {tuple(want.shape)}).{tip} Hint: {hint}")
    _passed(task, "your attention equals torch.nn.functional.scaled_dot_product_attention, with and "
                  "without the causal mask")


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
            swapped = torch.empty_like(want)
            swapped[:, 0::2], swapped[:, 1::2] = want[:, 1::2], want[:, 0::2]
            if torch.allclose(got.float(), swapped, atol=1e-4):
                tip = " sin and cos are swapped: sin goes on the even features (0, 2, 4, ...)."
            elif torch.allclose(got[:, 0::2].float(), want[:, 0::2], atol=1e-4):
                tip = " The even (sin) features are right; check the odd (cos) ones."
            elif torch.allclose(got[:, :2].float(), want[:, :2], atol=1e-4):
                tip = " The first pair is right: check the frequency, 10000 ** (2i / d) with i the pair's index."
        raise AssertionError(f"{task}: sinusoidal_encoding({T}, {d}) returned {_shape(got)} that differs "
                             f"from the expected ({T}, {d}).{tip} Hint: {hint}")
    _passed(task, "your encoding equals minigpt.models.attention.sinusoidal_encoding")


def check_mask_tokens(mask_tokens_fn: Callable) -> None:
    """Task: ``mask_tokens(ids, mask_id, vocab_size, generator)`` -> (inputs, targets), BERT's
    15% with 80/10/10; targets are IGNORE (-100) where not chosen."""
    task = "Task 4 (BERT's masking)"
    hint = ("chosen = torch.rand(ids.shape, generator=generator) < 0.15; draw a second uniform number r "
            "per position: r < 0.8 -> mask_id, 0.8 <= r < 0.9 -> a random token of 0 .. vocab_size - 1, "
            "else keep the token; targets = ids where chosen, else -100.")
    V, mask_id = 50, 50
    ids = torch.randint(0, V, (100, 400), generator=torch.Generator().manual_seed(7))
    got = _call(task, hint, mask_tokens_fn, ids.clone(), mask_id, V, torch.Generator().manual_seed(8))
    if not (isinstance(got, tuple) and len(got) == 2 and all(isinstance(t, torch.Tensor) for t in got)):
        raise AssertionError(f"{task}: return the pair (inputs, targets) of tensors, got {type(got).__name__}")
    inputs, targets = got
    if inputs.shape != ids.shape or targets.shape != ids.shape:
        raise AssertionError(f"{task}: inputs and targets must have the shape of ids {tuple(ids.shape)}, got "
                             f"{_shape(inputs)} and {_shape(targets)}")
    chosen = targets != IGNORE
    n = int(chosen.sum())
    if not (targets[chosen] == ids[chosen]).all():
        raise AssertionError(f"{task}: at a chosen position the target is the original token; elsewhere "
                             f"it is {IGNORE}, so the loss skips it. Hint: {hint}")
    if not (inputs[~chosen] == ids[~chosen]).all():
        raise AssertionError(f"{task}: positions that were not chosen (target {IGNORE}) must keep their "
                             f"token in inputs. Hint: {hint}")
    share = n / ids.numel()
    if abs(share - 0.15) > 0.01:
        raise AssertionError(f"{task}: {share:.1%} of positions were chosen; BERT chooses 15%. Hint: {hint}")
    masked = float((inputs[chosen] == mask_id).float().mean())
    kept = float((inputs[chosen] == ids[chosen]).float().mean())  # includes random picks of itself
    if abs(masked - 0.8) > 0.02 or abs(kept - (0.1 + 0.1 / V)) > 0.02:
        raise AssertionError(f"{task}: of the chosen positions {masked:.0%} became [MASK] and {kept:.0%} kept "
                             f"their token; BERT's split is 80% [MASK], 10% random, 10% unchanged. Hint: {hint}")
    if not ((inputs >= 0) & (inputs <= mask_id)).all() or (inputs[chosen] != mask_id).sum() == 0:
        raise AssertionError(f"{task}: random replacements must be tokens 0 .. {V - 1}. Hint: {hint}")
    _passed(task, f"{share:.1%} chosen; of those {masked:.0%} [MASK], {kept:.0%} unchanged, the rest random")
