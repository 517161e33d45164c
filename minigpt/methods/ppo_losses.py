"""The pieces of PPO's objective, each a pure function of tensors (chapter 10).

``minigpt.methods.ppo.PPOTrainer`` puts them together; the notebook and the exercise check them
one by one against hand computations. Every tensor is (B, R): B responses of R tokens, with a
``mask`` that is True on each response and False on its padding.

- ``kl_penalty_rewards``: per-token rewards ``-beta * (log pi - log pi_ref)``, plus the score
  at the last token (Ziegler et al. 2019; Ouyang et al. 2022).
- ``gae``: generalised advantage estimation (Schulman et al. 2016).
- ``ppo_policy_loss`` / ``ppo_value_loss``: the clipped surrogate and the clipped value
  regression (Schulman et al. 2017).
- ``FixedKLController`` / ``AdaptiveKLController``: beta held fixed, or moved to keep the KL
  near a target (Ziegler et al. 2019).
"""

from __future__ import annotations

import torch
from torch import Tensor

from minigpt.methods.logprobs import check_same_shape, masked_mean

__all__ = [
    "AdaptiveKLController", "FixedKLController", "gae", "kl_penalty_rewards", "ppo_policy_loss",
    "ppo_value_loss",
]


def kl_penalty_rewards(logp: Tensor, ref_logp: Tensor, scores: Tensor, mask: Tensor,
                       kl_coef: float) -> tuple[Tensor, Tensor]:
    """Per-token rewards (B, R) and the per-token KL sample (B, R) of a batch of responses.

    ``kl = logp - ref_logp`` on masked positions; ``rewards = -kl_coef * kl``, plus each row's
    ``score`` at its last masked token. Both are 0 where ``mask`` is False."""
    m = mask.to(logp.dtype)
    kl = (logp - ref_logp) * m
    rewards = -kl_coef * kl
    last = (mask.long().cumsum(dim=1)).argmax(dim=1)  # the first maximum: the last True
    rows = torch.arange(logp.size(0), device=logp.device)
    rewards[rows, last] += scores.to(rewards.dtype) * mask.any(dim=1).to(rewards.dtype)
    return rewards, kl


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95
        ) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over (B, R) rewards and values -> (advantages, returns).

    delta_t = r_t + gamma V_{t+1} - V_t and A_t = delta_t + gamma lam A_{t+1}, computed from the
    last token backwards. The episode ends at each row's last masked token: the value after it
    is 0. ``returns = advantages + values`` are the value head's targets. ``mask`` must be True
    on a prefix of each row (a response, then padding); both results are 0 outside it.
    lam = 1 gives the discounted return minus V_t (unbiased, noisy); lam = 0 gives delta_t
    (one step of bootstrapping: low variance, biased by the value head's errors)."""
    check_same_shape({"rewards": rewards, "values": values, "mask": mask},
                      "give one reward and one value per response token, (B, R) each")
    if rewards.dim() != 2 or rewards.size(1) == 0:
        raise ValueError(f"gae needs (B, R) tensors with R >= 1 response tokens, got shape "
                         f"{tuple(rewards.shape)}")
    gaps = mask[:, 1:].bool() & ~mask[:, :-1].bool()  # True after False
    if gaps.any():
        row = int(gaps.any(dim=1).nonzero()[0])
        raise ValueError(f"mask must be True on a prefix of each row (the response, then False "
                         f"on the padding), but row {row} is {mask[row].int().tolist()}: build "
                         "it with response_mask(responses, end_id)")
    m = mask.to(values.dtype)
    values = values * m
    rewards = rewards * m
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    R = values.size(1)
    for t in reversed(range(R)):
        next_value = values[:, t + 1] if t + 1 < R else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * m[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * m


def ppo_policy_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor,
                    clip: float = 0.2) -> tuple[Tensor, Tensor, Tensor]:
    """PPO's clipped surrogate loss -> (loss, clip_fraction, approx_kl).

    ratio = pi / pi_old per token; loss = masked mean of -min(ratio A, clip(ratio, 1 - eps,
    1 + eps) A): the pessimistic of the two, so a token gains nothing from moving its ratio
    past 1 +- eps in the direction its advantage favours. ``clip_fraction`` is the share of
    tokens where the clipped term was the one taken; ``approx_kl`` estimates KL(pi_old || pi)
    with (ratio - 1) - log ratio (always >= 0). All four tensors must have one shape (B, R)."""
    if not clip > 0:
        raise ValueError(f"clip must be > 0 (0.1 to 0.3 is usual), got {clip}")
    check_same_shape({"logp": logp, "old_logp": old_logp, "advantages": advantages,
                       "mask": mask}, "give one advantage per token (a per-response advantage "
                      "a of shape (B,) becomes a[:, None].expand_as(logp))")
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).float(), mask)
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)
    return loss, clip_fraction, approx_kl


def ppo_value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor,
                   clip: float | None = 0.2) -> Tensor:
    """0.5 x masked mean of max((V - R)^2, (clip(V, V_old +- eps) - R)^2): the value head's
    regression on the returns, kept (pessimistically) near its rollout-time values."""
    err = (values - returns) ** 2
    if clip is not None:
        clipped = old_values + (values - old_values).clamp(-clip, clip)
        err = torch.max(err, (clipped - returns) ** 2)
    return 0.5 * masked_mean(err, mask)


class FixedKLController:
    """A KL coefficient that stays at ``value``; ``update`` does nothing."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKLController:
    """Ziegler et al. (2019)'s proportional controller: after each batch,
    ``error = clip(current_kl / target - 1, -0.2, 0.2)`` and
    ``value *= 1 + error * n_steps / horizon``: KL above target raises the coefficient (a
    tighter leash), below target lowers it, at most 20% per ``horizon`` episodes."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if not (init_kl_coef > 0 and target > 0 and horizon > 0):
            raise ValueError(f"AdaptiveKLController needs init_kl_coef > 0, target > 0 and "
                             f"horizon > 0, got {init_kl_coef}, {target}, {horizon}")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
