"""File plumbing written once: atomic writes, sha256 digests and recipe keys.

Every file the package keeps (checkpoints, cached models, cached corpora and downloads,
tiktoken's rank files, the leaderboard, the assistant's preferences) is written through
``atomic_path``: the bytes go to a temporary file beside the target, which is renamed over it
only once it is complete. A reader, or a run interrupted half way, sees the old file or the new
one, never half of one. ``sha256_bytes``, ``sha256_file`` and ``sha256_stream`` take the
digests those files are checked against, and ``recipe_key`` names a cached model after the
recipe that trained it.

    >>> from minigpt.core.io import atomic_path, recipe_key
    >>> with atomic_path("models/lin.pt") as tmp:       # doctest: +SKIP
    ...     torch.save(state, tmp)                       # renamed to models/lin.pt on success
    >>> recipe_key({"steps": 1})
    '9d7ff7f1fb36'

Written once so that each of these behaves the same wherever it is used (a temporary file that
is always cleaned up, one way to spell a recipe). This module imports nothing from the package
(and not torch): every layer can use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_path", "recipe_key", "sha256_bytes", "sha256_file", "sha256_stream",
           "write_bytes_atomic", "write_text_atomic"]

CHUNK = 1 << 20  # bytes read at a time when hashing a file or a stream

_tmp_numbers = itertools.count()  # two writes of one process never share a temporary file


# ---- atomic writes ----------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on success it is renamed over ``path``
    (``os.replace``, atomic), so no reader ever sees a half-written file.

    The parent folder is created. The temporary name carries the process id (and a number
    within the process), so two processes writing the same file never write the same
    temporary file. If the body raises (anything, KeyboardInterrupt too), the temporary file
    is deleted and ``path`` keeps its old contents."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{next(_tmp_numbers)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through ``atomic_path``; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` through ``atomic_path``; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


# ---- digests ------------------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    """The sha256 of ``data``, in hex."""
    return hashlib.sha256(data).hexdigest()


def sha256_stream(source: BinaryIO, copy_to: BinaryIO | None = None, chunk: int = CHUNK) -> str:
    """The sha256 (hex) of everything left to read in ``source``, read ``chunk`` bytes at a
    time; each chunk is also written to ``copy_to`` if given (hash a download as it is saved)."""
    digest = hashlib.sha256()
    for block in iter(lambda: source.read(chunk), b""):
        digest.update(block)
        if copy_to is not None:
            copy_to.write(block)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """The sha256 (hex) of the file at ``path``, read ``chunk`` bytes at a time."""
    with open(path, "rb") as f:
        return sha256_stream(f, chunk=chunk)


# ---- recipe keys --------------------------------------------------------------------------------


def recipe_key(recipe: dict[str, Any], length: int = 12) -> str:
    """A short hash of ``recipe`` (plain JSON values): the first ``length`` hex digits of the
    sha256 of its JSON with sorted keys, so the same recipe gives the same key whatever the
    order of its keys. Cached models are named after it: do not change how it is computed."""
    return sha256_bytes(json.dumps(recipe, sort_keys=True).encode())[:length]
