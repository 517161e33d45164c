"""The course's running chart: held-out bits per byte of every chapter's models, side by side.

Every chapter measures its models on the same text, the test split of ``wiki``
(``data.split_text(data.load_corpus("wiki"))["test"]``), in the same unit, bits per byte, so
that n-grams, word2vec-era models, RNNs, Transformers and GPT land on one chart:

    >>> from minigpt.course import leaderboard
    >>> leaderboard.record(1, "char 5-gram, Kneser-Ney", 2.41, params=1_234_567)   # doctest: +SKIP
    >>> leaderboard.chart()                                                         # doctest: +SKIP

Where the numbers live:
- ``minigpt/course/leaderboard.json`` (shipped with the package): the results of the committed
  notebooks, written while ``scripts/notebooks.py run`` re-executes them under the cpu
  profile. Nothing in it is typed in.
- ``cache_dir()/leaderboard-<profile>.json``: what your own runs recorded on this machine.

``results()`` merges the two, your runs of the current profile taking the place of the stored
ones, so a chapter's chart shows the earlier chapters even if you have not run them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from minigpt.core import runtime
from minigpt.core.io import sha256_bytes, write_text_atomic

REFERENCE = Path(__file__).with_name("leaderboard.json")
WRITE_TO_ENV = "MINIGPT_LEADERBOARD"  # set by scripts/notebooks.py run: where record() writes


@dataclass(frozen=True)
class Result:
    chapter: int
    model: str
    bits_per_byte: float
    params: int | None = None
    profile: str = "cpu"


def _read(path: Path) -> list[Result]:
    if not path.exists():
        return []
    try:
        return [Result(**row) for row in json.loads(path.read_text(encoding="utf-8"))]
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{path} is not a leaderboard file ({err}). Delete it: it only holds results your "
            "own runs recorded, and re-running the notebooks records them again."
        ) from None


def _write(path: Path, rows: list[Result]) -> None:
    rows = sorted(rows, key=lambda r: (r.chapter, r.bits_per_byte))
    write_text_atomic(path, json.dumps([asdict(r) for r in rows], indent=1) + "\n")


def _local_path() -> Path:
    override = os.environ.get(WRITE_TO_ENV)
    if override:
        return Path(override)
    return runtime.cache_dir() / f"leaderboard-{runtime.profile()}.json"


def record(chapter: int, model: str, bits_per_byte: float, *, params: int | None = None) -> Result:
    """Store a measured held-out bits-per-byte figure (replacing the same chapter and model)."""
    if not bits_per_byte > 0 or bits_per_byte != bits_per_byte:
        raise ValueError(f"bits_per_byte must be a positive measured number, got {bits_per_byte}")
    result = Result(int(chapter), str(model), round(float(bits_per_byte), 4),
                    None if params is None else int(params), runtime.profile())
    path = _local_path()
    rows = [r for r in _read(path) if (r.chapter, r.model) != (result.chapter, result.model)]
    _write(path, rows + [result])
    return result


def results() -> list[Result]:
    """Stored results of the committed notebooks, updated by this machine's own runs of the
    current profile; sorted by chapter, then best first."""
    merged = {(r.chapter, r.model): r for r in _read(REFERENCE)}
    local = _local_path()
    if local.resolve() != REFERENCE.resolve():
        merged.update({(r.chapter, r.model): r for r in _read(local)})
    return sorted(merged.values(), key=lambda r: (r.chapter, r.bits_per_byte))


def stored_key(upto: int) -> str:
    """sha256 of the shipped results of chapters 0..``upto``: what a chapter's stored chart was
    drawn from. ``scripts/notebooks.py run`` stamps it into a notebook that draws the chart, and
    the hygiene test re-computes it, so a stored chart never shows older figures than the ones
    a learner's first run would draw."""
    rows = sorted((r for r in _read(REFERENCE) if r.chapter <= upto),
                  key=lambda r: (r.chapter, r.model))
    return sha256_bytes(json.dumps([asdict(r) for r in rows], sort_keys=True).encode())


# tab10 for chapters 0-9, then colours unlike any of tab10's for chapters 10-14
_LATER_COLOURS = ("#1b9e77", "#e6ab02", "#222222", "#a6761d", "#66a61e")


def chapter_colour(chapter: int):
    """The running chart's colour for a chapter: distinct for each of chapters 0-14."""
    import matplotlib.pyplot as plt

    if chapter < 10:
        return plt.get_cmap("tab10")(chapter)
    return _LATER_COLOURS[(chapter - 10) % len(_LATER_COLOURS)]


def chart(ax=None, rows: list[Result] | None = None, upto: int | None = None):
    """Horizontal bars of held-out bits per byte, one colour per chapter (lower is better).
    ``upto``: only chapters 0..upto, the ones a learner has met by that chapter. A label says
    "(ci)" or "(gpu)" where a figure comes from a run of another profile than the stored
    cpu-profile runs."""
    import matplotlib.pyplot as plt

    rows = results() if rows is None else rows
    if upto is not None:
        rows = [r for r in rows if r.chapter <= upto]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.35 * max(len(rows), 3) + 1))
    labels = [f"{r.chapter:02d} · {r.model}" + ("" if r.profile == "cpu" else f" ({r.profile})") for r in rows]
    y = range(len(rows))[::-1]
    ax.barh(list(y), [r.bits_per_byte for r in rows], color=[chapter_colour(r.chapter) for r in rows])
    for yi, r in zip(y, rows):
        ax.text(r.bits_per_byte, yi, f" {r.bits_per_byte:.2f}", va="center", fontsize=8)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.set_xlabel("held-out bits per byte on wiki's test split (lower is better)")
    ax.set_title("The course's running chart")
    ax.set_xlim(0, max([r.bits_per_byte for r in rows], default=1) * 1.15)
    return ax
