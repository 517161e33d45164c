"""Colab ships ipywidgets 7.7; this machine's JupyterLab has 8. The widget wiring tests
(tests/test_widgets.py) run again, in a subprocess, against Colab's ipywidgets 7.7.1.

That copy lives apart from the virtual environment, in ``.colab-ipywidgets/`` (git-ignored),
which .ci/run fills with ``pip install --target .colab-ipywidgets --no-deps ipywidgets==7.7.1
ipython_genutils==0.2.0``. Where it is missing the test skips and gives that command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COLAB = ROOT / ".colab-ipywidgets"
INSTALL = ("python -m pip install --target .colab-ipywidgets --no-deps "
           "ipywidgets==7.7.1 ipython_genutils==0.2.0")


def colab_env() -> dict[str, str]:
    """This environment with Colab's ipywidgets first on the import path."""
    path = os.pathsep.join(p for p in (str(COLAB), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


@pytest.mark.skipif(not (COLAB / "ipywidgets").is_dir(),
                    reason=f"Colab's ipywidgets 7.7 is not installed apart; run: {INSTALL}")
def test_widget_wiring_passes_under_colabs_ipywidgets_7_7():
    version = subprocess.run([sys.executable, "-c", "import ipywidgets; print(ipywidgets.__version__)"],
                             env=colab_env(), capture_output=True, text=True, check=True).stdout
    assert version.startswith("7.7"), f"expected ipywidgets 7.7 from {COLAB}, got {version}"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-o", "addopts=-p no:cacheprovider",
                          "-W", "ignore::DeprecationWarning", str(ROOT / "tests" / "test_widgets.py")],
                         env=colab_env(), capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, f"widget tests fail under ipywidgets {version}:\n{run.stdout[-4000:]}"
