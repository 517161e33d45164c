"""Exercises both ways: every solution passes its checks; every untouched stub fails them
with a message that tells the learner what to do.

Each exercise notebook runs on a fresh kernel (nbclient), as a learner would run it."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from minigpt.course import checks

ROOT = Path(__file__).resolve().parent.parent
STUBS = sorted((ROOT / "exercises").glob("*.ipynb"))


def run(path: Path, allow_errors: bool):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=allow_errors,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def check_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and "checks.check_" in c.source]


def errors(cell):
    return [o for o in cell.outputs if o.output_type == "error"]


def test_every_stub_has_a_solution_and_checks():
    assert STUBS, "no exercise notebooks"
    for stub in STUBS:
        assert (ROOT / "exercises/solutions" / stub.name).exists(), f"{stub.name} has no solution"
        assert check_cells(nbformat.read(stub, as_version=4)), f"{stub.name} calls no check"


@pytest.mark.parametrize("stub", STUBS, ids=lambda p: p.name)
def test_untouched_stubs_fail_every_check_helpfully(stub):
    nb = run(stub, allow_errors=True)
    for cell in check_cells(nb):
        errs = errors(cell)
        assert errs, f"a check passed on an untouched stub:\n{cell.source}"
        assert errs[0].ename == checks.NotDoneYet.__name__, errs[0]
        assert "replace `raise NotImplementedError`" in errs[0].evalue and "Hint:" in errs[0].evalue
    others = [c for c in nb.cells if c.cell_type == "code" and c not in check_cells(nb)]
    assert not any(errors(c) for c in others), "only check cells may fail in a stub notebook"


@pytest.mark.parametrize("stub", STUBS, ids=lambda p: p.name)
def test_solutions_pass_every_check(stub):
    nb = run(ROOT / "exercises/solutions" / stub.name, allow_errors=False)
    for cell in check_cells(nb):
        printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert "passed" in printed, cell.source
