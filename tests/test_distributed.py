"""Tests for minigpt.train.distributed and the Trainer under DDP: real processes on the CPU (gloo).

Gradient accumulation equal to a larger batch is tested in test_train.py; here it is tested
under DDP (``no_sync`` on all but the last micro-batch).
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from minigpt.methods import parallel
from minigpt.models.gpt import GPT, GPTConfig
from minigpt.train import distributed
from minigpt.train.config import TrainConfig
from minigpt.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
TINY = GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=16)
WORLD = 2
PER_RANK = 2  # sequences per micro-batch and process
STEPS = 4
# Adam divides each gradient by its running size, so a gradient that is zero in exact arithmetic
# (the attention's key bias: softmax ignores a shift shared by all keys) turns float rounding
# into updates of up to ~lr. At lr=1e-3 that stays below 1e-6; at 1e-2 it reaches ~2e-5.
LR = 1e-3

needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="this torch build has no torch.distributed with the gloo backend",
)


def fixed_batch(rank: int, split: str, call: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``call``-th batch of ``split`` for process ``rank``: fixed tensors, no RNG involved."""
    seed = 10_000 * rank + 1_000 * (split == "val") + call
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(TINY.vocab_size, (PER_RANK, TINY.block_size), generator=g)
    y = torch.randint(TINY.vocab_size, (PER_RANK, TINY.block_size), generator=g)
    return x, y


def batches_of(ranks: list[int]):
    """``get_batch`` giving, call after call, the listed ranks' batches concatenated."""
    calls = {"train": 0, "val": 0}

    def get_batch(split):
        parts = [fixed_batch(r, split, calls[split]) for r in ranks]
        calls[split] += 1
        return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])

    return get_batch


def train_config(grad_accum: int) -> TrainConfig:
    return TrainConfig(max_steps=STEPS, lr=LR, warmup_steps=0, grad_accum=grad_accum,
                       eval_interval=2, eval_steps=2, device="cpu", progress=False, seed=0)


def train(ranks: list[int], grad_accum: int, init_seed: int = 0) -> Trainer:
    torch.manual_seed(init_seed)
    trainer = Trainer(GPT(TINY), batches_of(ranks), train_config(grad_accum))
    trainer.fit()
    return trainer


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        results = {}
        for grad_accum in (1, 2):
            # Different initial weights on purpose: wrapping in DDP copies rank 0's everywhere.
            torch.manual_seed(rank)
            trainer = Trainer(GPT(TINY), batches_of([rank]), train_config(grad_accum))
            saves: list[str] = []
            trainer.save = lambda path, extra=None, saves=saves: saves.append(path)  # count
            trainer.config.checkpoint_path = str(Path(out_dir) / "never-written.pt")
            trainer.fit()
            results[grad_accum] = {"model": trainer.model.state_dict(),
                                   "history": trainer.history.to_dict(),
                                   "wrapped": trainer.ddp is not None, "saves": len(saves),
                                   "plain": type(trainer.model).__name__}
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    """Both processes' results after STEPS steps of DDP (grad_accum 1 and 2), run once."""
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("this torch build has no torch.distributed with the gloo backend")
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_ddp_worker, args=(WORLD, str(folder / "init"), str(folder)), nprocs=WORLD)
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def max_difference(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


@needs_gloo
@pytest.mark.parametrize("grad_accum", [1, 2])
def test_ddp_on_two_processes_equals_one_process_on_the_global_batch(ddp_results, grad_accum):
    rank0, rank1 = (results[grad_accum] for results in ddp_results)
    assert rank0["wrapped"] and rank1["wrapped"] and rank0["plain"] == "GPT"
    # every process ends with the same weights (the same averaged gradient, the same update)
    assert max_difference(rank0["model"], rank1["model"]) == 0.0

    single = train([0, 1], grad_accum)  # one process, both ranks' batches concatenated
    assert max_difference(rank0["model"], single.model.state_dict()) < 1e-5
    # logged losses are means over the processes, so the history is the global one
    for key in ("loss", "train_loss", "val_loss"):
        assert rank0["history"][key] == pytest.approx(getattr(single.history, key), abs=1e-5)
        assert rank1["history"][key] == rank0["history"][key]

    # The comparison can fail: without averaging (one rank's batches only) the weights differ.
    alone = train([0], grad_accum)
    assert max_difference(rank0["model"], alone.model.state_dict()) > 1e-3


@needs_gloo
def test_only_the_main_process_writes_checkpoints(ddp_results):
    rank0, rank1 = ddp_results[0][1], ddp_results[1][1]
    assert rank0["saves"] == 1 and rank1["saves"] == 0  # at the end (no interval saves)


def test_without_a_process_group_nothing_is_distributed():
    assert not distributed.is_distributed()
    assert distributed.rank() == 0 and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.setup() is False  # no torchrun environment: nothing to join
    t = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_mean(t) is t
    distributed.barrier()
    distributed.teardown()  # harmless without a group
    trainer = Trainer(GPT(TINY), batches_of([0]), train_config(1))
    assert trainer.ddp is None


# ---- tensor parallelism ---------------------------------------------------------------------


@pytest.mark.parametrize("n_shards", [1, 2, 3, 8])
@pytest.mark.parametrize("with_bias", [True, False])
def test_column_and_row_parallel_linear_equal_the_whole_layer(n_shards, with_bias):
    g = torch.Generator().manual_seed(n_shards)
    x = torch.randn(4, 5, 8, generator=g)
    weight = torch.randn(12, 8, generator=g)
    bias = torch.randn(12, generator=g) if with_bias else None
    whole = F.linear(x, weight, bias)
    # equal up to float rounding: the matmul kernels order the sums of products differently
    torch.testing.assert_close(
        parallel.column_parallel_linear(x, weight, bias, n_shards), whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        parallel.row_parallel_linear(x, weight, bias, n_shards), whole, rtol=1e-5, atol=1e-5)


def test_parallel_linear_refuses_more_shards_than_features():
    x, weight = torch.randn(2, 4), torch.randn(3, 4)
    with pytest.raises(ValueError, match="n_shards"):
        parallel.column_parallel_linear(x, weight, None, 4)
    with pytest.raises(ValueError, match="n_shards"):
        parallel.row_parallel_linear(x, weight, None, 5)


@needs_gloo
def test_split_linear_demo_on_two_processes_equals_the_whole_layer():
    assert parallel.split_linear_demo(world_size=2) < 1e-5


# ---- the command line under torchrun -------------------------------------------------------


@needs_gloo
def test_torchrun_trains_on_two_processes_and_the_main_one_saves(tmp_path):
    ckpt = tmp_path / "run.pt"
    env = os.environ | {"MINIGPT_PROFILE": "ci", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "minigpt", "train", "--corpus", "news",
               "--preset", "nano", "--block-size", "16", "--batch-size", "4", "--steps", "2",
               "--eval-interval", "2", "--device", "cpu", "--out", str(ckpt)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env,
                          cwd=ROOT, check=False)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("bits per byte") == 1  # only the main process reports
    assert "2 processes, global batch 8" in done.stderr
    from minigpt.cli import load_model  # here: the spawned processes import this file too

    model, tokenizer = load_model(ckpt, "cpu")
    assert model.cfg.n_layer == 2 and tokenizer.vocab_size == model.cfg.vocab_size
    assert torch.load(ckpt, weights_only=True)["step"] == 2
    print(f"torchrun smoke run: {seconds:.1f} s")
