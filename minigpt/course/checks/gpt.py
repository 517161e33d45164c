"""Checks for exercises/06_gpt.ipynb: counting a GPT's parameters, temperature, and top-p.

The references are the package's own: ``GPT.num_params`` on a real model, and
``gpt.filter_logits`` for the nucleus. Inputs catch the usual slips: forgetting biases or the
LayerNorms, counting the tied output layer twice, dividing by a temperature of 0, and dropping
the token that carries the nucleus over ``top_p``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.models.gpt import GPT, GPTConfig, filter_logits

__all__ = ["check_apply_temperature", "check_count_params", "check_top_p_keep"]


def check_count_params(count_params: Callable[[int, int, int, int], int]) -> None:
    """Task: ``count_params(vocab_size, block_size, n_layer, n_embd)`` = ``GPT(...).num_params()``."""
    task = "Task 1 (count_params)"
    hint = ("per block: two LayerNorms (weight and bias, n_embd each), attention (qkv: n_embd x "
            "3 n_embd + bias, output: n_embd x n_embd + bias), MLP (n_embd x 4 n_embd + bias, "
            "4 n_embd x n_embd + bias); plus both embeddings and the final LayerNorm.")
    for vocab_size, block_size, n_layer, n_embd in [(65, 64, 1, 16), (50, 32, 2, 32),
                                                     (2048, 128, 4, 128), (50257, 1024, 12, 768)]:
        cfg = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                        n_head=4, n_embd=n_embd)
        with torch.device("meta"):  # count without allocating memory
            want = GPT(cfg).num_params()
        got = _call(task, hint, count_params, vocab_size, block_size, n_layer, n_embd)
        if got != want:
            tip = ""
            if isinstance(got, int) and got - want == vocab_size * n_embd:
                tip = (" You counted the output layer: it shares its weights with the token "
                       "embedding (weight tying), so it adds no parameters.")
            raise AssertionError(
                f"{task}: count_params({vocab_size}, {block_size}, {n_layer}, {n_embd}) returned "
                f"{got}, the model has {want:,}.{tip} Hint: {hint}")
    _passed(task, "GPT-2 small's shape with its 50,257-token vocabulary has 124,439,808 parameters")


def check_apply_temperature(apply_temperature: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """Task: ``apply_temperature(logits, t)`` -> probabilities; t = 0 puts all mass on the argmax."""
    task = "Task 2 (apply_temperature)"
    hint = "softmax(logits / t); for t == 0 return a one-hot vector at logits.argmax()."
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0])
    for t in (1.0, 0.5, 2.0, 0.0):
        got = _call(task, hint, apply_temperature, logits.clone(), t)
        if t == 0:
            want = torch.tensor([1.0, 0.0, 0.0, 0.0])
        else:
            want = torch.softmax(logits / t, dim=-1)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or \
                not torch.allclose(got.float(), want, atol=1e-5):
            raise AssertionError(f"{task}: apply_temperature({logits.tolist()}, {t}) returned "
                                 f"{got}, expected {want.tolist()}. Hint: {hint}")
    _passed(task, "t < 1 sharpens, t > 1 flattens, t = 0 is greedy")


def check_top_p_keep(top_p_keep: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """Task: ``top_p_keep(probs, top_p)`` -> boolean mask of the nucleus."""
    task = "Task 3 (top_p_keep)"
    hint = ("sort the probabilities in descending order and keep tokens while the probability "
            "of the tokens before them is still below top_p; the token that crosses top_p stays.")
    cases = [([0.5, 0.3, 0.2], 0.7), ([0.5, 0.3, 0.2], 0.5), ([0.1, 0.6, 0.3], 0.65),
             ([0.25, 0.25, 0.25, 0.25], 0.9), ([0.9, 0.05, 0.05], 0.01), ([0.2, 0.5, 0.3], 1.0)]
    for probs, p in cases:
        probs_t = torch.tensor(probs)
        want = torch.isfinite(filter_logits(probs_t.log(), top_p=p))
        got = _call(task, hint, top_p_keep, probs_t.clone(), p)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or \
                not torch.equal(got.bool(), want):
            tip = ""
            if isinstance(got, torch.Tensor) and got.shape == want.shape and \
                    got.bool().sum() == want.sum() - 1:
                tip = " One token short: keep the token that carries the total over top_p."
            raise AssertionError(f"{task}: top_p_keep({probs}, {p}) returned {got}, expected "
                                 f"{want.tolist()}.{tip} Hint: {hint}")
    _passed(task, "the nucleus of [0.5, 0.3, 0.2] at top_p=0.7 is the first two tokens")
