"""Log-probabilities of responses, and masked statistics: the pieces PPO, DPO and the KL of
chapter 10 share. ``response_mask`` (the tokens up to and including the end token),
``token_logprobs`` / ``response_logprobs`` / ``sequence_logprobs`` (aligned with the response,
for a fixed or a per-row prompt length), ``masked_mean``, ``whiten`` and
``entropy_from_logits``. ``ScoreFn`` is the signature of a scorer:
``score_fn(prompts, responses, mask) -> one score per row``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ScoreFn = Callable[[Tensor, Tensor, Tensor], Tensor]  # (prompts, responses, mask) -> (B,)


def response_mask(responses: Tensor, end_id: int | None) -> Tensor:
    """(B, R) bool: True up to and including each row's first ``end_id``, False after it
    (all True where a row has none, or if ``end_id`` is None)."""
    if end_id is None:
        return torch.ones_like(responses, dtype=torch.bool)
    is_end = (responses == end_id).long()
    ends_before = is_end.cumsum(dim=1) - is_end  # how many end tokens came strictly before t
    return ends_before == 0


def check_same_shape(tensors: dict[str, Tensor], hint: str) -> None:
    """Raise ValueError, naming them, unless all ``tensors`` have one shape: broadcasting, e.g.
    (B,) against (B, R), would silently compute something else."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"{', '.join(shapes)} must have one shape, got {listed}: {hint}")


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """The mean of ``x`` over the positions where ``mask`` is True (0 if there are none)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """``x`` normalised to mean 0 and standard deviation 1 over the masked positions (the
    population variance); positions outside the mask are ignored and come back as 0. With
    ``shift_mean=False`` the mean is kept, only the scale changes."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


def token_logprobs(logits: Tensor, tokens: Tensor) -> Tensor:
    """log p(tokens) under ``logits``: (B, T, V) and (B, T) -> (B, T)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: Tensor) -> Tensor:
    """The entropy (nats) of the distribution at each position: (B, T, V) -> (B, T)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def response_logprobs(logits: Tensor, idx: Tensor, start: int | Tensor) -> Tensor:
    """Log-probs of the response tokens of ``idx`` (B, T) from the model's ``logits`` (B, T, V).

    Row b's response starts at position ``start`` (an int: every row's prompt has that
    length) or ``start[b]`` (a (B,) tensor: per-row prompt lengths, as in right-padded pairs).
    The result is *response-aligned*, (B, T - min start): column j holds the log-prob of the
    row's j-th response token, read from the logits one position before it (the logits at t
    predict token t + 1). Columns past a row's end of ``idx`` are 0.
    """
    T = idx.size(1)
    if not isinstance(start, Tensor) or start.dim() == 0:
        start = int(start)  # one prompt length for every row (also from NumPy or a 0-d tensor)
    if isinstance(start, int):
        if not 1 <= start < T:
            raise ValueError(f"start must be in [1, {T}) (a prompt of at least one token and a "
                             f"response of at least one), got {start}")
        return token_logprobs(logits[:, start - 1 : -1], idx[:, start:])  # (B, T - start)
    start = start.to(idx.device).long()
    if start.dim() != 1 or start.numel() != idx.size(0):
        raise ValueError(f"start must be an int or a ({idx.size(0)},) tensor, got shape "
                         f"{tuple(start.shape)}")
    if int(start.min()) < 1 or int(start.max()) >= T:
        raise ValueError(f"every start must be in [1, {T}), got {start.tolist()}")
    every = token_logprobs(logits[:, :-1], idx[:, 1:])  # (B, T-1): column t-1 predicts token t
    width = T - int(start.min())
    cols = start[:, None] - 1 + torch.arange(width, device=idx.device)  # (B, width)
    inside = cols < T - 1
    out = every.gather(1, cols.clamp(max=T - 2))
    return out.masked_fill(~inside, 0.0)


def sequence_logprobs(model: nn.Module, idx: Tensor, start: int | Tensor,
                      mask: Tensor | None = None) -> Tensor:
    """Per-token log-probs of the response tokens of ``idx`` (B, T) under ``model`` (a GPT,
    a ``PolicyWithValue``: anything whose forward returns logits first), response-aligned as
    ``response_logprobs`` says: (B, T - min start). Where ``mask`` (the same shape, True on
    response tokens) is False, the result is 0, so ``.sum(1)`` is each response's log-prob."""
    logits = model(idx)[0]
    out = response_logprobs(logits, idx, start)
    return out if mask is None else out * mask.to(out.dtype)
