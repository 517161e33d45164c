"""Counting a model's cost: parameters, FLOPs per token, PF-days and utilisation (chapter 07).

    >>> from minigpt.methods import counting
    >>> round(counting.pf_days(counting.approx_flops(175e9, 300e9)))          # GPT-3
    3646

Training costs about 6 FLOPs per parameter per token (``approx_flops = 6 N D``): 2 for the
forward multiply-adds, 4 for the backward pass. GPT-3: 6 x 175e9 x 300e9 = 3.15e23 FLOPs, and
a PF-day is 1e15 FLOP/s for a day = 8.64e19 FLOPs, so ~3,646 PF-days (the paper: ~3,640). On
10,000 V100s (125 TFLOP/s peak each) for 14.8 days, 1.6e24 FLOPs were on offer: ~20%
``utilisation``. ``flops_per_token`` counts by hand instead, matmul by matmul, including the
output layer and attention, which 6N leaves out: at our tiny widths they are most of the work
(for 1 layer of width 16 and 400 characters, 69k FLOPs per token against 6N = 20k; for 4
layers of width 128, 5.4M against 4.8M). ``measured_step_flops`` checks the count against
``torch.utils.flop_counter``. N is the non-embedding count of Kaplan et al.
(``non_embedding_params``).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from minigpt.models.gpt import GPTConfig

PF_DAY = 1e15 * 86_400  # one petaFLOP/s for a day = 8.64e19 FLOPs


def non_embedding_params(cfg: GPTConfig) -> int:
    """Parameters of ``GPT(cfg)`` without the token and position embeddings (Kaplan's N).

    Per block: qkv (C x 3C) + output projection (C x C) + MLP (C x 4C and 4C x C) = 12 C^2
    weights, plus 9 C biases and two LayerNorms (2 x 2C) with ``bias``; then the final LayerNorm.
    The output layer is the token embedding (tied), so it is not counted again."""
    C = cfg.n_embd
    per_norm = 2 * C if cfg.bias else C  # gain (and shift)
    per_block = 12 * C * C + (9 * C if cfg.bias else 0) + 2 * per_norm
    return cfg.n_layer * per_block + per_norm


def flops_per_token(cfg: GPTConfig) -> float:
    """Training FLOPs per token of ``GPT(cfg)`` at full context, counted from the matmuls.

    Forward: 2 FLOPs (a multiply and an add) per weight used in a matmul: 12 C^2 per block and
    the tied output layer's V x C; plus attention, 2 x 2 x n_layer x T x C per token (the
    scores q.k and the weighted sum of values, each T x C multiply-adds). We count the whole
    T x T square, as FlopCounterMode and most papers do, although the causal mask makes half of
    it unnecessary. Backward: twice the forward (gradients for inputs and for weights), so
    training = 3 x forward. LayerNorms, GELU, softmax and the embedding lookup are left out
    (a few percent at most)."""
    C, T = cfg.n_embd, cfg.block_size
    matmul_weights = cfg.n_layer * 12 * C * C + cfg.vocab_size * C
    forward = 2 * matmul_weights + 2 * 2 * cfg.n_layer * T * C
    return 3.0 * forward


def approx_flops(n_params: float, tokens: float) -> float:
    """Kaplan's rule of thumb for training compute: C = 6 N D FLOPs."""
    return 6.0 * n_params * tokens


def measured_step_flops(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
                        math_attention: bool = True) -> int:
    """FLOPs of one forward + backward pass of ``model`` on ``batch = (x, y)``, counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and attention kernels only).

    On the CPU, torch's fused attention kernel has no FLOP formula and would count 0; with
    ``math_attention`` attention runs as plain matmuls (softmax(q k^T) v), which are counted,
    over the full T x T square."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    x, y = batch
    counter = FlopCounterMode(display=False)
    backend = sdpa_kernel(SDPBackend.MATH) if math_attention else contextlib.nullcontext()
    with backend, counter:
        _logits, loss = model(x, y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def pf_days(flops: float) -> float:
    """``flops`` in PF-days: 1e15 FLOP/s sustained for a day."""
    return flops / PF_DAY


def utilisation(flops: float, n_gpus: int, peak_flops: float, days: float) -> float:
    """Share of the hardware's peak that a run of ``flops`` used: GPT-3 on 10,000 V100s
    (125e12 FLOP/s) for 14.8 days gives 3.15e23 / 1.6e24 = ~0.2."""
    return flops / (n_gpus * peak_flops * days * 86_400)
