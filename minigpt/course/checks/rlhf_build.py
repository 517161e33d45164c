"""Checks for exercises/10_rlhf.ipynb's build task: one whole PPO update, from a rollout's
log-probs, values and scores to the optimizer's steps, as ``PPOTrainer.step`` does it.

The reference is the package's ``minigpt.methods.ppo.PPOTrainer``. For each case the check builds
a tiny ``PolicyWithValue`` (a GPT over 8 tokens, every weight random, the value head too, so the
values after a response's end are not 0) and a reference model near it; a ``PPOTrainer`` samples
one rollout, which the check records (``rollout_data``), and runs its ``step`` on it. The
learner's ``ppo_update`` then runs on an identical copy of the starting policy, with an optimizer
built by a second ``PPOTrainer``, on the same rollout and in the same minibatch order: the
trainer draws one ``torch.randperm`` per epoch from ``trainer.shuffle``, which the check replays
from the generator's state (and checks that nothing else was drawn) and hands to the learner.
Seeded, on one thread. The attention's qkv bias is frozen: the key bias's gradient is 0 in exact
arithmetic (a softmax ignores a shift shared by every key), and AdamW would turn its rounding
noise into steps of size lr that differ between two right answers.

Compared in the order they are computed, with a tolerance (1e-4) over 100 times the gap between
right answers written differently and 400 times below what the smallest slip moves: the rewards,
advantages and returns on the response's tokens, each update's losses, and every parameter
afterwards. A difference is named where one usual slip explains it: the KL sign flipped, the
score on the first or on every token, GAE over the padding (the value after the end
bootstrapped), gamma and lambda swapped, advantages not whitened or whitened over the padding,
the maximum of the two objectives, the value loss unclipped, no gradient clipping, no
``zero_grad``, the values read one position late, the temperature left out.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from minigpt.core.runtime import evaluating
from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import matching_tip
from minigpt.course.checks._base import passed as _passed
from minigpt.methods.logprobs import masked_mean, token_logprobs, whiten
from minigpt.methods.ppo import PolicyWithValue, PPOConfig, PPOTrainer, Rollout
from minigpt.methods.ppo_losses import gae, kl_penalty_rewards, ppo_policy_loss, ppo_value_loss
from minigpt.models.gpt import GPT, GPTConfig

__all__ = ["RolloutData", "check_ppo_update", "rollout_data"]

TASK = "Task 5 (ppo_update)"
HINT = ("rewards: -kl_coef * (logp - ref_logp) on the response's tokens, plus the score on each "
        "row's last one; advantages by GAE backwards over each response (the value after its "
        "last token is 0), returns = advantages + values; whiten the advantages over the "
        "response's tokens (config.whiten_advantages); then for each order in orders, for each "
        "mb in order.split(config.minibatch_size): logits and values of the sequences at "
        "[:, P - 1 : -1], logits / temperature, the clipped policy loss + vf_coef x the "
        "(clipped) value loss, zero_grad, backward, clip_grad_norm_, step.")
_TOL = 1e-4  # right answers written differently agree to 7e-7; each slip moves something by 0.04
_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, AttributeError, KeyError)
_MODEL = GPTConfig(vocab_size=8, block_size=16, n_layer=1, n_head=2, n_embd=16)
_END = 7  # the token that ends a response
_PROMPT_LENGTH = 3

# (what the case shows, its PPOConfig, the seed of its models and prompts)
_CASES = [
    ("gamma 1, lam 0.95, clipped values, whitened advantages",
     PPOConfig(batch_size=8, max_new_tokens=6, ppo_epochs=3, minibatch_size=4, lr=1e-2,
               value_lr=3e-2, clip=0.1, vf_clip=0.05, vf_coef=0.5, gamma=1.0, lam=0.95,
               init_kl_coef=0.3, adaptive_kl=False, grad_clip=0.5, seed=3), 23),
    ("gamma 0.9, lam 0.7, plain value loss, raw advantages, temperature 0.8",
     PPOConfig(batch_size=6, max_new_tokens=5, ppo_epochs=2, minibatch_size=4, lr=1e-2,
               clip=0.15, vf_clip=None, vf_coef=0.2, gamma=0.9, lam=0.7, init_kl_coef=0.1,
               adaptive_kl=False, grad_clip=None, temperature=0.8, whiten_advantages=False,
               weight_decay=0.1, seed=5), 27),
]


@dataclass
class RolloutData:
    """What one rollout hands the update, (B, R) unless said: ``prompts`` (B, P) and
    ``responses`` token ids, ``mask`` (True on each response's tokens, up to and including its
    end token), the log-probs of the sampling policy (``logp``) and of the reference
    (``ref_logp``), both 0 after the end, the value head's estimate before each response token
    (``values``: at every position, after the end too, where it means nothing), and the
    score of each response, ``scores`` (B,)."""

    prompts: Tensor
    responses: Tensor
    mask: Tensor
    logp: Tensor
    ref_logp: Tensor
    values: Tensor
    scores: Tensor

    def clone(self) -> RolloutData:
        return RolloutData(*(getattr(self, f.name).clone() for f in fields(self)))


def rollout_data(trainer: PPOTrainer, batch: Rollout | None = None) -> RolloutData:
    """The inputs of a PPO update from ``batch`` (by default a new ``trainer.rollout()``), with
    the values the trainer's policy gives now at every response position (the rollout keeps
    them only on the response's tokens)."""
    batch = trainer.rollout() if batch is None else batch
    P = batch.prompts.size(1)
    with torch.no_grad(), evaluating(trainer.policy):
        values = trainer.policy(batch.sequences)[1][:, P - 1 : -1]
    return RolloutData(batch.prompts, batch.responses, batch.mask, batch.logp, batch.ref_logp,
                       values, batch.scores)


# ---- the cases ----------------------------------------------------------------------------------


def _models(seed: int) -> tuple[PolicyWithValue, GPT]:
    """A policy whose every weight is random (the value head too) and a reference near it."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        policy = PolicyWithValue(GPT(_MODEL))
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen))
        ref = copy.deepcopy(policy.policy)
        for p in ref.parameters():
            p.add_(0.15 * torch.randn(p.shape, generator=gen))
    for block in policy.policy.blocks:  # see the module's docstring
        block.attn.qkv.bias.requires_grad_(False)
    return policy, ref


def _score(prompts: Tensor, responses: Tensor, mask: Tensor) -> Tensor:
    """A fixed scorer: twice the share of 3s in the response, less a little per token."""
    share = ((responses == 3) & mask).sum(1).float() / mask.sum(1).clamp(min=1)
    return 2 * share - 0.1 * mask.sum(1).float() + 0.05 * prompts[:, 0].float()


def _trainer(policy: PolicyWithValue, ref: GPT, cfg: PPOConfig, seed: int) -> PPOTrainer:
    gen = torch.Generator().manual_seed(seed)
    prompts = torch.randint(0, _END, (cfg.batch_size, _PROMPT_LENGTH), generator=gen)
    return PPOTrainer(policy, ref, _score, lambda: prompts.clone(), _END, cfg)


@dataclass
class _Case:
    """One case: the learner's inputs, and the rollout's rewards, advantages and returns."""

    name: str
    cfg: PPOConfig
    seed: int
    data: RolloutData
    orders: list[Tensor]
    batch: Rollout
    start_policy: PolicyWithValue
    start_ref: GPT

    def start(self) -> tuple[PolicyWithValue, torch.optim.Optimizer]:
        """A copy of the starting policy and an optimizer built as PPOTrainer builds its own."""
        policy = copy.deepcopy(self.start_policy)
        trainer = _trainer(policy, copy.deepcopy(self.start_ref), self.cfg, self.seed)
        return policy, trainer.optimizer


def ppo_case(index: int) -> tuple[_Case, tuple]:
    """Run ``PPOTrainer.step`` on case ``index``; its rollout and order, and the losses and
    parameters of the update (the check's own run of it, checked against the trainer's)."""
    name, cfg, seed = _CASES[index]
    policy, ref = _models(seed)
    start_policy, start_ref = copy.deepcopy(policy), copy.deepcopy(ref)
    trainer = _trainer(policy, ref, cfg, seed)
    recorded: list[tuple[Rollout, RolloutData]] = []
    sample = trainer.rollout

    def record() -> Rollout:
        batch = sample()
        recorded.append((batch, rollout_data(trainer, batch)))
        return batch

    trainer.rollout = record  # the trainer's own rollout, kept on the way past
    shuffle = torch.Generator()
    shuffle.set_state(trainer.shuffle.get_state())
    stats = trainer.step()
    orders = [torch.randperm(cfg.batch_size, generator=shuffle) for _ in range(cfg.ppo_epochs)]
    if not torch.equal(shuffle.get_state(), trainer.shuffle.get_state()):
        raise RuntimeError("PPOTrainer.step no longer draws one randperm per epoch from "
                           "trainer.shuffle: update minigpt/course/checks/rlhf_build.py")
    batch, data = recorded[0]
    case = _Case(name, cfg, seed, data, orders, batch, start_policy, start_ref)
    policy, optimizer = case.start()
    want = _outcome(reference_update(policy, optimizer, case.data, cfg.init_kl_coef, cfg, orders),
                    policy)
    if not (abs(sum(want[0]) / len(want[0]) - stats["policy_loss"]) < _TOL / 10
            and abs(sum(want[1]) / len(want[1]) - stats["value_loss"]) < _TOL / 10
            and _same_outcome(([], [], trainer.policy.state_dict()), ([], [], want[2]), _TOL / 10)):
        raise RuntimeError("PPOTrainer.step no longer does what rlhf_build.reference_update "
                           "does: update minigpt/course/checks/rlhf_build.py")
    return case, want


# ---- the update, with the usual slips -----------------------------------------------------------


def advantages_of(data: RolloutData, kl_coef: float, cfg: PPOConfig, slip: str = ""
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """(rewards, advantages, returns) of ``data`` as ``PPOTrainer.rollout`` computes them, or
    with one of the usual slips."""
    mask, m = data.mask, data.mask.float()
    values = data.values * m
    rewards, kl = kl_penalty_rewards(data.logp, data.ref_logp, data.scores, mask,
                                     -kl_coef if slip == "kl sign" else kl_coef)
    if slip in ("score first", "score every"):
        rewards = -kl_coef * kl
        if slip == "score first":
            rewards[:, 0] += data.scores
        else:
            rewards += data.scores[:, None] * m
    gamma, lam = (cfg.lam, cfg.gamma) if slip == "swapped" else (cfg.gamma, cfg.lam)
    if slip == "gae unmasked":
        everywhere = torch.ones_like(mask)
        advantages, _ = gae(rewards, data.values, everywhere, gamma, lam)
        returns = advantages + data.values
    else:
        advantages, returns = gae(rewards, values, mask, gamma, lam)
    if slip == "returns whitened":
        returns = whiten(advantages, mask) + values
    if slip == "whiten padding":
        advantages = whiten(advantages, torch.ones_like(mask))
    elif slip == "whiten padding std":  # the usual one-liner, over every position
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    elif slip == "unbiased std":
        advantages = (advantages - masked_mean(advantages, mask)) / advantages[mask].std()
    elif (cfg.whiten_advantages and slip != "not whitened") or slip == "whitened anyway":
        advantages = whiten(advantages, mask)
    return rewards, advantages, returns


def reference_update(policy: PolicyWithValue, optimizer: torch.optim.Optimizer,
                     data: RolloutData, kl_coef: float, cfg: PPOConfig, orders: list[Tensor],
                     slip: str = "") -> dict[str, list[float] | Tensor]:
    """PPOTrainer.step's update on ``data`` in the given ``orders``, or with one of the usual
    slips; returns what the learner's ``ppo_update`` returns."""
    rewards, advantages, returns = advantages_of(data, kl_coef, cfg, slip)
    P = data.prompts.size(1)
    sequences = torch.cat([data.prompts, data.responses], dim=1)
    old_values = data.values * data.mask
    temperature = 1.0 if slip == "temperature" else cfg.temperature
    policy_losses, value_losses = [], []
    policy.eval()
    for order in orders:
        for mb in order.split(cfg.minibatch_size):
            logits, values = policy(sequences[mb])
            logits = logits[:, P - 1 : -1] / temperature
            values = values[:, P:] if slip == "values late" else values[:, P - 1 : -1]
            mask = data.mask[mb]
            logp = token_logprobs(logits, data.responses[mb])
            if slip == "max":
                ratio = torch.exp(logp - data.logp[mb])
                a = advantages[mb]
                pg = masked_mean(torch.min(-a * ratio, -a * ratio.clamp(1 - cfg.clip, 1 + cfg.clip)),
                                 mask)
            else:
                pg = ppo_policy_loss(logp, data.logp[mb], advantages[mb], mask, cfg.clip)[0]
            vf = ppo_value_loss(values, old_values[mb], returns[mb], mask,
                                None if slip == "value unclipped" else cfg.vf_clip)
            if slip != "no zero_grad":
                optimizer.zero_grad(set_to_none=True)
            (pg + cfg.vf_coef * vf).backward()
            if cfg.grad_clip and slip != "no grad clip":
                torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
            optimizer.step()
            policy_losses.append(pg.item())
            value_losses.append(vf.item())
    return {"rewards": rewards, "advantages": advantages, "returns": returns,
            "policy_losses": policy_losses, "value_losses": value_losses}


_PADDING = ("The whitening counted the padding: take the mean and the (population) variance over "
            "the response's tokens only (mask), and leave 0 after the end.")
_STAGE_SLIPS = {
    "rewards": {
        "kl sign": ("The KL penalty's sign is flipped: a token pays -kl_coef * (logp - ref_logp), "
                    "so a token the policy likes more than the reference costs reward."),
        "score first": ("The score went on the first token: it belongs to each row's last "
                        "response token (mask.sum(1) - 1), where the response is finished."),
        "score every": "The score was added to every token: only each row's last token gets it.",
    },
    "advantages": {
        "gae unmasked": ("GAE ran over the padding: after a row's last token the episode is "
                         "over, so the value there is 0 (mask the values, and stop the "
                         "recursion at each response's end), not the head's estimate."),
        "swapped": ("gamma and lam are swapped: delta_t = r_t + gamma V_{t+1} - V_t, and "
                    "A_t = delta_t + gamma lam A_{t+1}."),
        "not whitened": ("The advantages were not whitened: with config.whiten_advantages, shift "
                         "and scale them to mean 0, variance 1 over the response's tokens."),
        "whiten padding": _PADDING,
        "whiten padding std": _PADDING,
        "whitened anyway": ("config.whiten_advantages is False here: leave the advantages as "
                            "GAE gives them."),
        "unbiased std": ("Whitening as the package does uses the population variance (divide "
                         "by the number of tokens, not one less) and sqrt(var + 1e-8)."),
    },
    "returns": {
        "returns whitened": ("The returns came from the whitened advantages: returns = the raw "
                             "GAE advantages + values; only the policy loss sees whitened ones."),
    },
    "update": {
        "max": ("Your policy loss takes the larger of the two objectives: PPO's loss is "
                "-min(ratio A, clip(ratio) A), the pessimistic one (torch.max of the two losses)."),
        "value unclipped": ("The value loss is not clipped: with config.vf_clip, take the larger "
                            "of (V - R)^2 and (clip(V, V_old +- vf_clip) - R)^2, as "
                            "ppo_losses.ppo_value_loss does."),
        "no grad clip": ("The gradients were not clipped: with config.grad_clip, call "
                         "torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip) "
                         "between backward() and step()."),
        "no zero_grad": ("The gradients piled up across updates: call optimizer.zero_grad() "
                         "before each backward()."),
        "values late": ("The values were read one position late: the value of the state before "
                        "response token j sits at position P - 1 + j, like its logits "
                        "(values[:, P - 1 : -1])."),
        "temperature": ("The logits were not divided by config.temperature: the rollout's "
                        "log-probs were computed at the sampling temperature, so the new ones "
                        "must be too."),
    },
}


# ---- the check ----------------------------------------------------------------------------------


def _as_tensor(x, shape: torch.Size) -> Tensor | None:
    """``x`` as a float64 tensor of ``shape``, or None."""
    try:
        t = torch.as_tensor(x.detach() if isinstance(x, Tensor) else x, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None
    return t if t.shape == shape else None


def _same_on(mask: Tensor) -> Callable[[object, Tensor], bool]:
    """Whether a (B, R) answer equals a (B, R) reference on the response's tokens."""
    def same(got, want: Tensor) -> bool:
        t = _as_tensor(got, want.shape)
        return t is not None and bool(torch.allclose(t[mask], want.double()[mask], 0, _TOL))
    return same


def _outcome(out: dict, policy: PolicyWithValue) -> tuple[list[float], list[float], dict]:
    """(policy losses, value losses, the policy's parameters) after an update."""
    losses = []
    for key in ("policy_losses", "value_losses"):
        try:
            losses.append([float(v.detach() if isinstance(v, Tensor) else v) for v in out[key]])
        except (TypeError, ValueError, RuntimeError):
            losses.append([])
    return (*losses, {k: v.detach() for k, v in policy.state_dict().items()})


def _same_outcome(got: tuple, want: tuple, tol: float = _TOL) -> bool:
    """Whether two (policy losses, value losses, state dict) agree within ``tol``."""
    (gp, gv, gs), (wp, wv, ws) = got, want
    return (len(gp) == len(wp) and len(gv) == len(wv)
            and all(abs(a - b) <= tol for a, b in zip(gp + gv, wp + wv))
            and all(torch.allclose(gs[k].double(), ws[k].double(), 0, tol) for k in ws))


def _run(ppo_update: Callable, case: _Case, where: str) -> tuple[dict, PolicyWithValue]:
    """The learner's update on a fresh copy of the case's policy; raises on a malformed answer."""
    policy, optimizer = case.start()
    data, orders = case.data.clone(), [o.clone() for o in case.orders]
    try:
        got = _call(TASK, HINT, ppo_update, policy, optimizer, data, case.cfg.init_kl_coef,
                    case.cfg, orders)
    except _ERRORS as error:
        raise AssertionError(f"{where}: ppo_update raised {type(error).__name__}: {error}. "
                             f"Hint: {HINT}") from None
    if not all(torch.equal(getattr(data, f.name), getattr(case.data, f.name)) for f in fields(data)):
        raise AssertionError(f"{where}: your function changed the rollout it was given: compute "
                             "rewards and advantages in new tensors (rewards = -kl_coef * "
                             f"(data.logp - data.ref_logp), not -=). Hint: {HINT}")
    keys = ("rewards", "advantages", "returns", "policy_losses", "value_losses")
    if not (hasattr(got, "keys") and all(k in got for k in keys)):
        raise AssertionError(f"{where}: return a dict with the keys {', '.join(keys)}; got "
                             f"{type(got).__name__}. Hint: {HINT}")
    return got, policy


def _check_case(ppo_update: Callable, case: _Case, want: tuple) -> None:
    cfg, mask, kl_coef = case.cfg, case.data.mask, case.cfg.init_kl_coef
    where = f"{TASK}, on {case.name}"
    got, policy = _run(ppo_update, case, where)
    same = _same_on(mask)
    for i, key in enumerate(("rewards", "advantages", "returns")):
        ref = getattr(case.batch, key)
        if same(got[key], ref):
            continue
        mine = _as_tensor(got[key], ref.shape)
        if mine is None:
            raise AssertionError(f"{where}: {key} must be a {tuple(ref.shape)} tensor (B, R), one "
                                 f"value per response token; got {got[key]!r:.200}. Hint: {HINT}")
        slips = [(msg, lambda s=slip, i=i: advantages_of(case.data, kl_coef, cfg, s)[i])
                 for slip, msg in _STAGE_SLIPS[key].items()]
        tip = matching_tip([((), got[key])], slips, same)
        gap = (mine - ref.double())[mask].abs().max().item()
        raise AssertionError(f"{where}: your {key} differ from PPOTrainer's by up to {gap:.3g} on "
                             f"the response's tokens (first row: yours {_row(mine[0][mask[0]])}, "
                             f"PPOTrainer's {_row(ref[0][mask[0]])}).{tip} Hint: {HINT}")
    mine, n = _outcome(got, policy), len(want[0])
    if len(mine[0]) != n or len(mine[1]) != n:
        raise AssertionError(f"{where}: return one policy loss and one value loss per update, "
                             f"{n} of each ({cfg.ppo_epochs} epochs of minibatches of "
                             f"{cfg.minibatch_size}); got {len(mine[0])} and {len(mine[1])}. "
                             f"Hint: {HINT}")
    if _same_outcome(mine, want):
        return
    if all(torch.equal(mine[2][k], v) for k, v in case.start_policy.state_dict().items()):
        raise AssertionError(f"{where}: the policy's parameters did not change: update the policy "
                             f"you were given, in place, with the optimizer you were given. "
                             f"Hint: {HINT}")

    def slipped(slip: str) -> Callable[[], tuple]:
        def run() -> tuple:
            p, o = case.start()
            return _outcome(reference_update(p, o, case.data, kl_coef, cfg, case.orders, slip), p)
        return run

    tip = matching_tip([((), mine)], [(msg, slipped(slip))
                                      for slip, msg in _STAGE_SLIPS["update"].items()],
                       _same_outcome)
    bad = next((j for j in range(n) if abs(mine[0][j] - want[0][j]) > _TOL
                or abs(mine[1][j] - want[1][j]) > _TOL), None)
    if bad is not None:
        what = (f"update {bad + 1} of {n} gives policy loss {mine[0][bad]:.6f} and value loss "
                f"{mine[1][bad]:.6f}; PPOTrainer's: {want[0][bad]:.6f} and {want[1][bad]:.6f}")
    else:
        name, gap = max(((k, (mine[2][k].double() - v.double()).abs().max().item())
                         for k, v in want[2].items()), key=lambda kv: kv[1])
        what = f"every loss agrees, but afterwards {name} differs from PPOTrainer's by {gap:.3g}"
    raise AssertionError(f"{where}: the rewards, advantages and returns agree; {what}.{tip} "
                         f"Hint: {HINT}")


def _row(x: Tensor) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in x.tolist()) + "]"


def check_ppo_update(ppo_update: Callable[..., dict]) -> None:
    """Task 5: ``ppo_update(policy, optimizer, data, kl_coef, config, orders)`` does what
    ``PPOTrainer.step`` does after its rollout: the same rewards, advantages, returns, losses,
    and parameters afterwards, on two tiny policies (seeded, on one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for index in range(len(_CASES)):
            _check_case(ppo_update, *ppo_case(index))
    finally:
        torch.set_num_threads(threads)
    _passed(TASK, "the same rewards, advantages, returns, losses and updated parameters as "
                  "PPOTrainer.step on two rollouts (clipped and plain value loss, whitened and "
                  "raw advantages)")
