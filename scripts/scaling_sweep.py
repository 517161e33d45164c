#!/usr/bin/env python3
"""Train chapter 07's scaling sweep and save the results, with how they were made, as JSON.

    python scripts/scaling_sweep.py --profile gpu --out minigpt/methods/scaling_gpu.json
    python scripts/scaling_sweep.py --profile ci --out /tmp/scaling_ci.json      # seconds

It trains every size of ``minigpt.methods.sweep.SWEEPS[profile]`` and then the held-out size, on
``wiki`` with the character tokenizer (``sweep.sweep_data``, the notebook's data), and writes
``sweep.save_results``' JSON: the runs, and in ``meta`` the exact command, the profile and
its settings, the code version, the hardware and the date. The notebook reads such a file
with ``sweep.load_results``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minigpt.core import runtime
from minigpt.methods import sweep


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=sorted(sweep.SWEEPS),
                        help="sweep settings (default: MINIGPT_PROFILE, else gpu with CUDA)")
    parser.add_argument("--out", required=True, help="where to write the JSON results")
    parser.add_argument("--device", help="e.g. cpu or cuda (default: the best one here)")
    parser.add_argument("--quiet", action="store_true", help="no line per run")
    args = parser.parse_args(argv)
    profile = args.profile or runtime.profile()

    start = time.perf_counter()
    runs = sweep.run_profile(profile, progress=not args.quiet, device=args.device)
    total_s = time.perf_counter() - start
    command = " ".join(["python", "scripts/scaling_sweep.py", *map(shlex.quote, argv)])
    meta = {"command": command, "profile": profile, "settings": sweep.SWEEPS[profile],
            "total_s": round(total_s, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep.save_results(out, runs, meta)
    if not args.quiet:
        print(f"{len(runs)} runs in {total_s:.0f} s -> {out}")


if __name__ == "__main__":
    main()
