"""pytest setup shared by the unit tests and the notebooks run under nbval.

- Tests and notebooks run under the ``ci`` profile unless MINIGPT_PROFILE says otherwise; the
  notebook kernels nbval starts inherit this environment.
- nbval compares stdout and rich outputs, but not stderr: warnings and progress bars differ
  between machines and say nothing about whether a notebook is right.
"""

import os

os.environ.setdefault("MINIGPT_PROFILE", "ci")


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr",)
