"""Talking to a model of the assistant world: questions in, ``Reply`` objects out (chapters 08-12).

    >>> from minigpt.world import chat
    >>> replies = chat.generate(model, world, questions)    # greedy; temperature=1 samples  # doctest: +SKIP
    >>> replies[0].text, replies[0].finished                                                 # doctest: +SKIP

``generate`` puts each question through the chat template (``minigpt.methods.sft.render``),
batches prompts of one length together (no padding needed) and stops each answer at
``<|end|>``; free text typed by a person works too (``find_question`` recognises the world's
questions in it). ``reply_ids`` turns a reply back into token ids, for the reward model and KL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from minigpt.methods.sft import render
from minigpt.models.gpt import GPT
from minigpt.world.questions import Question, parse_question
from minigpt.world.recipes import AssistantWorld


@dataclass(frozen=True)
class Reply:
    """A model's answer to a question: its text (without special tokens) and whether it ended
    with ``<|end|>`` within the token budget."""

    question: Question
    text: str
    finished: bool


def find_question(text: str) -> Question | None:
    """The world's question that ``text`` asks, with its answer, or None (``parse_question``)."""
    return parse_question(text)


def _free_question(text: str) -> Question:
    """A question typed by a person: no known answer (the annotator cannot judge it)."""
    return Question("chat", text, "", "", "")


def prompt_batches(model: GPT, world: AssistantWorld, questions: Sequence[Question],
                    max_new_tokens: int, batch_size: int
                    ) -> Iterator[tuple[list[int], torch.Tensor, int]]:
    """The questions' prompts through the chat template, grouped by length so that each batch
    generates without padding: (indices into ``questions``, prompts (B, P), new tokens that fit
    in the context)."""
    dev = next(model.parameters()).device
    prompts = [render(world.tokenizer, q.prompt)[0] for q in questions]
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, ids in enumerate(prompts):
        by_length[len(ids)].append(i)
    for length, idx in sorted(by_length.items()):
        new = min(max_new_tokens, model.cfg.block_size - length)
        if new < 1:
            raise ValueError(f"a prompt of {length} tokens leaves no room to answer in the model's "
                             f"context of {model.cfg.block_size}: ask a shorter question")
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            yield chunk, torch.tensor([prompts[i] for i in chunk], dtype=torch.long, device=dev), new


@torch.no_grad()
def generate(model: GPT, world: AssistantWorld, questions: Sequence[Question | str],
             temperature: float = 0.0, max_new_tokens: int = 80, seed: int = 0,
             batch_size: int = 256) -> list[Reply]:
    """The model's answers to ``questions`` through the chat template: greedy at temperature 0,
    sampled otherwise. Prompts of one length are generated together (no padding needed)."""
    tok = world.tokenizer
    gen = torch.Generator(next(model.parameters()).device).manual_seed(seed)
    questions = [q if isinstance(q, Question) else _free_question(q) for q in questions]
    replies: list[Reply | None] = [None] * len(questions)
    for chunk, x, new in prompt_batches(model, world, questions, max_new_tokens, batch_size):
        out = model.generate(x, new, temperature=temperature, generator=gen)[:, x.size(1):]
        for i, row in zip(chunk, out.tolist()):
            finished = tok.end_id in row
            row = row[:row.index(tok.end_id)] if finished else row
            text = tok.decode([t for t in row if t < tok.base.vocab_size])
            replies[i] = Reply(questions[i], text, finished)
    return replies  # type: ignore[return-value]


def reply_ids(world: AssistantWorld, reply: Reply) -> list[int]:
    """The answer's token ids, with ``<|end|>`` if the model wrote it."""
    return world.tokenizer.encode(reply.text) + ([world.tokenizer.end_id] if reply.finished else [])
