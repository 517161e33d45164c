"""Checks for exercises/11_efficient_inference.ipynb: symmetric int8 quantisation of a matrix, the
distillation loss, and a magnitude-pruning mask.

The references: ``minigpt.methods.quantize.quantize_int8`` and matrices with values written out by hand;
``minigpt.methods.compress.distillation_loss`` and a two-token case computed by hand; masks from sorting
|w|. Inputs catch the usual slips: one scale for the whole matrix, 128 or 255 steps, truncating
instead of rounding, a row of zeros that divides by zero; KL the wrong way round, the T^2 factor
left out, softening only one side, summing over positions; pruning the most negative weights
instead of the smallest in size, keeping the wrong share, a mask of the wrong shape or type.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.methods.compress import distillation_loss as _reference_kd
from minigpt.methods.quantize import dequantize as _dequantize
from minigpt.methods.quantize import quantize_int8 as _reference_quantize

__all__ = ["check_distillation_loss", "check_magnitude_mask", "check_quantize_int8"]


# ---- task 1 ---------------------------------------------------------------------------------

HAND_W = torch.tensor([[0.5, -1.27, 0.3],
                       [0.02, 0.01, -0.005],
                       [0.0, 0.0, 0.0]])  # rows of very different sizes, and a row of zeros


def _quantize_matrices() -> list[tuple[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(11)
    scaled = torch.randn(6, 20, generator=gen) * torch.tensor([[0.01], [0.1], [1], [3], [10], [0.5]])
    return [("the 3 x 3 matrix [[0.5, -1.27, 0.3], [0.02, 0.01, -0.005], [0, 0, 0]]", HAND_W),
            ("a 6 x 20 matrix whose rows range from about 0.01 to 10 in size", scaled)]


def check_quantize_int8(quantize_int8: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
                        ) -> None:
    """Task: ``quantize_int8(w) -> (q, scale)``: symmetric int8, one scale per row."""
    task = "Task 1 (quantize_int8)"
    hint = ("per row: scale = max|w| / 127 (a row of zeros: scale 1), then "
            "q = round(w / scale[:, None]).clamp(-127, 127).to(torch.int8).")
    for what, w in _quantize_matrices():
        got = _call(task, hint, quantize_int8, w.clone())
        shown = f"{task}, on {what}:"
        if not (isinstance(got, tuple) and len(got) == 2
                and all(isinstance(t, torch.Tensor) for t in got)):
            raise AssertionError(f"{shown} return a tuple (q, scale) of two tensors, got "
                                 f"{type(got).__name__}. Hint: {hint}")
        q, scale = got
        want_q, want_scale = _reference_quantize(w)
        if q.dtype != torch.int8:
            raise AssertionError(f"{shown} q has dtype {q.dtype}; store it as torch.int8 (one byte "
                                 f"a weight is the point), e.g. q.to(torch.int8). Hint: {hint}")
        if q.shape != w.shape:
            raise AssertionError(f"{shown} q has shape {tuple(q.shape)}, w {tuple(w.shape)}: one "
                                 f"integer per weight. Hint: {hint}")
        if scale.numel() == 1 and w.size(0) > 1:
            raise AssertionError(f"{shown} you returned one scale for the whole matrix; give each "
                                 f"row its own, so that a row of small weights keeps its "
                                 f"precision. Hint: {hint}")
        if tuple(scale.shape) != (w.size(0),):
            raise AssertionError(f"{shown} scale has shape {tuple(scale.shape)}; it should be "
                                 f"({w.size(0)},), one per row. Hint: {hint}")
        if not torch.isfinite(scale).all() or (scale <= 0).any():
            raise AssertionError(f"{shown} some scales are {scale.tolist()}: a row of zeros has "
                                 f"max|w| = 0, and dividing by a scale of 0 gives NaN. Give such "
                                 f"a row scale 1 (its q is 0 anyway). Hint: {hint}")
        rows = w.abs().amax(1) > 0  # rows of zeros have no "max |w|" to compare with
        amax = w.abs().amax(1)[rows]
        if any(torch.allclose(scale[rows].float(), amax / steps, rtol=1e-5) for steps in (128, 255)):
            raise AssertionError(f"{shown} your scales put max|w| at 128 or 255 steps; int8 "
                                 f"holds -128 to 127, and a symmetric scheme uses -127 to 127 so "
                                 f"that q and -q both fit: scale = max|w| / 127. Hint: {hint}")
        if not torch.allclose(scale.float(), want_scale, rtol=1e-5):
            raise AssertionError(f"{shown} scales {scale.tolist()[:4]}... should be "
                                 f"{want_scale.tolist()[:4]}... (max|w| / 127 per row). Hint: {hint}")
        if not torch.equal(q, want_q):
            truncated = torch.equal(q, (w / want_scale[:, None]).trunc().to(torch.int8))
            error = (_dequantize(q, want_scale) - w).abs().max().item()
            tip = (" You truncated (int() or .to(torch.int8) straight away): round to the nearest "
                   "step first, or the error reaches a whole step instead of half."
                   if truncated else "")
            raise AssertionError(f"{shown} q differs from round(w / scale) at "
                                 f"{int((q != want_q).sum())} positions (largest error "
                                 f"{error:.4g}).{tip} Hint: {hint}")
    q, scale = _call(task, hint, quantize_int8, HAND_W.clone())
    error = (_dequantize(q, scale) - HAND_W).abs()
    _passed(task, f"row 0 is stored with scale {scale[0].item():.3f} as {q[0].tolist()}, row 1 with "
                  f"{scale[1].item():.6f} as {q[1].tolist()}; every error is within half a step "
                  f"(largest {error.max().item():.5f})")


# ---- task 2 ---------------------------------------------------------------------------------


def _kd_slips(s: torch.Tensor, t: torch.Tensor, temperature: float) -> dict[str, float]:
    V = s.size(-1)
    s2, t2 = s.reshape(-1, V), t.reshape(-1, V)
    T = temperature
    log_ps, log_pt = F.log_softmax(s2 / T, -1), F.log_softmax(t2 / T, -1)
    kl_rows = (log_pt.exp() * (log_pt - log_ps)).sum(-1)
    reverse = (log_ps.exp() * (log_ps - log_pt)).sum(-1).mean() * T * T
    return {
        "You left out the factor T^2: the softened distributions' gradients shrink like "
        "1 / T^2, and multiplying by T^2 keeps the loss on the scale of the ordinary one.":
            kl_rows.mean().item(),
        "You computed KL(student || teacher): distillation takes the teacher's distribution as "
        "the target, KL(teacher || student) = sum p_teacher (log p_teacher - log p_student). "
        "(With F.kl_div(input, target) the input is the student's log-probabilities.)":
            reverse.item(),
        "You summed over the positions: average over them (every position is one prediction, "
        "like the mean cross-entropy).": (kl_rows.sum() * T * T).item(),
        "You softened only the student's logits: divide both by T.":
            ((F.softmax(t2, -1) * (F.log_softmax(t2, -1) - log_ps)).sum(-1).mean() * T * T).item(),
        "You softened only the teacher's logits: divide both by T.":
            ((log_pt.exp() * (log_pt - F.log_softmax(s2, -1))).sum(-1).mean() * T * T).item(),
        "You divided by T^2 instead of multiplying.": (kl_rows.mean() / (T * T)).item(),
    }


def check_distillation_loss(distillation_loss: Callable[[torch.Tensor, torch.Tensor, float],
                                                        torch.Tensor]) -> None:
    """Task: ``distillation_loss(student_logits, teacher_logits, temperature)``."""
    task = "Task 2 (distillation_loss)"
    hint = ("p_t = softmax(teacher / T), log p_s = log_softmax(student / T); per position "
            "sum_v p_t (log p_t - log p_s); the mean over positions, times T ** 2.")
    # By hand: teacher logits (2 ln 3, 0) at T = 2 soften to (3/4, 1/4); the student's (0, 0) to
    # (1/2, 1/2). KL = 3/4 ln(3/2) + 1/4 ln(1/2); times T^2 = 4.
    hand = 4 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    gen = torch.Generator().manual_seed(12)
    s, t = torch.randn(2, 3, 7, generator=gen) * 2, torch.randn(2, 3, 7, generator=gen) * 2
    cases = [("student logits [[0, 0]], teacher [[2 ln 3, 0]], T = 2",
              torch.tensor([[0.0, 0.0]]), torch.tensor([[2 * math.log(3), 0.0]]), 2.0, hand),
             ("random logits (2, 3, 7), T = 3", s, t, 3.0, _reference_kd(s, t, 3.0).item()),
             ("random logits (2, 3, 7), T = 1", s, t, 1.0, _reference_kd(s, t, 1.0).item()),
             ("equal logits (2, 3, 7), T = 2", s, s.clone(), 2.0, 0.0)]
    for what, st, te, T, want in cases:
        student = st.clone().requires_grad_(True)
        got = _call(task, hint, distillation_loss, student, te.clone(), T)
        shown = f"{task}, {what}:"
        if not isinstance(got, torch.Tensor) or got.dim() != 0:
            kind = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise AssertionError(f"{shown} you returned {kind}; return a scalar tensor. "
                                 f"Hint: {hint}")
        if not got.requires_grad:
            raise AssertionError(f"{shown} the loss has no gradient: compute it with torch "
                                 f"operations on the student's logits (no .item()). Hint: {hint}")
        value = got.item()
        if not math.isclose(value, want, rel_tol=1e-4, abs_tol=1e-5):
            tips = [tip for tip, slip in _kd_slips(st, te, T).items()
                    if math.isclose(value, slip, rel_tol=1e-4, abs_tol=1e-6)
                    and not math.isclose(slip, want, rel_tol=1e-4, abs_tol=1e-6)]
            raise AssertionError(f"{shown} expected {want:.5f}, got {value:.5f}. "
                                 f"{tips[0] + ' ' if tips else ''}Hint: {hint}")
    _passed(task, f"the two-token case is 4 x (3/4 ln 3/2 + 1/4 ln 1/2) = {hand:.4f} nats; equal "
                  "logits give 0; random logits match minigpt.methods.compress.distillation_loss")


# ---- task 3 ---------------------------------------------------------------------------------


def _mask_matrices() -> list[tuple[str, torch.Tensor, float]]:
    hand = torch.tensor([[0.5, -0.1, 0.02, -0.9],
                         [0.3, -0.05, 0.7, 0.01]])
    gen = torch.Generator().manual_seed(13)
    big = torch.randn(16, 20, generator=gen)
    return [("[[0.5, -0.1, 0.02, -0.9], [0.3, -0.05, 0.7, 0.01]] at sparsity 0.5", hand, 0.5),
            ("the same matrix at sparsity 0.25", hand, 0.25),
            ("a random 16 x 20 matrix at sparsity 0.9", big, 0.9),
            ("a random 16 x 20 matrix at sparsity 0.3", big, 0.3),
            ("a random 16 x 20 matrix at sparsity 0", big, 0.0)]


def check_magnitude_mask(magnitude_mask: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """Task: ``magnitude_mask(w, sparsity)``: a bool mask, False on the smallest |w|."""
    task = "Task 3 (magnitude_mask)"
    hint = ("k = round(sparsity * w.numel()) weights go; sort |w| flattened "
            "(w.abs().flatten().argsort()), set the first k to False and view the mask as w's shape.")
    for what, w, sparsity in _mask_matrices():
        got = _call(task, hint, magnitude_mask, w.clone(), sparsity)
        shown = f"{task}, {what}:"
        if not isinstance(got, torch.Tensor) or got.dtype != torch.bool:
            kind = got.dtype if isinstance(got, torch.Tensor) else type(got).__name__
            raise AssertionError(f"{shown} return a torch.bool tensor (True: keep), got {kind}. "
                                 f"Hint: {hint}")
        if got.shape != w.shape:
            raise AssertionError(f"{shown} the mask has shape {tuple(got.shape)}, the weights "
                                 f"{tuple(w.shape)}: one entry per weight. Hint: {hint}")
        n_zero = round(sparsity * w.numel())
        dropped = int((~got).sum())
        if dropped != n_zero:
            tip = (" True means keep: the mask looks the wrong way round."
                   if dropped == w.numel() - n_zero else "")
            raise AssertionError(f"{shown} {dropped} of {w.numel()} weights are False; sparsity "
                                 f"{sparsity} means {n_zero}.{tip} Hint: {hint}")
        order = w.abs().flatten().argsort()
        want = torch.ones(w.numel(), dtype=torch.bool)
        want[order[:n_zero]] = False
        if not torch.equal(got.flatten(), want):
            signed = torch.ones(w.numel(), dtype=torch.bool)
            signed[w.flatten().argsort()[:n_zero]] = False
            if torch.equal(got.flatten(), ~want):
                tip = " True means keep: the mask looks the wrong way round."
            elif torch.equal(got.flatten(), signed):
                tip = (" You removed the most negative weights: size is |w|, so -0.9 matters "
                       "more than 0.02.")
            else:
                tip = " Rank all the matrix's weights together by |w|, not row by row."
            raise AssertionError(f"{shown} the weights set to False are not the {n_zero} "
                                 f"smallest in size.{tip} Hint: {hint}")
    _passed(task, "the smallest |w| go, whatever their sign: at sparsity 0.5 the 2 x 4 matrix "
                  "keeps 0.5, -0.9, 0.3 and 0.7")
