#!/usr/bin/env python3
"""Measure the margins of a chapter's asserted claims over seeds (and thread counts).

    python scripts/claim_margins.py notebooks/04_transformer.ipynb --seeds 0 1 2
    python scripts/claim_margins.py notebooks/04_transformer.ipynb --seeds 0 1 2 --threads 1 2

Runs the notebook top to bottom on a fresh kernel once per (seed, threads), in memory (the
notebook file is not written), under the cpu profile unless --profile says otherwise, with
``$MINIGPT_SEED_OFFSET`` = the seed (``minigpt.seed_everything`` adds it to every seed it sets),
the claims recorded but not raised (``minigpt.course.claims``), and the running chart written
to a scratch file. Prints each claim's threshold, its values, and its worst margin, as a
markdown table for docs/LOG.md. A claim that came out the same under every seed is flagged: it
is saturated (1.00 on every seed), or the randomness it depends on bypasses ``seed_everything``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minigpt.core.runtime import SEED_OFFSET_ENV
from minigpt.course import claims, notebooks


def measure(path: Path, seeds: list[int], threads: list[int], profile: str, timeout: int = 1200) -> dict:
    values: dict[tuple[str, str, float], list[tuple[str, float]]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as scratch:
        for n_threads in threads:
            for seed in seeds:
                out = Path(scratch) / f"claims-{seed}-{n_threads}.jsonl"
                env = {"MINIGPT_PROFILE": profile, SEED_OFFSET_ENV: str(seed),
                       claims.OUT_ENV: str(out), claims.RECORD_ONLY_ENV: "1",
                       "MINIGPT_LEADERBOARD": str(Path(scratch) / "leaderboard.json"),
                       "OMP_NUM_THREADS": str(n_threads), "MKL_NUM_THREADS": str(n_threads)}
                nb = nbformat.read(path, as_version=4)
                seconds = notebooks.run_kernel(nb, path.parent, env, timeout=timeout)
                print(f"seed {seed}, {n_threads} thread(s): {seconds:.0f} s", flush=True)
                for line in out.read_text(encoding="utf-8").splitlines() if out.exists() else []:
                    c = json.loads(line)
                    values[(c["text"], c["op"], c["threshold"])].append((f"s{seed}/t{n_threads}", c["measured"]))
    return values


def report(values: dict, fmt: str = "{:.4g}") -> str:
    lines = ["| claim | needs | values | worst margin |", "|---|---|---|---|"]
    for (text, op, threshold), seen in values.items():
        numbers = [v for _, v in seen]
        worst = min(numbers) - threshold if op == ">=" else threshold - max(numbers)
        same = len(set(numbers)) == 1 and len(numbers) > 1
        flag = " (the same under every seed: saturated, or not seeded by seed_everything)" if same else ""
        listed = ", ".join(f"{name} {fmt.format(v)}" for name, v in seen)
        lines.append(f"| {text} | {op} {fmt.format(threshold)} | {listed} | {fmt.format(worst)}{flag} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--profile", default="cpu", choices=["ci", "cpu", "gpu"])
    parser.add_argument("--timeout", type=int, default=1200,
                        help="seconds a cell may run (raise it when the machine is shared)")
    args = parser.parse_args()
    path = Path(args.notebook).resolve()
    values = measure(path, args.seeds, args.threads, args.profile, args.timeout)
    if not values:
        print("the notebook checked no claims (minigpt.course.claims)")
        return 1
    print(report(values))
    missed = [key for key, seen in values.items()
              if any((v < key[2]) if key[1] == ">=" else (v > key[2]) for _, v in seen)]
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
