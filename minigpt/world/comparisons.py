"""Preference data: two answers to one question, ranked by the annotator (chapters 09-10).

``sample_preferences`` samples two answers per question from a model and lets the annotator,
with its label noise, choose, as InstructGPT's labellers ranked the SFT model's samples;
``preference_data`` does so for the world's preference recipe, holding out pairs of
validation questions;
``to_pairs`` turns preferences into token-id pairs for the reward model and DPO. The cached set
that chapters 09 and 10 share is ``minigpt.world.pipeline.preferences``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from minigpt.methods import reward
from minigpt.methods.sft import render
from minigpt.models.gpt import GPT
from minigpt.world.annotator import Annotator
from minigpt.world.chat import Reply, generate, reply_ids
from minigpt.world.questions import Question, make_questions
from minigpt.world.recipes import AssistantWorld


@dataclass(frozen=True)
class Preference:
    """Two answers to one question, as the annotator ranked them."""

    chosen: Reply
    rejected: Reply


def sample_preferences(model: GPT, world: AssistantWorld, questions: Sequence[Question],
                       annotator: Annotator, seed: int = 0, temperature: float = 1.0,
                       max_new_tokens: int = 80) -> list[Preference]:
    """For each question, two answers sampled from ``model`` and ranked by ``annotator`` (with
    its label noise), as InstructGPT's labellers ranked the SFT model's samples. Questions whose
    two answers are the same text are dropped: they teach nothing."""
    first = generate(model, world, questions, temperature, max_new_tokens, seed=seed)
    second = generate(model, world, questions, temperature, max_new_tokens, seed=seed + 1)
    rng = random.Random(seed)
    out = []
    for a, b in zip(first, second):
        if a.text == b.text:
            continue
        if annotator.prefer(a.question, a.text, b.text, rng) == 1:
            a, b = b, a
        out.append(Preference(a, b))
    return out


def to_pairs(world: AssistantWorld, preferences: Sequence[Preference]) -> list[reward.Pair]:
    """Preferences as token-id pairs (prompt through the chat template, chosen, rejected) for
    ``minigpt.methods.reward`` and DPO."""
    return [reward.Pair(render(world.tokenizer, p.chosen.question.prompt)[0],
                        reply_ids(world, p.chosen), reply_ids(world, p.rejected))
            for p in preferences]


def preference_data(world: AssistantWorld, model: GPT, seed: int | None = None
                    ) -> tuple[list[Preference], list[Preference]]:
    """Chapter 09's preferences: ``world.preferences.questions`` questions, two sampled answers
    each, ranked by the annotator with ``world.preferences.annotator_noise``; (train, held out).
    One question in ``val_every`` is held out, drawn from the validation split, so that no
    held-out question is ever trained on; the rest are train-split questions. ``seed`` is the
    recipe's (``world.preferences.seed``) unless given, so the seed that names the cached pairs
    is the one that drew them."""
    r = world.preferences
    seed = r.seed if seed is None else seed
    n_val = max(1, r.questions // r.val_every)
    annotator = Annotator(r.annotator_noise)
    kwargs = {"temperature": r.temperature, "max_new_tokens": r.max_new_tokens}
    train = sample_preferences(model, world, make_questions(r.questions - n_val, seed=200 + seed,
                                                            split="train"),
                               annotator, seed=seed, **kwargs)
    val = sample_preferences(model, world, make_questions(n_val, seed=250 + seed, split="validation"),
                             annotator, seed=seed + 2, **kwargs)
    return train, val


def preference_from_dict(d: dict) -> Preference:
    def reply(r: dict) -> Reply:
        return Reply(Question(**r["question"]), str(r["text"]), bool(r["finished"]))
    return Preference(reply(d["chosen"]), reply(d["rejected"]))
