"""The JupyterLab walkthrough in a real browser: open a notebook, run every cell from the UI,
see no error and see the widgets drawn, as a learner following the README would.

Runs the welcome notebook and two chapters with widgets (04: attention heatmaps, 06: sampler)
under the ``ci`` profile; ``MINIGPT_BROWSER_ALL=1`` runs every notebook in notebooks/, and
``MINIGPT_BROWSER_NOTEBOOKS=07,10`` the ones whose names start with those prefixes. Fails
on an error output, a run that stops or times out, a widget that does not render, or HTML
that shows its own markup as text. A full-height screenshot of each notebook lands in
``.browser/`` (ignored by git; ``MINIGPT_BROWSER_DIR`` moves it); the path and the time each
took are printed. ``MINIGPT_BROWSER_TIMEOUT`` is the limit per notebook (240 s).

Needs Debian's Chromium (``apt-get install -y chromium``; ``MINIGPT_CHROMIUM`` names another
build) and ``pip install playwright``; skipped, naming what is missing, without them. The
first tests check the checks: a failing cell, a widget, broken HTML and a run that never ends
must each be seen. Helpers: tests/browser_lab.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import browser_lab  # tests/browser_lab.py
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
DEFAULT = ["00_welcome.ipynb", "04_transformer.ipynb", "06_gpt.ipynb"]
SHOTS = Path(os.environ.get("MINIGPT_BROWSER_DIR", ROOT / ".browser"))
TIMEOUT = float(os.environ.get("MINIGPT_BROWSER_TIMEOUT", "240"))
RUN_ALL = os.environ.get("MINIGPT_BROWSER_ALL", "") not in ("", "0")

# Notebooks whose page shows HTML markup as text because of a known bug elsewhere: the test
# xfails on that check alone (every other check still fails it) until the bug is fixed, then
# fails once to have the entry removed.
KNOWN_MARKUP_LEAKS: dict[str, str] = {}  # notebook -> a known bug that shows markup as text

# MINIGPT_BROWSER_NOTEBOOKS="07,10" runs the notebooks whose names start with those prefixes.
PICKED = tuple(p.strip() for p in os.environ.get("MINIGPT_BROWSER_NOTEBOOKS", "").split(",") if p.strip())
EVERY = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
if RUN_ALL:
    CHOSEN = EVERY
elif PICKED:
    CHOSEN = [name for name in EVERY if name.startswith(PICKED)]
else:
    CHOSEN = DEFAULT
REASON = browser_lab.missing()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.fixture(scope="module")
def lab():
    """JupyterLab over a temporary root: copies of the chosen notebooks, outputs stripped."""
    root = Path(tempfile.mkdtemp(prefix="minigpt-browser-"))
    try:
        for name in CHOSEN:
            browser_lab.copy_stripped(NOTEBOOKS / name, root / "notebooks" / name)
        with browser_lab.Lab(root, profile="ci") as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        chromium = browser_lab.launch_chromium(pw)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        pw.stop()


def _report(run: browser_lab.NotebookRun, capsys) -> None:
    """Timings, findings and the screenshot's path, shown even when pytest captures output."""
    with capsys.disabled():
        print("\n" + run.summary())


def test_a_failing_cell_is_caught(lab, browser, capsys):
    """The check is not vacuous: a traceback is an error, a warning on stderr is not."""
    path = browser_lab.write_notebook(
        lab.root / "checks" / "fails.ipynb",
        "import sys, warnings\nprint('fine')\nsys.stderr.write('a harmless progress line\\n')\n"
        "warnings.warn('a harmless warning')",
        'raise ValueError("boom")',
        "print('never reached')")
    run = browser_lab.run_notebook(browser, lab, str(path.relative_to(lab.root)), timeout=90)
    _report(run, capsys)
    assert run.failed and not run.stopped
    assert len(run.errors) == 1 and "ValueError: boom" in run.errors[0], run.errors
    assert run.tracebacks_in_page == 1  # the page-side check sees it too
    assert run.counts == [1, 2, None]  # run-all stopped at the failing cell
    assert run.widget_outputs == 0 and run.widgets_rendered == 0


def test_widgets_are_seen_rendered_and_broken_html_is_caught(lab, browser, capsys):
    path = browser_lab.write_notebook(
        lab.root / "checks" / "widget.ipynb",
        "import sys\nsys.stderr.write('stderr is not an error\\n')",
        "import ipywidgets as W\nW.VBox([W.IntSlider(value=3, description='n'), W.HTML('<b>fine</b>')])",
        # An attribute quoted with ' that holds a repr (quoted with ' too): the markup shows.
        "W.HTML(\"<table><tr><td title='\" + repr('T') + \" -> x' style='width:9px'></td></tr></table>\")")
    run = browser_lab.run_notebook(browser, lab, str(path.relative_to(lab.root)), timeout=90)
    _report(run, capsys)
    assert not run.failed, run.summary()
    assert run.counts == [1, 2, 3]
    assert run.widget_outputs == 2 and run.widgets_rendered == 2 and not run.widget_problems
    assert len(run.markup_leaks) == 1 and "style=" in run.markup_leaks[0], run.markup_leaks


def test_a_run_that_does_not_finish_is_reported_and_its_kernel_ended(lab, browser, capsys):
    path = browser_lab.write_notebook(lab.root / "checks" / "slow.ipynb", "import time\ntime.sleep(600)")
    run = browser_lab.run_notebook(browser, lab, str(path.relative_to(lab.root)), timeout=5)
    _report(run, capsys)
    assert run.failed and run.stopped.startswith("timed out"), run.summary()
    assert lab.kernels() == []


@pytest.mark.parametrize("name", CHOSEN)
def test_notebook_runs_in_jupyterlab(lab, browser, name, capsys):
    shot = SHOTS / (Path(name).stem + ".png")
    run = browser_lab.run_notebook(browser, lab, f"notebooks/{name}", timeout=TIMEOUT, screenshot=shot)
    _report(run, capsys)
    assert not run.failed, run.summary()
    assert all(c is not None for c in run.counts), run.summary()
    if browser_lab.has_widgets(NOTEBOOKS / name):
        assert run.widget_outputs > 0, f"{name} shows widgets in its stored outputs but none here"
        assert run.widgets_rendered == run.widget_outputs and not run.widget_problems, run.summary()
    known = KNOWN_MARKUP_LEAKS.get(name)
    if known and run.markup_leaks:
        pytest.xfail(f"known bug: {known}")
    assert not run.markup_leaks, run.summary()
    assert not known, f"{name} no longer shows markup as text: remove it from KNOWN_MARKUP_LEAKS"
