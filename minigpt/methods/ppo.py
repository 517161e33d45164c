"""RLHF with PPO: fine-tune a language model against a reward (chapter 10).

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

Everything works on token ids, whatever the tokenizer; the caller brings the prompts (all of
one length, so generation needs no padding), a ``score_fn(prompts, responses, mask)`` and the
token that ends a response. PPO's losses, GAE and the KL controllers, each a small function
checked against its paper: ``minigpt.methods.ppo_losses``; log-probabilities and masks:
``minigpt.methods.logprobs``; the alternatives PPO is compared with: ``minigpt.methods.dpo``
and ``minigpt.methods.best_of_n``.

    >>> from minigpt.methods import ppo
    >>> policy = ppo.PolicyWithValue(copy.deepcopy(sft_model))               # doctest: +SKIP
    >>> ref = copy.deepcopy(sft_model)               # frozen by PPOTrainer   # doctest: +SKIP
    >>> config = ppo.PPOConfig(batch_size=64, max_new_tokens=12, lr=1e-4)    # doctest: +SKIP
    >>> trainer = ppo.PPOTrainer(policy, ref, score_fn, sample_prompts, end_id, config)  # doctest: +SKIP
    >>> history = trainer.train(200)  # list of dicts: score, kl, kl_coef, ...  # doctest: +SKIP

Deliberately left out: a separate value network (the value head shares the policy's trunk),
reward normalisation and score clipping, an entropy bonus, early stopping of the PPO epochs on
the approximate KL, prompts of different lengths (left padding with attention masks), the
PPO-ptx pre-training mix of InstructGPT, and several GPUs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from minigpt.methods.logprobs import (
    ScoreFn,
    entropy_from_logits,
    masked_mean,
    response_mask,
    token_logprobs,
    whiten,
)
from minigpt.methods.ppo_losses import (
    AdaptiveKLController,
    FixedKLController,
    gae,
    kl_penalty_rewards,
    ppo_policy_loss,
    ppo_value_loss,
)
from minigpt.models.gpt import GPT
from minigpt.train.config import param_groups
from minigpt.train.trainer import NonFiniteLossError

__all__ = ["PPOConfig", "PPOTrainer", "PolicyWithValue", "Rollout"]


NO_VALUE_HEAD = "PPO needs a value head: wrap the model with PolicyWithValue(gpt)"


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
