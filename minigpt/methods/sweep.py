"""The scaling sweep of chapter 07: one family of GPT sizes, trained alike, recorded with
where and how they ran.

``SWEEPS`` names the same six sizes and one held-out bigger size in every profile (only the
tokens change); ``sweep_data`` is the wiki text as characters with a fixed validation slice;
``run_sweep`` / ``run_profile`` train each size with a constant learning rate after warmup and
evaluate at log-spaced steps, so every point of a curve is a fair "run stopped here" for
``scaling.isoflop``. ``save_results`` / ``load_results`` keep runs as JSON with the command,
the code version and the hardware (``minigpt.core.provenance``); ``STORED_SWEEP`` is the gpu
profile's sweep, shipped with the package (``scripts/scaling_sweep.py`` writes one).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from minigpt.core.io import write_text_atomic
from minigpt.core.provenance import environment_meta
from minigpt.core.runtime import profile as active_profile
from minigpt.core.runtime import seed_everything
from minigpt.data.batching import make_get_batch, split_text, to_ids_array
from minigpt.data.corpora import load_corpus
from minigpt.data.tokenizers import CharTokenizer
from minigpt.methods.counting import flops_per_token, non_embedding_params
from minigpt.methods.scaling import RunResult
from minigpt.models.gpt import GPT, GPTConfig
from minigpt.train.config import TrainConfig
from minigpt.train.evaluation import heldout_loss
from minigpt.train.trainer import Trainer

FORMAT = "minigpt.scaling/1"  # tag of the results files written by save_results


# SWEEPS["gpu"] run once by scripts/scaling_sweep.py; its meta says how, where and when
STORED_SWEEP = Path(__file__).with_name("scaling_gpu.json")


SIZES = ((1, 16), (1, 32), (2, 32), (2, 48), (3, 64), (4, 96))  # (n_layer, n_embd): 3.3k-448k N


HELD_OUT = (4, 128)  # a bigger size (793k N), trained after the fit to check its prediction


HEAD_SIZE = 16  # n_head = n_embd / 16


BLOCK_SIZE = 64


VAL_TOKENS = 16_384  # the fixed validation slice every evaluation reads in full


# Every profile trains the same sizes on the same data with the same batches; only the tokens
# per run (and how densely we evaluate) change, so numbers line up across profiles.
_COMMON = {"sizes": SIZES, "held_out": HELD_OUT, "block_size": BLOCK_SIZE, "batch_size": 16,
           "lr": 6e-3, "seed": 0}


SWEEPS: dict[str, dict[str, Any]] = {
    "ci": {**_COMMON, "tokens": 20_480, "warmup_steps": 2, "eval_points": 4},
    "cpu": {**_COMMON, "tokens": 1_000_000, "warmup_steps": 50, "eval_points": 12},
    "gpu": {**_COMMON, "tokens": 5_000_000, "warmup_steps": 50, "eval_points": 20},
}


class SweepData(NamedTuple):
    train_ids: np.ndarray
    val_ids: np.ndarray  # the first VAL_TOKENS of the validation split
    tokenizer: CharTokenizer


def sweep_data(val_tokens: int = VAL_TOKENS) -> SweepData:
    """``wiki`` with a character tokenizer (fitted on all of it), split as everywhere in the
    course; validation is cut to its first ``val_tokens`` so every evaluation costs the same."""
    text = load_corpus("wiki")
    splits = split_text(text)
    tok = CharTokenizer.fit(text)
    ids = {k: to_ids_array(tok.encode(splits[k]), tok.vocab_size) for k in ("train", "val")}
    return SweepData(ids["train"], ids["val"][:val_tokens], tok)


def sweep_configs(vocab_size: int, profile: str | None = None
                  ) -> tuple[list[GPTConfig], GPTConfig]:
    """The GPTConfigs of ``SWEEPS[profile]``'s sizes, and of its held-out size."""
    s = SWEEPS[profile or active_profile()]

    def config(n_layer: int, n_embd: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, block_size=s["block_size"], n_layer=n_layer,
                         n_head=n_embd // HEAD_SIZE, n_embd=n_embd)

    return [config(*size) for size in s["sizes"]], config(*s["held_out"])


def eval_steps(total_steps: int, points: int, first: int = 1) -> list[int]:
    """About ``points`` log-spaced step counts from ``first`` to ``total_steps``, which is last."""
    first = min(max(1, first), total_steps)
    if points <= 1:
        return [total_steps]
    return np.unique(np.rint(np.geomspace(first, total_steps, points)).astype(int)).tolist()


def train_run(cfg: GPTConfig, train_ids: np.ndarray, val_ids: np.ndarray, *, tokens: int,
              batch_size: int, lr: float, eval_points: int, warmup_steps: int = 50,
              seed: int = 0, device: str | None = None, name: str = "") -> RunResult:
    """Train ``GPT(cfg)`` on ``tokens`` training tokens (constant lr after warmup) and
    measure the exact validation loss (``heldout_loss`` over all of ``val_ids``) at
    log-spaced steps from the end of warmup on: deterministic, and the same slice every time."""
    per_step = batch_size * cfg.block_size
    total = max(1, tokens // per_step)
    seed_everything(seed)  # the same initialisation draw and the same batches for every size
    model = GPT(cfg)
    generator = torch.Generator().manual_seed(seed)
    get_batch = make_get_batch({"train": train_ids, "val": val_ids}, batch_size, cfg.block_size,
                               generator=generator)
    config = TrainConfig(max_steps=total, lr=lr, min_lr_ratio=1.0, warmup_steps=warmup_steps,
                         eval_interval=0, progress=False, seed=seed, device=device)
    trainer = Trainer(model, get_batch, config, generator=generator)
    fpt = flops_per_token(cfg)
    steps, losses = [], []
    start = time.perf_counter()
    for step in eval_steps(total, eval_points, first=warmup_steps):
        trainer.fit(steps=step - trainer.step)
        losses.append(heldout_loss(model, val_ids, cfg.block_size, batch_size=64)[0])
        steps.append(step)
    return RunResult(
        name=name or f"L{cfg.n_layer}-C{cfg.n_embd}", n_params=non_embedding_params(cfg),
        steps=steps, tokens=[s * per_step for s in steps],
        flops=[s * per_step * fpt for s in steps], loss=losses,
        n_params_total=sum(p.numel() for p in model.parameters()), flops_per_token=fpt,
        config=asdict(cfg), wall_s=time.perf_counter() - start)


def run_sweep(configs: Sequence[GPTConfig], train_ids: np.ndarray, val_ids: np.ndarray, *,
              tokens: int, batch_size: int, lr: float, eval_points: int,
              warmup_steps: int = 50, seed: int = 0, device: str | None = None,
              progress: bool = True) -> list[RunResult]:
    """``train_run`` for each config, all with the same tokens, batches and settings."""
    results = []
    for cfg in configs:
        run = train_run(cfg, train_ids, val_ids, tokens=tokens, batch_size=batch_size, lr=lr,
                        eval_points=eval_points, warmup_steps=warmup_steps, seed=seed,
                        device=device)
        if progress:
            print(f"{run.name:>9}: N = {run.n_params:>9,}  {run.tokens[-1]:>11,} tokens  "
                  f"{run.flops[-1]:.2e} FLOPs  val loss {run.final_loss:.3f}  {run.wall_s:.1f} s")
        results.append(run)
    return results


def run_profile(profile: str | None = None, progress: bool = True, device: str | None = None
                ) -> list[RunResult]:
    """``SWEEPS[profile]`` on ``sweep_data()``: the sizes, then the held-out size (flagged)."""
    s = SWEEPS[profile or active_profile()]
    data = sweep_data()
    configs, held_out = sweep_configs(data.tokenizer.vocab_size, profile)
    runs = run_sweep([*configs, held_out], data.train_ids, data.val_ids, tokens=s["tokens"],
                     batch_size=s["batch_size"], lr=s["lr"], eval_points=s["eval_points"],
                     warmup_steps=s["warmup_steps"], seed=s["seed"], device=device,
                     progress=progress)
    runs[-1].held_out = True
    return runs


def save_results(path: str | os.PathLike, results: Sequence[RunResult],
                 meta: dict[str, Any] | None = None) -> None:
    """Write ``results`` as JSON, with ``environment_meta()`` updated by ``meta``."""
    data = {"format": FORMAT, "meta": {**environment_meta(), **(meta or {})},
            "runs": [r.to_dict() for r in results]}
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def load_results(path: str | os.PathLike) -> tuple[list[RunResult], dict[str, Any]]:
    """``(runs, meta)`` from a file written by ``save_results``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a scaling results file (no format {FORMAT!r})")
    return [RunResult.from_dict(r) for r in data["runs"]], data["meta"]
