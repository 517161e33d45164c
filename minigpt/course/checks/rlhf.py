"""Checks for exercises/10_rlhf.ipynb: the KL-penalised reward, GAE, PPO's clipped objective
and DPO's loss, each on a few numbers.

Every expected value here is written out by hand (worked in the comments), not computed by a
copy of the solution, and the first case of each task also knows the answers of the usual
slips (a flipped sign, the score on every token, a loop run forwards, chosen and rejected
swapped, ...), so a wrong answer comes back with a tip. The package's batched versions live in
``minigpt.methods.ppo``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed

__all__ = ["check_clipped_loss", "check_dpo_loss", "check_gae", "check_kl_rewards"]

_TOL = 1e-4


def _floats(x) -> list[float] | None:
    """``x`` (a tensor, array, list or number) as a flat list of floats, or None."""
    try:
        t = torch.as_tensor(x.detach() if isinstance(x, torch.Tensor) else x, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None
    return t.reshape(-1).tolist()


def _close(got: list[float] | None, want: list[float], tol: float = _TOL) -> bool:
    return got is not None and len(got) == len(want) and all(
        abs(g - w) <= tol * max(1.0, abs(w)) for g, w in zip(got, want))


def _shown(values: list[float] | None, got) -> str:
    if values is None:
        return repr(got)
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def _tip(got: list[float] | None, tips: list[tuple[list[float], str]]) -> str:
    for wrong, tip in tips:
        if _close(got, wrong):
            return " " + tip
    return ""


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ---- task 1 ---------------------------------------------------------------------------------


def check_kl_rewards(kl_rewards: Callable) -> None:
    """Task: ``kl_rewards(logp, ref_logp, score, kl_coef)``: one response's per-token rewards."""
    task = "Task 1 (kl_rewards)"
    hint = ("every token pays -kl_coef * (logp - ref_logp), its share of the KL penalty; the "
            "score is added to the last token only (rewards[-1] += score). Work on a new tensor, "
            "not on logp itself.")
    # (logp, ref_logp, score, kl_coef, expected, tips for the usual slips)
    cases = [
        # logp - ref = [0.5, 0, -1]: rewards = -0.1 x that, plus 2 at the end
        ((-1.0, -0.5, -2.0), (-1.5, -0.5, -1.0), 2.0, 0.1, [-0.05, 0.0, 2.1], [
            ([0.05, 0.0, 1.9], ("The sign is flipped: the policy pays for log-probability "
                                "*above* the reference's, so the penalty is -kl_coef * (logp - "
                                "ref_logp).")),
            ([1.95, 2.0, 2.1], "The score belongs to the last token only, not to every token."),
            ([1.95, 0.0, 0.1], ("The score goes on the last token (the response is only "
                                "finished, and graded, there), not the first.")),
            ([-0.5, 0.0, 3.0], "Multiply the log-ratio by kl_coef."),
            ([-0.05, 0.0, 0.1], "Add the score to the last token's reward."),
        ]),
        # policy == reference: no penalty, only the score
        ((-0.3, -1.2), (-0.3, -1.2), -1.0, 0.5, [0.0, -1.0], []),
        # one token: -0.2 x (-2 - -1) + 0.5 = 0.2 + 0.5
        ((-2.0,), (-1.0,), 0.5, 0.2, [0.7], []),
        # logp - ref = [0.7, -0.1, 0, 2]: x -0.05 = [-0.035, 0.005, 0, -0.1], plus 1 at the end
        ((-0.2, -0.7, -1.1, -0.4), (-0.9, -0.6, -1.1, -2.4), 1.0, 0.05,
         [-0.035, 0.005, 0.0, 0.9], []),
    ]
    for logp, ref, score, kl_coef, want, tips in cases:
        logp_in, ref_in = _t(*logp), _t(*ref)
        got = _call(task, hint, kl_rewards, logp_in, ref_in, score, kl_coef)
        if not (torch.equal(logp_in, _t(*logp)) and torch.equal(ref_in, _t(*ref))):
            raise AssertionError(f"{task}: your function changed its input logp or ref_logp. "
                                 "Compute the rewards in a new tensor (e.g. rewards = -kl_coef * "
                                 f"(logp - ref_logp), then rewards[-1] += score). Hint: {hint}")
        values = _floats(got)
        if not _close(values, want):
            raise AssertionError(
                f"{task}: kl_rewards(logp={list(logp)}, ref_logp={list(ref)}, score={score}, "
                f"kl_coef={kl_coef}) returned {_shown(values, got)}, expected {want}."
                f"{_tip(values, tips)} Hint: {hint}")
    _passed(task, "each token pays kl_coef x (logp - ref_logp); the score arrives with the last "
                  "token, so the rewards add up to score - kl_coef x (the sampled KL)")


# ---- task 2 ---------------------------------------------------------------------------------


def check_gae(gae: Callable) -> None:
    """Task: ``gae(rewards, values, gamma, lam)``: one episode's advantages."""
    task = "Task 2 (gae)"
    hint = ("loop backwards, t = T-1 down to 0, keeping the running advantage: delta = "
            "rewards[t] + gamma * next_value - values[t] with next_value = values[t+1], or 0 "
            "after the last token; then A[t] = delta + gamma * lam * A[t+1] (0 after the last).")
    rewards, values = (0.0, 0.0, 1.0), (0.5, 0.6, 0.7)
    # deltas: 0 + 0.6 - 0.5 = 0.1, 0 + 0.7 - 0.6 = 0.1, 1 + 0 - 0.7 = 0.3
    cases = [
        # lam 0.95: 0.3; 0.1 + 0.95 x 0.3 = 0.385; 0.1 + 0.95 x 0.385 = 0.46575
        (rewards, values, 1.0, 0.95, [0.46575, 0.385, 0.3], [
            ([0.1, 0.195, 0.48525], ("That loop ran forwards: each advantage must include "
                                     "the deltas *after* its token, so loop from the last "
                                     "token back.")),
            ([0.917, 0.86, 0.8], ("The value after the last token is 0 (the episode is over): "
                                  "values[t + 1] wrapped around to values[0].")),
            ([0.96575, 0.985, 1.0], ("Those are the returns (advantages + values): return the "
                                     "advantages.")),
            ([0.1, 0.1, 0.3], "Those are the one-step deltas: add gamma * lam * A[t+1]."),
        ]),
        # lam 1: the return (1 at every step, gamma 1) minus the value
        (rewards, values, 1.0, 1.0, [0.5, 0.4, 0.3], []),
        # lam 0: just the deltas
        (rewards, values, 1.0, 0.0, [0.1, 0.1, 0.3], []),
        # gamma 0.9, lam 1: returns 0.81, 0.9, 1 minus the values
        (rewards, values, 0.9, 1.0, [0.31, 0.3, 0.3], [
            ([0.37, 0.33, 0.3], ("The running advantage is multiplied by gamma * lam, not lam "
                                 "alone (the delta already discounts one step).")),
        ]),
        # deltas 0.1 + 0.09 - 0.2 = -0.01, -0.2 - 0.27 - 0.1 = -0.57, 0.36 + 0.3 = 0.66,
        # 1.5 - 0.4 = 1.1; gamma lam = 0.72: 1.1; 0.66 + 0.792; -0.57 + 1.04544; -0.01 + 0.34232
        ((0.1, -0.2, 0.0, 1.5), (0.2, 0.1, -0.3, 0.4), 0.9, 0.8,
         [0.3323168, 0.47544, 1.452, 1.1], []),
        ((2.0,), (0.5,), 1.0, 0.95, [1.5], []),
    ]
    for r, v, gamma, lam, want, tips in cases:
        r_in, v_in = _t(*r), _t(*v)
        got = _call(task, hint, gae, r_in, v_in, gamma, lam)
        if not (torch.equal(r_in, _t(*r)) and torch.equal(v_in, _t(*v))):
            raise AssertionError(f"{task}: your function changed its input rewards or values: "
                                 f"write the advantages into a new tensor. Hint: {hint}")
        got_values = _floats(got)
        if not _close(got_values, want):
            raise AssertionError(
                f"{task}: gae(rewards={list(r)}, values={list(v)}, gamma={gamma}, lam={lam}) "
                f"returned {_shown(got_values, got)}, expected {want}.{_tip(got_values, tips)} "
                f"Hint: {hint}")
    _passed(task, "lam = 1 gives the return minus the value, lam = 0 the one-step TD error, "
                  "and 0.95 sits between: [0.46575, 0.385, 0.3]")


# ---- task 3 ---------------------------------------------------------------------------------


def check_clipped_loss(clipped_loss: Callable) -> None:
    """Task: ``clipped_loss(ratio, advantage, eps)``: PPO's per-token loss."""
    task = "Task 3 (clipped_loss)"
    hint = ("loss = -torch.min(ratio * advantage, torch.clamp(ratio, 1 - eps, 1 + eps) * "
            "advantage), element by element, with torch operations (so gradients flow).")
    # eps 0.2:  r 1.0 A 2: -2 | r 1.5 A 1: clip 1.2 -> -1.2 | r 1.5 A -1: min(-1.5, -1.2) -> 1.5
    #           r 0.5 A 1: min(0.5, 0.8) -> -0.5 | r 0.5 A -1: min(-0.5, -0.8) -> 0.8
    #           r 1.1 A -3: inside the clip -> 3.3
    ratio, adv = (1.0, 1.5, 1.5, 0.5, 0.5, 1.1), (2.0, 1.0, -1.0, 1.0, -1.0, -3.0)
    cases = [
        (ratio, adv, 0.2, [-2.0, -1.2, 1.5, -0.5, 0.8, 3.3], [
            ([2.0, 1.2, -1.5, 0.5, -0.8, -3.3], ("That is the objective, to maximise: the loss "
                                                 "that an optimizer minimises is minus it.")),
            ([-2.0, -1.5, 1.2, -0.8, 0.5, 3.3], ("Take the minimum of the two objectives (the "
                                                 "pessimistic one), not the maximum.")),
            ([-2.0, -1.2, 1.2, -0.8, 0.8, 3.3], ("Clipping alone is not enough: the min with the "
                                                 "unclipped term keeps a bad move fully "
                                                 "penalised (ratio 1.5 with advantage -1 "
                                                 "costs 1.5).")),
            ([-2.0, -1.5, 1.5, -0.5, 0.5, 3.3], ("The ratio was never clipped: clamp it to "
                                                 "[1 - eps, 1 + eps] in the second term.")),
            ([0.31666667], ("Return one loss per token (the same shape as ratio); the mean "
                            "comes later, over the response mask.")),
        ]),
        # eps 0.1: r 1.05 A 1 -> -1.05 | r 1.3 A 2: clip 1.1 -> -2.2 | r 0.7 A -0.5: clip 0.9,
        # min(-0.35, -0.45) -> 0.45
        ((1.05, 1.3, 0.7), (1.0, 2.0, -0.5), 0.1, [-1.05, -2.2, 0.45], []),
    ]
    for r, a, eps, want, tips in cases:
        got = _call(task, hint, clipped_loss, _t(*r), _t(*a), eps)
        values = _floats(got)
        if not _close(values, want):
            raise AssertionError(
                f"{task}: clipped_loss(ratio={list(r)}, advantage={list(a)}, eps={eps}) returned "
                f"{_shown(values, got)}, expected {want}.{_tip(values, tips)} Hint: {hint}")
    # Gradients: the clipped tokens (1 and 4) get none; the others get -advantage.
    ratio_in = _t(*ratio).requires_grad_(True)
    got = _call(task, hint, clipped_loss, ratio_in, _t(*adv), 0.2)
    if not (isinstance(got, torch.Tensor) and got.requires_grad):
        raise AssertionError(f"{task}: the loss must be a tensor computed from ratio with torch "
                             "operations, so that backward() reaches the policy (no .item(), "
                             f"floats or NumPy inside). Hint: {hint}")
    got.sum().backward()
    want_grad = [-2.0, 0.0, 1.0, -1.0, 0.0, 3.0]
    grad = _floats(ratio_in.grad) if ratio_in.grad is not None else None
    if not _close(grad, want_grad):
        raise AssertionError(f"{task}: the gradient of the summed loss with respect to the ratios "
                             f"is {_shown(grad, ratio_in.grad)}, expected {want_grad}: a token "
                             "whose ratio is clipped must get no gradient, the others "
                             f"-advantage. Hint: {hint}")
    _passed(task, "past 1 +- eps a token gains nothing more (zero gradient), but a move the "
                  "advantage disapproves of is never clipped away")


# ---- task 4 ---------------------------------------------------------------------------------


def check_dpo_loss(dpo_loss: Callable) -> None:
    """Task: ``dpo_loss(pc, pr, rc, rr, beta)``: DPO's mean loss over a batch of pairs."""
    task = "Task 4 (dpo_loss)"
    hint = ("margin = beta * ((pc - rc) - (pr - rr)); loss = -F.logsigmoid(margin).mean(). "
            "F.logsigmoid stays finite where torch.log(torch.sigmoid(x)) underflows to log(0).")
    cases = [
        # margin 0.1 x ((-1 + 1.5) - (-2 + 1.5)) = 0.1; -log sigmoid(0.1) = log(1 + e^-0.1)
        ((-1.0,), (-2.0,), (-1.5,), (-1.5,), 0.1, 0.6443966600735709, [
            ([-0.6443966600735709], ("The loss is *minus* log sigmoid(margin): it falls as "
                                     "the margin grows.")),
            ([0.744396660073571], ("Chosen and rejected are swapped: the margin is (chosen "
                                   "log-ratio) - (rejected log-ratio).")),
            ([0.31326168751822286], "Multiply the margin by beta."),
        ]),
        # the policy is the reference: margin 0, loss log 2
        ((-3.0,), (-4.0,), (-3.0,), (-4.0,), 0.1, 0.6931471805599453, [
            ([0.6443966600735709], ("Subtract the reference's log-probs: the policy is still "
                                    "the reference here, so every implicit reward is 0 and the "
                                    "loss is log 2.")),
        ]),
        # margins 0.5 x (0 - (-1)) = 0.5 and 0.5 x (-1 - 1) = -1:
        # log(1 + e^-0.5) = 0.474077, log(1 + e^1) = 1.313262, mean 0.893669
        ((-3.0, -5.0), (-4.0, -2.0), (-3.0, -4.0), (-3.0, -3.0), 0.5, 0.8936693358491647, [
            ([1.7873386716983295], "Average over the pairs (.mean()), don't sum."),
            ([1.0877451310814297], ("Subtract the reference's log-probs: the implicit reward is "
                                    "beta * (log pi - log pi_ref).")),
        ]),
        # margin -200: log(1 + e^200) = 200 (to 1e-87)
        ((0.0,), (0.0,), (0.0,), (-200.0,), 1.0, 200.0, []),
    ]
    for pc, pr, rc, rr, beta, want, tips in cases:
        got = _call(task, hint, dpo_loss, _t(*pc), _t(*pr), _t(*rc), _t(*rr), beta)
        values = _floats(got)
        if not _close(values, [want]):
            tip = _tip(values, tips)
            if not tip and values is not None and len(values) != 1:
                tip = " Return one number, the mean over the batch."
            if not tip and values is not None and not all(map(math.isfinite, values)):
                tip = (" The loss is not finite: log(sigmoid(-200)) is log(0) in float32; "
                       "F.logsigmoid computes it without the underflow.")
            raise AssertionError(
                f"{task}: dpo_loss(pc={list(pc)}, pr={list(pr)}, rc={list(rc)}, rr={list(rr)}, "
                f"beta={beta}) returned {_shown(values, got)}, expected {want:.6g}.{tip} "
                f"Hint: {hint}")
    _passed(task, "log 2 where the policy is still the reference, 0.6444 for a margin of 0.1, "
                  "and finite even at a margin of -200")
