"""Synthetic probes: tasks whose answer sits a known distance back, to measure memory.

A language model's loss on real text mixes short- and long-range dependencies, so it cannot
say how far back a model can look. A probe can: it puts the one thing the model must know a
chosen number of steps ``k`` before the question, and measures accuracy against ``k``.

``RecallProbe`` is a "remember the marked symbol" task. Each sequence is random symbols with
one marker ``[`` in it; the symbol right after the marker is the value. The sequence ends with
a question mark ``?``, and the answer is the value, which sits ``k`` steps before the ``?``:

    noise ... noise  [  v  noise ... noise  ?   -> answer: v
                        ^--------- k --------^

The noise uses the same symbols as the value, so the model can't find the answer by looking
for an unusual token: it must have noticed the marker and kept what followed for ``k`` steps.
Guessing gives ``1 / n_symbols``.

    >>> from minigpt.methods import probes
    >>> probe = probes.RecallProbe(n_symbols=8, max_distance=32)
    >>> get_batch = probe.batches(batch_size=64, generator=torch.Generator().manual_seed(0))  # doctest: +SKIP
    >>> Trainer(model, get_batch, config, loss_fn=probes.answer_loss).fit()     # doctest: +SKIP
    >>> probes.accuracy_by_distance(model, probe)          # {1: 1.0, 2: 1.0, ..., 32: 0.13}  # doctest: +SKIP

The probe is model-agnostic: any model whose ``model(x)`` returns ``(logits, ...)`` with
logits of shape (B, T, vocab_size) works (the course's RNNs, its Transformers and GPT); only
the prediction at the last position counts. Chapter 03 runs it on RNNs, chapter 04 on a
Transformer.

Deliberately left out: other probe families (bracket matching, copying, induction heads) and
variable-length sequences; all sequences of a probe have one length, so they batch as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.core.runtime import evaluating

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["RecallProbe", "accuracy_by_distance", "answer_loss", "plot_accuracy", "predict"]


@dataclass(frozen=True)
class RecallProbe:
    """Recall the symbol after the marker, ``k`` steps back, for ``k`` in 1 .. max_distance.

    Token ids: the symbols are ``0 .. n_symbols - 1``, the marker is ``n_symbols`` and the
    question mark ``n_symbols + 1``. Every sequence has ``seq_len = max_distance + 2`` tokens
    and ends with the question mark, so the marker and value of the farthest case fit at its
    start.
    """

    n_symbols: int = 8
    max_distance: int = 32

    def __post_init__(self) -> None:
        if self.n_symbols < 2:
            raise ValueError(f"n_symbols must be >= 2 (one symbol leaves nothing to recall), got {self.n_symbols}")
        if self.max_distance < 1:
            raise ValueError(f"max_distance must be >= 1, got {self.max_distance}")

    @property
    def vocab_size(self) -> int:
        """Symbols, the marker and the question mark: build models with this many tokens."""
        return self.n_symbols + 2

    @property
    def mark(self) -> int:
        return self.n_symbols

    @property
    def ask(self) -> int:
        return self.n_symbols + 1

    @property
    def seq_len(self) -> int:
        return self.max_distance + 2

    @property
    def chance(self) -> float:
        """The accuracy of guessing."""
        return 1 / self.n_symbols

    def sample(self, batch_size: int, distance: int | Tensor | None = None,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``batch_size`` sequences: ``x`` (B, seq_len), ``answer`` (B,) and ``distance`` (B,).

        ``distance`` is one k for every sequence, a tensor of one k per sequence, or None for
        k drawn uniformly from 1 .. max_distance. Draws come from ``generator`` if given,
        else from torch's global generator.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        B, T = batch_size, self.seq_len
        if distance is None:
            k = torch.randint(1, self.max_distance + 1, (B,), generator=generator)
        else:
            k = torch.as_tensor(distance, dtype=torch.long).expand(B).clone()
            if k.min() < 1 or k.max() > self.max_distance:
                raise ValueError(f"distance must be between 1 and max_distance={self.max_distance}, "
                                 f"got {k.min().item()} .. {k.max().item()}: build a RecallProbe "
                                 "with a larger max_distance to probe farther")
        x = torch.randint(0, self.n_symbols, (B, T), generator=generator)  # noise everywhere
        rows = torch.arange(B)
        answer = x[rows, T - 1 - k].clone()  # the value, k steps before the question
        x[rows, T - 2 - k] = self.mark  # the marker just before it
        x[:, -1] = self.ask
        return x, answer, k

    def batches(self, batch_size: int,
                generator: torch.Generator | None = None) -> Callable[[str], tuple[Tensor, Tensor]]:
        """``get_batch(split) -> (x, answer)`` for ``train.Trainer``: fresh random sequences for
        either split (a probe never runs out of data, so there is nothing to hold out)."""
        def get_batch(split: str) -> tuple[Tensor, Tensor]:
            if split not in ("train", "val"):
                raise ValueError(f"unknown split {split!r}: choose 'train' or 'val'")
            x, answer, _ = self.sample(batch_size, generator=generator)
            return x, answer

        return get_batch

    def render(self, x: Tensor) -> str:
        """One sequence (T,) as text: symbols as letters, ``[`` the marker, ``?`` the question."""
        names = [chr(ord("a") + i) if i < 26 else f"<{i}>" for i in range(self.n_symbols)]
        names += ["[", "?"]
        return "".join(names[i] for i in x.tolist())


def _last_logits(model: nn.Module, x: Tensor) -> Tensor:
    """The model's logits at the last position, (B, V), from ``model(x)[0]`` (B, T, V)."""
    out = model(x)
    logits = out[0] if isinstance(out, tuple) else out
    if logits.dim() != 3 or logits.shape[:2] != x.shape:
        raise ValueError(f"model(x) must return (logits, ...) with logits of shape (B, T, V) = "
                         f"({x.size(0)}, {x.size(1)}, V), got {tuple(logits.shape)}")
    return logits[:, -1]


def answer_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """A ``loss_fn`` for ``train.Trainer``: the cross-entropy of the answer at the last
    position only (the noise before it is unpredictable, so it carries no signal)."""
    x, answer = batch
    return F.cross_entropy(_last_logits(model, x), answer)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor) -> Tensor:
    """The model's answer for each sequence of ``x`` (B, T): the likeliest token at the end."""
    return _last_logits(model, x).argmax(dim=-1)


@torch.no_grad()
def accuracy_by_distance(model: nn.Module, probe: RecallProbe, distances: Iterable[int] | None = None,
                         n_per_distance: int = 256, seed: int = 0,
                         batch_size: int = 256) -> dict[int, float]:
    """``{k: accuracy}`` over ``n_per_distance`` fresh sequences for each distance ``k``
    (default: every k from 1 to ``probe.max_distance``). The sequences come from their own
    seeded generator, so every model is scored on the same questions. Runs in eval mode and
    restores the model's mode."""
    distances = list(range(1, probe.max_distance + 1) if distances is None else distances)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    with evaluating(model):
        result = {}
        for k in distances:
            correct = 0
            for start in range(0, n_per_distance, batch_size):
                n = min(batch_size, n_per_distance - start)
                x, answer, _ = probe.sample(n, distance=k, generator=generator)
                correct += (predict(model, x.to(device)).cpu() == answer).sum().item()
            result[int(k)] = correct / n_per_distance
    return result


def plot_accuracy(results: Mapping[str, Mapping[int, float]], chance: float | None = None,
                  ax: Axes | None = None) -> Axes:
    """One line of accuracy against distance per model (``{"LSTM": {1: 0.98, ...}, ...}``),
    with the guessing level as a dashed line if ``chance`` is given."""
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 4))
    for name, by_k in results.items():
        ks = sorted(by_k)
        ax.plot(ks, [by_k[k] for k in ks], "o-", ms=3, label=name)
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=1, label="guessing")
    ax.set_xlabel("distance k between the value and the question (steps)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend()
    return ax
