#!/usr/bin/env python3
"""Measure the margins of the tests that assert a learned quality.

    python scripts/test_margins.py                         # seeds 0-4, 1 and 2 threads
    python scripts/test_margins.py --seeds 0 1 --threads 1 -k seq2seq

A learned quality (an accuracy, a loss, a win rate) moves with the seed, the number of threads
and the machine's floating-point rounding. A test of one must pass by a margin, not by luck.
This script runs every test marked ``@pytest.mark.learned`` once per seed and thread count
(``MINIGPT_TEST_SEED``, ``OMP_NUM_THREADS``), reads the figures the tests recorded with the
``figure`` fixture from pytest's JUnit XML, and prints the lowest and highest value of each
figure over all runs, with the runs that failed. Each test's threshold sits below the worst figure seen
here, and the comment beside it gives the figures (docs/LOG.md keeps the runs).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_once(seed: int, threads: int, keyword: str | None) -> tuple[dict, list[str], float]:
    """Run the learned tests once; return {(test, figure): value}, the failed tests and seconds."""
    env = dict(os.environ, MINIGPT_TEST_SEED=str(seed), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "report.xml"
        command = [sys.executable, "-m", "pytest", "tests", "-m", "learned", "-q", "-p", "no:nbval",
                   "-o", "addopts=", "-p", "no:cacheprovider", f"--junitxml={xml}"]
        if keyword:
            command += ["-k", keyword]
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=False)
        seconds = time.perf_counter() - start
        if not xml.exists():
            raise SystemExit(f"pytest wrote no report for seed {seed}, {threads} threads: "
                             f"run {' '.join(command)} by hand to see why")
        figures, failed = {}, []
        for case in ET.parse(xml).iter("testcase"):
            name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
            for prop in case.iter("property"):
                figures[(name, prop.get("name"))] = float(prop.get("value"))
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(name)
        return figures, failed, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].strip())
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("-k", dest="keyword", help="only the learned tests matching this -k expression")
    args = parser.parse_args()

    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    failures: dict[str, list[str]] = defaultdict(list)
    for threads in args.threads:
        for seed in args.seeds:
            figures, failed, seconds = run_once(seed, threads, args.keyword)
            print(f"seed {seed}, {threads} thread(s): {len(figures)} figures, "
                  f"{len(failed)} failed, {seconds:.0f} s", flush=True)
            for key, value in figures.items():
                values[key].append(value)
            for name in failed:
                failures[name].append(f"seed {seed}/{threads}t")

    runs = len(args.seeds) * len(args.threads)
    labels = {key: f"{key[0]} :: {key[1]}" for key in values}
    width = max((len(label) for label in labels.values()), default=20)
    print(f"\n{'test :: figure':<{width}}  min .. max over {runs} runs")
    for key, seen in sorted(values.items()):
        print(f"{labels[key]:<{width}}  {min(seen):.4g} .. {max(seen):.4g}")
    print("\nfailed:" if failures else "\nno test failed")
    for name, where in sorted(failures.items()):
        print(f"  {name}: {', '.join(where)}")


if __name__ == "__main__":
    main()
