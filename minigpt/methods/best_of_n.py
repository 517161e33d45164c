"""Best-of-n sampling: sample n responses per prompt and keep the one the scorer likes best.
The baseline every RLHF method must beat: no training, n times the sampling (chapter 10).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from minigpt.methods.logprobs import ScoreFn, response_mask


class BestOfN(NamedTuple):
    responses: Tensor  # (B, R): the best of the n per prompt
    mask: Tensor  # (B, R)
    scores: Tensor  # (B,): its score
    all_scores: Tensor  # (B, n): every sample's score


@torch.no_grad()
def best_of_n(model: nn.Module, prompts: Tensor, n: int, score_fn: ScoreFn,
              max_new_tokens: int, end_id: int | None, temperature: float = 1.0,
              generator: torch.Generator | None = None) -> BestOfN:
    """Sample ``n`` responses to each prompt of ``prompts`` (B, P) with ``model.generate`` (a
    GPT or a PolicyWithValue) and keep the one ``score_fn`` rates highest: no training, n
    times the sampling. Returns ``BestOfN(responses, mask, scores, all_scores)``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    B, P = prompts.shape
    repeated = prompts.repeat_interleave(n, dim=0)  # (B * n, P): each prompt n times in a row
    sequences = model.generate(repeated, max_new_tokens, temperature=temperature,
                               generator=generator)
    responses = sequences[:, P:]
    mask = response_mask(responses, end_id)
    scores = torch.as_tensor(score_fn(repeated, responses, mask)).float().reshape(B, n)
    best = scores.argmax(dim=1)  # (B,)
    rows = torch.arange(B, device=best.device) * n + best
    rows = rows.to(responses.device)
    return BestOfN(responses[rows], mask[rows], scores.max(dim=1).values, scores)
