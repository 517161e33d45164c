"""Synthetic tasks with checkable answers, and two ways to score a model on them.

A task here is a list of ``Problem(prompt, answer)``: the model reads the prompt and should
continue it with the answer and a line break. Training text is the solved problems, one per
line (``problems_text``). The first family is multi-digit addition:

    >>> from minigpt import tasks
    >>> tasks.addition_problems(2, digits=3, seed=0)                # doctest: +SKIP
    [Problem(prompt='864+394=', answer='1258'), Problem(prompt='776+911=', answer='1687')]
    >>> tasks.answer_accuracy(model, tokenizer, problems)           # doctest: +SKIP
    {'exact_match': 0.12, 'token_accuracy': 0.71, 'answer_nll': 0.65, 'n': 200}

With ``reverse_answer=True`` the sum is written least-significant digit first ("579" becomes
"975"). Written that way, each digit depends only on digits the model has already seen (the two
operand digits at that place and the carry from the digit it just wrote), so small
Transformers learn it far more easily than the usual order, where the first digit written
depends on carries from every place to its right (Lee et al. 2023, "Teaching arithmetic to
small Transformers").

Two views of "emergence". Wei et al. (2022) saw abilities such as arithmetic jump from chance
to competent beyond some model size. Schaeffer et al. (2023) argued that the jump is in the
metric: exact match needs every digit right, so a per-digit accuracy p that improves smoothly
gives an exact match of about p^k for a k-digit answer, which sits near 0 and then shoots up.
``answer_accuracy`` reports both, plus the answer's loss per token:

- ``exact_match``: greedy generation of the whole answer, up to the line break, is exactly right;
- ``token_accuracy``: teacher-forced, the share of answer tokens the model ranks first given the
  right prefix (the prompt and the answer's earlier tokens);
- ``answer_nll``: the mean cross-entropy per answer token (nats), a smooth, continuous score.

Add a family by writing a function that returns ``list[Problem]``; scoring works unchanged.
Deliberately left out: other operations, operands of mixed lengths, and scratchpads or chain of
thought (chapters 08-10 add more families here).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Problem", "addition_problems", "answer_accuracy", "problem_batches", "problems_text"]


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


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _groups(problems: Sequence[Problem], tokenizer) -> dict[tuple[int, int], list]:
    """Problems as (prompt ids, answer ids + line-break ids, answer), grouped by the lengths of
    prompt and answer so that each group stacks into one batch. The answer is encoded on its
    own, then the line break."""
    newline = tokenizer.encode("\n")
    groups: dict[tuple[int, int], list] = defaultdict(list)
    for p in problems:
        prompt, answer = tokenizer.encode(p.prompt), tokenizer.encode(p.answer)
        groups[len(prompt), len(answer)].append((prompt, answer + newline, p.answer))
    return groups


@torch.no_grad()
def answer_accuracy(model: nn.Module, tokenizer, problems: Sequence[Problem],
                    batch_size: int = 256) -> dict[str, float]:
    """Score ``model`` on ``problems``: ``exact_match``, ``token_accuracy``, ``answer_nll``
    (see the module docstring) and ``n``, the number of problems.

    ``model`` follows the course's contract (``model(idx)`` -> ``(logits, loss)``, and a
    ``generate`` method that is greedy at ``temperature=0``, as ``GPT.generate``);
    ``tokenizer`` has ``encode`` and ``decode``. ``token_accuracy`` and ``answer_nll`` count the
    answer's tokens, not the line break after it; ``exact_match`` also needs the line break
    (a model that keeps writing digits is wrong)."""
    if not problems:
        raise ValueError("no problems to score")
    was_training = model.training
    model.eval()
    dev = _device(model)
    exact, right, nll, n_tokens = 0, 0, 0.0, 0
    for (n_prompt, n_answer), group in _groups(problems, tokenizer).items():
        for i in range(0, len(group), batch_size):
            chunk = group[i:i + batch_size]
            prompts = torch.tensor([g[0] for g in chunk], dtype=torch.long, device=dev)
            answers = torch.tensor([g[1] for g in chunk], dtype=torch.long, device=dev)
            # exact match: greedy generation of the answer and the line break
            out = model.generate(prompts, answers.size(1), temperature=0)[:, n_prompt:]
            for row, (_p, _a, answer) in zip(out.tolist(), chunk):
                exact += tokenizer.decode(row).split("\n")[0] == answer
            # teacher forcing: the logits that predict each answer token (not the line break)
            seq = torch.cat([prompts, answers], dim=1)  # (B, P + A)
            logits, _ = model(seq[:, :-1])  # position t predicts token t + 1
            pred = logits[:, n_prompt - 1:n_prompt - 1 + n_answer]  # (B, A, vocab)
            target = answers[:, :n_answer]  # (B, A): the answer without the line break
            right += (pred.argmax(-1) == target).sum().item()
            nll += F.cross_entropy(pred.reshape(-1, pred.size(-1)), target.reshape(-1),
                                   reduction="sum").item()
            n_tokens += target.numel()
    model.train(was_training)
    n_tokens = max(n_tokens, 1)
    return {"exact_match": exact / len(problems), "token_accuracy": right / n_tokens,
            "answer_nll": nll / n_tokens, "n": len(problems)}
