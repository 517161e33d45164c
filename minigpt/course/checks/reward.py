"""Checks for exercises/09_reward_model.ipynb: the Bradley-Terry loss, reading a reward at the
last real token, pairwise accuracy, and the ceiling that label noise puts on it.

The references are the package's own (``reward.bradley_terry_loss``, ``reward.RewardModel``,
``reward.noise_ceiling``), a plain loop over the rows, and a simulation with a fixed seed.
Inputs catch the usual slips: a sum for a mean, chosen and rejected swapped, ``log(sigmoid(x))``
that overflows at large margins, a float that has lost its gradient, reading the reward one
position too far or at the padded end, ties counted as wins, and a percentage for a fraction.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.methods.reward import RewardModel, bradley_terry_loss, noise_ceiling
from minigpt.models.gpt import GPT, GPTConfig

__all__ = ["check_bt_loss", "check_expected_ceiling", "check_last_token_rewards",
           "check_pairwise_accuracy"]


def _number(x) -> float | None:
    """``x`` as a float if it is one number (int, float, NumPy or a one-element tensor)."""
    if isinstance(x, Tensor):
        x = x.detach()
    try:
        value = float(x)
    except (TypeError, ValueError, RuntimeError):
        return None
    return value


def _close(a: float | None, b: float, tol: float = 1e-5) -> bool:
    return a is not None and math.isfinite(a) and math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def _rounded(t: Tensor) -> list[float]:
    return [round(v, 4) for v in t.detach().float().flatten().tolist()]


def _shape(value) -> str:
    return str(tuple(value.shape)) if isinstance(value, Tensor) else type(value).__name__


# ---- task 1 ---------------------------------------------------------------------------------


def check_bt_loss(bt_loss: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Task: ``bt_loss(r_chosen, r_rejected)`` = mean of -log sigmoid(r_chosen - r_rejected)."""
    task = "Task 1 (bt_loss)"
    hint = ("P(chosen > rejected) = sigmoid(r_chosen - r_rejected); the loss is its negative "
            "log, averaged over the pairs: -F.logsigmoid(r_chosen - r_rejected).mean(). "
            "F.logsigmoid stays finite where torch.log(torch.sigmoid(x)) becomes log(0).")
    cases = [([1.0, 0.0], [0.0, 0.0]),  # the hand value: (0.3133 + 0.6931) / 2 = 0.5032
             ([2.0, -1.0, 0.5], [0.0, 1.0, 0.5]),
             ([0.3], [-0.2])]
    for chosen, rejected in cases:
        r_c, r_r = torch.tensor(chosen), torch.tensor(rejected)
        want = bradley_terry_loss(r_c, r_r).item()
        got = _call(task, hint, bt_loss, r_c.clone(), r_r.clone())
        if isinstance(got, Tensor) and got.numel() > 1:
            raise AssertionError(f"{task}: bt_loss({chosen}, {rejected}) returned shape "
                                 f"{_shape(got)}: one loss per pair. Reduce it to one number, "
                                 f"their mean. Hint: {hint}")
        g = _number(got)
        if not _close(g, want):
            tip = ""
            d = r_c - r_r
            if g is not None and len(chosen) > 1 and _close(g, want * len(chosen)):
                tip = " That is the sum over the pairs: take the mean."
            elif _close(g, (-F.logsigmoid(-d)).mean().item()):
                tip = (" Chosen and rejected are swapped: the loss must fall as r_chosen pulls "
                       "ahead, so use r_chosen - r_rejected.")
            elif _close(g, -want):
                tip = " The sign: the loss is MINUS the log-probability (it must be >= 0)."
            elif _close(g, (-torch.sigmoid(d).log10()).mean().item()):
                tip = " Use the natural logarithm, not log10."
            raise AssertionError(f"{task}: bt_loss({chosen}, {rejected}) returned {got!r}, "
                                 f"expected {want:.6f}.{tip} Hint: {hint}")

    # Large margins: sigmoid(-1000) is 0 in float32, so log(sigmoid(...)) is -inf.
    chosen, rejected = [1000.0, -1000.0, 0.0], [0.0, 0.0, 0.0]
    r_c = torch.tensor(chosen, requires_grad=True)
    want = bradley_terry_loss(r_c.detach(), torch.tensor(rejected)).item()  # (0 + 1000 + log 2) / 3
    got = _call(task, hint, bt_loss, r_c, torch.tensor(rejected))
    g = _number(got)
    if g is None or not math.isfinite(g) or not _close(g, want):
        raise AssertionError(
            f"{task}: bt_loss({chosen}, {rejected}) returned {got!r}, expected {want:.4f}. With "
            "a margin of -1000, sigmoid(-1000) rounds to 0 and log(0) is -inf (and exp(1000) "
            "overflows in log(1 + exp(-x))). F.logsigmoid(x) (or -F.softplus(-x)) computes the "
            f"same value without that step. Hint: {hint}")
    if not isinstance(got, Tensor) or got.grad_fn is None:
        raise AssertionError(f"{task}: bt_loss returned {type(got).__name__} without a gradient. "
                             "Training needs to backpropagate through the loss: return the "
                             "tensor itself (no .item(), float() or torch.no_grad()). "
                             f"Hint: {hint}")
    got.backward()
    want_grad = torch.tensor([0.0, -1.0, -0.5]) / 3  # -(1 - sigmoid(d)) / n
    if r_c.grad is None or not torch.allclose(r_c.grad, want_grad, atol=1e-5):
        raise AssertionError(f"{task}: the gradient of your loss with respect to r_chosen "
                             f"{chosen} is {r_c.grad}, expected {want_grad.tolist()}. "
                             f"Hint: {hint}")

    # The mean: any batch size, equal to the mean of the pairs' losses one at a time.
    gen = torch.Generator().manual_seed(0)
    for n in (5, 64):
        r_c, r_r = torch.randn(n, generator=gen) * 3, torch.randn(n, generator=gen) * 3
        want = bradley_terry_loss(r_c, r_r).item()
        g = _number(_call(task, hint, bt_loss, r_c.clone(), r_r.clone()))
        if not _close(g, want):
            tip = " That is the sum over the pairs: take the mean." if _close(g, n * want) else ""
            raise AssertionError(f"{task}: on {n} random pairs your loss is {g}, the mean of "
                                 f"the pairs' losses is {want:.6f}.{tip} Hint: {hint}")
    _passed(task, "a margin of 0 costs log 2 = 0.693 nats; a margin of +1 costs 0.313, -1 costs "
                  "1.313; margins of +-1000 stay finite")


# ---- task 2 ---------------------------------------------------------------------------------


def _loop_rewards(hidden: Tensor, lengths: Tensor, head: nn.Linear) -> Tensor:
    """The reference: one row at a time, the head on the hidden state at lengths[b] - 1."""
    return torch.stack([head(hidden[b, int(lengths[b]) - 1]).squeeze(-1)
                        for b in range(hidden.size(0))])


def check_last_token_rewards(last_token_rewards: Callable[[Tensor, Tensor, nn.Linear], Tensor]
                             ) -> None:
    """Task: ``last_token_rewards(hidden (B, T, C), lengths (B,), head)`` -> rewards (B,)."""
    task = "Task 2 (last_token_rewards)"
    hint = ("row b's last real token sits at position lengths[b] - 1: pick those hidden states "
            "with hidden[torch.arange(B), lengths - 1] (B, C) (or torch.gather), apply the head "
            "(B, 1) and .squeeze(-1) to get (B,).")
    gen = torch.Generator().manual_seed(0)
    B, T, C = 4, 6, 8
    hidden = torch.randn(B, T, C, generator=gen)
    torch.manual_seed(0)
    head = nn.Linear(C, 1)
    for lengths in ([3, 1, 5, 2], [6, 1, 4, 6]):  # the first has no row of full length
        lens = torch.tensor(lengths)
        with torch.no_grad():
            want = _loop_rewards(hidden, lens, head)
        got = _call(task, hint, last_token_rewards, hidden.clone(), lens.clone(), head)
        ok = isinstance(got, Tensor) and got.shape == want.shape and \
            torch.allclose(got.detach().float(), want, atol=1e-5)
        if not ok:
            tip = ""
            if isinstance(got, Tensor) and got.shape == (B, 1):
                tip = " One reward per row: shape (B,), not (B, 1). Add .squeeze(-1)."
            elif isinstance(got, Tensor) and got.shape == want.shape:
                with torch.no_grad():
                    g = got.detach().float()
                    if max(lengths) < T and torch.allclose(g, _loop_rewards(hidden, lens + 1, head),
                                                           atol=1e-5):
                        tip = (" You read position lengths, one past the end: a row of 3 real "
                               "tokens holds them at positions 0, 1, 2.")
                    elif torch.allclose(g, head(hidden[:, -1]).squeeze(-1), atol=1e-5):
                        tip = (" You read the last position, T - 1: in a shorter row that is a "
                               "pad token, not the end of the text.")
                    elif torch.allclose(g, head(hidden[:, 0]).squeeze(-1), atol=1e-5):
                        tip = (" You read the first position: in a causal model it has seen only "
                               "the first token. Read the last real one.")
            shown = _rounded(got) if isinstance(got, Tensor) else repr(got)
            raise AssertionError(f"{task}: with lengths {lengths} you returned {_shape(got)} "
                                 f"{shown}, expected {_rounded(want)} (B,).{tip} Hint: {hint}")
        if not got.requires_grad:
            raise AssertionError(f"{task}: the rewards carry no gradient, so the head and the "
                                 "model could not learn from them: no .item(), .detach() or "
                                 f"torch.no_grad(). Hint: {hint}")

    # The same as minigpt's reward model, on a real GPT's features.
    torch.manual_seed(1)
    rm = RewardModel(GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=16)))
    rm.eval()
    idx = torch.tensor([[5, 6, 7, 0, 0], [1, 2, 3, 4, 5], [9, 0, 0, 0, 0]])
    lens = torch.tensor([3, 5, 1])
    with torch.no_grad():
        hidden = rm.backbone.features(idx)
        got = _call(task, hint, last_token_rewards, hidden, lens.clone(), rm.head)
        want = rm(idx, lens)
    if not (isinstance(got, Tensor) and got.shape == want.shape
            and torch.allclose(got.float(), want, atol=1e-5)):
        shown = _rounded(got) if isinstance(got, Tensor) else repr(got)
        raise AssertionError(f"{task}: on a GPT's features your rewards are {shown}, "
                             f"minigpt.methods.reward.RewardModel gives {_rounded(want)}. Hint: {hint}")
    _passed(task, "your rewards equal a row-by-row loop and minigpt.methods.reward.RewardModel")


# ---- task 3 ---------------------------------------------------------------------------------


def check_pairwise_accuracy(pairwise_accuracy: Callable[[Tensor, Tensor], float]) -> None:
    """Task: ``pairwise_accuracy(r_chosen, r_rejected)`` = share of pairs with r_c > r_r."""
    task = "Task 3 (pairwise_accuracy)"
    hint = ("(r_chosen > r_rejected) is True where the model agrees with the label; its mean "
            "(.float().mean().item()) is the share of such pairs. A tie is not a win.")
    cases = [([2.0, 0.5, 1.0, -1.0, 3.0], [1.0, 0.5, 2.0, -2.0, 3.0], 0.4),  # two ties
             ([1.0, 1.0], [0.0, 1.0], 0.5),
             ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], 0.0)]  # a constant reward: no skill at all
    gen = torch.Generator().manual_seed(0)
    r_c, r_r = torch.randn(1000, generator=gen), torch.randn(1000, generator=gen)
    cases.append((r_c.tolist(), r_r.tolist(), (r_c > r_r).float().mean().item()))
    for chosen, rejected, want in cases:
        c, r = torch.tensor(chosen), torch.tensor(rejected)
        got = _call(task, hint, pairwise_accuracy, c.clone(), r.clone())
        g = _number(got)
        if not _close(g, want):
            tip = ""
            if _close(g, (c >= r).float().mean().item()):
                tip = (" Ties count as wins here: use >, not >=. A model that gives every "
                       "response the same reward has learned nothing and must score 0.")
            elif _close(g, 100 * want):
                tip = " Return a fraction (0.4), not a percentage (40)."
            elif _close(g, want * len(chosen)):
                tip = " That is the number of pairs right: divide by the number of pairs."
            elif _close(g, (c < r).float().mean().item()):
                tip = " The wrong way round: the chosen reward must be the higher one."
            shown = f"{len(chosen)} random pairs" if len(chosen) > 10 else f"{chosen} vs {rejected}"
            raise AssertionError(f"{task}: on {shown} you returned {got!r}, expected "
                                 f"{want:.4g}.{tip} Hint: {hint}")
    _passed(task, "2 strict wins out of 5 pairs (with two ties) is 0.4")


def _simulated_ceiling(flip_prob: float, n: int = 200_000, seed: int = 0) -> float:
    """A perfect model's accuracy against labels flipped at random: true rewards for two
    responses per pair, the label names the better one unless flipped, the model always
    prefers the truly better one."""
    rng = np.random.default_rng(seed)
    r_a, r_b = rng.standard_normal(n), rng.standard_normal(n)
    truth = r_a > r_b  # True: a is better
    flipped = rng.random(n) < flip_prob
    label = truth ^ flipped  # what the labeller said
    model = r_a > r_b  # a perfect model knows the true rewards
    return float((model == label).mean())


def check_expected_ceiling(expected_ceiling: Callable[[float], float]) -> None:
    """Task: ``expected_ceiling(p)`` = the best accuracy against labels flipped with prob. p."""
    task = "Task 3 (expected_ceiling)"
    hint = ("a perfect model agrees with the true preference on every pair; the label agrees "
            "with the true preference unless it was flipped. How often is it not flipped?")
    for p in (0.2, 0.1, 0.0, 0.35, 0.5):
        simulated = _simulated_ceiling(p)
        assert abs(simulated - noise_ceiling(p)) < 0.005  # the simulation agrees with the reason
        got = _call(task, hint, expected_ceiling, p)
        g = _number(got)
        if g is None or not abs(g - simulated) < 0.01:
            tip = ""
            if p > 0 and _close(g, p):
                tip = " That is the share of flipped labels: the model agrees with the others."
            elif p > 0 and _close(g, 1.0):
                tip = (" No model reaches 1: the flips are random, so nothing the model reads "
                       "predicts them.")
            elif p > 0 and _close(g, 1 - 2 * p):
                tip = " Each flipped label costs one pair, not two."
            elif g is not None and abs(g / 100 - simulated) < 0.01:
                tip = " Return a fraction (0.8), not a percentage (80)."
            raise AssertionError(f"{task}: expected_ceiling({p}) returned {got!r}; a simulated "
                                 f"perfect model scores {simulated:.4f} against labels flipped "
                                 f"with probability {p}.{tip} Hint: {hint}")
    _passed(task, "with 20% of labels flipped a perfect model scores 0.80 (simulated: "
                  f"{_simulated_ceiling(0.2):.4f}); at 50% the labels are coin flips and "
                  "nothing beats 0.5")
