"""Tensor parallelism by hand: one layer split across workers (chapter 07).

When one layer is too big for one device, its matrix is split: by output features
(``column_parallel_linear``: each worker computes some outputs, which are concatenated) or by
input features (``row_parallel_linear``: each worker multiplies its slice of the input, and the
partial products are summed). Both equal the unsplit layer up to rounding, which
``split_linear_demo`` checks with real processes talking through ``torch.distributed``.
Megatron-LM (Shoeybi et al. 2019) pairs the two in every Transformer MLP: column, then row, so
one all-reduce per layer suffices.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def _check_shards(n_shards: int, features: int, what: str) -> None:
    if not 1 <= n_shards <= features:
        raise ValueError(f"n_shards must be between 1 and the number of {what} ({features}), "
                         f"got {n_shards}")


def column_parallel_linear(x: Tensor, weight: Tensor, bias: Tensor | None,
                           n_shards: int) -> Tensor:
    """``F.linear(x, weight, bias)`` computed as ``n_shards`` workers would, split by outputs.

    ``weight`` is (out, in): worker i holds a block of its rows (and of ``bias``), computes
    those output features for the whole input, and the blocks are concatenated. No worker
    needs the others' weights; each needs all of ``x``. Equal to the unsplit layer up to float
    rounding (matmul kernels may add up the products in another order for another shape).
    """
    _check_shards(n_shards, weight.shape[0], "output features")
    weights = weight.tensor_split(n_shards, dim=0)
    biases = bias.tensor_split(n_shards) if bias is not None else [None] * n_shards
    return torch.cat([F.linear(x, w, b) for w, b in zip(weights, biases)], dim=-1)


def row_parallel_linear(x: Tensor, weight: Tensor, bias: Tensor | None,
                        n_shards: int) -> Tensor:
    """``F.linear(x, weight, bias)`` computed as ``n_shards`` workers would, split by inputs.

    Worker i holds a block of ``weight``'s columns and the matching slice of ``x``'s features;
    its product is a partial sum of every output, and the partial sums add up to the whole
    (the bias is added once). Equal to the unsplit layer up to float rounding.
    """
    _check_shards(n_shards, weight.shape[1], "input features")
    xs = x.tensor_split(n_shards, dim=-1)
    weights = weight.tensor_split(n_shards, dim=1)
    out = sum(F.linear(xi, w) for xi, w in zip(xs, weights))
    return out + bias if bias is not None else out


def _demo_tensors(batch: int, in_features: int, out_features: int,
                  seed: int) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_features, generator=g)
    weight = torch.randn(out_features, in_features, generator=g) / in_features**0.5
    bias = torch.randn(out_features, generator=g)
    return x, weight, bias


def _demo_worker(worker: int, n_workers: int, init_file: str, result_file: str,
                 shape: tuple[int, int, int], seed: int) -> None:
    """One process of ``split_linear_demo``: holds 1/n of the layer, talks to the others."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=worker,
                            world_size=n_workers)
    try:
        x, weight, bias = _demo_tensors(*shape, seed)  # same seed: every worker sees the same
        out_rows = weight.tensor_split(n_workers, dim=0)[worker]  # column parallel: my outputs
        out_bias = bias.tensor_split(n_workers)[worker]
        mine = F.linear(x, out_rows, out_bias)
        pieces = [torch.empty(x.shape[0], w.shape[0]) for w in weight.tensor_split(n_workers)]
        dist.all_gather(pieces, mine)  # everyone gets everyone's output features
        column = torch.cat(pieces, dim=-1)

        in_cols = weight.tensor_split(n_workers, dim=1)[worker]  # row parallel: my inputs
        partial = F.linear(x.tensor_split(n_workers, dim=-1)[worker], in_cols)
        dist.all_reduce(partial, op=dist.ReduceOp.SUM)  # add up everyone's partial products
        row = partial + bias

        if worker == 0:
            whole = F.linear(x, weight, bias)
            torch.save({"column": (column - whole).abs().max().item(),
                        "row": (row - whole).abs().max().item()}, result_file)
    finally:
        dist.destroy_process_group()


def split_linear_demo(world_size: int = 2, mode: str = "both", batch: int = 8,
                      in_features: int = 64, out_features: int = 32, seed: int = 0) -> float:
    """Run one linear layer split across ``world_size`` real processes; return the largest
    absolute difference from the unsplit ``F.linear``.

    The processes (``torch.multiprocessing.spawn``, backend gloo, so CPUs are enough) each hold
    1/``world_size`` of the weights. ``mode="column"``: each computes some output features and
    an *all-gather* collects them; ``"row"``: each multiplies its slice of the inputs and an
    *all-reduce* sums the partial products; ``"both"`` (default): the larger of the two
    differences. Expect about 1e-7: float rounding, nothing more. Takes a few seconds, most of
    it starting the processes.
    """
    if mode not in ("column", "row", "both"):
        raise ValueError(f"mode must be 'column', 'row' or 'both', got {mode!r}")
    _check_shards(world_size, min(in_features, out_features), "features")
    import torch.multiprocessing as mp

    folder = Path(tempfile.mkdtemp(prefix="minigpt-tp-"))
    try:
        init_file, result_file = str(folder / "init"), str(folder / "result.pt")
        shape = (batch, in_features, out_features)
        mp.spawn(_demo_worker, args=(world_size, init_file, result_file, shape, seed),
                 nprocs=world_size, join=True)
        differences = torch.load(result_file, weights_only=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if mode == "both":
        return max(differences.values())
    return differences[mode]
