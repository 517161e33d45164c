"""Held-out numbers and pictures of a training run.

- ``heldout_loss``: the exact mean loss over a whole held-out split, read in windows that do
  not overlap (every target counted once), with the count of targets, for bits per byte.
- ``plot_history``: train and validation loss (and the learning rate) against steps.
- ``model_vocab_size``: the vocabulary a model says it has, for checks of token ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from minigpt.core.runtime import evaluating
from minigpt.train.config import History

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def model_vocab_size(model: nn.Module) -> int | None:
    """The vocabulary size that ``model`` says it has (``model.vocab_size``, or that of its
    ``cfg``/``config``, as GPT, RNNLM and Transformer have), or None."""
    for owner in (model, getattr(model, "cfg", None), getattr(model, "config", None)):
        size = getattr(owner, "vocab_size", None)
        if isinstance(size, int) and not isinstance(size, bool):
            return size
    return None


@torch.no_grad()
def heldout_loss(
    model: nn.Module, ids: np.ndarray, block_size: int, batch_size: int = 32
) -> tuple[float, int]:
    """The exact mean loss (nats per token) of ``model`` over a whole held-out split.

    ``ids`` is cut into non-overlapping windows (``data.iter_eval_windows``), so every token
    but the first is predicted exactly once. Returns ``(mean_loss, n_targets)``; turn it into
    bits per byte with ``metrics.bits_per_byte(mean_loss, n_targets, n_bytes)``, where
    ``n_bytes`` is the UTF-8 size of the text those targets spell. Unlike ``Trainer.evaluate``
    (a few random batches, to watch training), this is the number to report.
    """
    from minigpt.data.batching import iter_eval_windows

    device = next(model.parameters()).device
    total, count = 0.0, 0
    with evaluating(model):
        for x, y in iter_eval_windows(ids, block_size, batch_size, device=device):
            _logits, loss = model(x, y)
            total += loss.item() * y.numel()  # the model's loss is a mean: weight it by its tokens
            count += y.numel()
    if count == 0:
        raise ValueError(f"{len(ids)} tokens hold no window of block_size={block_size}: use a longer split")
    return total / count, count


def plot_history(
    history: History | dict[str, list], ax: Axes | None = None, log_y: bool = False,
    ylabel: str = "loss (nats per token)",
) -> Axes:
    """Plot the loss per step, and the evaluations' train and val losses (as points, not joined:
    evaluations can be hundreds of steps apart), against the step.

    ``history`` is a History or its ``to_dict()`` (as in a checkpoint). Draws on ``ax`` if
    given, else on a new figure; returns the axes.
    """
    if isinstance(history, dict):
        history = History.from_dict(history)
    if ax is None:
        import matplotlib.pyplot as plt  # here, so that training never needs matplotlib

        _figure, ax = plt.subplots(figsize=(7, 4))
    ax.plot(history.step, history.loss, lw=0.8, alpha=0.4, label="train (each step)")
    if history.eval_step:  # markers only: a line between evaluations would invent the loss between them
        ax.plot(history.eval_step, history.train_loss, "o", ms=4, label="train (eval)")
        ax.plot(history.eval_step, history.val_loss, "s", ms=4, mfc="none", label="val (eval)")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)  # say what the loss averages over where it is not tokens
    if log_y:
        ax.set_yscale("log")
    ax.legend()
    return ax
