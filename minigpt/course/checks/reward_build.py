"""Checks for exercises/09_reward_model.ipynb's build task: one training step of a reward model on
a batch of preference pairs, written by the learner from the pairs to the updated weights.

The step collates each pair's ``prompt + chosen`` and ``prompt + rejected`` (right-padded), scores
every sequence at its last real token, takes the Bradley-Terry loss (Bradley and Terry 1952;
Ouyang et al. 2022, eq. 1) and one optimizer step. The reference is the package's own:
``reward.collate_pairs`` + ``reward.reward_loss``, ``backward`` and ``optimizer.step`` after
``zero_grad``. Both run two steps, on two batches, from the same small float64 reward model
(``gpt_build.make_model`` under a scalar head, every weight moved away from its initial value so
that rewards differ by more than a little) with plain SGD, which moves each weight by exactly
lr x its gradient: the losses and the weights after each step must agree.

A wrong answer is named when one of the usual slips explains both steps: the reward read at the
padded last position, chosen and rejected swapped, sigmoid (or 1 - sigmoid) in place of
log-sigmoid, a sum over the pairs for the mean, gradients left to pile up without ``zero_grad``,
no step taken, and left padding.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.course.checks._base import _number, matching_tip
from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.course.checks.gpt_build import make_model
from minigpt.methods.reward import Pair, RewardModel, collate_pairs, reward_loss

__all__ = ["check_reward_step", "reward_build_batches"]

_SIZES = (12, 16, 1, 2, 16)  # vocab_size, block_size, n_layer, n_head, n_embd
_LR = 0.1
_PAD = 0
_SLIPS = {
    "padded_end": ("You read each reward at the last column, T - 1: in every sequence shorter "
                   "than the batch that is a pad token. Read it at the last real token, position "
                   "length - 1 (pass the lengths to the model)."),
    "flipped": ("Chosen and rejected are swapped: the loss is -log sigmoid(r_chosen - "
                "r_rejected), which falls as the chosen response pulls ahead."),
    "sigmoid": ("That is -sigmoid(margin) without the log: the loss is the negative "
                "log-likelihood, -F.logsigmoid(r_chosen - r_rejected), whose gradient does not "
                "vanish on pairs ranked badly wrong."),
    "one_minus_sigmoid": ("That is 1 - sigmoid(margin), without the log: the loss is the negative "
                          "log-likelihood, -F.logsigmoid(r_chosen - r_rejected)."),
    "sum": ("You summed over the pairs: take the mean, so that the step's size does not grow with "
            "the batch."),
    "no_zero_grad": ("Your first step is right and your second is not: the gradients of the first "
                     "batch were still there and the second backward() added to them. Call "
                     "optimizer.zero_grad() before backward() at every step."),
    "no_step": ("The weights did not move: call optimizer.step() after loss.backward() (and "
                "zero_grad() before backward(), not between it and the step)."),
    "left_pad": ("You padded on the left: the real tokens then attend to the pads and sit at other "
                 "positions, so every reward changes. Pad on the right, after the real tokens."),
}


def reward_build_batches() -> list[list[Pair]]:
    """The check's two batches of pairs (token ids 1 to 11; 0 is the pad). In each, chosen and
    rejected differ in length, and some sequences are shorter than the batch's longest."""
    return [[Pair([3, 5], [7, 7, 2], [4]),
             Pair([9], [1, 2, 3, 4, 5, 6], [6, 6]),
             Pair([2, 8, 8], [10], [11, 3, 1])],
            [Pair([4], [5], [6, 7, 8, 9, 10, 11, 1, 2]),
             Pair([1, 1, 1], [2, 2], [3]),
             Pair([7, 3], [11, 11, 11], [9, 9, 9, 9]),
             Pair([5, 6, 7, 8], [1], [2])]]


def make_reward_model(seed: int = 9) -> RewardModel:
    """A small float64 reward model whose every weight, its head's included, is random."""
    backbone = make_model(_SIZES, seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = RewardModel(backbone).double()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


def _reference_step(model: RewardModel, optimizer: torch.optim.Optimizer, pairs: list[Pair],
                    pad_id: int) -> float:
    """The package's step: ``collate_pairs``, ``reward_loss``, backward, step."""
    batch = collate_pairs(pairs, pad_id, model.block_size)
    optimizer.zero_grad()
    loss = reward_loss(model, batch)
    loss.backward()
    optimizer.step()
    return loss.item()


def slipped_step(model: RewardModel, optimizer: torch.optim.Optimizer, pairs: list[Pair],
                 pad_id: int, slip: str) -> float:
    """A reward step with one of the usual slips (``_SLIPS``)."""
    c_idx, c_len, r_idx, r_len = collate_pairs(pairs, pad_id, model.block_size)
    idx, lengths = torch.cat([c_idx, r_idx]), torch.cat([c_len, r_len])
    if slip == "left_pad":  # each row rolled so that its real tokens end at the last column
        idx = torch.stack([row.roll(idx.size(1) - int(n)) for row, n in zip(idx, lengths)])
        lengths = torch.full_like(lengths, idx.size(1))
    if slip != "no_zero_grad":
        optimizer.zero_grad()
    rewards = model(idx) if slip == "padded_end" else model(idx, lengths)
    B = len(pairs)
    margin = rewards[:B] - rewards[B:]
    if slip == "flipped":
        margin = -margin
    per_pair = {"sigmoid": -torch.sigmoid(margin),
                "one_minus_sigmoid": 1 - torch.sigmoid(margin)}.get(slip, -F.logsigmoid(margin))
    loss = per_pair.sum() if slip == "sum" else per_pair.mean()
    loss.backward()
    if slip != "no_step":
        optimizer.step()
    return loss.item()


def _weights(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _trajectory(step: Callable) -> tuple[list[float | None], list[Tensor]]:
    """The losses ``step`` returns and the weights after each step, over the check's two
    batches, from a fresh model and a fresh SGD optimizer."""
    model = make_reward_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=_LR)
    losses, weights = [], []
    for pairs in reward_build_batches():
        losses.append(_number(step(model, optimizer, pairs, _PAD)))
        weights.append(_weights(model))
    return losses, weights


def _same_loss(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def _same(a: tuple[list, list[Tensor]], b: tuple[list, list[Tensor]]) -> bool:
    return (all(_same_loss(x, y) for x, y in zip(a[0], b[0]))
            and all(torch.allclose(x, y, rtol=0, atol=1e-7) for x, y in zip(a[1], b[1])))


def check_reward_step(reward_step: Callable[[RewardModel, torch.optim.Optimizer, list[Pair], int],
                                            float]) -> None:
    """Task 4: ``reward_step(model, optimizer, pairs, pad_id)`` -> the loss, with the model
    updated as ``reward.collate_pairs`` + ``reward.reward_loss`` + one optimizer step."""
    task = "Task 4 (reward_step)"
    hint = ("sequences = [p.prompt + p.chosen ...] + [p.prompt + p.rejected ...]; right-pad them "
            "with pad_id to the longest, lengths = their real lengths; rewards = model(idx, "
            "lengths) (or the head on model.backbone.features(idx) at lengths - 1); loss = "
            "-F.logsigmoid(r_chosen - r_rejected).mean(); then optimizer.zero_grad(), "
            "loss.backward(), optimizer.step(); return loss.item().")
    want = _trajectory(_reference_step)
    started = _weights(make_reward_model())
    batches = reward_build_batches()

    def learner(model, optimizer, pairs, pad_id):
        copies = [Pair(list(p.prompt), list(p.chosen), list(p.rejected)) for p in pairs]
        try:
            return _call(task, hint, reward_step, model, optimizer, copies, pad_id)
        except (RuntimeError, IndexError, TypeError, ValueError) as e:
            raise AssertionError(f"{task}: on the batch {pairs}, reward_step raised "
                                 f"{type(e).__name__}: {e} Hint: {hint}") from None

    got = _trajectory(learner)
    for k, (pairs, loss, w_got) in enumerate(zip(batches, got[0], got[1])):
        if loss is None or not math.isfinite(loss):
            raise AssertionError(f"{task}: step {k + 1} returned {loss!r}; return the batch's loss, "
                                 f"one number (loss.item()). Hint: {hint}")
        if _same_loss(loss, want[0][k]) and torch.allclose(w_got, want[1][k], rtol=0, atol=1e-7):
            continue
        tip = matching_tip([((), got)], [(message, (lambda s=slip: _trajectory(
            lambda *a: slipped_step(*a, s)))) for slip, message in _SLIPS.items()], _same)
        if not tip and torch.equal(w_got, started if k == 0 else got[1][k - 1]):
            tip = " " + _SLIPS["no_step"]
        moved = (w_got - want[1][k]).abs().max().item()
        raise AssertionError(
            f"{task}: at step {k + 1} (a batch of {len(pairs)} pairs) the package's loss is "
            f"{want[0][k]:.6f} and yours {loss:.6f}; after the step your weights differ from the "
            f"package's by up to {moved:.3g}.{tip} Hint: {hint}")
    losses = ", ".join(f"{v:.4f}" for v in want[0])
    _passed(task, f"two SGD steps on a small reward model: the same losses ({losses}) and the "
                  "same weights after each step as reward.collate_pairs + reward.reward_loss")
