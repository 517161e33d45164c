#!/usr/bin/env python3
"""Keep the course's notebooks consistent and their outputs real.

    python scripts/notebooks.py sync              # badges + setup cells + README chapter table
    python scripts/notebooks.py run               # re-execute every notebook in place (cpu profile)
    python scripts/notebooks.py run notebooks/00_welcome.ipynb
    python scripts/notebooks.py check             # what tests/test_notebooks.py checks, as a report

`run` executes each notebook top to bottom on a fresh kernel under MINIGPT_PROFILE=cpu (or
--profile), writes the outputs back and stamps the notebook so the hygiene test can tell stale
outputs from fresh ones. Exercise stubs (exercises/*.ipynb) are synced but never run: learners
fill them in. Their solutions (exercises/solutions/) are run like chapters.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minigpt.course import notebooks


def all_notebooks() -> list[Path]:
    return sorted(p for d in notebooks.NOTEBOOK_DIRS for p in (ROOT / d).glob("*.ipynb"))


def runnable_notebooks() -> list[Path]:
    return [p for p in all_notebooks() if p.parent.name != "exercises"]


def sync() -> None:
    for path in all_notebooks():
        nb = nbformat.read(path, as_version=4)
        if notebooks.sync_notebook(nb, path.relative_to(ROOT).as_posix()):
            nbformat.write(nb, path)
            print(f"synced {path.relative_to(ROOT)}")
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(notebooks.README_TABLE_START, 1)
    _, tail = rest.split(notebooks.README_TABLE_END, 1)
    table = notebooks.readme_chapter_table(ROOT)
    new = f"{head}{notebooks.README_TABLE_START}\n{table}\n{notebooks.README_TABLE_END}{tail}"
    if new != text:
        readme.write_text(new, encoding="utf-8")
        print("synced README.md chapter table")


def run(paths: list[str], profile: str) -> None:
    targets = [Path(p).resolve() for p in paths] or runnable_notebooks()
    for path in targets:
        print(f"running {path.relative_to(ROOT)} under the {profile} profile ...", flush=True)
        seconds = notebooks.execute_notebook(path, profile=profile)
        print(f"  done in {seconds:.1f} s", flush=True)
        if path.parent.name == "notebooks" and profile == "cpu":
            if problem := notebooks.time_line_problem(nbformat.read(path, as_version=4)):
                print(f"  note: {problem}", flush=True)
    for path in runnable_notebooks():  # a re-run chapter may have moved another's chart
        rel = path.relative_to(ROOT).as_posix()
        if any("running chart" in p for p in notebooks.hygiene_problems(nbformat.read(path, as_version=4), rel)):
            print(f"note: {rel}'s running chart now shows older figures: run it again", flush=True)
    sync()  # the README table shows the new timings


def check() -> int:
    bad = 0
    for path in runnable_notebooks():
        rel = path.relative_to(ROOT).as_posix()
        nb = nbformat.read(path, as_version=4)
        for problem in notebooks.hygiene_problems(nb, rel):
            print(f"{rel}: {problem}")
            bad += 1
        if path.parent.name == "notebooks" and (problem := notebooks.time_line_problem(nb)):
            print(f"{rel}: {problem}")
            bad += 1
    print("all notebooks clean" if not bad else f"{bad} problem(s)")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("sync", help="write badges, setup cells and the README chapter table")
    run_p = sub.add_parser("run", help="re-execute notebooks in place on a fresh kernel")
    run_p.add_argument("paths", nargs="*", help="notebooks to run (default: all but exercise stubs)")
    run_p.add_argument("--profile", default="cpu", choices=["ci", "cpu", "gpu"])
    sub.add_parser("check", help="report stale, out-of-order or failed outputs, and Time lines "
                                 "that disagree with the stored run")
    args = parser.parse_args()
    if args.command == "sync":
        sync()
    elif args.command == "run":
        if args.profile != "cpu":
            print("note: committed outputs must come from the cpu profile; this run is for a look only")
        run(args.paths, args.profile)
    else:
        return check()
    return 0


if __name__ == "__main__":
    sys.exit(main())
