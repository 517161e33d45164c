"""The check of exercise 04's build task: multi-head causal self-attention with a key padding mask.

The learner writes a module with four linear layers (``q``, ``k``, ``v``, ``proj``) whose
``forward(x, is_real=None)`` returns ``(y, weights)``. The check copies seeded random weights
into it and into ``minigpt.models.attention.MultiHeadAttention`` (causal, its hand-written path,
which returns the weights) and compares the two on several shapes, with right-padded,
left-padded, gapped and all-padding rows. Before comparing it tests what a right answer must
do whatever its numbers: no weight on later positions, no weight on padded keys, each query's
weights summing to 1 (or all 0 when it may look at no key, as the package does); after the
outputs, the gradients of a loss must match the package's too (finite where a query sees no key,
the graph not cut). Where a wrong
answer matches a known slip (the mask after the softmax, padding on queries, a transposed causal
mask, heads split or merged by a bare view, the scale sqrt(C) or none), the message names it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import matching_tip as _matching_tip
from minigpt.course.checks._base import passed as _passed
from minigpt.models.attention import MultiHeadAttention, causal_mask

__all__ = ["check_multi_head_attention"]

_TASK = "Task 5 (multi-head causal attention with padding)"
_HINT = ("split each of q, k, v into heads, (B, T, C) -> (B, T, n_head, D) -> (B, n_head, T, D) (view, "
         "then transpose); scale the scores by a head's width; combine the causal mask with the padding of "
         "the keys and set what is hidden to -inf before the softmax; a query with no key to look at gets "
         "weights 0; merge the heads back (transpose, then reshape) and apply proj.")
_ATOL = 1e-5  # float32 round-off on values of order 1; right answers differ by < 1e-6
_ZERO = 1e-6  # a weight that must be zero (exp(-inf) is exactly 0; -1e9 gives 0 too)

# (B, T, C, n_head, rows): rows are strings of "1" (a real token) and "0" (padding), or None
_CASES = (
    (2, 5, 16, 4, None),
    (4, 7, 24, 3, ("1111111", "1111000", "0011111", "1101101")),  # full, right, left, gaps
    (3, 6, 12, 2, ("111110", "000000", "011111")),  # an all-padding row
    (2, 4, 8, 1, ("1110", "1111")),  # one head: D = C
)


def _inputs(B: int, T: int, C: int, rows, seed: int) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    layers = {}
    for name in ("q", "k", "v", "proj"):
        layers[name + ".weight"] = torch.randn(C, C, generator=g) / math.sqrt(C)
        layers[name + ".bias"] = 0.1 * torch.randn(C, generator=g)
    x = torch.randn(B, T, C, generator=g)
    is_real = None if rows is None else torch.tensor([[c == "1" for c in row] for row in rows])
    return x, layers, is_real


def _package_module(layers: dict[str, Tensor], C: int, n_head: int) -> MultiHeadAttention:
    """The package's causal attention, its layers holding ``layers`` (keys and values in one ``kv``)."""
    with torch.random.fork_rng():
        mha = MultiHeadAttention(C, n_head, causal=True)
    mha.load_state_dict({
        "q.weight": layers["q.weight"], "q.bias": layers["q.bias"],
        "kv.weight": torch.cat([layers["k.weight"], layers["v.weight"]]),
        "kv.bias": torch.cat([layers["k.bias"], layers["v.bias"]]),
        "proj.weight": layers["proj.weight"], "proj.bias": layers["proj.bias"]})
    return mha


def _package(layers: dict[str, Tensor], x: Tensor, is_real: Tensor | None, n_head: int):
    """The package's (y, weights) (its hand-written path: a query with no key gets zeros)."""
    mask = None if is_real is None else is_real[:, None, None, :]
    with torch.no_grad():
        return _package_module(layers, x.size(-1), n_head)(x, mask=mask, return_weights=True)


def _slip(layers: dict[str, Tensor], x: Tensor, is_real: Tensor | None, n_head: int, *,
          scale: str = "head", split: str = "transpose", merge: str = "transpose",
          proj: bool = True) -> tuple[Tensor, Tensor]:
    """A usual mistake's (y, weights): ``scale`` "head" (right), "width" (sqrt(C)) or "none";
    ``split`` / ``merge`` "view" (no transpose); ``proj`` False (no output layer)."""
    B, T, C = x.shape
    D = C // n_head

    def lin(name: str, t: Tensor) -> Tensor:
        return t @ layers[name + ".weight"].T + layers[name + ".bias"]

    def heads(t: Tensor) -> Tensor:
        if split == "view":
            return t.reshape(B, n_head, T, D)
        return t.view(B, T, n_head, D).transpose(1, 2)

    q, k, v = (heads(lin(name, x)) for name in "qkv")
    scores = q @ k.transpose(-2, -1) / {"head": math.sqrt(D), "width": math.sqrt(C), "none": 1.0}[scale]
    may = causal_mask(T) if is_real is None else causal_mask(T) & is_real[:, None, None, :]
    weights = scores.masked_fill(~may, float("-inf")).softmax(-1).nan_to_num(0.0)
    y = weights @ v
    y = y.reshape(B, T, C) if merge == "view" else y.transpose(1, 2).reshape(B, T, C)
    return (lin("proj", y) if proj else y), weights


_WEIGHT_SLIPS = [
    ("The scores are not divided by sqrt(D): divide them by the square root of a head's width.",
     lambda *a: _slip(*a, scale="none")[1]),
    (("The scores are divided by sqrt(C), the model's width: divide by sqrt(D), D = C / n_head, the "
      "width of one head (its dot products are sums of D products)."), lambda *a: _slip(*a, scale="width")[1]),
    (("The heads are split with a bare view(B, n_head, T, D), which cuts across positions: view (B, "
      "T, n_head, D) first, then .transpose(1, 2)."), lambda *a: _slip(*a, split="view")[1]),
]
_OUTPUT_SLIPS = [
    (("The heads are merged with a bare view / reshape of (B, n_head, T, D), which mixes heads and "
      "positions: .transpose(1, 2) first, then .reshape(B, T, C)."), lambda *a: _slip(*a, merge="view")[0]),
    ("The output layer is missing: return self.proj of the merged heads.", lambda *a: _slip(*a, proj=False)[0]),
]


def _same(got: Tensor, want: Tensor) -> bool:
    return got.shape == want.shape and torch.allclose(got, want, atol=_ATOL, rtol=1e-4)


def _fail(what: str, tip: str = "") -> None:
    raise AssertionError(f"{_TASK}: {what}{' ' + tip if tip else ''} Hint: {_HINT}")


def _layers_of(model: nn.Module, C: int) -> None:
    for name in ("q", "k", "v", "proj"):
        layer = getattr(model, name, None)
        if not (isinstance(layer, nn.Linear) and layer.in_features == C and layer.out_features == C
                and layer.bias is not None):
            raise AssertionError(f"{_TASK}: the module needs self.{name} = nn.Linear(n_embd, n_embd) (with a "
                                 f"bias), got {type(layer).__name__}: the check copies its weights into "
                                 "self.q, self.k, self.v and self.proj.")


def _run(cls: Callable, case: tuple, seed: int):
    """Build the learner's module for ``case``, load the case's weights and run it: returns the
    inputs, its (y, weights) checked for form, the module and y with its graph."""
    B, T, C, H, rows = case
    x, layers, is_real = _inputs(B, T, C, rows, seed)
    with torch.random.fork_rng():
        model = _call(_TASK, _HINT, cls, C, H)
    if not isinstance(model, nn.Module):
        _fail(f"{cls!r}({C}, {H}) is not an nn.Module: subclass nn.Module.")
    _layers_of(model, C)
    with torch.no_grad():
        for name, value in layers.items():
            model.get_parameter(name).copy_(value)
    try:
        got = _call(_TASK, _HINT, model, x.clone(), None if is_real is None else is_real.clone())
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        tip = (" After a transpose the tensor is no longer contiguous: merge with .reshape(B, T, C) (or "
               ".contiguous().view(B, T, C))." if "view" in str(error) else "")
        raise AssertionError(f"{_TASK}: forward raised {error!r} for x {(B, T, C)} and n_head={H}.{tip} "
                             f"Hint: {_HINT}") from error
    if not (isinstance(got, tuple) and len(got) == 2 and all(isinstance(t, Tensor) for t in got)):
        raise AssertionError(f"{_TASK}: forward must return the pair (y, weights), got {type(got).__name__}. "
                             f"Hint: {_HINT}")
    y, weights = (t.detach().float() for t in got)
    shapes = f"for x {(B, T, C)} and n_head={H}, expected y {(B, T, C)} and weights {(B, H, T, T)}"
    if y.shape != (B, T, C) or weights.shape != (B, H, T, T):
        raise AssertionError(f"{_TASK}: got y {tuple(y.shape)} and weights {tuple(weights.shape)} {shapes}. "
                             f"Hint: {_HINT}")
    return (layers, x, is_real, H), y, weights, model, got[0]


def _judge_masks(weights: Tensor, is_real: Tensor | None, T: int) -> None:
    """What any right answer's weights show: nothing on later positions or on padded keys; rows
    that sum to 1, or to 0 where a query may look at no key."""
    if torch.isnan(weights).any():
        _fail("some weights are NaN.", "A query that may look at no key (the first positions of a left-padded "
              "row, or any position of an all-padding row) has all its scores at -inf, and softmax gives NaN "
              "there: set those weights to 0 (weights.nan_to_num(0.0)), as the package does.")
    future = ~causal_mask(T)
    if (weights[..., future].abs() > _ZERO).any():
        past = causal_mask(T).tril(-1)
        tip = ("The causal mask is transposed: query i (row i) may look at keys 0 .. i, the lower triangle "
               "(tril)." if past.any() and (weights[..., past].abs() <= _ZERO).all() else "")
        _fail("a query gives weight to a later position, which a language model must not see.", tip)
    if is_real is not None:
        padded_keys = (~is_real)[:, None, None, :].expand_as(weights)
        if (weights[padded_keys].abs() > _ZERO).any():
            padded_queries = (~is_real)[:, None, :, None].expand_as(weights)
            tip = ("The padding mask hides queries (rows) instead of keys (columns): use is_real[:, None, None, :]."
                   if (weights[padded_queries].abs() <= _ZERO).all() else "")
            _fail("a padded key gets weight: no query may look at padding.", tip)
    may = causal_mask(T) if is_real is None else causal_mask(T) & is_real[:, None, None, :]
    want = may.any(-1).float().expand(weights.shape[:-1])  # 1 where a query may look at some key
    if not torch.allclose(weights.sum(-1), want, atol=1e-4):
        _fail("each query's weights must sum to 1 (or be all 0 when it may look at no key).",
              "Mask the scores before the softmax (masked scores at -inf), not the weights after it: zeroing "
              "weights afterwards leaves rows that sum to less than 1.")


def _judge_gradients(model: nn.Module, y: Tensor, args: tuple, seed: int) -> None:
    """The learner's gradients for a loss sum(y * r) equal the package's: training would go alike."""
    layers, x, is_real, H = args
    r = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 1))
    mha = _package_module(layers, x.size(-1), H)
    (mha(x, mask=None if is_real is None else is_real[:, None, None, :], return_weights=True)[0] * r).sum().backward()
    C = x.size(-1)
    want = {"q": mha.q.weight.grad, "k": mha.kv.weight.grad[:C], "v": mha.kv.weight.grad[C:],
            "proj": mha.proj.weight.grad}
    try:
        (y.float() * r).sum().backward()
    except RuntimeError as error:
        _fail(f"the backward pass raised {error!r}.", "An in-place change of a tensor autograd needs (weights[...] "
              "= 0 after the softmax, +=) breaks it: use out-of-place operations (masked_fill, nan_to_num).")
    for name, grad_want in want.items():
        grad = getattr(model, name).weight.grad
        if grad is None:
            _fail(f"no gradient reached self.{name}: something cuts the graph (.detach(), .data, torch.no_grad).")
        if not torch.isfinite(grad).all():
            _fail(f"the output is right but the gradient of self.{name} is NaN, so training would fail.",
                  "A query with no key to look at has a softmax of all -inf, which is NaN, and replacing those "
                  "weights afterwards (torch.where) still sends NaN back through the softmax. Hide scores "
                  "with masked_fill (its backward gives hidden scores no gradient) and then nan_to_num, or give "
                  "such rows finite scores before the softmax and zero their weights after it.")
        if not torch.allclose(grad, grad_want, atol=1e-4, rtol=1e-4):
            _fail(f"the output is right but the gradient of self.{name} differs from the package's (largest "
                  f"difference {float((grad - grad_want).abs().max()):.3g}).")


def check_multi_head_attention(attention_cls: Callable, seed: int = 0) -> None:
    """Task: a module ``attention_cls(n_embd, n_head)`` with layers ``q``, ``k``, ``v``, ``proj``
    (``nn.Linear(n_embd, n_embd)``); ``forward(x, is_real=None)`` for x (B, T, C) and is_real
    (B, T) booleans (True: a real token) returns ``(y, weights)``, y (B, T, C) and weights
    (B, n_head, T, T), causal, padded keys hidden. ``seed`` picks the random weights and inputs."""
    weight_results, output_results = [], []
    for case in _CASES:
        args, y, weights, model, y_graph = _run(attention_cls, case, seed)
        _judge_masks(weights, args[2], case[1])
        want_y, want_weights = _package(*args)
        weight_results.append((args, weights))
        if not _same(weights, want_weights):
            tip = _matching_tip(weight_results, _WEIGHT_SLIPS, _same)
            _fail(f"with x {tuple(y.shape)} and n_head={case[3]} the weights differ from the package's "
                  f"(largest difference {float((weights - want_weights).abs().max()):.3g}).", tip.strip())
        output_results.append((args, y))
        if not _same(y, want_y):
            tip = _matching_tip(output_results, _OUTPUT_SLIPS, _same)
            _fail(f"with x {tuple(y.shape)} and n_head={case[3]} the weights are right but y differs from "
                  f"the package's (largest difference {float((y - want_y).abs().max()):.3g}).", tip.strip())
        _judge_gradients(model, y_graph, args, seed)
    _passed(_TASK, f"your attention equals minigpt.models.attention.MultiHeadAttention on {len(_CASES)} shapes, "
                   "with right-, left-, gap- and all-padded rows, gradients included; no weight on the future "
                   "or on padding")
