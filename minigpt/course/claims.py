"""A chapter's headline claims, each asserted with its profile's threshold, and the table of
"What this chapter showed" that ends the chapter.

    shown = claims.Claims("04 · Attention and the Transformer")
    shown.at_least("the Transformer recalls a symbol 40 steps back (accuracy)", accuracy,
                   cpu=0.90, ci=0.20, fmt="{:.0%}")
    shown.at_most("the GPT continues text better than the masked LM (bits per byte, GPT - MLM)",
                  gpt_bpb - mlm_bpb, cpu=-0.3, ci=0.5)
    shown                     # the table, rendered in a notebook

Each check raises ``AssertionError`` the moment a measured value misses its threshold, so a
stored run that finished without errors proves every claim it made. Thresholds come from the
profile (``runtime.profile()``): under ``cpu`` (and ``gpu``, unless given) the claim itself, with
the margin measured over seeds in docs/LOG.md; under ``ci`` (a few steps) a bound that a broken
model still fails. ``scripts/claim_margins.py`` re-runs a notebook over seeds
(``$MINIGPT_SEED_OFFSET``, read by ``seed_everything``) and reads each claim's values back from
``$MINIGPT_CLAIMS_OUT`` (JSON lines) to measure those margins; it alone sets
``$MINIGPT_CLAIMS_RECORD_ONLY``, so that one missed claim does not hide the later ones.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

from minigpt.core import runtime

OUT_ENV = "MINIGPT_CLAIMS_OUT"  # where every checked claim is appended as a JSON line, if set
RECORD_ONLY_ENV = "MINIGPT_CLAIMS_RECORD_ONLY"  # "1": record without raising (claim_margins.py only)

__all__ = ["OUT_ENV", "RECORD_ONLY_ENV", "Claim", "Claims"]


@dataclass(frozen=True)
class Claim:
    """One checked claim: what it says, the value measured, and the bound it had to meet."""

    text: str
    measured: float
    op: str  # ">=" or "<="
    threshold: float
    profile: str
    fmt: str = "{:.3g}"

    @property
    def holds(self) -> bool:
        if math.isnan(self.measured):
            return False
        return self.measured >= self.threshold if self.op == ">=" else self.measured <= self.threshold

    def row(self) -> tuple[str, str, str]:
        return self.text, self.fmt.format(self.measured), f"{self.op} {self.fmt.format(self.threshold)}"


class Claims:
    """The headline claims of one chapter, in the order the chapter checks them."""

    def __init__(self, chapter: str):
        self.chapter = chapter
        self.checked: list[Claim] = []

    def at_least(self, text: str, measured: float, *, cpu: float, ci: float,
                 gpu: float | None = None, fmt: str = "{:.3g}") -> None:
        """Assert ``measured >= threshold`` of the active profile (gpu defaults to cpu's)."""
        self._check(text, measured, ">=", cpu, ci, gpu, fmt)

    def at_most(self, text: str, measured: float, *, cpu: float, ci: float,
                gpu: float | None = None, fmt: str = "{:.3g}") -> None:
        """Assert ``measured <= threshold`` of the active profile (gpu defaults to cpu's)."""
        self._check(text, measured, "<=", cpu, ci, gpu, fmt)

    def _check(self, text: str, measured: float, op: str, cpu: float, ci: float,
               gpu: float | None, fmt: str) -> None:
        profile = runtime.profile()
        threshold = runtime.by_profile(ci=ci, cpu=cpu, gpu=cpu if gpu is None else gpu)
        claim = Claim(text, float(measured), op, float(threshold), profile, fmt)
        self._log(claim)
        if not claim.holds and os.environ.get(RECORD_ONLY_ENV) != "1":
            raise AssertionError(
                f"{self.chapter}: not shown: {text}. Measured {fmt.format(claim.measured)}, the "
                f"{profile} profile needs {op} {fmt.format(claim.threshold)}. If you changed a "
                "setting, this is what it cost; if you changed nothing, re-run the notebook from "
                "the top on a fresh kernel and tell the course (the margins are in docs/LOG.md)."
            )
        self.checked = [c for c in self.checked if c.text != text] + [claim]

    def _log(self, claim: Claim) -> None:
        path = os.environ.get(OUT_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps({"chapter": self.chapter, **asdict(claim)}) + "\n")

    def markdown(self) -> str:
        """The "What this chapter showed" table: every claim checked so far, as measured."""
        profile = self.checked[0].profile if self.checked else runtime.profile()
        lines = [f"**What this chapter showed** ({profile} profile; each line was asserted)", "",
                 "| claim | measured | needed |", "|---|---|---|"]
        lines += ["| " + " | ".join(c.row()) + " |" for c in self.checked]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __repr__(self) -> str:
        width = max((len(c.text) for c in self.checked), default=5)
        rows = [f"{text:<{width}}  {value:>9}  {needed}" for text, value, needed in
                (c.row() for c in self.checked)]
        return "\n".join([f"What this chapter showed ({self.chapter})", *rows])
