"""The chapter 10 exercise checks pass right answers and catch the usual mistakes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minigpt.course import checks
from minigpt.methods import dpo, ppo_losses


def kl_rewards(logp, ref_logp, score, kl_coef):
    rewards = -kl_coef * (logp - ref_logp)
    rewards[-1] += score
    return rewards


def gae(rewards, values, gamma, lam):
    advantages = torch.zeros_like(values)
    running, next_value = 0.0, 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * running
        advantages[t] = running
        next_value = values[t]
    return advantages


def clipped_loss(ratio, advantage, eps):
    return -torch.min(ratio * advantage, torch.clamp(ratio, 1 - eps, 1 + eps) * advantage)


def dpo_loss(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()


def stub(*_args):
    raise NotImplementedError


def test_right_answers_pass(capsys):
    checks.check_kl_rewards(kl_rewards)
    checks.check_gae(gae)
    checks.check_clipped_loss(clipped_loss)
    checks.check_dpo_loss(dpo_loss)
    assert capsys.readouterr().out.count("passed") == 4


def test_the_package_passes_too():
    """minigpt.methods.ppo's batched functions, on one row, give the same answers."""
    checks.check_kl_rewards(lambda lp, rl, s, c: ppo_losses.kl_penalty_rewards(
        lp[None], rl[None], torch.tensor([s]), torch.ones(1, len(lp), dtype=torch.bool), c)[0][0])
    checks.check_gae(lambda r, v, g, lam: ppo_losses.gae(
        r[None], v[None], torch.ones(1, len(r), dtype=torch.bool), g, lam)[0][0])
    checks.check_dpo_loss(lambda *args: dpo.dpo_loss(*args)[0])


def test_other_right_answers_pass_too():
    """Lists, NumPy, a loop in plain Python floats, a where-based clip: all fine."""
    def gae_floats(rewards, values, gamma, lam):
        r, v = rewards.tolist(), values.tolist()
        out, running = [], 0.0
        for t in reversed(range(len(r))):
            nxt = v[t + 1] if t + 1 < len(v) else 0.0
            running = r[t] + gamma * nxt - v[t] + gamma * lam * running
            out.append(running)
        return np.array(out[::-1])

    def clipped_where(ratio, advantage, eps):
        clipped = torch.where(advantage >= 0, ratio.clamp(max=1 + eps), ratio.clamp(min=1 - eps))
        return -(clipped * advantage)

    checks.check_gae(gae_floats)
    checks.check_clipped_loss(clipped_where)
    checks.check_kl_rewards(lambda lp, rl, s, c: torch.cat(
        [-c * (lp - rl)[:-1], -c * (lp - rl)[-1:] + s]).tolist())


ALL = [checks.check_kl_rewards, checks.check_gae, checks.check_clipped_loss,
       checks.check_dpo_loss]


@pytest.mark.parametrize("check", ALL, ids=lambda c: c.__name__)
def test_stubs_are_not_done_yet_with_a_hint(check):
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        check(stub)


def _score_first(lp, rl, s, c):
    r = -c * (lp - rl)
    r[0] += s
    return r


def _in_place(lp, rl, s, c):
    lp -= rl
    lp *= -c
    lp[-1] += s
    return lp


@pytest.mark.parametrize("wrong, tip", [
    (lambda lp, rl, s, c: c * (lp - rl) + torch.eye(len(lp))[-1] * s, "sign is flipped"),
    (lambda lp, rl, s, c: -c * (lp - rl) + s, "last token only"),
    (_score_first, "not the first"),
    (lambda lp, rl, s, c: -(lp - rl) + torch.eye(len(lp))[-1] * s, "by kl_coef"),
    (lambda lp, rl, s, c: -c * (lp - rl), "Add the score"),
    (_in_place, "changed its input"),
])
def test_kl_rewards_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_kl_rewards(wrong)


def _gae_forwards(rewards, values, gamma, lam):
    out, running = torch.zeros_like(values), 0.0
    for t in range(len(rewards)):
        nxt = values[t + 1] if t + 1 < len(values) else 0.0
        running = rewards[t] + gamma * nxt - values[t] + gamma * lam * running
        out[t] = running
    return out


def _gae_wraps(rewards, values, gamma, lam):
    out, running = torch.zeros_like(values), 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * values[(t + 1) % len(values)] - values[t] + gamma * lam * running
        out[t] = running
    return out


def _gae_lam_only(rewards, values, gamma, lam):
    out, running = torch.zeros_like(values), 0.0
    for t in reversed(range(len(rewards))):
        nxt = values[t + 1] if t + 1 < len(values) else 0.0
        running = rewards[t] + gamma * nxt - values[t] + lam * running
        out[t] = running
    return out


def _deltas(rewards, values, gamma, lam):
    nxt = torch.cat([values[1:], torch.zeros(1)])
    return rewards + gamma * nxt - values


@pytest.mark.parametrize("wrong, tip", [
    (_gae_forwards, "ran forwards"),
    (_gae_wraps, "wrapped around"),
    (lambda r, v, g, lam: gae(r, v, g, lam) + v, "returns"),
    (_deltas, "one-step deltas"),
    (_gae_lam_only, "gamma \\* lam, not lam"),
])
def test_gae_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_gae(wrong)


@pytest.mark.parametrize("wrong, tip", [
    (lambda r, a, e: -clipped_loss(r, a, e), "minus it"),
    (lambda r, a, e: -torch.max(r * a, r.clamp(1 - e, 1 + e) * a), "not the maximum"),
    (lambda r, a, e: -(r.clamp(1 - e, 1 + e) * a), "Clipping alone"),
    (lambda r, a, e: -(r * a), "never clipped"),
    (lambda r, a, e: clipped_loss(r, a, e).mean(), "one loss per token"),
    (lambda r, a, e: torch.tensor(clipped_loss(r, a, e).tolist()), "backward"),
    (lambda r, a, e: torch.tensor(clipped_loss(r, a, e).tolist()) + 0 * r,
     "gradient of the summed loss"),
])
def test_clipped_loss_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_clipped_loss(wrong)


@pytest.mark.parametrize("wrong, tip", [
    (lambda pc, pr, rc, rr, b: F.logsigmoid(b * ((pc - rc) - (pr - rr))).mean(), "minus"),
    (lambda pc, pr, rc, rr, b: dpo_loss(pr, pc, rr, rc, b), "swapped"),
    (lambda pc, pr, rc, rr, b: dpo_loss(pc, pr, rc, rr, 1.0), "by beta"),
    (lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pc - rc) - (pr - rr))).sum(), "don't sum"),
    (lambda pc, pr, rc, rr, b: -F.logsigmoid(b * (pc - pr)).mean(), "Subtract the reference"),
    (lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pc - rc) - (pr - rr))), "one number"),
    (lambda pc, pr, rc, rr, b: -torch.log(torch.sigmoid(b * ((pc - rc) - (pr - rr)))).mean(),
     "F.logsigmoid computes it"),
])
def test_dpo_loss_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_dpo_loss(wrong)
