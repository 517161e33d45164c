"""Synthetic problems with checkable answers: multi-digit addition (chapter 07).

A task here is a list of ``Problem(prompt, answer)``: the model reads the prompt and should
continue it with the answer and a line break. Training text is the solved problems, one per
line (``problems_text``); ``problem_batches`` cuts windows of whole problems for the Trainer.

    >>> from minigpt.data import arithmetic
    >>> arithmetic.addition_problems(2, digits=3, seed=0)           # doctest: +SKIP
    [Problem(prompt='864+394=', answer='1258'), Problem(prompt='776+911=', answer='1687')]

With ``reverse_answer=True`` the sum is written least-significant digit first ("579" becomes
"975"). Written that way, each digit depends only on digits the model has already seen (the two
operand digits at that place and the carry from the digit it just wrote), so small
Transformers learn it far more easily than the usual order, where the first digit written
depends on carries from every place to its right (Lee et al. 2023, "Teaching arithmetic to
small Transformers").

Add a family by writing a function that returns ``list[Problem]``; scoring
(``minigpt.methods.emergence``) works unchanged. Deliberately left out: other operations,
operands of mixed lengths, and scratchpads or chain of thought.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Problem:
    """A prompt and the answer that should follow it (then a line break)."""

    prompt: str  # e.g. "123+456="
    answer: str  # e.g. "579"

    @property
    def text(self) -> str:
        """The solved problem, as it appears in training text."""
        return self.prompt + self.answer


def addition_problems(n: int, digits: int, seed: int = 0, reverse_answer: bool = False,
                      pad: bool = False) -> list[Problem]:
    """``n`` random sums of two ``digits``-digit numbers: ``"123+456="`` -> ``"579"``.

    Operands have exactly ``digits`` digits (0-9 for ``digits=1``), so every prompt of a set has
    the same length; the sum has ``digits`` or ``digits + 1``. ``reverse_answer`` writes the
    sum least-significant digit first. ``pad`` writes every sum with ``digits + 1`` digits
    (a leading zero, which comes last when reversed: "0579" or "9750"), so that every problem
    of a set has the same length and each digit sits at the same position every time.
    Problems may repeat (draws are independent): to hold some out, draw another seed and drop
    the prompts that the training set has."""
    if not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be an integer >= 1, got {digits!r}")
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    rng = random.Random(seed)
    low, high = (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1
    problems = []
    for _ in range(n):
        a, b = rng.randint(low, high), rng.randint(low, high)
        answer = str(a + b).zfill(digits + 1 if pad else 0)
        problems.append(Problem(f"{a}+{b}=", answer[::-1] if reverse_answer else answer))
    return problems


def problems_text(problems: Sequence[Problem]) -> str:
    """Training text: each solved problem on its own line."""
    return "".join(p.text + "\n" for p in problems)


def problem_batches(problems: Sequence[Problem], tokenizer, batch_size: int,
                    per_window: int = 4, generator: torch.Generator | None = None
                    ) -> tuple[Callable[[str], tuple[torch.Tensor, torch.Tensor]], int]:
    """``(get_batch, block_size)`` for the Trainer: each window holds ``per_window`` whole
    problems drawn at random (each followed by its line break), so a window always starts at
    the start of a problem. Unlike windows cut anywhere in ``problems_text``, the model sees
    each part of a problem at the same few positions, which makes it far quicker to learn.
    Problems must all have the same length (``addition_problems(..., pad=True)``).
    ``get_batch`` ignores its split argument: hold problems out by scoring other ones."""
    rows = [tokenizer.encode(p.text + "\n") for p in problems]
    if not rows or len({len(r) for r in rows}) != 1:
        raise ValueError("problem_batches needs problems of one length (and at least one): "
                         "use addition_problems(..., pad=True)")
    table = torch.tensor(rows, dtype=torch.long)  # (n, L): one problem and its line break a row
    n, length = table.shape

    def get_batch(_split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, n, (batch_size, per_window), generator=generator)
        seq = table[idx].reshape(batch_size, per_window * length)  # (B, K * L)
        return seq[:, :-1], seq[:, 1:]

    return get_batch, per_window * length - 1
