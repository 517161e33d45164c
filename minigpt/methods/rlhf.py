"""RLHF: fine-tune a language model against a reward with PPO, or on preference pairs with DPO.

The last step of InstructGPT (Ouyang et al. 2022, "Training language models to follow
instructions with human feedback"), after Ziegler et al. (2019, "Fine-tuning language models
from human preferences"): the supervised (SFT) model writes responses, a scoring function (a
reward model, chapter 09) grades them, and reinforcement learning makes high-scoring responses
likelier. A frozen copy of the SFT model, the *reference*, keeps the policy on a leash: every
response token pays for drifting away from it. The reward of response token t is

    r_t = -beta * (log pi(a_t | s_t) - log pi_ref(a_t | s_t))      (+ score, at the last token)

so the sum over a response is score - beta * (a sample of KL(pi || pi_ref)). Without the leash
the policy finds what the reward model over-rates and writes only that (over-optimisation).

The RL algorithm is PPO (Schulman et al. 2017, "Proximal policy optimization algorithms"):
collect a batch of responses (a *rollout*), then take several gradient steps on it with the
clipped surrogate objective, which stops each token's probability ratio pi / pi_old from
moving further than 1 +- eps where that would pay. Advantages come from GAE (Schulman et al.
2016, "High-dimensional continuous control using generalized advantage estimation"), with a
value head on the policy's final hidden states (``PolicyWithValue``). ``AdaptiveKLController``
(Ziegler et al.) moves beta to hold the KL near a target.

DPO (Rafailov et al. 2023, "Direct preference optimization") skips the reward model and the
RL: on pairs (prompt, chosen, rejected) it minimises -log sigmoid(beta * (log-ratio of the
chosen response - log-ratio of the rejected one)), each log-ratio being log pi - log pi_ref
summed over the response. ``best_of_n`` is the baseline both must beat: sample n responses
and keep the one the scorer likes best.

Everything works on token ids, whatever the tokenizer; the caller brings the prompts (all of
one length, so generation needs no padding), a ``score_fn(prompts, responses, mask)`` and the
token that ends a response.

    >>> from minigpt.methods import rlhf
    >>> policy = rlhf.PolicyWithValue(copy.deepcopy(sft_model))              # doctest: +SKIP
    >>> ref = copy.deepcopy(sft_model)               # frozen by PPOTrainer   # doctest: +SKIP
    >>> config = rlhf.PPOConfig(batch_size=64, max_new_tokens=12, lr=1e-4)   # doctest: +SKIP
    >>> ppo = rlhf.PPOTrainer(policy, ref, score_fn, sample_prompts, end_id,  # doctest: +SKIP
    ...                       config)
    >>> history = ppo.train(200)     # list of dicts: score, kl, kl_coef, ...  # doctest: +SKIP
    >>> rlhf.train_dpo(dpo_model, ref, pairs, beta=0.1, config=TrainConfig(max_steps=300),
    ...                pad_id=pad_id)                                         # doctest: +SKIP

Deliberately left out: a separate value network (the value head shares the policy's trunk),
reward normalisation and score clipping, an entropy bonus, early stopping of the PPO epochs on
the approximate KL, prompts of different lengths (left padding with attention masks), the
PPO-ptx pre-training mix of InstructGPT, several GPUs, and DPO's relatives (IPO, KTO, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from minigpt.core.runtime import evaluating
from minigpt.models.gpt import GPT
from minigpt.train.config import History, TrainConfig, param_groups
from minigpt.train.trainer import NonFiniteLossError, Trainer

__all__ = [
    "AdaptiveKLController", "BestOfN", "FixedKLController", "PPOConfig", "PPOTrainer",
    "PolicyWithValue", "Rollout", "best_of_n", "collate_dpo", "dpo_loss", "entropy_from_logits",
    "gae", "kl_penalty_rewards", "masked_mean", "pair_logprobs", "ppo_policy_loss",
    "ppo_value_loss", "response_logprobs", "response_mask", "sequence_logprobs",
    "token_logprobs", "train_dpo", "whiten",
]

ScoreFn = Callable[[Tensor, Tensor, Tensor], Tensor]  # (prompts, responses, mask) -> (B,)

NO_VALUE_HEAD = "PPO needs a value head: wrap the model with PolicyWithValue(gpt)"


# ---- pieces: masks, log-probs, rewards, advantages ----------------------------------------


def response_mask(responses: Tensor, end_id: int | None) -> Tensor:
    """(B, R) bool: True up to and including each row's first ``end_id``, False after it
    (all True where a row has none, or if ``end_id`` is None)."""
    if end_id is None:
        return torch.ones_like(responses, dtype=torch.bool)
    is_end = (responses == end_id).long()
    ends_before = is_end.cumsum(dim=1) - is_end  # how many end tokens came strictly before t
    return ends_before == 0


def _check_same_shape(tensors: dict[str, Tensor], hint: str) -> None:
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
    _check_same_shape({"rewards": rewards, "values": values, "mask": mask},
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


# ---- PPO's losses and the KL controllers --------------------------------------------------


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
    _check_same_shape({"logp": logp, "old_logp": old_logp, "advantages": advantages,
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


# ---- the policy with its value head -------------------------------------------------------


class PolicyWithValue(nn.Module):
    """A GPT (``policy``) plus ``value_head``, a linear layer that reads the same final hidden
    states as the next-token head and predicts, at each position, the return still to come.

    ``forward(idx) -> (logits (B, T, V), values (B, T))``; ``generate`` is the GPT's. The head
    starts at zero (every value 0), so the first PPO steps see plain returns as advantages."""

    def __init__(self, policy: GPT):
        super().__init__()
        if not hasattr(policy, "features"):
            raise TypeError("PolicyWithValue wraps a minigpt.models.gpt.GPT (it needs .features), got "
                            f"{type(policy).__name__}")
        self.policy = policy
        self.value_head = nn.Linear(policy.cfg.n_embd, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    @property
    def cfg(self):
        return self.policy.cfg

    def forward(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        h = self.policy.features(idx)  # (B, T, C)
        return self.policy.head(h), self.value_head(h).squeeze(-1)  # (B, T, V), (B, T)

    def generate(self, *args, **kwargs) -> Tensor:
        return self.policy.generate(*args, **kwargs)


# ---- PPO ----------------------------------------------------------------------------------


@dataclass
class PPOConfig:
    """Settings of a PPO run. One ``PPOTrainer.step`` samples ``batch_size`` responses of at
    most ``max_new_tokens`` tokens, then makes ``ppo_epochs`` passes over them in minibatches
    of ``minibatch_size`` (so ppo_epochs x batch_size / minibatch_size updates).

    ``value_lr``: the value head is one linear layer that starts at zero. At a policy's small
    learning rate it takes many steps to learn what each prompt usually scores, and until it
    does, that baseline is missing from the advantages, as noise. A larger rate for the head
    alone (1e-3 to 1e-2 beside a policy lr of 5e-5) lets it catch up; chapter 10 uses 3e-3."""

    batch_size: int = 64
    max_new_tokens: int = 16
    ppo_epochs: int = 4
    minibatch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.0
    clip: float = 0.2  # eps of the policy's clipped ratio
    vf_clip: float | None = 0.2  # eps of the value's clipping (None: plain squared error)
    vf_coef: float = 0.1  # weight of the value loss beside the policy loss
    gamma: float = 1.0
    lam: float = 0.95
    init_kl_coef: float = 0.1  # beta of the KL penalty (the start, if adaptive)
    adaptive_kl: bool = True
    target_kl: float = 6.0  # nats per response the adaptive controller aims for
    kl_horizon: int = 10_000  # episodes
    temperature: float = 1.0  # sampling temperature; log-probs use the same
    grad_clip: float | None = 1.0
    seed: int = 0
    whiten_advantages: bool = True
    value_lr: float | None = None  # the value head's own learning rate (None: lr); see above

    def __post_init__(self) -> None:
        rules = [
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.max_new_tokens >= 1, "max_new_tokens must be >= 1"),
            (self.ppo_epochs >= 1, "ppo_epochs must be >= 1"),
            (1 <= self.minibatch_size <= self.batch_size,
             "minibatch_size must be between 1 and batch_size"),
            (self.lr > 0, "lr must be > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.clip > 0, "clip must be > 0 (0.1 to 0.3 is usual)"),
            (self.vf_clip is None or self.vf_clip > 0, "vf_clip must be > 0 or None"),
            (self.vf_coef >= 0, "vf_coef must be >= 0"),
            (0 <= self.gamma <= 1, "gamma must be in [0, 1]"),
            (0 <= self.lam <= 1, "lam must be in [0, 1]"),
            (self.init_kl_coef >= 0, "init_kl_coef must be >= 0"),
            (not self.adaptive_kl or self.init_kl_coef > 0,
             "an adaptive KL coefficient needs init_kl_coef > 0 (it scales the coefficient)"),
            (self.target_kl > 0, "target_kl must be > 0"),
            (self.kl_horizon >= 1, "kl_horizon must be >= 1"),
            (self.temperature > 0, ("temperature must be > 0: PPO needs sampled responses "
                                    "and their probabilities, greedy decoding has neither")),
            (self.grad_clip is None or self.grad_clip > 0, "grad_clip must be > 0 or None"),
            (self.value_lr is None or self.value_lr > 0, "value_lr must be > 0 or None"),
        ]
        broken = [message for ok, message in rules if not ok]
        if broken:
            raise ValueError("Invalid PPOConfig: " + "; ".join(broken) + f". Got {self}.")


@dataclass
class Rollout:
    """One batch of sampled responses and everything PPO computes from it; (B, R) unless said.

    ``sequences`` (B, P + R) are prompt and response together; ``values`` are the value
    head's estimates before each response token; ``kl`` is logp - ref_logp per token."""

    prompts: Tensor  # (B, P)
    responses: Tensor
    sequences: Tensor  # (B, P + R)
    mask: Tensor
    logp: Tensor
    ref_logp: Tensor
    values: Tensor
    scores: Tensor  # (B,)
    rewards: Tensor
    kl: Tensor
    advantages: Tensor
    returns: Tensor


class PPOTrainer:
    """PPO on a ``PolicyWithValue`` against ``score_fn``, leashed to the frozen ``ref``.

    Args:
        policy: the model to train: ``PolicyWithValue(gpt)``.
        ref: the reference GPT, a frozen copy of the model PPO starts from (e.g.
            ``copy.deepcopy(sft_model)``); put in eval mode with gradients off.
        score_fn: ``score_fn(prompts (B, P), responses (B, R), mask (B, R)) -> (B,)`` floats.
        sample_prompts: ``sample_prompts() -> (B, P)`` token ids, every row of one length.
        end_id: the token that ends a response; what follows it is masked out.
        config: a ``PPOConfig``.

    ``step()`` runs one rollout and its updates and returns the stats; ``train(n)`` runs n
    steps. ``history`` is the list of every step's stats. Dropout stays off throughout: PPO's
    ratio compares the probabilities of one and the same network before and after updates.
    """

    def __init__(self, policy: PolicyWithValue, ref: GPT, score_fn: ScoreFn,
                 sample_prompts: Callable[[], Tensor], end_id: int | None,
                 config: PPOConfig | None = None):
        if not isinstance(policy, PolicyWithValue):
            raise TypeError(f"{NO_VALUE_HEAD} (got {type(policy).__name__}, which has no "
                            "value head to estimate the returns that GAE needs)")
        if ref is policy.policy or ref is policy:
            raise ValueError("ref must be a separate, frozen copy of the starting model, not "
                             "the policy itself: ref = copy.deepcopy(sft_model)")
        policy_params = {p.data_ptr() for p in policy.parameters()}
        if any(p.data_ptr() in policy_params for p in ref.parameters()):
            raise ValueError("ref shares parameters with the policy, so it would move with it: "
                             "pass ref = copy.deepcopy(sft_model)")
        self.config = cfg = config if config is not None else PPOConfig()
        self.policy = policy
        self.device = next(policy.parameters()).device
        self.ref = ref.to(self.device).eval().requires_grad_(False)
        self.score_fn = score_fn
        self.sample_prompts = sample_prompts
        self.end_id = end_id
        groups = param_groups(policy.policy, cfg.weight_decay)
        groups.append({"params": list(policy.value_head.parameters()), "weight_decay": 0.0,
                       "lr": cfg.value_lr if cfg.value_lr is not None else cfg.lr})
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
        self.kl_ctl: AdaptiveKLController | FixedKLController = (
            AdaptiveKLController(cfg.init_kl_coef, cfg.target_kl, cfg.kl_horizon)
            if cfg.adaptive_kl else FixedKLController(cfg.init_kl_coef))
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed)  # sampling
        self.shuffle = torch.Generator().manual_seed(cfg.seed)  # minibatch order
        self.history: list[dict[str, float]] = []

    def _forward(self, sequences: Tensor, P: int) -> tuple[Tensor, Tensor]:
        """Response logits (B, R, V) at the sampling temperature, and values (B, R)."""
        logits, values = self.policy(sequences)
        return logits[:, P - 1 : -1] / self.config.temperature, values[:, P - 1 : -1]

    @torch.no_grad()
    def rollout(self) -> Rollout:
        """Sample a batch of responses and compute their log-probs (policy and reference),
        values, scores, KL-penalised rewards, advantages and returns."""
        cfg = self.config
        prompts = self.sample_prompts()
        if not (isinstance(prompts, Tensor) and prompts.dim() == 2 and prompts.size(1) >= 1):
            raise ValueError("sample_prompts() must return a (B, P) tensor of token ids, every "
                             "prompt of the same length P >= 1, got "
                             f"{getattr(prompts, 'shape', type(prompts).__name__)}")
        prompts = prompts.to(self.device).long()
        B, P = prompts.shape
        if B != cfg.batch_size:
            raise ValueError(f"sample_prompts() returned {B} prompts but PPOConfig.batch_size "
                             f"is {cfg.batch_size}: make them agree")
        R = cfg.max_new_tokens
        if P + R > self.policy.cfg.block_size:
            raise ValueError(f"prompts of {P} tokens plus max_new_tokens={R} exceed the "
                             f"model's block_size={self.policy.cfg.block_size}: shorten the "
                             "prompts or lower max_new_tokens")
        self.policy.eval()
        sequences = self.policy.generate(prompts, R, temperature=cfg.temperature,
                                         generator=self.generator)  # (B, P + R)
        responses = sequences[:, P:]
        mask = response_mask(responses, self.end_id)
        logits, values = self._forward(sequences, P)
        logp = token_logprobs(logits, responses)
        ref_logits = self.ref(sequences)[0][:, P - 1 : -1] / cfg.temperature
        ref_logp = token_logprobs(ref_logits, responses)
        scores = torch.as_tensor(self.score_fn(prompts, responses, mask), device=self.device)
        scores = scores.float().reshape(-1)
        if scores.numel() != B:
            raise ValueError(f"score_fn must return one score per response, shape ({B},), "
                             f"got {scores.numel()} values")
        if not torch.isfinite(scores).all():
            raise ValueError("score_fn returned NaN or infinite scores: PPO cannot learn from "
                             "them; check the reward model (or clip its output)")
        values, logp, ref_logp = values * mask, logp * mask, ref_logp * mask
        rewards, kl = kl_penalty_rewards(logp, ref_logp, scores, mask, self.kl_ctl.value)
        advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = whiten(advantages, mask)
        return Rollout(prompts, responses, sequences, mask, logp, ref_logp, values, scores,
                       rewards, kl, advantages, returns)

    def step(self) -> dict[str, float]:
        """One PPO iteration: a rollout, then ``ppo_epochs`` passes of minibatch updates.
        Returns (and appends to ``history``) the step's stats."""
        cfg = self.config
        batch = self.rollout()
        kl_coef = self.kl_ctl.value
        B, P = batch.prompts.shape
        sums = dict.fromkeys(("policy_loss", "value_loss", "clip_fraction", "approx_kl",
                              "entropy"), 0.0)
        n_updates = 0
        self.policy.eval()  # no dropout: see the class docstring
        for _epoch in range(cfg.ppo_epochs):
            order = torch.randperm(B, generator=self.shuffle).to(self.device)
            for mb in order.split(cfg.minibatch_size):
                mask = batch.mask[mb]
                logits, values = self._forward(batch.sequences[mb], P)
                logp = token_logprobs(logits, batch.responses[mb])
                pg_loss, clip_fraction, approx_kl = ppo_policy_loss(
                    logp, batch.logp[mb], batch.advantages[mb], mask, cfg.clip)
                vf_loss = ppo_value_loss(values, batch.values[mb], batch.returns[mb], mask,
                                         cfg.vf_clip)
                loss = pg_loss + cfg.vf_coef * vf_loss
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"The PPO loss became {loss.item()} at step {len(self.history)} "
                        f"(policy {pg_loss.item()}, value {vf_loss.item()}). Things to try: a "
                        "lower lr (3-10x), grad_clip=1.0, a larger init_kl_coef, scores of a "
                        "modest scale (whiten or clip the reward model's output), and a "
                        "temperature near 1.")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
                self.optimizer.step()
                sums["policy_loss"] += pg_loss.item()
                sums["value_loss"] += vf_loss.item()
                sums["clip_fraction"] += clip_fraction.item()
                sums["approx_kl"] += approx_kl.item()
                sums["entropy"] += masked_mean(entropy_from_logits(logits.detach()), mask).item()
                n_updates += 1
        kl = batch.kl.sum(dim=1).mean().item()  # nats per response
        self.kl_ctl.update(kl, B)
        stats = {
            "score": batch.scores.mean().item(),
            "reward": batch.rewards.sum(dim=1).mean().item(),  # score - kl_coef * kl
            "kl": kl,
            "kl_coef": kl_coef,
            "response_length": batch.mask.sum(dim=1).float().mean().item(),
            **{key: value / n_updates for key, value in sums.items()},
        }
        self.history.append(stats)
        return stats

    def train(self, n_steps: int, callback: Callable[[PPOTrainer, dict[str, float]], Any] | None
              = None, progress: bool = True) -> list[dict[str, float]]:
        """Run ``n_steps`` PPO steps with a progress bar; after each, ``callback(self, stats)``
        if given (return True from it to stop early). Returns ``history``."""
        bar = tqdm(range(n_steps), desc="ppo", unit="step", disable=not progress)
        for _ in bar:
            stats = self.step()
            bar.set_postfix(score=f"{stats['score']:.3f}", kl=f"{stats['kl']:.2f}",
                            refresh=False)
            if callback is not None and callback(self, stats) is True:
                break
        bar.close()
        return self.history


# ---- DPO ----------------------------------------------------------------------------------


def _check_beta(beta: float) -> None:
    if not beta > 0:  # also catches NaN
        raise ValueError(f"beta must be > 0 (0.1 is usual), got {beta}")


def dpo_loss(policy_chosen_logp: Tensor, policy_rejected_logp: Tensor,
             ref_chosen_logp: Tensor, ref_rejected_logp: Tensor, beta: float = 0.1,
             label_smoothing: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """DPO's loss over a batch of pairs -> (loss, chosen_rewards, rejected_rewards).

    Inputs are (B,) sequence log-probs (summed over the response tokens). The implicit reward
    of a response is beta (log pi - log pi_ref); the loss is the mean of
    -log sigmoid(chosen reward - rejected reward), Bradley-Terry's loss on those rewards. The
    rewards come back detached, for logging.

    ``label_smoothing`` = eps is "conservative DPO": if a share eps of the labels is flipped
    (annotators err), the loss is the expected one over that noise, (1 - eps) of the loss
    above plus eps of the loss with chosen and rejected swapped. Raises ValueError for an
    empty batch, inputs of different shapes, or beta <= 0."""
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing is the share of wrong labels, in [0, 0.5): got {label_smoothing}")
    _check_beta(beta)
    _check_same_shape({"policy_chosen_logp": policy_chosen_logp,
                       "policy_rejected_logp": policy_rejected_logp,
                       "ref_chosen_logp": ref_chosen_logp, "ref_rejected_logp": ref_rejected_logp},
                      "give one log-prob per pair, (B,) each (sequence_logprobs(...).sum(1))")
    if policy_chosen_logp.numel() == 0:  # the mean of nothing is NaN
        raise ValueError("the batch is empty: pass the log-probs of at least one pair")
    chosen = beta * (policy_chosen_logp - ref_chosen_logp)
    rejected = beta * (policy_rejected_logp - ref_rejected_logp)
    margin = chosen - rejected
    loss = (-(1 - label_smoothing) * F.logsigmoid(margin) - label_smoothing * F.logsigmoid(-margin)).mean()
    return loss, chosen.detach(), rejected.detach()


def _triple(pair) -> tuple[list[int], list[int], list[int]]:
    """(prompt, chosen, rejected) token-id lists from a Pair-like object or a 3-tuple."""
    if all(hasattr(pair, name) for name in ("prompt", "chosen", "rejected")):
        parts = (pair.prompt, pair.chosen, pair.rejected)
    else:
        parts = tuple(pair)
        if len(parts) != 3:
            raise ValueError("a preference pair is (prompt, chosen, rejected) token ids, or an "
                             f"object with those attributes; got {pair!r}")
    prompt, chosen, rejected = (
        p.tolist() if isinstance(p, Tensor) else [int(t) for t in p] for p in parts)
    if not prompt or not chosen or not rejected:
        raise ValueError("every pair needs a prompt of at least one token and non-empty chosen "
                         f"and rejected responses; got lengths {len(prompt)}, {len(chosen)}, "
                         f"{len(rejected)}")
    return prompt, chosen, rejected


def collate_dpo(pairs: Sequence, pad_id: int, block_size: int | None = None
                ) -> tuple[Tensor, Tensor, Tensor]:
    """A batch for DPO from preference pairs -> ``(idx, start, mask)``.

    Rows 0..B-1 are prompt + chosen, rows B..2B-1 prompt + rejected (one forward pass for
    both), right-padded with ``pad_id``: ``idx`` (2B, T). ``start`` (2B,) holds each row's
    prompt length, ``mask`` (2B, T - min start) is True on each row's response tokens in the
    response-aligned layout of ``sequence_logprobs``. Right padding is safe for a causal
    model: padding comes after every real token, so no real token attends to it. Pairs are
    ``(prompt, chosen, rejected)`` lists of ids or objects with those attributes (such as
    ``minigpt.methods.reward.Pair``)."""
    if len(pairs) == 0:
        raise ValueError("no preference pairs to collate: give at least one (prompt, chosen, "
                         "rejected)")
    triples = [_triple(p) for p in pairs]
    rows = [(p, c) for p, c, _ in triples] + [(p, r) for p, _, r in triples]
    T = max(len(p) + len(x) for p, x in rows)
    if block_size is not None and T > block_size:
        too_long = sum(len(p) + max(len(c), len(r)) > block_size for p, c, r in triples)
        raise ValueError(f"{too_long} pair(s) need more than block_size={block_size} tokens "
                         f"(the longest {T}): leave them out, e.g. [p for p in pairs if "
                         "len(p.prompt) + max(len(p.chosen), len(p.rejected)) <= block_size]")
    idx = torch.full((len(rows), T), pad_id, dtype=torch.long)
    start = torch.tensor([len(p) for p, _ in rows], dtype=torch.long)
    width = T - int(start.min())
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, (p, x) in enumerate(rows):
        idx[i, : len(p) + len(x)] = torch.tensor(p + x)
        mask[i, : len(x)] = True
    return idx, start, mask


def _dpo_batch_logps(model: nn.Module, batch: tuple[Tensor, Tensor, Tensor]
                     ) -> tuple[Tensor, Tensor]:
    idx, start, mask = batch
    logp = sequence_logprobs(model, idx, start, mask).sum(dim=1)  # (2B,)
    return logp.chunk(2)  # chosen, rejected


@torch.no_grad()
def pair_logprobs(model: nn.Module, pairs: Sequence, pad_id: int, batch_size: int = 64
                  ) -> tuple[Tensor, Tensor]:
    """Sequence log-probs (N,), (N,) of every pair's chosen and rejected response under
    ``model`` (eval mode, no gradients), e.g. to watch DPO's margins."""
    device = next(model.parameters()).device
    with evaluating(model):
        chosen, rejected = [], []
        for i in range(0, len(pairs), batch_size):
            batch = tuple(t.to(device) for t in collate_dpo(pairs[i : i + batch_size], pad_id))
            c, r = _dpo_batch_logps(model, batch)
            chosen.append(c)
            rejected.append(r)
    if not chosen:
        raise ValueError("no preference pairs given")
    return torch.cat(chosen), torch.cat(rejected)


def train_dpo(policy: GPT, ref: GPT, pairs: Sequence, beta: float = 0.1,
              config: TrainConfig | None = None, pad_id: int = 0, batch_size: int = 16,
              block_size: int | None = None, val_pairs: Sequence | None = None,
              label_smoothing: float = 0.0) -> History:
    """Train ``policy`` with DPO on ``pairs`` with the course ``Trainer``; returns its History.

    Each step draws ``batch_size`` pairs at random and minimises ``dpo_loss`` against the
    frozen ``ref`` (computed without gradients). ``block_size`` (default the policy's) is the
    longest sequence allowed. The Trainer's "val" loss is on ``val_pairs`` if given, else on
    the training pairs. ``label_smoothing``: the share of labels known to be wrong (see
    ``dpo_loss``; chapter 10 passes the annotator's noise)."""
    if len(pairs) == 0:
        raise ValueError("train_dpo needs preference pairs: got an empty list")
    if ref is policy:
        raise ValueError("ref must be a separate, frozen copy: ref = copy.deepcopy(sft_model)")
    _check_beta(beta)
    block_size = block_size if block_size is not None else policy.cfg.block_size
    config = config if config is not None else TrainConfig()
    pools = {"train": list(pairs), "val": list(val_pairs) if val_pairs else list(pairs)}
    for pool in pools.values():  # fail now, not at some later step, on a pair that won't fit
        for i in range(0, len(pool), 256):
            collate_dpo(pool[i : i + 256], pad_id, block_size)
    generator = torch.Generator().manual_seed(config.seed if config.seed is not None else 0)

    def get_batch(split: str) -> tuple[Tensor, Tensor, Tensor]:
        pool = pools[split]
        picks = torch.randint(len(pool), (batch_size,), generator=generator).tolist()
        return collate_dpo([pool[i] for i in picks], pad_id)

    ref.eval().requires_grad_(False)

    def loss_fn(model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        chosen, rejected = _dpo_batch_logps(model, batch)
        with torch.no_grad():
            ref_chosen, ref_rejected = _dpo_batch_logps(ref, batch)
        return dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta, label_smoothing)[0]

    trainer = Trainer(policy, get_batch, config, loss_fn=loss_fn, generator=generator)
    ref.to(trainer.device)
    return trainer.fit()


# ---- best-of-n ----------------------------------------------------------------------------


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

