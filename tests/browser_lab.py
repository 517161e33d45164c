"""JupyterLab in a real browser: the helpers behind tests/test_browser.py.

``Lab`` starts a headless JupyterLab server on 127.0.0.1 over a temporary root holding copies
of the notebooks (outputs stripped, so whatever shows afterwards was made by this run and the
committed notebooks are never rewritten). ``run_notebook`` opens one notebook in Debian's
Chromium through Playwright, runs every cell from the UI (``notebook:run-all-cells``), waits
for the kernel to finish, and reports the error outputs, the widgets and a screenshot.

How JupyterLab 4 shows a failed cell (checked with ``raise ValueError("boom")``, JupyterLab
4.6): the traceback is rendered as ``.jp-OutputArea-output[data-mime-type=
"application/vnd.jupyter.stderr"]``, the same element a harmless warning or progress bar
gets; ``application/vnd.jupyter.error`` appears only in the output's model, whose ``type`` is
``"error"``. So errors are read from the notebook model (``output.type === 'error'``), and,
as a cross-check that does not depend on the model API, from stderr elements whose text holds
a Python traceback.

Widgets: an output holding a widget view must show ``.jupyter-widgets`` without the
ipywidgets manager's failure signs ("Error displaying widget", ``.jupyter-widgets-error-widget``,
"Loading widget..." that never goes away). HTML whose quoting broke (an attribute cut short)
shows its own markup as text: output text that looks like ``style='`` or ``<td ...>`` is reported.

Nothing here needs a display, a GPU or a network: Playwright drives Chromium headless, offline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/lib/chromium/chromium")
# Offline, possibly as root in a container: no sandbox, no GPU, nothing that phones home.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
PLAYWRIGHT_HINT = "pip install playwright (or pip install -e \".[test]\")"
CHROMIUM_HINT = ("apt-get install -y chromium, as root (Debian's build; `playwright install` is "
                 "not needed, it downloads browsers)")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def chromium_path() -> str | None:
    """Chromium's executable: $MINIGPT_CHROMIUM if set, else Debian's."""
    wanted = os.environ.get("MINIGPT_CHROMIUM")
    for path in ([wanted] if wanted else []) + list(CHROMIUM_CANDIDATES):
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing() -> str | None:
    """Why the browser test cannot run here (None when it can)."""
    lacking = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as err:
        lacking.append(f"the Python package playwright ({err}): {PLAYWRIGHT_HINT}")
    if chromium_path() is None:
        lacking.append("Chromium, looked for at " + ", ".join(CHROMIUM_CANDIDATES)
                       + " and $MINIGPT_CHROMIUM: " + CHROMIUM_HINT)
    return "browser test needs " + "; and ".join(lacking) if lacking else None


def has_widgets(notebook: Path) -> bool:
    """Whether a notebook shows widgets: its stored outputs hold a widget view."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if WIDGET_MIME in out.get("data", {}):
                return True
    return False


def copy_stripped(src: Path, dst: Path) -> Path:
    """Copy a notebook without outputs, execution counts or saved widget state."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb.get("metadata", {}).pop("widgets", None)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return dst


def write_notebook(path: Path, *sources: str) -> Path:
    """A small notebook with one code cell per source (for tests of the checks themselves)."""
    cells = [{"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
             for s in sources]
    nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# JupyterLab settings for a test: no autosave (the copies stay as written), no news popup, no
# virtual scrolling (every cell is in the DOM, so every output can be checked and photographed).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


class Lab:
    """A headless JupyterLab server over ``root``; use as a context manager.

    Kernels inherit ``MINIGPT_PROFILE=profile``. Every Jupyter directory that could be written
    (settings, workspaces, runtime files) lives under a temporary folder removed on exit. The
    server runs in a process group of its own and each kernel in another (jupyter_client starts
    them so): ``stop`` asks the server to end its kernels, ends the server's group, then kills
    the group of any kernel still there."""

    def __init__(self, root: Path, profile: str = "ci", startup_timeout: float = 90.0):
        self.root, self.profile, self.startup_timeout = Path(root), profile, startup_timeout
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._home = Path(tempfile.mkdtemp(prefix="minigpt-lab-home-"))
        self.log_path = self._home / "jupyterlab.log"

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        settings = self._home / "settings"
        for plugin, values in LAB_SETTINGS.items():
            package, name = plugin.rsplit("/", 1)
            target = settings / package / f"{name}.jupyterlab-settings"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values), encoding="utf-8")
        env = dict(os.environ, MINIGPT_PROFILE=self.profile,
                   JUPYTERLAB_SETTINGS_DIR=str(settings),
                   JUPYTERLAB_WORKSPACES_DIR=str(self._home / "workspaces"),
                   JUPYTER_RUNTIME_DIR=str(self._home / "runtime"),
                   PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
               "--ServerApp.port_retries=0", f"--ServerApp.root_dir={self.root}",
               "--IdentityProvider.token=", "--ServerApp.password=",
               "--ServerApp.disable_check_xsrf=True",  # lets shutdown_kernels DELETE sessions
               "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/api/status", timeout=5):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer on {self.url} within {self.startup_timeout:.0f} s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def _api(self, method: str, path: str) -> object:
        req = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def kernels(self) -> list:
        """The server's running kernels (its REST API's view)."""
        return self._api("GET", "/api/kernels") or []

    def shutdown_kernels(self) -> None:
        """End every session and kernel (between notebooks: one kernel at a time on 2 cores)."""
        try:
            for session in self._api("GET", "/api/sessions") or []:
                self._api("DELETE", f"/api/sessions/{session['id']}")
            for kernel in self._api("GET", "/api/kernels") or []:
                self._api("DELETE", f"/api/kernels/{kernel['id']}")
        except (urllib.error.URLError, OSError, ValueError):
            pass  # the server is going away anyway; stop() ends its process group

    @staticmethod
    def _stat(pid: int) -> list[str] | None:
        """Fields 3.. of /proc/PID/stat (state, ppid, pgrp, ...), None if there is no such process."""
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None

    def kernel_pids(self) -> list[tuple[int, str]]:
        """The server's child processes (its kernels) as (pid, start time), read from /proc."""
        found = []
        if self.proc is None:
            return found
        for entry in Path("/proc").glob("[0-9]*"):
            fields = self._stat(int(entry.name))
            if fields and int(fields[1]) == self.proc.pid:
                found.append((int(entry.name), fields[19]))
        return found

    def stop(self) -> None:
        # Note the kernels now, while they are still the server's children, to end any that
        # the server leaves behind.
        kernels = self.kernel_pids()
        if self.proc is not None and self.proc.poll() is None:
            self.shutdown_kernels()
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.proc is not None:
            # Anything else the server started in its own group.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for pid, started in kernels:  # each kernel leads its own process group (torchrun workers too)
            fields = self._stat(pid)
            if fields and fields[19] == started and int(fields[2]) == pid:  # the same process, still there
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self.proc = None
        shutil.rmtree(self._home, ignore_errors=True)


def launch_chromium(playwright):
    """Debian's Chromium, headless, through a started ``sync_playwright()``."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS,
                                      headless=True, timeout=60_000)


@dataclass
class NotebookRun:
    """What a notebook run in the browser left on the page."""

    name: str
    seconds: float
    code_cells: int
    counts: list = field(default_factory=list)     # execution counts, in cell order
    errors: list = field(default_factory=list)     # "cell N: Ename: evalue" for each error output
    tracebacks_in_page: int = 0                     # stderr elements showing a Python traceback
    widget_outputs: int = 0                         # outputs holding a widget view (model)
    widgets_rendered: int = 0                       # of those, rendered as .jupyter-widgets
    widget_problems: list = field(default_factory=list)
    markup_leaks: list = field(default_factory=list)  # outputs showing HTML markup as text
    stopped: str = ""                               # why waiting ended early ("" if it finished)
    screenshot: Path | None = None

    @property
    def failed(self) -> bool:
        """Whether the page shows a failed cell (error output) or an unfinished run."""
        return bool(self.errors or self.tracebacks_in_page or self.stopped)

    def summary(self) -> str:
        head = (f"{self.name}: {self.seconds:.1f} s, {self.code_cells} code cells, "
                f"counts {self.counts}, widgets {self.widgets_rendered}/{self.widget_outputs}")
        lines = [head]
        lines += [f"  error: {e}" for e in self.errors]
        if self.tracebacks_in_page:
            lines.append(f"  {self.tracebacks_in_page} traceback(s) rendered in the page")
        lines += [f"  widget problem: {p}" for p in self.widget_problems]
        lines += [f"  HTML markup shown as text: ...{t}..." for t in self.markup_leaks]
        if self.stopped:
            lines.append(f"  stopped: {self.stopped}")
        if self.screenshot:
            lines.append(f"  screenshot: {self.screenshot}")
        return "\n".join(lines)


_PANEL = "window.jupyterapp && window.jupyterapp.shell.currentWidget"
# Rendered text that looks like HTML markup: an attribute or a tag shown instead of applied.
MARKUP_LEAK = r"/\b(style|title|class|href|src)=['\"]|<\/?(td|tr|th|table|div|span|pre|p|b)\b[^<>]*>/"
_READY = f"""(path) => {{
    const p = {_PANEL};
    if (!p || !p.content || !p.content.model || !p.sessionContext || !p.context) return false;
    if (p.context.path !== path) return false;
    const k = p.sessionContext.session && p.sessionContext.session.kernel;
    return !!(p.context && p.context.isReady && k && k.status === 'idle');
}}"""
# The state of the run, read from the notebook model (counts, error outputs) and the page.
_STATE = f"""() => {{
    const p = {_PANEL};
    const k = p.sessionContext.session && p.sessionContext.session.kernel;
    const cells = [], errors = [];
    let widgetOutputs = 0;
    p.content.widgets.forEach((cell, i) => {{
        const m = cell.model;
        if (m.type !== 'code') return;
        const prompt = cell.node.querySelector('.jp-InputPrompt');
        const busy = m.executionState === 'running' || (!!prompt && prompt.textContent.includes('*'));
        cells.push({{index: i, count: m.executionCount, busy: busy,
                     empty: m.sharedModel.getSource().trim() === ''}});
        for (let j = 0; j < m.outputs.length; j++) {{
            const o = m.outputs.get(j);
            if (o.type === 'error') {{
                const e = o.toJSON();
                errors.push(`cell ${{i}}: ${{e.ename}}: ${{e.evalue}}\\n` + (e.traceback || []).join('\\n'));
            }}
            if (o.data && o.data['{WIDGET_MIME}']) widgetOutputs += 1;
        }}
    }});
    const stderr = Array.from(p.content.node.querySelectorAll(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'));
    const tracebacks = stderr.filter(e => /Traceback \\(most recent call last\\)|^\\s*-{{20,}}\\s*\\n\\s*\\w+(Error|Exception)\\b/m
                                          .test(e.textContent)).length;
    const widgetNodes = Array.from(p.content.node.querySelectorAll('.jp-OutputArea-output'))
        .filter(e => e.querySelector('.jupyter-widgets') || e.classList.contains('jupyter-widgets'));
    const problems = [];
    let rendered = 0;
    for (const e of widgetNodes) {{
        const text = e.textContent || '';
        if (e.querySelector('.jupyter-widgets-error-widget')) problems.push('error widget: ' + text.slice(0, 200));
        else if (/Error displaying widget/.test(text)) problems.push(text.slice(0, 200));
        else rendered += 1;
    }}
    const leaks = [];
    for (const e of p.content.node.querySelectorAll('.jp-OutputArea-output')) {{
        if ((e.textContent || '').trim() === 'Loading widget...') problems.push('Loading widget... (never rendered)');
        // HTML that broke (an unescaped quote, a stray '>') shows its own markup as text.
        const shown = e.innerText || '';
        const m = shown.match({MARKUP_LEAK});
        if (m && !(e.parentElement && e.parentElement.closest('.jp-OutputArea-output'))) {{
            const at = Math.max(0, m.index - 60);
            leaks.push(shown.slice(at, m.index + 80).replace(/\\s+/g, ' '));
        }}
    }}
    return {{kernel: k ? k.status : 'none', cells: cells, errors: errors, tracebacks: tracebacks,
             widgetOutputs: widgetOutputs, widgetsRendered: rendered, widgetProblems: problems,
             leaks: leaks}};
}}"""


def _wait_for_run(page, timeout: float, settle: float) -> tuple[dict, str]:
    """Poll until the run is over: kernel idle, no cell queued or running, and every code cell
    counted (or an error output stopped run-all). Returns the last state and why waiting ended
    early ("" when the run completed)."""
    deadline = time.monotonic() + timeout
    quiet_since = None
    state: dict = {}
    while True:
        state = page.evaluate(_STATE)
        cells = [c for c in state["cells"] if not c["empty"]]  # JupyterLab never counts empty cells
        busy = any(c["busy"] for c in cells)
        all_counted = all(c["count"] is not None for c in cells)
        if state["kernel"] == "dead":  # 'unknown', 'starting', 'restarting' can pass: keep polling
            return state, f"kernel is {state['kernel']}"
        if state["kernel"] == "idle" and not busy:
            if all_counted or state["errors"]:
                return state, ""
            # Idle, nothing queued, cells unrun and no error: a restart or interrupt dropped the
            # queue. Give it a few seconds (a status change can lag) before calling it stopped.
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > settle:
                unrun = [c["index"] for c in cells if c["count"] is None]
                return state, f"execution stopped with cells {unrun} not run"
        else:
            quiet_since = None
        if time.monotonic() > deadline:
            running = [c["index"] for c in cells if c["busy"]]
            return state, f"timed out after {timeout:.0f} s (kernel {state['kernel']}, cells {running} still queued or running)"
        time.sleep(0.5)


def _screenshot_whole_notebook(page, path: Path, max_height: int = 30_000) -> None:
    """Grow the viewport to the notebook's full height (JupyterLab scrolls inside its own panel,
    so Playwright's full_page alone shows one screen), then photograph it."""
    extra = page.evaluate(f"""() => {{
        const p = {_PANEL};
        let best = 0;
        for (const e of [p.content.node, ...p.content.node.querySelectorAll('.jp-WindowedPanel-outer')]) {{
            e.scrollTop = 0;
            best = Math.max(best, e.scrollHeight - e.clientHeight);
        }}
        return best;
    }}""")
    size = page.viewport_size or {"width": 1280, "height": 900}
    height = min(size["height"] + int(extra) + 40, max_height)
    page.set_viewport_size({"width": size["width"], "height": height})
    page.wait_for_timeout(1000)  # layout and images after the resize
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True, timeout=120_000)
    page.set_viewport_size(size)


def run_notebook(browser, lab: Lab, relpath: str, *, timeout: float = 240.0,
                 screenshot: Path | None = None, settle: float = 8.0) -> NotebookRun:
    """Open ``relpath`` (relative to the lab's root) in a new tab, run all cells from the UI,
    wait for the end, and describe what the page shows. The kernel is shut down afterwards."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(60_000)
    try:
        # A workspace of its own per page: JupyterLab would otherwise reopen earlier notebooks.
        workspace = "test-" + re.sub(r"\W", "-", relpath)
        page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{quote(relpath)}?reset",
                  wait_until="domcontentloaded", timeout=90_000)
        try:
            page.wait_for_function(_READY, arg=relpath, timeout=120_000, polling=250)
        except Exception as err:  # Playwright's TimeoutError: say what the server said
            raise RuntimeError(f"{relpath} did not open with an idle kernel within 120 s ({err});"
                               f" JupyterLab's log ends:\n{lab.log_tail()}") from err
        page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
        start = time.monotonic()
        # Not awaited in the page: run-all's promise resolves only when every cell is done.
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return true; }")
        state, stopped = _wait_for_run(page, timeout, settle)
        seconds = time.monotonic() - start
        # Widget views render asynchronously after their output arrives: give them a moment.
        wait_until = time.monotonic() + 30
        while (state["widgetOutputs"] > state["widgetsRendered"] + len(state["widgetProblems"])
               or any("Loading widget" in p for p in state["widgetProblems"])) and time.monotonic() < wait_until:
            page.wait_for_timeout(500)
            state = page.evaluate(_STATE)
        run = NotebookRun(
            name=relpath, seconds=seconds,
            code_cells=sum(1 for c in state["cells"] if not c["empty"]),
            counts=[c["count"] for c in state["cells"]],
            errors=[ANSI.sub("", e) for e in state["errors"]],
            tracebacks_in_page=state["tracebacks"],
            widget_outputs=state["widgetOutputs"], widgets_rendered=state["widgetsRendered"],
            widget_problems=state["widgetProblems"], markup_leaks=state["leaks"], stopped=stopped)
        if screenshot is not None:
            _screenshot_whole_notebook(page, screenshot)
            run.screenshot = screenshot
        return run
    finally:
        try:
            page.close()
        finally:
            lab.shutdown_kernels()
