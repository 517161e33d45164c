"""Attention, written out: scaled dot-product attention, masks, heads and position encodings.

Self-attention lets every position look at every other one directly (Vaswani et al. 2017):

    weights = softmax(q @ k^T / sqrt(d) + mask)      # (..., T_q, T_k), each row sums to 1
    output  = weights @ v                            # (..., T_q, d_v)

    >>> from minigpt.models import attention
    >>> out, w = attention.scaled_dot_product_attention(q, k, v, mask=attention.causal_mask(T))  # doctest: +SKIP
    >>> mha = attention.MultiHeadAttention(n_embd=64, n_head=4, causal=True)              # doctest: +SKIP
    >>> y, weights = mha(x, return_weights=True)     # weights: (B, n_head, T, T)         # doctest: +SKIP

What is here:

- ``scaled_dot_product_attention``: the formula above, line by line, returning the weights too.
  It computes what ``torch.nn.functional.scaled_dot_product_attention`` computes (the tests and
  chapter 04 check it); torch's version may use a fused kernel that never forms the weights.
- Masks are boolean, ``True`` where a query may look at a key: ``causal_mask`` (no peeking at
  later positions, for language models that predict the next token) and ``padding_mask``
  (ignore the filler that makes sequences of different lengths fit in one batch).
- ``MultiHeadAttention``: ``n_head`` attentions side by side on slices of the embedding, for
  self-attention or, given a ``memory``, cross-attention (an encoder-decoder's decoder reading
  its encoder). It uses torch's fused function unless you ask for the weights.
- Position encodings, because attention alone ignores order: ``sinusoidal_encoding`` (Vaswani
  et al. 2017), learned positions (an ``nn.Embedding``, as in ``minigpt.models.gpt``) and rotary
  embeddings, ``apply_rotary`` (RoPE, Su et al. 2021), which rotate queries and keys so that
  their dot product depends only on how far apart they are.
- ``Block``: the pre-norm Transformer layer, x + attention(norm(x)), then x + MLP(norm(x)),
  with an optional cross-attention in between.

Shapes: ``B`` batch, ``T`` positions, ``C`` embedding width, ``H`` heads, ``D = C / H`` width of
a head. Whole models built from these pieces live in ``minigpt.models.transformer``.

Deliberately left out: dropout on the attention weights, grouped-query and multi-query
attention, sliding windows, ALiBi and KV caching (chapter 06 caches GPT's keys and values).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MultiHeadAttention", "apply_rotary", "causal_mask", "padding_mask", "rotary_angles",
    "scaled_dot_product_attention", "sinusoidal_encoding",
]


# ---- attention ---------------------------------------------------------------------------------


def causal_mask(T: int, device: torch.device | str | None = None) -> Tensor:
    """(T, T) booleans, ``True`` on and below the diagonal: query ``i`` may look at keys
    ``0 .. i`` and never at a later position."""
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def padding_mask(ids: Tensor, pad_id: int) -> Tensor:
    """(B, 1, 1, T) booleans from token ids (B, T): ``True`` where the key is a real token,
    ``False`` where it is ``pad_id``. It broadcasts against scores (B, H, T_q, T); combine it
    with a causal mask by ``&``."""
    if ids.dim() != 2:
        raise ValueError(f"ids must be (B, T), got shape {tuple(ids.shape)}")
    return (ids != pad_id)[:, None, None, :]


def _check_mask(mask: Tensor, scores_shape: torch.Size) -> None:
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be boolean (True: may attend), got {mask.dtype}")
    try:
        torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit the attention scores "
                         f"{tuple(scores_shape)} (..., T_q, T_k): its last two sizes must be T_q "
                         "(or 1) and T_k (or 1)") from None


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
                                 ) -> tuple[Tensor, Tensor]:
    """Attention by hand: ``(output, weights)`` for queries q (..., T_q, D), keys k (..., T_k, D)
    and values v (..., T_k, D_v). ``mask`` (boolean, broadcastable to (..., T_q, T_k)) is
    ``True`` where a query may look at a key. Output (..., T_q, D_v), weights (..., T_q, T_k).

    A query that may look at no key at all gets weights and output of zero (torch's fused
    function returns NaN there)."""
    if q.size(-1) != k.size(-1):
        raise ValueError(f"queries and keys must have the same width, got {q.size(-1)} and {k.size(-1)}")
    if k.size(-2) != v.size(-2):
        raise ValueError(f"keys and values must have the same length, got {k.size(-2)} and {v.size(-2)}")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., T_q, T_k)
    if mask is not None:
        _check_mask(mask, scores.shape)
        scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: no weight at all
    weights = F.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights.nan_to_num(0.0)  # rows with every key masked: softmax of all -inf
    return weights @ v, weights


class MultiHeadAttention(nn.Module):
    """``n_head`` attentions side by side, each on its own ``n_embd / n_head`` slice.

    ``forward(x, memory=None, mask=None, return_weights=False)``: with no ``memory`` it is
    self-attention (queries, keys and values all come from ``x``); with one it is
    cross-attention (queries from ``x``, keys and values from ``memory``). ``causal=True``
    adds the causal mask (self-attention only). ``rotary=True`` rotates queries and keys by
    their positions (RoPE). Returns ``y`` (B, T, C), or ``(y, weights)`` with weights
    (B, n_head, T_q, T_k) if ``return_weights``: the weights need the hand-written path,
    otherwise torch's fused function runs.
    """

    def __init__(self, n_embd: int, n_head: int, causal: bool = False, rotary: bool = False,
                 bias: bool = True):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}")
        if rotary and (n_embd // n_head) % 2:
            raise ValueError(f"rotary embeddings rotate pairs of features: the head width "
                             f"n_embd / n_head = {n_embd // n_head} must be even")
        self.n_head, self.causal, self.rotary = n_head, causal, rotary
        self.q = nn.Linear(n_embd, n_embd, bias=bias)
        self.kv = nn.Linear(n_embd, 2 * n_embd, bias=bias)  # keys and values in one product
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.proj.residual = True  # writes into the residual stream (for scaled init)

    def split_heads(self, t: Tensor) -> Tensor:
        """(B, T, C) -> (B, n_head, T, D): each head gets its own slice of the features."""
        B, T, C = t.shape
        return t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)

    def forward(self, x: Tensor, memory: Tensor | None = None, mask: Tensor | None = None,
                return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        B, T, C = x.shape
        if memory is not None and self.causal:
            raise ValueError("causal applies to self-attention; cross-attention sees all of memory")
        source = x if memory is None else memory
        q = self.split_heads(self.q(x))  # (B, H, T, D)
        k, v = (self.split_heads(t) for t in self.kv(source).split(C, dim=2))  # (B, H, T_k, D)
        if self.rotary:
            q, k = apply_rotary(q), apply_rotary(k)
        if self.causal:
            causal = causal_mask(T, device=x.device)
            mask = causal if mask is None else mask & causal
        if mask is not None:
            _check_mask(mask, torch.Size((B, self.n_head, T, k.size(-2))))
        if return_weights:
            y, weights = scaled_dot_product_attention(q, k, v, mask)
        else:
            y, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=mask), None
        y = self.proj(y.transpose(1, 2).reshape(B, T, C))  # heads side by side again
        return (y, weights) if return_weights else y


# ---- position encodings ------------------------------------------------------------------------


def _check_even(d: int, what: str) -> None:
    if d < 2 or d % 2:
        raise ValueError(f"{what} pairs features as (sin, cos) or rotates them in pairs: the "
                         f"width must be even and >= 2, got {d}")


def sinusoidal_encoding(T: int, d: int) -> Tensor:
    """(T, d) fixed position vectors of Vaswani et al. (2017):

        PE[t, 2i]   = sin(t / 10000^(2i/d))
        PE[t, 2i+1] = cos(t / 10000^(2i/d))

    Each pair of features turns at its own speed, from once every 2 pi positions to once every
    10000 * 2 pi: together they give every position a distinct pattern, and a shift by a fixed
    offset is the same rotation whatever the start. ``d`` must be even."""
    _check_even(d, "sinusoidal_encoding")
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    t = torch.arange(T, dtype=torch.float32)[:, None]  # (T, 1)
    freq = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)  # (d/2,)
    pe = torch.empty(T, d)
    pe[:, 0::2] = torch.sin(t * freq)
    pe[:, 1::2] = torch.cos(t * freq)
    return pe


def rotary_angles(T: int, d: int, base: float = 10000.0, offset: int = 0) -> Tensor:
    """(T, d/2) angles for rotary embeddings: position ``t`` turns feature pair ``i`` by
    ``t * base^(-2i/d)``, the frequencies of the sinusoidal encoding."""
    _check_even(d, "rotary embedding")
    t = torch.arange(offset, offset + T, dtype=torch.float32)[:, None]
    return t * base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)


def apply_rotary(x: Tensor, offset: int = 0, base: float = 10000.0) -> Tensor:
    """Rotary position embedding (RoPE, Su et al. 2021) of x (..., T, D), D even.

    Features are taken in pairs ``(x[2i], x[2i+1])``; at position ``t`` pair ``i`` is rotated
    by the angle ``t * base^(-2i/D)``. Rotating a query at position m and a key at position n
    leaves their dot product a function of ``m - n`` only: attention sees relative positions.
    ``offset`` is the position of the first row."""
    T, D = x.size(-2), x.size(-1)
    angles = rotary_angles(T, D, base, offset).to(x.device)  # (T, D/2)
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]  # (..., T, D/2) each
    out = torch.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


# ---- the Transformer layer ---------------------------------------------------------------------


