"""Scoring answers for reinforcement learning in the assistant world (chapter 10).

``PromptSampler`` draws batches of prompts of one length for PPO and remembers each prompt's
question; ``reward_scorer`` (a reward model) and ``annotator_scorer`` (the hidden annotator, the
"true" reward) are PPO's ``score_fn``; ``reply_rewards`` is the reward model's score of replies;
``best_reply_of_n`` samples n answers per question and keeps the one the reward model likes
best (``minigpt.methods.best_of_n``, on replies).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence

import torch

from minigpt.methods import reward
from minigpt.methods.best_of_n import best_of_n
from minigpt.methods.sft import render
from minigpt.models.gpt import GPT
from minigpt.world.annotator import Annotator
from minigpt.world.chat import Reply, prompt_batches, reply_ids
from minigpt.world.questions import Question
from minigpt.world.recipes import AssistantWorld


class PromptSampler:
    """PPO's prompts: ``sampler()`` gives a (batch_size, P) tensor of prompts that all have one
    length P (so a batch generates without padding), drawn from ``questions``;
    ``sampler.question(ids)`` is the question behind a prompt, for the annotator."""

    def __init__(self, world: AssistantWorld, questions: Sequence[Question],
                 batch_size: int, seed: int = 0):
        groups: dict[int, list[tuple[list[int], Question]]] = defaultdict(list)
        for q in questions:
            ids = render(world.tokenizer, q.prompt)[0]
            groups[len(ids)].append((ids, q))
        self.groups = [g for _, g in sorted(groups.items()) if len(g) >= batch_size]
        if not self.groups:
            raise ValueError(f"no prompt length has {batch_size} questions: give more questions "
                             "or a smaller batch_size")
        self.batch_size = batch_size
        self.rng = random.Random(seed)
        self._questions = {tuple(ids): q for g in self.groups for ids, q in g}

    def __call__(self) -> torch.Tensor:
        group = self.rng.choice(self.groups)
        return torch.tensor([ids for ids, _ in self.rng.sample(group, self.batch_size)])

    def question(self, prompt_ids: Sequence[int]) -> Question:
        return self._questions[tuple(int(i) for i in prompt_ids)]


def response_text(world: AssistantWorld, response: torch.Tensor, mask: torch.Tensor) -> str:
    """The text of one sampled response (its masked tokens, special tokens left out)."""
    ids = response[mask.bool()].tolist()
    return world.tokenizer.decode([i for i in ids if i < world.tokenizer.base.vocab_size])


def reward_scorer(rm: reward.RewardModel, world: AssistantWorld) -> Callable[..., torch.Tensor]:
    """PPO's ``score_fn`` from a reward model: the reward of prompt + response."""
    def score_fn(prompts: torch.Tensor, responses: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        seqs = [p.tolist() + r[m.bool()].tolist() for p, r, m in zip(prompts, responses, mask)]
        return reward.score(rm, seqs, world.tokenizer.end_id, rm.block_size)
    return score_fn


def annotator_scorer(world: AssistantWorld, sampler: PromptSampler,
                     annotator: Annotator | None = None) -> Callable[..., torch.Tensor]:
    """A ``score_fn`` that asks the annotator (the "true" reward, noiseless by default)."""
    judge = annotator or Annotator(noise=0.0)

    def score_fn(prompts: torch.Tensor, responses: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.tensor([judge.score(sampler.question(p.tolist()), response_text(world, r, m))
                             for p, r, m in zip(prompts, responses, mask)])
    return score_fn


def reply_rewards(rm: reward.RewardModel, world: AssistantWorld, replies: Sequence[Reply]) -> torch.Tensor:
    """The reward model's score (N,) of each reply to its question (the proxy reward), as PPO's
    ``reward_scorer`` sees the same answer: the prompt through the chat template, then the
    answer's tokens and its ``<|end|>`` if it was written."""
    seqs = [render(world.tokenizer, r.question.prompt)[0] + reply_ids(world, r) for r in replies]
    return reward.score(rm, seqs, world.tokenizer.end_id, rm.block_size)


@torch.no_grad()
def best_reply_of_n(model: GPT, rm: reward.RewardModel, world: AssistantWorld,
                    questions: Sequence[Question], n: int, max_new_tokens: int = 80,
                    seed: int = 0) -> list[Reply]:
    """For each question, ``n`` answers sampled at temperature 1 and the one the reward model
    scores highest (``minigpt.methods.best_of_n`` on the world's prompts, as replies): no
    training, n times the sampling."""
    gen = torch.Generator(next(model.parameters()).device).manual_seed(seed)
    score_fn = reward_scorer(rm, world)
    replies: list[Reply | None] = [None] * len(questions)
    for chunk, x, new in prompt_batches(model, world, questions, max_new_tokens, 64):
        best = best_of_n(model, x, n, score_fn, new, world.tokenizer.end_id, generator=gen)
        for i, row, mask in zip(chunk, best.responses, best.mask):
            finished = bool((row[mask] == world.tokenizer.end_id).any())
            replies[i] = Reply(questions[i], response_text(world, row, mask), finished)
    return replies  # type: ignore[return-value]
