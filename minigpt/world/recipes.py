"""The assistant world's recipes: every value that decides a model of chapters 08-12.

Four stages, each starting from the one before (``STAGES``):

- ``BaseRecipe``: pre-training a small GPT on wiki mixed with plain text about the world;
- ``SFTRecipe``: fine-tuning it on instruction data, the loss on answers only;
- ``PreferenceRecipe``: pairs of the SFT model's answers, ranked by the annotator;
- ``RewardRecipe``: the Bradley-Terry reward model trained on those pairs.

A recipe is a frozen dataclass that holds every value its stage uses, learning rates and
seeds included; ``for_profile()`` sizes it for the active profile when it is called (never at
import). ``AssistantWorld`` carries the chat tokenizer and one recipe per stage:

    >>> from minigpt.world.recipes import AssistantWorld
    >>> world = AssistantWorld.build()                      # the recipes of the active profile
    >>> world.sft.lr, world.base.steps                      # doctest: +SKIP
    (0.001, 1500)
    >>> slower = dataclasses.replace(world, sft=dataclasses.replace(world.sft, lr=5e-4))  # doctest: +SKIP

``world.key(stage)`` names the stage's cached model (``minigpt.world.pipeline``): the hash of
the stage's whole recipe and of the key of the stage before it (the base stage hashes its data
instead: the vocabulary and samples of the world's text). A chain, so no value can be left out:
change any field and that stage and every later one train again, the earlier ones are reused.
"""

from __future__ import annotations

import dataclasses
import functools
import string
from dataclasses import dataclass
from typing import Any

import numpy as np

from minigpt.core.io import recipe_key
from minigpt.core.runtime import by_profile
from minigpt.data import batching, corpora
from minigpt.data.tokenizers import CharTokenizer, ChatTokenizer
from minigpt.methods import incontext
from minigpt.models.gpt import GPTConfig
from minigpt.world import questions

__all__ = [
    "STAGES", "WORLD_EXAMPLES", "AssistantWorld", "BaseRecipe", "PreferenceRecipe", "RewardRecipe",
    "SFTRecipe", "pretraining_questions", "pretraining_text",
]

STAGES = ("base", "sft", "preferences", "reward")  # each stage starts from the one before
WORLD_EXAMPLES = 200_000  # worked examples in the world's pre-training text (seed 0)


@dataclass(frozen=True)
class BaseRecipe:
    """Pre-training: a GPT of this shape on wiki's training split with text about the world
    mixed in (``world_share`` of the characters), warmup then cosine decay."""

    block_size: int = 128
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100  # at most a fifth of the run
    weight_decay: float = 0.1
    world_share: float = 0.8  # share of the pre-training characters about the world
    val_share: float = 0.02  # the end of the pre-training text, held out for validation
    seed: int = 0

    @classmethod
    def for_profile(cls, **overrides: Any) -> BaseRecipe:
        return cls(**{"steps": by_profile(ci=40, cpu=1500, gpu=4000), **overrides})


@dataclass(frozen=True)
class SFTRecipe:
    """Supervised fine-tuning on ``examples`` instruction pairs (``questions.instruction_data``),
    the loss on answers only; ``replay`` of each batch's rows are pre-training text, with that
    share of the loss. Without it the model forgets how to continue prose (wiki bits per byte
    2.94 -> 8.17); with a quarter it keeps 3.11 at about the same validation accuracy
    (docs/LOG.md, 2026-12-08)."""

    examples: int = 4000
    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30  # at most a fifth of the run
    weight_decay: float = 0.0
    replay: float = 0.25  # share of each SFT batch (rows and loss) that is pre-training text
    seed: int = 0

    @classmethod
    def for_profile(cls, **overrides: Any) -> SFTRecipe:
        return cls(**{"examples": by_profile(ci=400, cpu=4000, gpu=8000),
                      "steps": by_profile(ci=20, cpu=600, gpu=1200), **overrides})


@dataclass(frozen=True)
class PreferenceRecipe:
    """Chapter 09's preference data: for each of ``questions`` questions, two answers sampled
    from the SFT model and ranked by the annotator, who flips ``annotator_noise`` of the labels;
    ``1 / val_every`` of the questions are held out (validation-split questions)."""

    questions: int = 16000
    annotator_noise: float = 0.1
    temperature: float = 1.0
    max_new_tokens: int = 80
    val_every: int = 8
    seed: int = 0

    @classmethod
    def for_profile(cls, **overrides: Any) -> PreferenceRecipe:
        return cls(**{"questions": by_profile(ci=300, cpu=16000, gpu=32000), **overrides})


@dataclass(frozen=True)
class RewardRecipe:
    """The reward model: the SFT model with a scalar head, trained on the preference pairs with
    the Bradley-Terry loss."""

    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 30  # at most a fifth of the run
    weight_decay: float = 0.0
    seed: int = 0

    @classmethod
    def for_profile(cls, **overrides: Any) -> RewardRecipe:
        return cls(**{"steps": by_profile(ci=20, cpu=600, gpu=1200), **overrides})


def pretraining_text(world_share: float = 0.8) -> str:
    """The base model's training text: wiki's training split with paragraphs about the world
    (``questions.world_text``) mixed in, ``world_share`` of the characters. Built once per
    process (about 10 s)."""
    return _pretraining_text(world_share)


def pretraining_questions() -> list[questions.Question]:
    """The questions whose worked examples ``pretraining_text`` holds (train split only), to
    measure an evaluation set's overlap with pre-training (``minigpt.world.overlap``)."""
    return questions.worked_examples(WORLD_EXAMPLES, seed=0)


@functools.cache
def _pretraining_text(world_share: float) -> str:
    wiki = batching.split_text(corpora.load_corpus("wiki"))["train"]
    return incontext.mix(wiki, questions.world_text(WORLD_EXAMPLES, seed=0), share=world_share, seed=0)


@functools.cache
def _pretraining_ids(base: CharTokenizer, world_share: float) -> np.ndarray:
    return np.array(base.encode(_pretraining_text(world_share)), dtype=np.int64)


@dataclass(frozen=True)
class AssistantWorld:
    """Everything chapters 08-12 share about the assistant world: the chat tokenizer and the
    recipe of every stage. ``dataclasses.replace`` makes a world that differs in one value."""

    tokenizer: ChatTokenizer
    base: BaseRecipe
    sft: SFTRecipe
    preferences: PreferenceRecipe
    reward: RewardRecipe

    @classmethod
    def build(cls, base: BaseRecipe | None = None, sft: SFTRecipe | None = None,
              preferences: PreferenceRecipe | None = None,
              reward: RewardRecipe | None = None) -> AssistantWorld:
        """The world with the active profile's recipes (or those given) and its character-level
        chat tokenizer: every character of the pre-training text and of printable ASCII, "?"
        for anything else."""
        base = base or BaseRecipe.for_profile()
        chars = CharTokenizer.fit(pretraining_text(base.world_share) + string.printable, unk="?")
        return cls(ChatTokenizer(chars), base, sft or SFTRecipe.for_profile(),
                   preferences or PreferenceRecipe.for_profile(),
                   reward or RewardRecipe.for_profile())

    def config(self) -> GPTConfig:
        """The shape of every model of the world (the base recipe's)."""
        b = self.base
        return GPTConfig(vocab_size=self.tokenizer.vocab_size, block_size=b.block_size,
                         n_layer=b.n_layer, n_head=b.n_head, n_embd=b.n_embd)

    def pretraining_ids(self) -> np.ndarray:
        """``pretraining_text`` as token ids (for the base model, and SFT's replay)."""
        return _pretraining_ids(self.tokenizer.base, self.base.world_share)

    def recipe(self, stage: str) -> dict[str, Any]:
        """What ``key(stage)`` hashes: the stage's recipe, and the key of the stage before it
        (for the base stage: the vocabulary and a sample of the world's text). The SFT stage
        adds a sample of its instruction data, so a change to the world's questions or answer
        styles is a new recipe too."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}: the stages are {', '.join(STAGES)}")
        recipe: dict[str, Any] = {"stage": stage,
                                  "recipe": dataclasses.asdict(getattr(self, stage))}
        if stage == "base":
            recipe["vocab"] = self.tokenizer.base.itos
            recipe["world"] = questions.world_text(100, seed=1)
        else:
            recipe["after"] = self.key(STAGES[STAGES.index(stage) - 1])
        if stage == "sft":
            recipe["instructions"] = repr(questions.instruction_data(50, seed=1))
        return recipe

    def key(self, stage: str) -> str:
        """A short hash of ``recipe(stage)``: the ``stage`` model's cache name."""
        return recipe_key(self.recipe(stage))
