"""The chapter 10 build task's check (one whole PPO update against PPOTrainer.step) passes right
answers written differently and catches the usual mistakes, naming each one."""

import copy

import pytest
import torch

from minigpt.course import checks
from minigpt.course.checks import rlhf_build
from minigpt.methods import logprobs, ppo_losses

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

# ---- right answers written differently ------------------------------------------------------------


def ppo_update(policy, optimizer, data, kl_coef, config, orders, slip=""):
    """The solution's way, batched; ``slip`` plants one of a learner's mistakes."""
    cfg, mask = config, data.mask
    m = mask.float()
    B, R = data.responses.shape
    P = data.prompts.size(1)
    sign = 1 if slip == "kl sign" else -1
    rewards = sign * kl_coef * (data.logp - data.ref_logp) * m
    if slip == "score every":
        rewards = rewards + data.scores[:, None] * m
    else:
        rewards[torch.arange(B), 0 if slip == "score first" else mask.sum(1) - 1] += data.scores
    gamma, lam = (cfg.lam, cfg.gamma) if slip == "swapped" else (cfg.gamma, cfg.lam)
    values = data.values if slip == "gae unmasked" else data.values * m
    advantages, running = torch.zeros(B, R), torch.zeros(B)
    for t in reversed(range(R)):
        after = values[:, t + 1] if t + 1 < R else torch.zeros(B)
        running = rewards[:, t] + gamma * after - values[:, t] + gamma * lam * running
        if slip != "gae unmasked":
            running = running * m[:, t]
        advantages[:, t] = running
    returns = (advantages + values) * m
    if slip == "whiten padding":
        var = advantages.var(unbiased=False)
        advantages = (advantages - advantages.mean()) / torch.sqrt(var + 1e-8)
    elif slip == "whiten padding std":
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    elif slip == "unbiased std":
        mean = advantages[mask].mean()
        advantages = (advantages - mean) / advantages[mask].std() * m
    elif (cfg.whiten_advantages and slip != "not whitened") or slip == "whitened anyway":
        mean = (advantages * m).sum() / m.sum()
        var = ((advantages - mean) ** 2 * m).sum() / m.sum()
        advantages = (advantages - mean) / torch.sqrt(var + 1e-8) * m
    if slip == "returns whitened":
        returns = (advantages + values) * m
    sequences = torch.cat([data.prompts, data.responses], dim=1)
    temperature = 1.0 if slip == "temperature" else cfg.temperature
    policy_losses, value_losses = [], []
    for order in orders:
        for mb in order.split(cfg.minibatch_size):
            logits, v = policy(sequences[mb])
            logits = logits[:, P - 1 : -1] / temperature
            v = v[:, P:] if slip == "values late" else v[:, P - 1 : -1]
            mm = m[mb]
            logp = logprobs.token_logprobs(logits, data.responses[mb])
            ratio = torch.exp(logp - data.logp[mb])
            a = advantages[mb]
            pick = torch.min if slip == "max" else torch.max
            pg = (pick(-a * ratio, -a * ratio.clamp(1 - cfg.clip, 1 + cfg.clip)) * mm).sum() / mm.sum()
            err = (v - returns[mb]) ** 2
            if cfg.vf_clip is not None and slip != "value unclipped":
                old = (data.values * m)[mb]
                err = torch.max(err, (old + (v - old).clamp(-cfg.vf_clip, cfg.vf_clip) - returns[mb]) ** 2)
            vf = 0.5 * (err * mm).sum() / mm.sum()
            if slip != "no zero_grad":
                optimizer.zero_grad()
            (pg + cfg.vf_coef * vf).backward()
            if cfg.grad_clip and slip != "no grad clip":
                torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
            optimizer.step()
            policy_losses.append(pg.item())
            value_losses.append(vf.item())
    return {"rewards": rewards, "advantages": advantages, "returns": returns,
            "policy_losses": policy_losses, "value_losses": value_losses}


def kl_rewards(logp, ref_logp, score, kl_coef):
    """Task 1's function: one response."""
    rewards = -kl_coef * (logp - ref_logp)
    rewards[-1] += score
    return rewards


def gae(rewards, values, gamma, lam):
    """Task 2's function: one episode, in plain floats."""
    out, running = [0.0] * len(rewards), 0.0
    for t in reversed(range(len(rewards))):
        after = float(values[t + 1]) if t + 1 < len(values) else 0.0
        running = float(rewards[t]) + gamma * after - float(values[t]) + gamma * lam * running
        out[t] = running
    return torch.tensor(out)


def clipped_loss(ratio, advantage, eps):
    """Task 3's function: per token."""
    return -torch.min(ratio * advantage, torch.clamp(ratio, 1 - eps, 1 + eps) * advantage)


def ppo_update_by_rows(policy, optimizer, data, kl_coef, config, orders):
    """Row by row with the earlier tasks' functions, each response cut at its length; the
    minibatch losses as a sum over rows divided by the token count; lists, not tensors, back."""
    B, R = data.responses.shape
    P = data.prompts.size(1)
    lengths = data.mask.sum(1).tolist()
    rewards, advantages, returns = torch.zeros(B, R), torch.zeros(B, R), torch.zeros(B, R)
    for b, n in enumerate(lengths):
        rewards[b, :n] = kl_rewards(data.logp[b, :n], data.ref_logp[b, :n], data.scores[b], kl_coef)
        advantages[b, :n] = gae(rewards[b, :n], data.values[b, :n], config.gamma, config.lam)
        returns[b, :n] = advantages[b, :n] + data.values[b, :n]
    if config.whiten_advantages:
        flat = torch.cat([advantages[b, :n] for b, n in enumerate(lengths)])
        mean, var = flat.mean(), flat.var(unbiased=False)
        for b, n in enumerate(lengths):
            advantages[b, :n] = (advantages[b, :n] - mean) / torch.sqrt(var + 1e-8)
    sequences = torch.cat([data.prompts, data.responses], dim=1)
    policy_losses, value_losses = [], []
    for order in orders:
        for start in range(0, B, config.minibatch_size):
            rows = order[start:start + config.minibatch_size].tolist()
            logits, values = policy(sequences[rows])
            pg, vf, tokens = 0.0, 0.0, 0
            for i, b in enumerate(rows):
                n = lengths[b]
                logp = torch.log_softmax(logits[i, P - 1 : P - 1 + n] / config.temperature, -1)
                logp = logp[torch.arange(n), data.responses[b, :n]]
                ratio = torch.exp(logp - data.logp[b, :n])
                pg = pg + clipped_loss(ratio, advantages[b, :n], config.clip).sum()
                v, target = values[i, P - 1 : P - 1 + n], returns[b, :n]
                err = (v - target) ** 2
                if config.vf_clip is not None:
                    old = data.values[b, :n]
                    clipped = torch.clamp(v, old - config.vf_clip, old + config.vf_clip)
                    err = torch.maximum(err, (clipped - target) ** 2)
                vf = vf + 0.5 * err.sum()
                tokens += n
            pg, vf = pg / tokens, vf / tokens
            optimizer.zero_grad()
            (pg + config.vf_coef * vf).backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
            optimizer.step()
            policy_losses.append(pg.item())
            value_losses.append(vf.item())
    return {"rewards": rewards.tolist(), "advantages": advantages.numpy(), "returns": returns,
            "policy_losses": policy_losses, "value_losses": value_losses}


def ppo_update_package(policy, optimizer, data, kl_coef, config, orders):
    """The package's pieces: ppo_losses and logprobs.whiten."""
    mask = data.mask
    rewards, _ = ppo_losses.kl_penalty_rewards(data.logp, data.ref_logp, data.scores, mask, kl_coef)
    values = data.values * mask
    advantages, returns = ppo_losses.gae(rewards, values, mask, config.gamma, config.lam)
    if config.whiten_advantages:
        advantages = logprobs.whiten(advantages, mask)
    P = data.prompts.size(1)
    sequences = torch.cat([data.prompts, data.responses], dim=1)
    out = {"rewards": rewards, "advantages": advantages, "returns": returns,
           "policy_losses": [], "value_losses": []}
    for order in orders:
        for mb in order.split(config.minibatch_size):
            logits, v = policy(sequences[mb])
            logp = logprobs.token_logprobs(logits[:, P - 1 : -1] / config.temperature,
                                           data.responses[mb])
            pg, _, _ = ppo_losses.ppo_policy_loss(logp, data.logp[mb], advantages[mb], mask[mb],
                                                  config.clip)
            vf = ppo_losses.ppo_value_loss(v[:, P - 1 : -1], values[mb], returns[mb], mask[mb],
                                           config.vf_clip)
            optimizer.zero_grad(set_to_none=True)
            (pg + config.vf_coef * vf).backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
            optimizer.step()
            out["policy_losses"].append(pg)
            out["value_losses"].append(vf)
    return out


RIGHT = [ppo_update, ppo_update_by_rows, ppo_update_package]


@pytest.mark.parametrize("right", RIGHT, ids=lambda f: f.__name__)
def test_right_answers_written_differently_pass(right, capsys):
    checks.check_ppo_update(right)
    assert "Task 5 (ppo_update) passed" in capsys.readouterr().out


def test_stub_is_not_done_yet_with_a_hint():
    def stub(policy, optimizer, data, kl_coef, config, orders):
        raise NotImplementedError

    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_ppo_update(stub)


def _outcome(update, case):
    policy, optimizer = case.start()
    out = update(policy, optimizer, case.data.clone(), case.cfg.init_kl_coef, case.cfg,
                 [o.clone() for o in case.orders])
    tensors = [torch.as_tensor(out[k], dtype=torch.float64) for k in ("rewards", "advantages",
                                                                       "returns")]
    return tensors, rlhf_build._outcome(out, policy)


def _gap(a, b, mask):
    (ta, (pa, va, sa)), (tb, (pb, vb, sb)) = a, b
    gaps = [(x - y)[mask].abs().max().item() for x, y in zip(ta, tb)]
    gaps += [abs(x - y) for x, y in zip(pa + va, pb + vb)]
    gaps += [(sa[k].double() - sb[k].double()).abs().max().item() for k in sb]
    return max(gaps)


def test_right_answers_agree_far_inside_the_tolerance():
    """The check's tolerance is 1e-4; right answers written differently agree to 7e-7 (a
    twentieth of it is asserted)."""
    for index in range(len(rlhf_build._CASES)):
        case, _ = rlhf_build.ppo_case(index)
        want = _outcome(ppo_update_package, case)
        for right in (ppo_update, ppo_update_by_rows):
            assert _gap(_outcome(right, case), want, case.data.mask) < rlhf_build._TOL / 20


def test_the_cases_exercise_what_the_check_claims():
    """Padding in both rollouts (the slips about the mask show), values after the end that are
    not 0, both value losses and both advantages, a temperature, and no frozen key bias left
    to Adam."""
    first, second = (rlhf_build.ppo_case(i)[0] for i in range(2))
    for case in (first, second):
        mask = case.data.mask
        assert (~mask).any() and mask.all(dim=1).any() and mask.sum(1).min() >= 1
        assert case.data.values[~mask].abs().min() > 1e-3
        assert torch.equal(case.data.values * mask, case.batch.values)
        assert all(not blk.attn.qkv.bias.requires_grad for blk in case.start_policy.policy.blocks)
    assert first.cfg.vf_clip is not None and second.cfg.vf_clip is None
    assert first.cfg.whiten_advantages and not second.cfg.whiten_advantages
    assert second.cfg.temperature != 1 and first.cfg.gamma != second.cfg.gamma


def test_rollout_data_is_the_trainers_rollout_with_the_values_everywhere():
    case, _ = rlhf_build.ppo_case(0)
    policy, _ = case.start()
    trainer = rlhf_build._trainer(policy, copy.deepcopy(case.start_ref), case.cfg, case.seed)
    data = checks.rollout_data(trainer)
    assert torch.equal(data.responses, case.data.responses)
    assert torch.allclose(data.values, case.data.values, atol=1e-6)


SLIPS = [slip for stage in rlhf_build._STAGE_SLIPS.values() for slip in stage]


def test_every_slip_is_far_outside_the_tolerance():
    """Each slip, written as a learner would, moves some compared number by at least 100x the
    check's tolerance in a case that shows it (0.047 at the least: the temperature)."""
    cases = [rlhf_build.ppo_case(i)[0] for i in range(2)]
    rights = [_outcome(ppo_update_package, c) for c in cases]
    for slip in SLIPS:
        gaps = [_gap(_outcome(lambda *a, s=slip: ppo_update(*a, slip=s), c), r, c.data.mask)
                for c, r in zip(cases, rights)]
        assert max(gaps) > 100 * rlhf_build._TOL, (slip, gaps)


TIPS = {
    "kl sign": "sign is flipped",
    "score first": "score went on the first token",
    "score every": "added to every token",
    "gae unmasked": "GAE ran over the padding",
    "swapped": "gamma and lam are swapped",
    "not whitened": "were not whitened",
    "whiten padding": "whitening counted the padding",
    "whiten padding std": "whitening counted the padding",
    "unbiased std": "population variance",
    "whitened anyway": "whiten_advantages is False here",
    "returns whitened": "returns came from the whitened",
    "max": "takes the larger of the two objectives",
    "value unclipped": "value loss is not clipped",
    "no grad clip": "gradients were not clipped",
    "no zero_grad": "piled up",
    "values late": "one position late",
    "temperature": "not divided by config.temperature",
}


@pytest.mark.parametrize("slip", TIPS)
def test_mistakes_are_caught_with_their_tip(slip):
    with pytest.raises(AssertionError, match=TIPS[slip]):
        checks.check_ppo_update(lambda *args: ppo_update(*args, slip=slip))


def _copy_updated(policy, optimizer, data, kl_coef, config, orders):
    other = copy.deepcopy(policy)
    return ppo_update(other, torch.optim.AdamW(other.parameters()), data, kl_coef, config, orders)


def _in_place(policy, optimizer, data, kl_coef, config, orders):
    out = ppo_update(policy, optimizer, data, kl_coef, config, orders)
    data.logp -= data.ref_logp
    return out


def _one_epoch(policy, optimizer, data, kl_coef, config, orders):
    return ppo_update(policy, optimizer, data, kl_coef, config, orders[:1])


def _without(key):
    return lambda *args: {k: v for k, v in ppo_update(*args).items() if k != key}


@pytest.mark.parametrize("wrong, words", [
    (lambda *args: None, "return a dict"),
    (_without("returns"), "return a dict with the keys"),
    (lambda *args: {**ppo_update(*args), "rewards": torch.zeros(3)}, r"rewards must be a \(8, 6\)"),
    (_in_place, "changed the rollout"),
    (_copy_updated, "parameters did not change"),
    (_one_epoch, "one policy loss and one value loss per update, 6 of each"),
    (lambda *args: torch.zeros(2) @ torch.zeros(3), "raised RuntimeError"),
])
def test_malformed_answers_are_explained(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_ppo_update(wrong)


def test_the_check_leaves_the_thread_count_as_it_was():
    torch.set_num_threads(2)
    try:
        checks.check_ppo_update(ppo_update)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
