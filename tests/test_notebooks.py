"""Notebook hygiene: committed outputs are real, fresh and in order; every notebook opens with
its own Colab badge and the shared setup cell; the README's chapter table is current.

The notebooks themselves run under nbval (pytest collects notebooks/*.ipynb)."""

from pathlib import Path

import nbformat
import pytest

from minigpt.course import notebooks

ROOT = Path(__file__).resolve().parent.parent
RUN = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "exercises/solutions").glob("*.ipynb"))
ALL = RUN + sorted((ROOT / "exercises").glob("*.ipynb"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_there_are_notebooks():
    assert (ROOT / "notebooks/00_welcome.ipynb") in RUN


@pytest.mark.parametrize("path", RUN, ids=rel)
def test_outputs_are_fresh_in_order_and_error_free(path):
    problems = notebooks.hygiene_problems(nbformat.read(path, as_version=4), rel(path))
    assert not problems, "\n".join(problems)


CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", CHAPTERS, ids=rel)
def test_time_line_agrees_with_the_stored_run(path):
    problem = notebooks.time_line_problem(nbformat.read(path, as_version=4))
    assert problem is None, f"{rel(path)}: {problem}"


def test_time_line_is_read_and_checked():
    assert notebooks.stated_minutes("**Time**: about 7.5 minutes on 2 CPU cores") == (7.5, 7.5)
    assert notebooks.stated_minutes("**Time**: 4-6 minutes on 2 CPU cores (cpu profile)") == (4.0, 6.0)
    assert notebooks.stated_minutes("**Time**: about 30 seconds; a minute on Colab") == (0.5, 0.5)
    assert notebooks.stated_minutes("no time line here") is None
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 00\n\n**Time**: about 3 minutes on 2 CPU cores.")]
    nb.metadata["minigpt"] = {"seconds": 84.0}  # chapter 00's line once said 3 minutes of an 84 s run
    assert "says 3 minutes" in notebooks.time_line_problem(nb)
    nb.metadata["minigpt"] = {"seconds": 170.0}
    assert notebooks.time_line_problem(nb) is None
    nb.cells[0].source = "# 00"
    assert "no '**Time**" in notebooks.time_line_problem(nb)


@pytest.mark.parametrize("path", ALL, ids=rel)
def test_badge_and_setup_cell_agree_with_the_course(path):
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    changed = notebooks.sync_notebook(nb, rel(path))
    assert not changed and nbformat.writes(nb) == before, "run: python scripts/notebooks.py sync"
    first_md = next(c for c in nb.cells if c.cell_type == "markdown")
    assert notebooks.colab_url(rel(path)) in first_md.source
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert first_code.source == notebooks.setup_cell_source()


def test_chapter_notebooks_are_named_as_the_course_says():
    known = {ch.path for ch in notebooks.CHAPTERS}
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        assert rel(path) in known, f"{rel(path)} is not in minigpt.course.notebooks.CHAPTERS"


def test_readme_chapter_table_is_current():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split(notebooks.README_TABLE_START, 1)[1].split(notebooks.README_TABLE_END, 1)[0]
    assert table.strip() == notebooks.readme_chapter_table(ROOT).strip(), "run: python scripts/notebooks.py sync"


def test_hygiene_catches_stale_and_out_of_order_outputs():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), nbformat.v4.new_code_cell("1"), nbformat.v4.new_code_cell("2")]
    nb.cells[1].execution_count, nb.cells[2].execution_count = 1, 2
    nb.metadata["minigpt"] = {"profile": "cpu", "code_sha256": notebooks.code_fingerprint(nb)}
    assert notebooks.hygiene_problems(nb, "x.ipynb") == []
    nb.cells[2].source = "3"  # edited after the run
    assert any("stale" in p for p in notebooks.hygiene_problems(nb, "x.ipynb"))
    nb.metadata["minigpt"]["code_sha256"] = notebooks.code_fingerprint(nb)
    nb.cells[1].execution_count = 5
    assert any("not run top to bottom" in p for p in notebooks.hygiene_problems(nb, "x.ipynb"))
    nb.cells[1].execution_count = 1
    nb.cells[1].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="x", traceback=[])]
    assert any("stored an error" in p for p in notebooks.hygiene_problems(nb, "x.ipynb"))
    nb.cells[1].outputs = []
    nb.metadata["minigpt"]["profile"] = "ci"
    assert any("'ci' profile" in p for p in notebooks.hygiene_problems(nb, "x.ipynb"))


def test_hygiene_catches_a_chart_drawn_from_older_figures(monkeypatch):
    from minigpt.course import leaderboard

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("leaderboard.chart(upto=3)")]
    nb.cells[0].execution_count = 1
    nb.metadata["minigpt"] = {"profile": "cpu", "code_sha256": notebooks.code_fingerprint(nb),
                              "chart_sha256": leaderboard.stored_key(3)}
    assert notebooks.hygiene_problems(nb, "notebooks/03_x.ipynb") == []
    monkeypatch.setattr(leaderboard, "stored_key", lambda upto: "other figures")
    assert any("running chart" in p for p in notebooks.hygiene_problems(nb, "notebooks/03_x.ipynb"))
    assert notebooks.hygiene_problems(nb, "exercises/solutions/03_x.ipynb") == []  # not a chapter


def test_setup_cell_installs_without_touching_torch():
    src = notebooks.setup_cell_source()
    assert "--no-deps" in src and notebooks.REPO_URL in src
    code = "\n".join(ln for ln in src.splitlines() if not ln.lstrip().startswith("#"))
    assert "torch" not in code and "ipywidgets" not in code
    compile(src, "<setup>", "exec")  # valid Python, no magics


NBVAL_MARKERS = {"# NBVAL_IGNORE_OUTPUT", "# NBVAL_CHECK_OUTPUT", "# NBVAL_RAISES_EXCEPTION", "# NBVAL_SKIP"}


@pytest.mark.parametrize("path", RUN, ids=rel)
def test_nbval_markers_are_spelled_so_nbval_sees_them(path):
    """nbval only honours a marker alone on its line: `# NBVAL_IGNORE_OUTPUT: why` is ignored."""
    for cell in nbformat.read(path, as_version=4).cells:
        for line in cell.source.splitlines():
            if "NBVAL_" in line:
                assert line.strip() in NBVAL_MARKERS, f"{line!r}: put the marker alone on its line"
