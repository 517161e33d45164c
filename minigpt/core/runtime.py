"""Runtime: which profile the course runs under, which device, and seeding.

Every notebook sizes its experiments from the *profile*, read from the environment variable
``MINIGPT_PROFILE``:

- ``ci``  -- tests and CI: each notebook in under 60 s on a 2-core CPU. Only step counts and
  data sizes shrink; architectures stay the same, so shapes and parameter counts match.
- ``cpu`` -- a learner's laptop: each notebook in under 10 minutes on 2 cores, real results.
- ``gpu`` -- Colab T4 or better: bigger models, longer runs.

Unset, the profile is ``gpu`` when CUDA is available and ``cpu`` otherwise.

    >>> import minigpt
    >>> minigpt.profile()                                  # doctest: +SKIP
    'cpu'
    >>> steps = minigpt.by_profile(ci=20, cpu=2000, gpu=5000)   # doctest: +SKIP

``evaluating(model)`` runs a block with models in eval mode and puts each back in the mode it
was in, even when the block raises.

This module imports nothing else from the package: it is the bottom layer.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

PROFILES = ("ci", "cpu", "gpu")
T = TypeVar("T")


def profile() -> str:
    """The active profile: ``MINIGPT_PROFILE`` if set, else ``gpu`` with CUDA, else ``cpu``."""
    value = os.environ.get("MINIGPT_PROFILE", "").strip().lower()
    if not value:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if value not in PROFILES:
        raise ValueError(
            f"MINIGPT_PROFILE={os.environ['MINIGPT_PROFILE']!r} is not a profile. "
            f"Use one of {', '.join(PROFILES)} (or unset it to choose automatically), e.g. "
            "`export MINIGPT_PROFILE=cpu`, or in a notebook "
            "`import os; os.environ['MINIGPT_PROFILE'] = 'cpu'` before importing minigpt."
        )
    return value


def by_profile(*, ci: T, cpu: T, gpu: T) -> T:
    """Pick the value for the active profile: ``by_profile(ci=20, cpu=2000, gpu=5000)``."""
    return {"ci": ci, "cpu": cpu, "gpu": gpu}[profile()]


def check_device(spec: str | torch.device, setting: str | None = None,
                 instead: str = "use 'cpu', or leave the device unset to use the best one there is"
                 ) -> torch.device:
    """``spec`` as a ``torch.device``, or a ValueError for a device this machine lacks (torch's
    own error would be an AssertionError deep inside ``.to``). The message starts with
    ``setting`` (how the caller spells it, e.g. ``--device cuda``) and ends with ``instead``."""
    setting = setting or f"device {spec!s}"
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"{setting}: not a device; use cpu, cuda, cuda:N or mps") from None
    mps = getattr(torch.backends, "mps", None)
    if dev.type == "cuda" and not torch.cuda.is_available():
        problem = "CUDA is not available on this machine (no NVIDIA GPU, or a torch without CUDA)"
    elif dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        problem = f"this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0"
    elif dev.type == "mps" and not (mps is not None and mps.is_available()):
        problem = "Apple's MPS is not available on this machine"
    else:
        return dev
    raise ValueError(f"{setting}: {problem}; {instead}")


def device() -> torch.device:
    """The best device here: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


SEED_OFFSET_ENV = "MINIGPT_SEED_OFFSET"


def seed_offset() -> int:
    """``$MINIGPT_SEED_OFFSET`` (default 0): added to every seed ``seed_everything`` sets, so that
    ``scripts/claim_margins.py`` can re-run a notebook over other seeds without editing it."""
    raw = os.environ.get(SEED_OFFSET_ENV, "0")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{SEED_OFFSET_ENV}={raw!r}: must be a whole number (or unset for 0)") from None


def seed_everything(seed: int) -> int:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) random generators with
    ``seed + seed_offset()``; returns the seed used (pass it on to a ``seed=`` argument)."""
    seed = (seed + seed_offset()) % 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return seed


def cache_dir() -> Path:
    """Where downloads and derived files are cached: ``$MINIGPT_CACHE``, else
    ``$XDG_CACHE_HOME/minigpt``, else ``~/.cache/minigpt``. Created on first use."""
    root = os.environ.get("MINIGPT_CACHE")
    if root:
        path = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        path = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "minigpt"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def evaluating(*models: torch.nn.Module) -> Iterator[None]:
    """Run the block with every one of ``models`` in eval mode (no dropout), then put each back
    in the mode it was in (``model.train(was_training)``), in a ``finally``: an exception
    never leaves a training model in eval mode. Gradient tracking is not touched (use
    ``torch.no_grad()`` for that).

        with torch.no_grad(), evaluating(model):
            logits, _ = model(x)
    """
    was_training = [model.training for model in models]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for model, mode in zip(models, was_training):
            model.train(mode)
