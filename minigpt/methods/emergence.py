"""Two views of "emergence": exact match and per-token scores of the same answers (chapter 07).

Wei et al. (2022) saw abilities such as arithmetic jump from chance to competent beyond some
model size. Schaeffer et al. (2023) argued that the jump is in the metric: exact match needs
every digit right, so a per-digit accuracy p that improves smoothly gives an exact match of
about p^k for a k-digit answer, which sits near 0 and then shoots up. ``answer_accuracy``
reports both, plus the answer's loss per token, on ``minigpt.data.arithmetic`` problems:

    >>> emergence.answer_accuracy(model, tokenizer, problems)       # doctest: +SKIP
    {'exact_match': 0.12, 'token_accuracy': 0.71, 'answer_nll': 0.65, 'n': 200}

- ``exact_match``: greedy generation of the whole answer, up to the line break, is exactly right;
- ``token_accuracy``: teacher-forced, the share of answer tokens the model ranks first given the
  right prefix (the prompt and the answer's earlier tokens);
- ``answer_nll``: the mean cross-entropy per answer token (nats), a smooth, continuous score.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from minigpt.core.runtime import evaluating
from minigpt.data.arithmetic import Problem


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
    with evaluating(model):
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
    n_tokens = max(n_tokens, 1)
    return {"exact_match": exact / len(problems), "token_accuracy": right / n_tokens,
            "answer_nll": nll / n_tokens, "n": len(problems)}
