"""pytest setup shared by the unit tests and the notebooks run under nbval.

- Tests and notebooks run under the ``ci`` profile unless MINIGPT_PROFILE says otherwise; the
  notebook kernels nbval starts inherit this environment.
- nbval compares stdout and rich outputs, but not stderr: warnings and progress bars differ
  between machines and say nothing about whether a notebook is right.
- Tests that assert a learned quality (an accuracy, a loss, a win rate) are marked
  ``@pytest.mark.learned``, draw their randomness from the ``learn_seed`` fixture and record
  what they measured with ``figure``. ``scripts/test_margins.py`` runs them over several seeds
  and thread counts and prints the worst figure of each, which is what their thresholds are
  set against (the figures are in a comment beside each threshold).
"""

import os

import pytest

os.environ.setdefault("MINIGPT_PROFILE", "ci")


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr",)


@pytest.fixture
def learn_seed() -> int:
    """The seed of a learned-quality test: ``$MINIGPT_TEST_SEED``, else 0."""
    return int(os.environ.get("MINIGPT_TEST_SEED", "0"))


@pytest.fixture
def figure(record_property):
    """``figure(name, value)`` records a measured figure (in the JUnit XML that
    scripts/test_margins.py reads) and returns the value, so it reads inline in an assert."""

    def record(name: str, value: float) -> float:
        record_property(name, float(value))
        return value

    return record


@pytest.fixture
def one_thread():
    """Run a test on one torch thread (restored afterwards): tiny models train fastest that way,
    and do not fight other processes for the cores. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch  # here, so that collecting a test that needs no torch does not import it

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
