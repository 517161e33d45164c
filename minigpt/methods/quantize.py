"""Quantisation: a trained GPT's weights in 8 bits instead of 32, and what that costs.

    >>> from minigpt.methods import quantize
    >>> q, scale = quantize.quantize_int8(w)          # w (out, in) float -> int8 (out, in), (out,)
    >>> w_hat = quantize.dequantize(q, scale)         # |w - w_hat| <= scale / 2, row by row
    >>> small = quantize.quantize_model(model)        # the course's own: every matrix in int8
    >>> dyn = quantize.dynamic_quantize(model)        # torch's: int8 weights and activations
    >>> quantize.saved_size(small), quantize.tokens_per_second(small, prompt_ids)

A float32 weight takes 4 bytes. *Symmetric per-channel int8 quantisation* stores each output
channel (row) of a matrix as integers in [-127, 127] and one float scale, ``max|row| / 127``:
``w ~ scale * q``. Rounding moves each weight by at most half a step (``scale / 2``), and the file
shrinks almost 4x (Jacob et al. 2018 give the integer arithmetic behind it; Dettmers et al. 2022,
LLM.int8(), show why large models need outliers kept in 16 bits).

Two ways to run a quantised model, both measured in chapter 11:

- ``quantize_model``, written out here: ``Int8Linear`` and ``Int8Embedding`` store int8 and
  dequantise to float32 at every call (*weight-only* quantisation). The tied output layer reads
  the embedding's int8 matrix, so the two still share one copy. The arithmetic stays float, so it
  saves memory and disk, not time, on a CPU.
- ``dynamic_quantize``, torch's ``quantize_dynamic``: every ``nn.Linear`` (the tied head too, which
  gets its own copy, so the embedding stays float32) multiplies in int8, quantising each
  activation on the fly with a scale computed from it.

``saved_size`` counts the bytes of the saved ``state_dict`` (storage that two names share is saved
once); ``tokens_per_second`` times greedy generation with the KV cache, one sequence at a time.

Deliberately left out: static quantisation with calibration, 4-bit formats (GPTQ, NF4), and
quantisation-aware training.
"""

from __future__ import annotations

import copy
import io
import time
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.models.gpt import GPT

__all__ = ["Int8Embedding", "Int8Linear", "dequantize", "dynamic_quantize", "quantize_int8",
           "quantize_model", "saved_size", "tokens_per_second"]

QMAX = 127  # symmetric: -127 .. 127, so that 0 is exact and q and -q both fit


def quantize_int8(w: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric per-row int8: ``(q, scale)`` with ``q`` int8 like ``w`` (rows, cols) and
    ``scale`` float32 (rows,), so that ``w[i] ~ scale[i] * q[i]``.

    ``scale[i] = max|w[i]| / 127``: the largest weight of each row maps to +-127. A row of zeros
    gets scale 1 (any scale would do; 0 would divide by zero)."""
    if not isinstance(w, Tensor) or w.dim() != 2 or not w.is_floating_point():
        shape = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
        raise ValueError(f"quantize_int8 takes a 2-D float tensor (rows, cols), got {shape}; "
                         "for a vector, pass w[None] and take row 0")
    if not torch.isfinite(w).all():
        raise ValueError("the weights hold NaN or inf: there is no scale for them")
    w = w.detach().float()
    amax = w.abs().amax(dim=1)  # (rows,)
    scale = torch.where(amax > 0, amax / QMAX, torch.ones_like(amax))
    q = torch.round(w / scale[:, None]).clamp(-QMAX, QMAX).to(torch.int8)
    return q, scale


def dequantize(q: Tensor, scale: Tensor) -> Tensor:
    """float32 ``scale[i] * q[i]``, row by row: the weights that ``quantize_int8`` stored."""
    return q.float() * scale[:, None]


class Int8Linear(nn.Module):
    """``nn.Linear`` with its weight stored as int8 plus one scale per output channel.

    Each call dequantises the weight and multiplies in float32 (weight-only quantisation)."""

    def __init__(self, q: Tensor, scale: Tensor, bias: Tensor | None):
        super().__init__()
        self.register_buffer("q", q)  # (out, in) int8
        self.register_buffer("scale", scale)  # (out,) float32
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(),
                                                          requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        return cls(*quantize_int8(linear.weight), linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, dequantize(self.q, self.scale).to(x.dtype), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.q.size(1)}, out_features={self.q.size(0)}, int8 per channel"


class Int8Embedding(nn.Module):
    """``nn.Embedding`` stored as int8 plus one scale per token (row)."""

    def __init__(self, q: Tensor, scale: Tensor):
        super().__init__()
        self.register_buffer("q", q)  # (vocab, C) int8
        self.register_buffer("scale", scale)  # (vocab,) float32

    @classmethod
    def from_embedding(cls, emb: nn.Embedding) -> Int8Embedding:
        return cls(*quantize_int8(emb.weight))

    def forward(self, idx: Tensor) -> Tensor:
        return self.q[idx].float() * self.scale[idx].unsqueeze(-1)  # (B, T) -> (B, T, C)


def _check_gpt(model: nn.Module, what: str) -> None:
    if not isinstance(model, GPT):
        raise TypeError(f"{what} takes a minigpt.models.gpt.GPT, got {type(model).__name__}")
    if not isinstance(model.tok_emb, nn.Embedding):
        raise TypeError(f"{what}: this GPT is already quantised (its embedding is "
                         f"{type(model.tok_emb).__name__}); quantise the float32 model")


@torch.no_grad()
def quantize_model(model: GPT) -> GPT:
    """A copy of ``model`` with every matrix in int8 (``Int8Linear``, ``Int8Embedding``).

    The token embedding is quantised per token; the tied output layer reads the same int8 matrix
    and scales (a token's row is the head's output channel), so one copy is stored. The position
    embedding, LayerNorms and biases stay float32: they are small, and errors there spread into
    every token. ``model`` itself is left as it was."""
    _check_gpt(model, "quantize_model")
    small = copy.deepcopy(model).cpu().eval()
    for block in small.blocks:
        for parent in block.modules():
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, Int8Linear.from_linear(child))
    emb = Int8Embedding.from_embedding(small.tok_emb)
    small.tok_emb = emb
    head = Int8Linear(emb.q, emb.scale, None)  # the same tensors: tying survives quantisation
    small.head = head
    return small


def dynamic_quantize(model: nn.Module) -> nn.Module:
    """torch's dynamic quantisation of a copy of ``model``: every ``nn.Linear`` multiplies in int8,
    weights quantised once (per tensor), activations at each call. CPU only.

    A tied head becomes a quantised copy of the embedding, which itself stays float32. torch
    marks ``torch.ao.quantization`` as deprecated in favour of the torchao package; its warnings
    are silenced here, and a torch without it raises a RuntimeError that says so."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"dynamic_quantize takes an nn.Module, got {type(model).__name__}")
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as e:  # pragma: no cover - depends on the torch build
        raise RuntimeError("this torch has no torch.ao.quantization.quantize_dynamic; use "
                           "quantize_model (the course's own int8) or the torchao package") from e
    engines = torch.backends.quantized.supported_engines
    if not any(e in engines for e in ("fbgemm", "x86", "qnnpack", "onednn")):
        raise RuntimeError(f"this torch has no int8 CPU engine (supported: {engines}); "
                           "use quantize_model instead")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices, not about this model
        return quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8)


def saved_size(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: what the model takes on disk. Tensors that
    share storage (a tied head, shared layers) are saved once."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantised tensors' storage deprecation notices
        torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@torch.no_grad()
def tokens_per_second(model: nn.Module, prompt_ids: Tensor, new_tokens: int = 100,
                      repeat: int = 3) -> float:
    """New tokens per second of greedy ``model.generate`` (KV cache on) from ``prompt_ids``
    (1, T): the best of ``repeat`` timed runs, after one untimed warm-up run."""
    if new_tokens < 1 or repeat < 1:
        raise ValueError(f"new_tokens and repeat must be >= 1, got {new_tokens}, {repeat}")
    model.generate(prompt_ids, min(new_tokens, 8), temperature=0)  # warm-up: first-call costs
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        model.generate(prompt_ids, new_tokens, temperature=0)
        best = min(best, time.perf_counter() - start)
    return new_tokens / best
