"""The command line, for people who live in a terminal: ``python -m minigpt ...``.

    python -m minigpt presets                            # the named model sizes
    python -m minigpt train --corpus wiki --preset micro --steps 2000 --out runs/wiki.pt
    python -m minigpt train --out runs/wiki.pt --steps 4000 --resume   # carry on to step 4000
    python -m minigpt sample --checkpoint runs/wiki.pt --prompt "The history of " --top-p 0.9
    torchrun --standalone --nproc_per_node=2 -m minigpt train --corpus wiki --out runs/wiki.pt

``train`` does what chapter 06 does in cells: load a corpus (``minigpt.data.corpora``), fit a
tokenizer on its training part, build ``GPT`` from a preset, train it with the one
``Trainer`` (progress bar, warmup + cosine, checkpoints), and report held-out bits per byte.
The checkpoint holds the model's settings and the tokenizer beside the weights, so ``sample``
needs nothing but the file; it loads with ``torch.load(..., weights_only=True)``.

Started by ``torchrun`` (or ``python -m torch.distributed.run``), ``train`` runs on several
processes with data parallelism (``minigpt.train.distributed``): each process draws ``--batch-size``
sequences per step, so the global batch is that times the number of processes; only the first
process prints and writes the checkpoint.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from minigpt.core import metrics
from minigpt.core.runtime import check_device, seed_everything
from minigpt.core.runtime import device as best_device
from minigpt.data import batching, corpora
from minigpt.data.bpe import train_bpe
from minigpt.data.tokenizers import CharTokenizer, tokenizer_from_dict, tokenizer_to_dict
from minigpt.models.gpt import GPT, PRESETS, GPTConfig, sample
from minigpt.train import distributed
from minigpt.train.checkpoint import load_checkpoint
from minigpt.train.config import TrainConfig
from minigpt.train.evaluation import heldout_loss
from minigpt.train.trainer import Trainer


def make_tokenizer(spec: str, text: str):
    """``"char"`` (every character of ``text``, plus ``?`` for unseen ones) or ``"bpe:N"`` (a
    byte-level BPE of N tokens learnt from ``text``)."""
    if spec == "char":
        return CharTokenizer.fit(text, unk="?")
    if spec.startswith("bpe:") and spec[4:].isdigit():
        return train_bpe(text, int(spec[4:]))
    raise ValueError(f"unknown tokenizer {spec!r}: use 'char' or 'bpe:N' (e.g. bpe:2048)")


def run_settings(checkpoint: dict, path: str | Path) -> tuple[GPTConfig, object, dict]:
    """``(model settings, tokenizer, extra)`` stored in a checkpoint of ``python -m minigpt
    train``; a clear error for any other checkpoint."""
    extra = checkpoint.get("extra", {})
    if "model_config" not in extra or "tokenizer" not in extra:
        raise ValueError(f"{path} is a Trainer checkpoint without the model's settings and "
                         "tokenizer: only checkpoints from `python -m minigpt train` can be "
                         "sampled or resumed from the command line")
    tokenizer = tokenizer_from_dict(extra["tokenizer"], source=f"the tokenizer in {path}")
    return GPTConfig(**extra["model_config"]), tokenizer, extra


LEAVE_DEVICE_OUT = "use --device cpu, or leave --device out to use the best device there is"


def tokenizer_spec(tokenizer) -> str:
    """The ``--tokenizer`` value that makes a tokenizer like ``tokenizer``: ``char`` or
    ``bpe:N`` (N its vocabulary size)."""
    kind = tokenizer_to_dict(tokenizer)["kind"]
    return "char" if kind == "char" else f"{kind}:{tokenizer.vocab_size}"


def check_train_args(args: argparse.Namespace) -> None:
    """Refuse, before any work, the ``train`` options that cannot make a run."""
    rules = [
        ("--steps", args.steps, args.steps >= 1, ">= 1 (the optimizer steps to train in all)"),
        ("--batch-size", args.batch_size, args.batch_size >= 1, ">= 1"),
        ("--block-size", args.block_size, args.block_size is None or args.block_size >= 1,
         ">= 1"),
        ("--eval-interval", args.eval_interval, args.eval_interval >= 0,
         ">= 0 (0: evaluate and save at the end only)"),
        ("--lr", args.lr, args.lr > 0, "> 0"),
        ("--dropout", args.dropout, args.dropout is None or 0 <= args.dropout < 1,
         "in [0, 1)"),
    ]
    for option, value, ok, rule in rules:
        if not ok:
            raise ValueError(f"{option} must be {rule}, got {value}")
    if args.device is not None:
        check_device(args.device, f"--device {args.device}", LEAVE_DEVICE_OUT)
    check_out(Path(args.out))


def check_out(out: Path) -> None:
    """Make sure a checkpoint can be written to ``out`` before training starts, not after."""
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory: give a file path, e.g. "
                         f"--out {out / 'run.pt'}")
    folder = out.parent
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise ValueError(f"--out {out}: {existing} is a file, so it cannot hold a folder; "
                         "choose another --out")
    if existing != folder:  # Trainer.save creates the missing folders
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"--out {out}: cannot create the folder {folder}, as {existing} is "
                             "not writable; choose another --out")
        return
    try:  # the surest test: write a file beside out, as Trainer.save does
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{out.name}.", suffix=".probe"):
            pass
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write in {folder} ({e.strerror or e}); choose "
                         "another --out, or make the folder writable") from None


def load_model(path: str | Path, device: str | torch.device | None = None):
    """``(model, tokenizer)`` from a checkpoint written by ``python -m minigpt train``."""
    checkpoint = load_checkpoint(path)
    cfg, tokenizer, _ = run_settings(checkpoint, path)
    model = GPT(cfg)
    model.load_state_dict(checkpoint["model"])
    return model.to(device or best_device()).eval(), tokenizer


def train(args: argparse.Namespace) -> float:
    """Train (or resume) a GPT as ``args`` say; returns held-out bits per byte.

    Under torchrun, every process trains (data parallelism); the first one prints, writes the
    checkpoint and measures held-out bits per byte (the others return NaN).
    """
    check_train_args(args)  # before anything slow, and before a checkpoint could be lost
    distributed.setup("gloo" if args.device == "cpu" else None)  # does nothing without torchrun
    try:
        return _train(args)
    finally:
        distributed.teardown()


def _train(args: argparse.Namespace) -> float:
    main_process = distributed.is_main()
    out = Path(args.out)
    text = corpora.load_corpus(args.corpus)
    parts = batching.split_text(text)
    seed_everything(args.seed)
    resumed = args.resume and out.exists()
    if resumed:
        checkpoint = load_checkpoint(out)
        cfg, tokenizer, saved = run_settings(checkpoint, out)
        preset = saved.get("preset")
        # Options that shape the model or its data must be the checkpoint's: a changed one
        # would be silently ignored. (Old checkpoints have no tokenizer_spec: derive it.)
        was = {"corpus": saved.get("corpus"), "preset": preset,
               "tokenizer": saved.get("tokenizer_spec") or tokenizer_spec(tokenizer),
               "block-size": cfg.block_size, "dropout": cfg.dropout}
        given = {"corpus": args.corpus, "preset": args.preset, "tokenizer": args.tokenizer,
                 "block-size": args.block_size, "dropout": args.dropout}
        for option, value in given.items():
            if value is not None and was[option] != value:
                raise ValueError(f"{out} was trained with --{option} {was[option]}, not "
                                 f"{value}: resume it with the same --{option} (or leave it "
                                 "out), or start a new run with another --out")
        spec = was["tokenizer"]
        done = int(checkpoint["step"])
        if args.steps <= done:
            raise ValueError(f"{out} has already been trained for {done} steps, and --steps is "
                             f"the total to reach, not steps to add: pass --steps above {done} "
                             f"(e.g. --steps {done + args.steps}) to train it further")
    else:
        if out.exists() and not args.force:
            raise FileExistsError(f"{out} exists: pass --resume to continue it, --force to "
                                  "overwrite it, or choose another --out")
        spec = args.tokenizer or "char"
        tokenizer = make_tokenizer(spec, parts["train"])
        preset = args.preset or "micro"
        overrides = {name: getattr(args, name) for name in ("block_size", "dropout")
                     if getattr(args, name) is not None}
        cfg = GPTConfig.preset(preset, tokenizer.vocab_size, **overrides)
    ids = {name: batching.to_ids_array(tokenizer.encode(part), tokenizer.vocab_size)
           for name, part in parts.items()}
    get_batch = batching.make_get_batch({"train": ids["train"], "val": ids["val"]},
                                    args.batch_size, cfg.block_size)
    model = GPT(cfg)
    config = {"max_steps": args.steps, "lr": args.lr, "warmup_steps": min(100, args.steps // 10),
              "eval_interval": args.eval_interval, "checkpoint_path": str(out),
              "checkpoint_interval": args.eval_interval, "device": args.device,
              "seed": args.seed}
    if resumed:
        trainer = Trainer.load(out, model, get_batch, **config)
    else:
        trainer = Trainer(model, get_batch, TrainConfig(**config))
    extra = {"model_config": asdict(cfg), "tokenizer": tokenizer_to_dict(tokenizer),
             "tokenizer_spec": spec,
             "corpus": args.corpus, "preset": preset}
    processes = distributed.world_size()
    shared = (f"; {processes} processes, global batch {args.batch_size * processes}"
              if processes > 1 else "")
    if main_process:
        print(f"{cfg.n_layer} layers, {cfg.n_embd} wide, {model.num_params():,} parameters, "
              f"{tokenizer.vocab_size:,} tokens; corpus {args.corpus}: {len(ids['train']):,} "
              f"training tokens; device {trainer.device}{shared}", file=sys.stderr)
    trainer.checkpoint_extra = extra  # every checkpoint can be sampled from or resumed
    trainer.fit()
    bpb = math.nan  # the first process measures and reports for all
    if main_process:
        loss, n_targets = heldout_loss(model, ids["val"], cfg.block_size)
        bpb = metrics.bits_per_byte(loss, n_targets, len(parts["val"].encode("utf-8")))
        print(f"step {trainer.step}: validation {loss:.3f} nats per token, {bpb:.3f} bits per "
              f"byte; saved {out}")
    # The others wait here: a process that left the group while the first one was still
    # measuring made gloo abort it ("terminate called without an active exception").
    distributed.barrier()
    return bpb


def _sample(args: argparse.Namespace) -> str:
    if args.max_new_tokens < 0:
        raise ValueError(f"--max-new-tokens must be >= 0 (the tokens to add to the prompt), got "
                         f"{args.max_new_tokens}")
    if args.device is not None:
        check_device(args.device, f"--device {args.device}", LEAVE_DEVICE_OUT)
    model, tokenizer = load_model(args.checkpoint, args.device)
    text = sample(model, tokenizer, args.prompt, args.max_new_tokens, args.temperature,
                  args.top_k, args.seed, args.top_p)
    print(text)
    return text


def _presets(_args: argparse.Namespace) -> None:
    print(f"{'preset':8} {'layers':>6} {'heads':>5} {'width':>5} {'context':>7} "
          f"{'parameters (vocab 256)':>22}")
    for name, cfg in PRESETS.items():
        sized = GPTConfig.preset(name, 256)
        with torch.device("meta"):  # count without allocating memory
            n = GPT(sized).num_params()
        print(f"{name:8} {cfg.n_layer:6} {cfg.n_head:5} {cfg.n_embd:5} {cfg.block_size:7} {n:22,}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minigpt", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a GPT on a corpus and save a checkpoint",
                       description="Train a GPT on a corpus and save a checkpoint. Started by "
                       "torchrun --nproc_per_node=N, it trains on N processes (data parallel): "
                       "--batch-size is per process, so the global batch is batch x N.")
    t.add_argument("--corpus", default="wiki", help="a name from minigpt.data.corpora.list_corpora()")
    t.add_argument("--tokenizer", help="char or bpe:N (default: char; on --resume, the run's)")
    t.add_argument("--preset", choices=list(PRESETS), help="model size (default: micro)")
    t.add_argument("--block-size", type=int, help="context length (default: the preset's)")
    t.add_argument("--dropout", type=float, help="dropout (default: the preset's)")
    t.add_argument("--steps", type=int, default=2000, help="optimizer steps in all")
    t.add_argument("--batch-size", type=int, default=32,
                   help="sequences per step and process: under torchrun the global batch is "
                        "this times the number of processes (default: 32)")
    t.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    t.add_argument("--eval-interval", type=int, default=200, help="evaluate and save every N")
    t.add_argument("--out", required=True, help="checkpoint file to write")
    t.add_argument("--resume", action="store_true", help="continue --out if it exists")
    t.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    t.add_argument("--device", help="cpu, cuda or mps (default: the best there is)")
    t.add_argument("--seed", type=int, default=1337)
    t.set_defaults(run=train)

    s = sub.add_parser("sample", help="continue a prompt with a trained checkpoint")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--prompt", default="\n")
    s.add_argument("--max-new-tokens", type=int, default=200)
    s.add_argument("--temperature", type=float, default=0.8, help="0 means greedy")
    s.add_argument("--top-k", type=int, help="keep the k likeliest tokens")
    s.add_argument("--top-p", type=float, help="keep the likeliest tokens up to this mass")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", help="cpu, cuda or mps (default: the best there is)")
    s.set_defaults(run=_sample)

    sub.add_parser("presets", help="list the named model sizes").set_defaults(run=_presets)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, KeyError, FileExistsError, FileNotFoundError, PermissionError,
            IsADirectoryError, NotADirectoryError, RuntimeError) as err:
        # Errors the learner can act on: say what went wrong, without a traceback.
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0

