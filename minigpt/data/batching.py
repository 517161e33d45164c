"""Splits and batches: from a corpus's text to the (x, y) windows every chapter trains on.

    from minigpt.data import batching
    splits = batching.split_text(text)         # {"train": ..., "val": ..., "test": ...}
    ids = {k: batching.to_ids_array(tok.encode(v), tok.vocab_size) for k, v in splits.items()}
    get_batch = batching.make_get_batch(ids, batch_size=32, block_size=128)
    x, y = get_batch("train")                 # (32, 128) each; y is x shifted by one token

``split_text`` holds out the end of the text (contiguous, never shuffled: see its docstring);
``get_batch`` / ``make_get_batch`` draw random windows for training; ``iter_eval_windows``
walks a held-out split in windows that do not overlap, for an exact held-out loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from minigpt.core.metrics import check_count
from minigpt.data.corpora import unknown_name


def _cut_at_newline(text: str, cut: int, limit: int) -> int:
    """Move ``cut`` to just after the next newline before ``limit``; keep it if there is none."""
    newline = text.find("\n", cut, limit)
    return cut if newline == -1 else newline + 1


def split_text(text: str, val_fraction: float = 0.05,
               test_fraction: float = 0.05) -> dict[str, str]:
    """Split ``text`` into contiguous train / val / test parts, in that order.

    Contiguous, not shuffled: a model trains on windows of consecutive tokens, and windows
    drawn from shuffled pieces would overlap the held-out text, leaking it into training. The
    end of the text is held out instead. Each cut moves forward to the next line break, so no
    line (a document, in ``news``) is split, when there is one in reach. Deterministic.
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError("need val_fraction >= 0, test_fraction >= 0 and their sum < 1, got "
                         f"{val_fraction} and {test_fraction}")
    n = len(text)
    test_start = round(n * (1 - test_fraction))
    test_start = _cut_at_newline(text, test_start, n - 1) if test_fraction else n
    val_start = round(n * (1 - val_fraction - test_fraction))
    val_start = _cut_at_newline(text, val_start, test_start) if val_fraction else test_start
    return {"train": text[:val_start], "val": text[val_start:test_start], "test": text[test_start:]}


def to_ids_array(ids: Sequence[int] | np.ndarray, vocab_size: int) -> np.ndarray:
    """Token ids as a compact NumPy array: uint16 (2 bytes a token) when every id fits, i.e.
    ``vocab_size <= 65,536`` (GPT-2's 50,257 does), else uint32."""
    if not 0 < vocab_size <= 2**32:
        raise ValueError(f"vocab_size must be between 1 and 2**32, got {vocab_size}")
    array = np.asarray(ids, dtype=np.int64).reshape(-1)
    if array.size and (array.min() < 0 or array.max() >= vocab_size):
        bad = int(array.max()) if array.max() >= vocab_size else int(array.min())
        raise ValueError(f"token id {bad} is outside the vocabulary (0 .. {vocab_size - 1})")
    return array.astype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def _too_short(what: str, length: int, block_size: int) -> str:
    fits = f"block_size <= {length - 1} would fit" if length > 1 else "no block_size fits"
    return (f"{what} has {length} tokens, too few for block_size={block_size} (a window needs "
            f"block_size + 1 = {block_size + 1}); {fits}, or give it more text")


def _check_sizes(batch_size: int, block_size: int) -> None:
    """Raise unless both are positive integers: a batch of 0 windows, or windows of 0 tokens,
    would come back as empty tensors and train nothing."""
    check_count(batch_size, "batch_size")
    check_count(block_size, "block_size")


def _windows(data: np.ndarray, starts: np.ndarray, length: int) -> tuple[torch.Tensor, ...]:
    """Rows ``data[s : s + length + 1]`` for each start, split into inputs and targets."""
    chunk = torch.from_numpy(data[starts[:, None] + np.arange(length + 1)].astype(np.int64))
    return chunk[:, :-1], chunk[:, 1:]


def get_batch(data: np.ndarray, batch_size: int, block_size: int,
              device: torch.device | str | None = None,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of ``data``: ``x`` and ``y`` of shape (B, T), int64,
    ``y[:, t] == x[:, t + 1]`` (the next token). Starts come from torch's global RNG unless a
    ``generator`` is given, so ``torch.manual_seed`` (and a checkpointed RNG state) replays
    them."""
    _check_sizes(batch_size, block_size)
    data = np.asarray(data)
    if len(data) < block_size + 1:
        raise ValueError(_too_short("a split", len(data), block_size))
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator).numpy()
    x, y = _windows(data, starts, block_size)
    return x.to(device), y.to(device)


def make_get_batch(splits: Mapping[str, np.ndarray], batch_size: int, block_size: int,
                   device: torch.device | str | None = None,
                   generator: torch.Generator | None = None
                   ) -> Callable[[str], tuple[torch.Tensor, torch.Tensor]]:
    """``get_batch(split) -> (x, y)`` over named splits (e.g. ``{"train": ..., "val": ...}``),
    checking once, up front, that both sizes are positive and every split is longer than
    ``block_size``."""
    _check_sizes(batch_size, block_size)
    arrays = {name: np.asarray(ids) for name, ids in splits.items()}
    for name, ids in arrays.items():
        if len(ids) < block_size + 1:
            raise ValueError(_too_short(f"split {name!r}", len(ids), block_size))

    def split_batch(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in arrays:
            raise unknown_name("split", split, list(arrays))
        return get_batch(arrays[split], batch_size, block_size, device, generator)

    return split_batch


def iter_eval_windows(ids: np.ndarray, block_size: int, batch_size: int,
                      device: torch.device | str | None = None
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Non-overlapping windows covering ``ids``, in order, for an exact held-out loss.

    Every token but the first is a target exactly once. Batches are (batch_size, block_size)
    except the last ones: the final window is shorter when the tokens run out, so average the
    loss weighted by ``y.numel()``. Each window starts with no context, which makes the loss a
    little higher than with a sliding window, but costs one pass.
    """
    _check_sizes(batch_size, block_size)
    ids = np.asarray(ids)
    n_targets = len(ids) - 1
    starts = np.arange(0, n_targets - block_size + 1, block_size)
    for i in range(0, len(starts), batch_size):
        x, y = _windows(ids, starts[i:i + batch_size], block_size)
        yield x.to(device), y.to(device)
    tail = len(starts) * block_size  # first start not covered by a full window
    if tail < n_targets:
        x, y = _windows(ids, np.array([tail]), n_targets - tail)
        yield x.to(device), y.to(device)
