"""Induction heads: how a Transformer learns to copy from its context, measured as it happens.

Olsson et al. (2022) traced much of in-context learning in Transformers to *induction heads*. At
a token A, such a head looks back for an earlier A and attends to the token that followed it, B,
so the model predicts B again: ``[A][B] ... [A] -> [B]``. One head cannot do it alone. A
*previous-token head* in an earlier layer first writes "the token before me was A" into every
position; the induction head then matches the current token against that (the two heads
*compose*). Olsson et al. saw these heads form abruptly, in a *phase change*, at the same moment
as the model's loss on tokens that can be copied from the context drops.

Chapter 06 measures this on the smallest task that needs it:

- ``RepeatTask``: a random segment of distinct tokens, repeated until the sequence is full,
  with a period drawn anew for every sequence. The first period cannot be predicted; the rest
  can, but only by looking up where the current token occurred before: neither the position
  nor the token says how long the period is.
- ``head_scores``: for every layer and head, the *induction score* (the attention weight that
  the positions of the repeats put on the tokens that followed earlier occurrences of the
  current token: Olsson et al.'s measure on repeated random tokens) and the *previous-token
  score* (the weight every position puts on the one before it).
- ``track``: trains an attention-only ``Transformer`` (``TransformerConfig(mlp=False)``) with the
  course's ``Trainer``, and every ``every`` steps records the loss on the repeats, the loss on
  the first period and every head's two scores, on one held-out batch.

    >>> run = track(RepeatTask(), steps=600, every=10)                 # doctest: +SKIP
    >>> run.formed_at(), run.steepest_rise(), run.steepest_drop()       # doctest: +SKIP

The model starts with unit-scale embeddings (PyTorch's default, ``embed_std=1``) and an output
layer of its own (``tie_head=False``). With GPT-2's 0.02 embeddings and a tied output layer, the
same model found no induction head in 2,000 steps on this task; it lowered the loss more slowly
another way (docs/LOG.md, 2026-12-07 (5)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from minigpt.core.runtime import evaluating, seed_everything
from minigpt.models.transformer import Transformer, TransformerConfig
from minigpt.train.config import TrainConfig
from minigpt.train.trainer import Trainer

__all__ = ["InductionRun", "RepeatBatch", "RepeatTask", "head_scores", "track"]


@dataclass
class RepeatBatch:
    """Inputs ``x`` and targets ``y`` (B, T); ``period`` (B,) each sequence's period;
    ``repeated`` (B, T) marks the positions whose current token occurred before (their targets
    can be copied from the context); ``targets`` (B, T, T) marks, for position ``t``, the
    earlier positions ``j`` whose previous token is ``x[t]``: where an induction head looks."""

    x: Tensor
    y: Tensor
    period: Tensor
    repeated: Tensor
    targets: Tensor


@dataclass(frozen=True)
class RepeatTask:
    """Sequences of ``seq_len + 1`` tokens: ``period`` distinct tokens drawn at random from
    ``vocab_size``, written again and again; the period is drawn from
    ``min_period..max_period`` for each sequence."""

    vocab_size: int = 128
    seq_len: int = 64
    min_period: int = 4
    max_period: int = 20

    def __post_init__(self) -> None:
        if not 2 <= self.min_period <= self.max_period <= min(self.vocab_size, self.seq_len // 2):
            raise ValueError(
                f"periods {self.min_period}..{self.max_period} must lie in 2..{min(self.vocab_size, self.seq_len // 2)}: "
                "at least 2 tokens, each distinct (at most vocab_size), and room for two periods in seq_len")

    def sample(self, n: int, generator: torch.Generator | None = None) -> RepeatBatch:
        """``n`` sequences drawn with ``generator``."""
        periods = torch.randint(self.min_period, self.max_period + 1, (n,), generator=generator)
        seqs = torch.empty(n, self.seq_len + 1, dtype=torch.long)
        for i, period in enumerate(periods.tolist()):
            segment = torch.randperm(self.vocab_size, generator=generator)[:period]  # distinct tokens
            seqs[i] = segment.repeat(self.seq_len // period + 2)[: self.seq_len + 1]
        x, y = seqs[:, :-1], seqs[:, 1:]
        positions = torch.arange(self.seq_len)
        repeated = positions[None, :] >= periods[:, None]  # x[t] occurred at t - period
        before = torch.cat([torch.full((n, 1), -1), x[:, :-1]], dim=1)  # before[j] = x[j - 1]
        causal = torch.ones(self.seq_len, self.seq_len, dtype=torch.bool).tril()
        targets = (before[:, None, :] == x[:, :, None]) & causal  # (B, T, T): x[j - 1] == x[t], j <= t
        return RepeatBatch(x, y, periods, repeated, targets)

    def batches(self, batch_size: int, generator: torch.Generator) -> Callable[[str], tuple[Tensor, Tensor]]:
        """``get_batch(split) -> (x, y)`` for the Trainer: fresh sequences at every call."""

        def get_batch(split: str) -> tuple[Tensor, Tensor]:
            batch = self.sample(batch_size, generator)
            return batch.x, batch.y

        return get_batch


@torch.no_grad()
def head_scores(model: Transformer, batch: RepeatBatch) -> tuple[Tensor, Tensor, float, float]:
    """``(induction, previous, repeat_loss, first_loss)`` of ``model`` on ``batch``: every head's
    induction score and previous-token score (each (n_layer, n_head), between 0 and 1), and
    the mean loss in nats on the repeats and on the first period."""
    with evaluating(model):
        logits, _, weights = model(batch.x, return_weights=True)  # weights (B, n_layer, H, T, T)
    losses = F.cross_entropy(logits.transpose(1, 2), batch.y, reduction="none")  # (B, T)
    on_targets = (weights * batch.targets[:, None, None]).sum(-1)  # (B, n_layer, H, T)
    induction = on_targets.permute(0, 3, 1, 2)[batch.repeated].mean(0)  # (n_layer, H)
    T = batch.x.size(1)
    previous = weights[..., torch.arange(1, T), torch.arange(T - 1)].mean((0, 3))  # (n_layer, H)
    return induction, previous, losses[batch.repeated].mean().item(), losses[~batch.repeated].mean().item()


@dataclass
class InductionRun:
    """What ``track`` recorded, one entry per measurement."""

    step: list[int] = field(default_factory=list)
    repeat_loss: list[float] = field(default_factory=list)
    first_loss: list[float] = field(default_factory=list)
    induction: list[Tensor] = field(default_factory=list)  # each (n_layer, n_head)
    previous: list[Tensor] = field(default_factory=list)

    @property
    def in_context_score(self) -> list[float]:
        """Loss on the first period minus loss on the repeats, in nats per token: what the
        context saves (it rises once the model copies). Olsson et al.'s in-context learning
        score compares early and late tokens the same way."""
        return [f - r for r, f in zip(self.repeat_loss, self.first_loss)]

    def best_induction(self) -> list[float]:
        """The highest induction score of any head, at each measurement."""
        return [scores.max().item() for scores in self.induction]

    def formed_at(self, threshold: float = 0.5) -> int | None:
        """The first measured step at which some head's induction score reached ``threshold``
        (None if none did)."""
        return next((s for s, best in zip(self.step, self.best_induction()) if best >= threshold), None)

    def steepest_drop(self) -> int:
        """The measured step that ends the interval in which the loss on the repeats fell most."""
        return self._steepest([-loss for loss in self.repeat_loss])

    def steepest_rise(self) -> int:
        """The measured step that ends the interval in which the best induction score rose most."""
        return self._steepest(self.best_induction())

    def _steepest(self, values: list[float]) -> int:
        rises = [b - a for a, b in zip(values, values[1:])]
        return self.step[1 + max(range(len(rises)), key=rises.__getitem__)]


def track(task: RepeatTask, steps: int = 600, every: int = 10, *, n_layer: int = 2, n_head: int = 2,
          n_embd: int = 64, lr: float = 3e-3, batch_size: int = 64, seed: int = 0,
          held_out: int = 256) -> tuple[Transformer, InductionRun]:
    """Train an attention-only Transformer on ``task`` for ``steps`` and measure it every
    ``every`` steps (and before the first) on ``held_out`` sequences drawn with another seed.
    ``seed`` (through ``seed_everything``, so ``$MINIGPT_SEED_OFFSET`` moves it) draws the
    weights and the training batches; the held-out sequences stay the same."""
    cfg = TransformerConfig(vocab_size=task.vocab_size, block_size=task.seq_len, n_layer=n_layer,
                            n_head=n_head, n_embd=n_embd, causal=True, positions="learned", mlp=False,
                            tie_head=False, embed_std=1.0)
    used = seed_everything(seed)
    model = Transformer(cfg)
    config = TrainConfig(max_steps=steps, lr=lr, warmup_steps=min(20, steps // 10), weight_decay=0.0,
                         eval_interval=0, progress=False, seed=None, device="cpu")
    trainer = Trainer(model, task.batches(batch_size, torch.Generator().manual_seed(used)), config)
    test = task.sample(held_out, torch.Generator().manual_seed(seed + 10_000))
    run = InductionRun()
    while True:
        induction, previous, repeat_loss, first_loss = head_scores(model, test)
        run.step.append(trainer.step)
        run.repeat_loss.append(repeat_loss)
        run.first_loss.append(first_loss)
        run.induction.append(induction)
        run.previous.append(previous)
        if trainer.step >= steps:
            return model, run
        trainer.fit(min(every, steps - trainer.step))
