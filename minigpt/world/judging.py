"""Measuring the assistant world's models (chapters 08-12).

- ``evaluate``: per question family, exact-match accuracy, format adherence (the answer ends
  with ``<|end|>`` on one line) and the annotator's mean score;
- ``true_reward`` and ``win_rate``: the noiseless annotator's mean score, and the share of
  questions on which one model's replies beat another's (ties count half);
- ``kl_from``: KL(model || reference) per answer, estimated on the model's own samples;
- ``recall_facts``: the facts a model completes in plain text (what it knows, not how it chats);
- ``wiki_bits_per_byte``: held-out bits per byte on wiki, what fine-tuning costs the language
  model (InstructGPT's "alignment tax").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from minigpt.core.metrics import bits_per_byte
from minigpt.data import batching, corpora
from minigpt.methods import logprobs, reward
from minigpt.methods.sft import render
from minigpt.models.gpt import GPT
from minigpt.train.evaluation import heldout_loss
from minigpt.world.annotator import Annotator
from minigpt.world.chat import Reply, reply_ids
from minigpt.world.questions import KNOWLEDGE_BASE, Country
from minigpt.world.recipes import AssistantWorld


def evaluate(replies: Sequence[Reply], annotator: Annotator | None = None) -> dict[str, dict]:
    """Per family and overall: exact-match accuracy (the annotator's ``correct``), format
    adherence (the answer ended with ``<|end|>`` and is one line), and the mean annotator score."""
    annotator = annotator or Annotator(noise=0.0)
    rows: dict[str, list] = defaultdict(list)
    for r in replies:
        j = annotator.judge(r.question, r.text)
        ok = r.finished and "\n" not in r.text and r.text.strip() != ""
        rows[r.question.family].append((j.correct, ok, j.score))
        rows["all"].append((j.correct, ok, j.score))
    return {fam: {"accuracy": float(np.mean([c for c, _, _ in v])),
                  "format": float(np.mean([f for _, f, _ in v])),
                  "score": float(np.mean([s for _, _, s in v])), "n": len(v)}
            for fam, v in rows.items()}


@torch.no_grad()
def recall_facts(model: GPT, world: AssistantWorld,
                 countries: Sequence[Country] = KNOWLEDGE_BASE) -> float:
    """Share of the facts about ``countries`` that ``model`` completes right in plain text,
    greedily: "The capital of Zorvia is" -> " Tam." (no chat template: this asks what the
    model knows, not whether it can converse)."""
    tok = world.tokenizer
    dev = next(model.parameters()).device
    right, total = 0, 0
    for c in countries:
        for stem, value in ((f"The capital of {c.name} is", c.capital),
                            (f"The flag of {c.name} is", c.colour),
                            (f"The national animal of {c.name} is the", c.animal)):
            idx = torch.tensor([tok.encode(stem)], device=dev)
            out = model.generate(idx, len(value) + 2, temperature=0)[0, idx.size(1):]
            right += tok.decode(out.tolist()) == f" {value}."
            total += 1
    return right / total


def true_reward(replies: Sequence[Reply], annotator: Annotator | None = None) -> float:
    """The annotator's mean (noiseless) score of ``replies``."""
    judge = annotator or Annotator(noise=0.0)
    return float(np.mean([judge.score(r.question, r.text) for r in replies]))


def win_rate(replies: Sequence[Reply], baseline: Sequence[Reply],
             annotator: Annotator | None = None) -> float:
    """Share of questions where ``replies`` beat ``baseline`` by the annotator's score (ties
    count half)."""
    judge = annotator or Annotator(noise=0.0)
    wins = []
    for a, b in zip(replies, baseline):
        if a.question != b.question:
            raise ValueError("replies and baseline must answer the same questions, in order")
        sa, sb = judge.score(a.question, a.text), judge.score(b.question, b.text)
        wins.append(1.0 if sa > sb else 0.5 if sa == sb else 0.0)
    return float(np.mean(wins))


@torch.no_grad()
def kl_from(model: nn.Module, ref: nn.Module, world: AssistantWorld, replies: Sequence[Reply]) -> float:
    """KL(model || ref) in nats per answer, estimated on ``replies`` sampled from ``model`` at
    temperature 1: the mean over answers of log p_model(answer) - log p_ref(answer)."""

    tok = world.tokenizer
    prompts = [render(tok, r.question.prompt)[0] for r in replies]
    seqs = [p + reply_ids(world, r) for p, r in zip(prompts, replies)]
    total = 0.0
    for i in range(0, len(seqs), 128):
        idx, lengths = reward.pad_sequences(seqs[i:i + 128], tok.end_id, model.cfg.block_size)
        start = torch.tensor([len(p) for p in prompts[i:i + 128]])
        width = idx.size(1) - int(start.min())
        mask = (start[:, None] + torch.arange(width)) < lengths[:, None]
        logp = logprobs.sequence_logprobs(model, idx, start, mask).sum(1)
        ref_logp = logprobs.sequence_logprobs(ref, idx, start, mask).sum(1)
        total += (logp - ref_logp).sum().item()
    return total / len(seqs)


@torch.no_grad()
def wiki_bits_per_byte(model: GPT, world: AssistantWorld, max_chars: int | None = None) -> float:
    """Held-out bits per byte on wiki's test split (its first ``max_chars`` characters): what
    fine-tuning costs the model's language modelling (the "alignment tax")."""

    text = batching.split_text(corpora.load_corpus("wiki"))["test"][:max_chars]
    ids = np.array(world.tokenizer.encode(text), dtype=np.int64)
    loss, n = heldout_loss(model, ids, model.cfg.block_size)
    return bits_per_byte(loss, n, len(world.tokenizer.decode(ids[1:n + 1].tolist()).encode("utf-8")))
