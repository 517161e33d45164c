"""Checkpoint: the file format of training checkpoints and cached models, and its safety.

A checkpoint (``Trainer.save``, ``python -m minigpt train``) is one ``torch.save`` file holding
a dict with the keys:

- ``format``: ``CHECKPOINT_FORMAT``, so that ``load_checkpoint`` refuses other torch files;
- ``step``: the optimizer updates made so far;
- ``model``, ``optimizer``, ``scaler``: their ``state_dict()`` (the scaler's is empty unless
  the run trained in float16);
- ``config``: the ``TrainConfig`` as a dict, ``history``: the ``History`` as lists;
- ``rng``: the random generators' states (``get_rng_state``: Python, NumPy, torch, CUDA and the
  batches' own ``torch.Generator``), so a resumed run draws what an unbroken one would;
- ``extra``: the caller's own plain values (``cli`` keeps the model's settings and tokenizer);
- ``tensors_sha256``: the checksum of every tensor above (``tensors_sha256``).

A model-cache file (``minigpt.train.cache``) is the same kind of file, with ``format``, the
caller's fields, ``model`` and ``tensors_sha256``.

Why ``weights_only=True``: ``torch.load`` otherwise unpickles, and unpickling can run any code
a file carries. Every file here holds tensors and plain values only (lists, not tuples of
arrays: see ``get_rng_state``), and ``read_torch_file`` never loads anything else. Why the
checksum: a file damaged on disk or in a copy often still loads, with wrong weights;
``write_torch_file`` stores the sha256 of its tensors and ``read_torch_file`` compares it.
Files written before the checksum existed have none and load unchecked.

What the errors say: ``UnreadableCheckpointError`` (a ValueError) names the file and what is
wrong with it (a folder, empty, not a torch file, a plain pickle, pickled Python objects,
truncated or corrupt, changed since it was saved) and what to do (train again, copy it again,
give a file that minigpt wrote). ``CheckpointMismatchError`` (a ValueError) lists the keys
missing, unexpected or of another shape when a checkpoint does not fit the model it is loaded
into. ``load_checkpoint`` raises a ValueError for a torch file that is not a Trainer checkpoint
(a bare state_dict, say), saying how to load that.

    >>> from minigpt.train.checkpoint import load_checkpoint
    >>> checkpoint = load_checkpoint("run.pt")           # doctest: +SKIP
    >>> checkpoint["step"], checkpoint["config"]["lr"]   # doctest: +SKIP
    (2000, 0.001)

This module imports nothing from ``minigpt.train.trainer``: the Trainer and the model cache both build
on it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from minigpt.core.io import atomic_path

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKSUM_KEY", "CheckpointMismatchError", "UnreadableCheckpointError",
    "check_state_dict", "get_rng_state", "load_checkpoint", "read_torch_file", "set_rng_state",
    "tensors_sha256", "write_torch_file",
]

CHECKPOINT_FORMAT = "minigpt.train/1"
# The key under which checkpoints and model-cache files store tensors_sha256 of their tensors.
# Files written before it existed have none, and load without the check.
CHECKSUM_KEY = "tensors_sha256"


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights do not fit the model it is being loaded into."""


class UnreadableCheckpointError(ValueError):
    """A file that cannot be used as a checkpoint: empty, not a torch file, truncated, holding
    pickled Python objects, or changed since it was saved (its checksum does not match)."""


def get_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """The states of the random generators training draws from, in plain types.

    Python's and NumPy's states are tuples holding a tuple or an array; they become lists so
    that a checkpoint holding them loads with ``torch.load(path, weights_only=True)``.
    """
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        "python": [version, list(internal), gauss_next],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached_gaussian)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": None if generator is None else generator.get_state(),
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Put back states taken by ``get_rng_state``. CUDA's are restored only on a machine with
    the same number of GPUs (a run moved to other hardware can't repeat itself exactly anyway)."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    cuda_states = state["cuda"]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    if generator is not None and state["generator"] is not None:
        generator.set_state(state["generator"])


def tensors_sha256(obj: Any) -> str:
    """The sha256 (hex) of every tensor in ``obj`` (nested dicts, lists and tuples): each
    tensor's place (its keys, dicts walked in sorted key order), dtype, shape and bytes.

    Checkpoints and model-cache files store it (under ``"tensors_sha256"``) and ``load`` checks
    it: a file whose tensor data changed on disk, even at the same length, is caught. Plain
    values (numbers, strings) are not covered."""
    digest = hashlib.sha256()

    def visit(value: Any, where: str) -> None:
        if isinstance(value, Tensor):
            t = value.detach().cpu().contiguous()
            digest.update(f"{where}|{t.dtype}|{tuple(t.shape)}\n".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            for key in sorted(value, key=repr):
                visit(value[key], f"{where}/{key!r}")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(item, f"{where}/{i}")

    visit(obj, "")
    return digest.hexdigest()


def _with_checksum(saved: dict[str, Any]) -> dict[str, Any]:
    """``saved`` plus the checksum of its tensors, to write to disk."""
    body = {key: value for key, value in saved.items() if key != CHECKSUM_KEY}
    return body | {CHECKSUM_KEY: tensors_sha256(body)}

def write_torch_file(path: str | os.PathLike, saved: dict[str, Any]) -> Path:
    """``torch.save`` of ``saved`` plus the checksum of its tensors (under ``CHECKSUM_KEY``),
    written beside ``path`` and renamed over it (``io.atomic_path``): readers, and an
    interrupted save, see the old file or the new one, never half of one. ``saved`` must hold
    tensors and plain values only, so that ``read_torch_file`` can read it. Returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(_with_checksum(saved), tmp)
    return path


def read_torch_file(file: str | os.PathLike, what: str = "minigpt checkpoint",
                    name: str | None = None) -> Any:
    """``torch.load(file, weights_only=True)`` on the CPU, turning every way a file can be
    unusable (a folder, empty, not a torch file, pickled objects, truncated, corrupt, changed
    since it was saved) into an UnreadableCheckpointError that says what to do. Messages call
    the file ``name`` (default: its path)."""
    path = Path(file)
    shown = name if name is not None else str(file)
    redo = ("A save or copy was probably cut short: delete it and train again, or copy it "
            "again from where it came from.")
    written_by = "Give a file written by Trainer.save or `python -m minigpt train`."
    if path.is_dir():
        raise UnreadableCheckpointError(f"{shown} is a folder, not a {what}. {written_by}")
    with open(path, "rb") as stream:
        head = stream.read(4)
    if not head:
        raise UnreadableCheckpointError(f"{shown} is empty (0 bytes), not a {what}. {redo}")
    if head.startswith(b"\x80") and not head.startswith(b"\x80\x02"):
        raise UnreadableCheckpointError(
            f"{shown} is a plain pickle file, not a {what} (a zip archive written by torch.save). "
            "minigpt never unpickles Python objects, which can run any code: it loads tensors "
            f"and plain values only (weights_only=True). {written_by}")
    if not head.startswith((b"PK\x03\x04", b"\x80\x02")):  # zip (torch >= 1.6), old pickle
        raise UnreadableCheckpointError(
            f"{shown} is not a torch file (it starts with {head!r}; a {what} is a zip archive "
            f"written by torch.save). {written_by}")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only=True refused something: torch says why on a "WeightsUnpickler error" line.
        refused = next((line.split("WeightsUnpickler error:", 1)[1].strip()
                        for line in str(e).splitlines() if "WeightsUnpickler error:" in line), None)
        if refused is None:
            raise UnreadableCheckpointError(
                f"{shown} is corrupt ({_first_line(e)}): it cannot be read as a {what}. {redo}"
            ) from None
        if "GLOBAL " in refused:  # "Unsupported global: GLOBAL __main__.Foo was not allowed..."
            refused = "such as " + refused.split("GLOBAL ", 1)[1].split()[0]
        raise UnreadableCheckpointError(
            f"{shown} holds pickled Python objects ({_first_line(refused)}), not only tensors and "
            f"plain values, so it is not a {what} that minigpt wrote; minigpt never loads "
            f"pickled code (weights_only=True), since unpickling can run any code. {written_by}"
        ) from None
    except (EOFError, OSError, RuntimeError, KeyError, ValueError, IndexError) as e:
        raise UnreadableCheckpointError(
            f"{shown} is truncated or corrupt ({type(e).__name__}: {_first_line(e)}): it cannot "
            f"be read as a {what}. {redo}") from None
    if isinstance(saved, dict) and CHECKSUM_KEY in saved:  # older files have none: not checked
        body = {key: value for key, value in saved.items() if key != CHECKSUM_KEY}
        if tensors_sha256(body) != saved[CHECKSUM_KEY]:
            raise UnreadableCheckpointError(
                f"{shown} has changed since it was saved: the checksum of its tensors does not "
                "match the one stored in it (a disk or copy error), so its weights cannot be "
                "trusted. Copy it again from where it came from, or delete it and train again.")
    return saved


def _first_line(error: BaseException | str, limit: int = 100) -> str:
    """The first sentence of ``error``'s message, at most ``limit`` characters."""
    text = str(error).strip()
    text = text.splitlines()[0].split(". ")[0] if text else repr(error)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by ``Trainer.save`` (on the CPU, safely: weights_only=True).

    Its keys: format, step, model, optimizer, scaler, config, history, rng, extra, and
    tensors_sha256 (checked here; older checkpoints have none). A file that is not a readable
    checkpoint (empty, not a torch file, truncated, pickled objects, changed since it was
    saved) raises UnreadableCheckpointError, a ValueError saying what to do.
    """
    checkpoint = read_torch_file(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a checkpoint written by minigpt.train.trainer.Trainer.save (no "
            f"format={CHECKPOINT_FORMAT!r} inside). A bare state_dict loads with "
            "model.load_state_dict(torch.load(path, weights_only=True))."
        )
    return checkpoint


def check_state_dict(model: nn.Module, state: dict[str, Tensor], source: str = "") -> None:
    """Raise CheckpointMismatchError, naming the keys, unless ``state`` fits ``model`` exactly."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = [
        f"{key} (checkpoint {tuple(state[key].shape)}, model {tuple(expected[key].shape)})"
        for key in sorted(set(expected) & set(state))
        if state[key].shape != expected[key].shape
    ]
    if not (missing or unexpected or reshaped):
        return

    def listed(items: list[str], limit: int = 8) -> str:
        more = f", ... ({len(items)} in all)" if len(items) > limit else ""
        return ", ".join(items[:limit]) + more

    where = f" {source}" if source else ""
    lines = [f"The checkpoint{where} does not fit this model:"]
    if missing:
        lines.append(f"  in the model, missing from the checkpoint: {listed(missing)}")
    if unexpected:
        lines.append(f"  in the checkpoint, not in the model: {listed(unexpected)}")
    if reshaped:
        lines.append(f"  different shapes: {listed(reshaped)}")
    lines.append(
        "It was saved from a model built differently (another class, vocabulary size, width or "
        "number of layers). Build the model with the settings of the run that saved it, load "
        "the checkpoint that belongs to this model, or delete the file to train from scratch."
    )
    raise CheckpointMismatchError("\n".join(lines))
