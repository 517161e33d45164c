"""Where a result came from: the code's version (git commit, whether the checkout differs from it,
a sha256 of the package's source) and the machine (CPU or GPU name, thread count, torch and
Python versions). Stored beside every saved sweep, so a figure can always be traced back.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from minigpt.core.io import sha256_bytes


def code_version() -> dict[str, Any]:
    """The git commit of the checkout (None outside one), whether the package differs from it,
    and a sha256 of the package's source (which names the code even without git)."""
    package = Path(__file__).resolve().parent.parent  # minigpt/
    source = b"".join(path.relative_to(package).as_posix().encode() + path.read_bytes()
                      for path in sorted(package.rglob("*.py")))

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=package, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD") or None
    changed = git("status", "--porcelain", "--", ".") if commit else None
    return {"git": commit, "git_dirty": bool(changed) if commit else None,
            "source_sha256": sha256_bytes(source)}


def _cpu_name() -> str:
    try:  # Linux names the model here; elsewhere platform's answer has to do
        text = Path("/proc/cpuinfo").read_text()
        return next(ln.split(":", 1)[1].strip() for ln in text.splitlines()
                    if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def environment_meta() -> dict[str, Any]:
    """Where and with what a sweep ran: code version, hardware, software, date (UTC)."""
    cuda = torch.cuda.is_available()
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "code_version": code_version(),
        "hardware": {"device": torch.cuda.get_device_name() if cuda else _cpu_name(),
                     "cuda": cuda, "cpu_count": os.cpu_count(),
                     "torch_threads": torch.get_num_threads()},
        "software": {"python": platform.python_version(), "torch": torch.__version__},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
