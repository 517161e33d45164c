"""The assistant world's pipeline: the models, data and judgements of chapters 08-12.

Chapters 08-12 build one mini ChatGPT on the world of ``minigpt.world.tasks``: a base model
pre-trained on wiki text mixed with plain text about the world, the SFT model fine-tuned from it
(``minigpt.methods.sft``), a reward model trained on the annotator's preferences between pairs of the
SFT model's answers (``minigpt.methods.reward``), and the policies of chapter 10 (``minigpt.methods.rlhf``).

    >>> from minigpt.world import assistant, tasks
    >>> world = assistant.AssistantWorld.build()        # the chat tokenizer and the recipes
    >>> model = assistant.sft_model(world)              # cached after the first time
    >>> replies = assistant.generate(model, world, tasks.make_questions(100, seed=1))
    >>> assistant.evaluate(replies)["all"]              # accuracy, format, annotator score

``base_model``, ``sft_model`` and ``reward_model`` train their model the first time and then
load it from the cache folder (``minigpt.cache_dir()/assistant``; files hold tensors only and
load with ``torch.load(weights_only=True)``; a corrupt or stale file is trained again). The
file names carry a hash of everything the model depends on: the recipe, the vocabulary and a
sample of the world's data, so a change to any of them trains a new model.
"""

from __future__ import annotations

import functools
import json
import random
import string
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from minigpt.core.io import recipe_key, write_text_atomic
from minigpt.core.runtime import by_profile, cache_dir
from minigpt.data import batching, corpora
from minigpt.data.tokenizers import CharTokenizer, ChatTokenizer
from minigpt.methods import incontext, reward, sft
from minigpt.methods.sft import render
from minigpt.models.gpt import GPT, GPTConfig
from minigpt.train.cache import load_or_build, save_model_file
from minigpt.train.config import TrainConfig
from minigpt.train.trainer import Trainer
from minigpt.world import tasks

__all__ = [
    "STAGES",
    "AssistantWorld",
    "Preference",
    "PromptSampler",
    "Reply",
    "annotator_scorer",
    "base_model",
    "cache_model",
    "evaluate",
    "generate",
    "kl_from",
    "preference_data",
    "pretraining_text",
    "recall_facts",
    "reply_ids",
    "response_text",
    "reward_model",
    "reward_scorer",
    "sample_preferences",
    "sft_model",
    "to_pairs",
    "train_reward",
    "true_reward",
    "wiki_bits_per_byte",
    "win_rate",
]


# ---- the world: tokenizer, data recipe and models -----------------------------------------------

STAGES = ("base", "sft", "preferences", "reward")  # each stage starts from the one before


def _recipe(stage: str, default: Any = None, **by_profile_values: Any) -> Any:
    """A field of ``stage``'s recipe: its cache key, and every later stage's, hash it. Given
    ``ci=..., cpu=..., gpu=...``, the value is read from the profile when a world is made (not
    when this module is imported), so switching ``MINIGPT_PROFILE`` takes effect."""
    metadata = {"stage": stage}
    if by_profile_values:
        return field(default_factory=lambda: by_profile(**by_profile_values), metadata=metadata)
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class AssistantWorld:
    """Everything chapters 08-12 share about the assistant world: the chat tokenizer, the model
    shape and the recipe of every stage (base, SFT, preferences, reward), sized by the profile.

    Every field but the tokenizer belongs to a stage (``_recipe``); ``key(stage)`` hashes all
    fields of that stage and of the stages before it, so no value that decides a model can be
    left out of its cache name (a test checks that every field has a stage)."""

    tokenizer: ChatTokenizer
    # base: pre-training on wiki mixed with text about the world
    model: dict = _recipe("base", {"block_size": 128, "n_layer": 2, "n_head": 4,  # noqa: RUF009
                                   "n_embd": 128})  # (_recipe returns a dataclasses.field)
    pretrain_steps: int = _recipe("base", ci=40, cpu=1500, gpu=4000)
    pretrain_batch: int = _recipe("base", 32)
    pretrain_lr: float = _recipe("base", 3e-3)
    pretrain_min_lr_ratio: float = _recipe("base", 0.1)
    pretrain_weight_decay: float = _recipe("base", 0.1)
    world_share: float = _recipe("base", 0.8)  # share of the pre-training characters about the world
    seed: int = _recipe("base", 0)
    # sft: fine-tuning on instruction data, the loss on answers only
    sft_examples: int = _recipe("sft", ci=400, cpu=4000, gpu=8000)
    sft_steps: int = _recipe("sft", ci=20, cpu=600, gpu=1200)
    sft_batch: int = _recipe("sft", 32)
    sft_lr: float = _recipe("sft", 1e-3)
    sft_min_lr_ratio: float = _recipe("sft", 0.1)
    sft_weight_decay: float = _recipe("sft", 0.0)
    sft_replay: float = _recipe("sft", 0.0)  # share of each SFT batch that is pre-training text
    # preferences: pairs of the SFT model's answers, labelled by the annotator (chapters 09-10)
    preference_questions: int = _recipe("preferences", ci=300, cpu=16000, gpu=32000)
    annotator_noise: float = _recipe("preferences", 0.1)  # the share of labels flipped
    # reward: the Bradley-Terry reward model on those pairs
    reward_steps: int = _recipe("reward", ci=20, cpu=600, gpu=1200)
    reward_lr: float = _recipe("reward", 1e-3)
    reward_batch: int = _recipe("reward", 32)
    reward_weight_decay: float = _recipe("reward", 0.0)

    @classmethod
    def build(cls, **overrides) -> AssistantWorld:
        """The world with its character-level chat tokenizer (every character of the
        pre-training text and of printable ASCII, "?" for anything else)."""
        text = _pretraining_text(overrides.get("world_share", cls.world_share))
        base = CharTokenizer.fit(text + string.printable, unk="?")
        return cls(ChatTokenizer(base), **overrides)

    def pretraining_ids(self) -> np.ndarray:
        """``pretraining_text`` as token ids (for the base model, and SFT's replay)."""
        return _pretraining_ids(self.tokenizer.base, self.world_share)

    def config(self) -> GPTConfig:
        return GPTConfig(vocab_size=self.tokenizer.vocab_size, **self.model)

    def recipe(self, stage: str) -> dict[str, Any]:
        """Every value that decides the ``stage`` model: the fields of that stage and of the
        stages before it, the vocabulary, and samples of the world's data (so that a change to
        the world's text or questions is a new recipe too)."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}: the stages are {', '.join(STAGES)}")
        upto = STAGES[: STAGES.index(stage) + 1]
        recipe = {f.name: getattr(self, f.name) for f in fields(self)
                  if f.metadata.get("stage") in upto}
        recipe["vocab"] = self.tokenizer.base.itos
        recipe["world"] = tasks.world_text(100, seed=1)
        if "sft" in upto:
            recipe["instructions"] = repr(tasks.instruction_data(50, seed=1))
        recipe["stage"] = stage
        return recipe

    def key(self, stage: str) -> str:
        """A short hash of ``recipe(stage)``: the ``stage`` model's cache name. Changing a later
        stage's recipe (the reward model's, say) keeps the earlier models."""
        return recipe_key(self.recipe(stage))


def pretraining_text(world: AssistantWorld) -> str:
    """The base model's training text: wiki's training split with paragraphs about the world
    (``tasks.world_text``) mixed in, ``world.world_share`` of the characters."""
    return _pretraining_text(world.world_share)


@functools.cache
def _pretraining_ids(base: CharTokenizer, world_share: float) -> np.ndarray:
    return np.array(base.encode(_pretraining_text(world_share)), dtype=np.int64)


@functools.cache  # built once per process (about 10 s)
def _pretraining_text(world_share: float) -> str:
    wiki = batching.split_text(corpora.load_corpus("wiki"))["train"]
    return incontext.mix(wiki, tasks.world_text(200_000, seed=0), share=world_share, seed=0)


CACHE_FORMAT = "minigpt.assistant/1"


def _cache_path(world: AssistantWorld, stage: str) -> Path:
    return Path(cache_dir()) / "assistant" / f"{stage}-{world.key(stage)}.pt"


def cache_model(world: AssistantWorld, stage: str, model: nn.Module) -> Path:
    """Store ``model`` as the world's ``stage`` model ("base", "sft", ...), where
    ``base_model`` and ``sft_model`` look first. Returns the file's path."""
    return save_model_file(_cache_path(world, stage), model, CACHE_FORMAT)


def _cached_model(world: AssistantWorld, stage: str, build: Callable[[], nn.Module],
                  empty: Callable[[], nn.Module] | None = None) -> nn.Module:
    """The world's ``stage`` model from the cache, or ``build()`` and cache it. ``empty()``
    makes the module to load the weights into (a GPT of the world's shape by default)."""
    return load_or_build(_cache_path(world, stage), build,
                         empty if empty is not None else lambda: GPT(world.config()),
                         stage, CACHE_FORMAT)


def base_model(world: AssistantWorld, progress: bool = True) -> GPT:
    """The pre-trained base model: trained on wiki mixed with plain text about the world (facts
    and worked examples, no chat markers), or loaded from the cache if it was before."""
    def build() -> GPT:
        torch.manual_seed(world.seed)
        model = GPT(world.config())
        ids = world.pretraining_ids()
        cut = int(len(ids) * 0.98)
        get_batch = batching.make_get_batch({"train": ids[:cut], "val": ids[cut:]},
                                        world.pretrain_batch, world.model["block_size"])
        steps = world.pretrain_steps
        cfg = TrainConfig(max_steps=steps, lr=world.pretrain_lr,
                          min_lr_ratio=world.pretrain_min_lr_ratio,
                          warmup_steps=min(100, steps // 5), weight_decay=world.pretrain_weight_decay,
                          eval_interval=0, progress=progress, seed=world.seed)
        Trainer(model, get_batch, cfg).fit()
        return model
    return _cached_model(world, "base", build)


def sft_model(world: AssistantWorld, progress: bool = True) -> GPT:
    """The base model after full fine-tuning on the instruction data (cached like the base)."""
    def build() -> GPT:
        model = base_model(world, progress)
        sft.finetune(model, world, progress=progress)
        return model
    return _cached_model(world, "sft", build)


# ---- generating and judging answers --------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    """A model's answer to a question: its text (without special tokens) and whether it ended
    with ``<|end|>`` within the token budget."""

    question: tasks.Question
    text: str
    finished: bool


def find_question(text: str) -> tasks.Question | None:
    """The world's question that ``text`` asks, with its answer, or None (``tasks.parse_question``)."""
    return tasks.parse_question(text)


def _free_question(text: str) -> tasks.Question:
    """A question typed by a person: no known answer (the annotator cannot judge it)."""
    return tasks.Question("chat", text, "", "", "")


def _prompt_batches(model: GPT, world: AssistantWorld, questions: Sequence[tasks.Question],
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
def generate(model: GPT, world: AssistantWorld, questions: Sequence[tasks.Question | str],
             temperature: float = 0.0, max_new_tokens: int = 80, seed: int = 0,
             batch_size: int = 256) -> list[Reply]:
    """The model's answers to ``questions`` through the chat template: greedy at temperature 0,
    sampled otherwise. Prompts of one length are generated together (no padding needed)."""
    tok = world.tokenizer
    gen = torch.Generator(next(model.parameters()).device).manual_seed(seed)
    questions = [q if isinstance(q, tasks.Question) else _free_question(q) for q in questions]
    replies: list[Reply | None] = [None] * len(questions)
    for chunk, x, new in _prompt_batches(model, world, questions, max_new_tokens, batch_size):
        out = model.generate(x, new, temperature=temperature, generator=gen)[:, x.size(1):]
        for i, row in zip(chunk, out.tolist()):
            finished = tok.end_id in row
            row = row[:row.index(tok.end_id)] if finished else row
            text = tok.decode([t for t in row if t < tok.base.vocab_size])
            replies[i] = Reply(questions[i], text, finished)
    return replies  # type: ignore[return-value]


def evaluate(replies: Sequence[Reply], annotator: tasks.Annotator | None = None) -> dict[str, dict]:
    """Per family and overall: exact-match accuracy (the annotator's ``correct``), format
    adherence (the answer ended with ``<|end|>`` and is one line), and the mean annotator score."""
    annotator = annotator or tasks.Annotator(noise=0.0)
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
                 countries: Sequence[tasks.Country] = tasks.KNOWLEDGE_BASE) -> float:
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


# ---- preferences (chapters 09-10) ------------------------------------------------------------------

@dataclass(frozen=True)
class Preference:
    """Two answers to one question, as the annotator ranked them."""

    chosen: Reply
    rejected: Reply


def sample_preferences(model: GPT, world: AssistantWorld, questions: Sequence[tasks.Question],
                       annotator: tasks.Annotator, seed: int = 0, temperature: float = 1.0,
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


def reply_ids(world: AssistantWorld, reply: Reply) -> list[int]:
    """The answer's token ids, with ``<|end|>`` if the model wrote it."""
    return world.tokenizer.encode(reply.text) + ([world.tokenizer.end_id] if reply.finished else [])


def to_pairs(world: AssistantWorld, preferences: Sequence[Preference]) -> list[reward.Pair]:
    """Preferences as token-id pairs (prompt through the chat template, chosen, rejected) for
    ``minigpt.methods.reward`` and DPO."""
    return [reward.Pair(render(world.tokenizer, p.chosen.question.prompt)[0],
                        reply_ids(world, p.chosen), reply_ids(world, p.rejected))
            for p in preferences]


def preference_data(world: AssistantWorld, model: GPT, seed: int = 0
                    ) -> tuple[list[Preference], list[Preference]]:
    """Chapter 09's preferences: ``world.preference_questions`` questions, two sampled answers
    each, ranked by the annotator with ``world.annotator_noise``; (train, held out), 7 : 1."""
    questions = tasks.make_questions(world.preference_questions, seed=200 + seed)
    prefs = sample_preferences(model, world, questions, tasks.Annotator(world.annotator_noise),
                               seed=seed)
    n_val = max(1, len(prefs) // 8)
    return prefs[:-n_val], prefs[-n_val:]


def _preference_from_dict(d: dict) -> Preference:
    def reply(r: dict) -> Reply:
        return Reply(tasks.Question(**r["question"]), str(r["text"]), bool(r["finished"]))
    return Preference(reply(d["chosen"]), reply(d["rejected"]))


def preferences(world: AssistantWorld, progress: bool = True
                ) -> tuple[list[Preference], list[Preference]]:
    """``preference_data`` for the world's SFT model, cached as JSON beside the models
    (chapters 09 and 10 share one set; sampling it takes minutes on a CPU). A cache file that
    cannot be read is ignored with a message and sampled again."""
    path = Path(cache_dir()) / "assistant" / f"preferences-{world.key('preferences')}.json"
    if path.exists():
        try:
            saved = json.loads(path.read_text())
            if saved.get("format") != CACHE_FORMAT:
                raise ValueError(f"{path} is not a {CACHE_FORMAT} file")
            return ([_preference_from_dict(d) for d in saved["train"]],
                    [_preference_from_dict(d) for d in saved["val"]])
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            print(f"Ignoring the cached preferences ({type(e).__name__}: {str(e)[:120]}); "
                  "sampling them again.")
    train, val = preference_data(world, sft_model(world, progress))
    saved = {"format": CACHE_FORMAT, "train": [asdict(p) for p in train],
             "val": [asdict(p) for p in val]}
    write_text_atomic(path, json.dumps(saved))  # atomic, as for the models
    return train, val


def train_reward(world: AssistantWorld, model: GPT, train: Sequence[Preference],
                 val: Sequence[Preference] | None = None, steps: int | None = None,
                 progress: bool = True) -> tuple[reward.RewardModel, Any]:
    """A reward model started from ``model`` and trained on ``train`` with the Bradley-Terry
    loss; returns it and the training history."""
    rm = reward.RewardModel.from_gpt(model)
    steps = world.reward_steps if steps is None else steps
    config = TrainConfig(max_steps=steps, lr=world.reward_lr, warmup_steps=min(30, steps // 5),
                         weight_decay=world.reward_weight_decay, eval_interval=max(steps // 6, 5),
                         eval_steps=5, progress=progress, seed=world.seed)
    history = reward.train_reward_model(rm, to_pairs(world, train), config,
                                        pad_id=world.tokenizer.end_id, batch_size=world.reward_batch,
                                        val_pairs=to_pairs(world, val) if val else None)
    return rm, history


def reward_model(world: AssistantWorld, progress: bool = True) -> reward.RewardModel:
    """Chapter 09's reward model (cached like the others): trained on ``preference_data`` from
    the SFT model."""
    def build() -> reward.RewardModel:
        train, val = preferences(world, progress)
        return train_reward(world, sft_model(world, progress), train, val, progress=progress)[0]
    return _cached_model(world, "reward", build, lambda: reward.RewardModel(GPT(world.config())))



# ---- reinforcement learning (chapter 10) ---------------------------------------------------------

class PromptSampler:
    """PPO's prompts: ``sampler()`` gives a (batch_size, P) tensor of prompts that all have one
    length P (so a batch generates without padding), drawn from ``questions``;
    ``sampler.question(ids)`` is the question behind a prompt, for the annotator."""

    def __init__(self, world: AssistantWorld, questions: Sequence[tasks.Question],
                 batch_size: int, seed: int = 0):
        groups: dict[int, list[tuple[list[int], tasks.Question]]] = defaultdict(list)
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

    def question(self, prompt_ids: Sequence[int]) -> tasks.Question:
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
                     annotator: tasks.Annotator | None = None) -> Callable[..., torch.Tensor]:
    """A ``score_fn`` that asks the annotator (the "true" reward, noiseless by default)."""
    judge = annotator or tasks.Annotator(noise=0.0)

    def score_fn(prompts: torch.Tensor, responses: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.tensor([judge.score(sampler.question(p.tolist()), response_text(world, r, m))
                             for p, r, m in zip(prompts, responses, mask)])
    return score_fn


def true_reward(replies: Sequence[Reply], annotator: tasks.Annotator | None = None) -> float:
    """The annotator's mean (noiseless) score of ``replies``."""
    judge = annotator or tasks.Annotator(noise=0.0)
    return float(np.mean([judge.score(r.question, r.text) for r in replies]))


def win_rate(replies: Sequence[Reply], baseline: Sequence[Reply],
             annotator: tasks.Annotator | None = None) -> float:
    """Share of questions where ``replies`` beat ``baseline`` by the annotator's score (ties
    count half)."""
    judge = annotator or tasks.Annotator(noise=0.0)
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
    from minigpt.methods import (
        rlhf,  # same layer; imported here so that rlhf may use this module too
    )

    tok = world.tokenizer
    prompts = [render(tok, r.question.prompt)[0] for r in replies]
    seqs = [p + reply_ids(world, r) for p, r in zip(prompts, replies)]
    total = 0.0
    for i in range(0, len(seqs), 128):
        idx, lengths = reward.pad_sequences(seqs[i:i + 128], tok.end_id, model.cfg.block_size)
        start = torch.tensor([len(p) for p in prompts[i:i + 128]])
        width = idx.size(1) - int(start.min())
        mask = (start[:, None] + torch.arange(width)) < lengths[:, None]
        logp = rlhf.sequence_logprobs(model, idx, start, mask).sum(1)
        ref_logp = rlhf.sequence_logprobs(ref, idx, start, mask).sum(1)
        total += (logp - ref_logp).sum().item()
    return total / len(seqs)


@torch.no_grad()
def wiki_bits_per_byte(model: GPT, world: AssistantWorld, max_chars: int | None = None) -> float:
    """Held-out bits per byte on wiki's test split (its first ``max_chars`` characters): what
    fine-tuning costs the model's language modelling (the "alignment tax")."""
    from minigpt.core.metrics import bits_per_byte
    from minigpt.train.evaluation import heldout_loss

    text = batching.split_text(corpora.load_corpus("wiki"))["test"][:max_chars]
    ids = np.array(world.tokenizer.encode(text), dtype=np.int64)
    loss, n = heldout_loss(model, ids, model.cfg.block_size)
    return bits_per_byte(loss, n, len(world.tokenizer.decode(ids[1:n + 1].tolist()).encode("utf-8")))


@torch.no_grad()
def best_of_n(model: GPT, rm: reward.RewardModel, world: AssistantWorld,
              questions: Sequence[tasks.Question], n: int, max_new_tokens: int = 80,
              seed: int = 0) -> list[Reply]:
    """For each question, ``n`` answers sampled at temperature 1 and the one the reward model
    scores highest (``rlhf.best_of_n``): no training, n times the sampling."""
    from minigpt.methods import rlhf

    gen = torch.Generator(next(model.parameters()).device).manual_seed(seed)
    score_fn = reward_scorer(rm, world)
    replies: list[Reply | None] = [None] * len(questions)
    for chunk, x, new in _prompt_batches(model, world, questions, max_new_tokens, 64):
        best = rlhf.best_of_n(model, x, n, score_fn, new, world.tokenizer.end_id, generator=gen)
        for i, row, mask in zip(chunk, best.responses, best.mask):
            finished = bool((row[mask] == world.tokenizer.end_id).any())
            replies[i] = Reply(questions[i], response_text(world, row, mask), finished)
    return replies  # type: ignore[return-value]
