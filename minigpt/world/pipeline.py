"""The assistant world's cached stages: base, SFT, preferences, reward (chapters 08-12).

Each stage trains its model from the world's recipe (``minigpt.world.recipes``) the first time
it is asked for, then loads it from the cache folder (``minigpt.cache_dir()/assistant``; files
hold tensors only and load with ``torch.load(weights_only=True)``; a corrupt or stale file is
trained again). A file's name is the stage's ``world.key(stage)``, so a change to any value of
a recipe trains that stage and the later ones again, and never reuses a stale model.

    >>> from minigpt.world import pipeline
    >>> from minigpt.world.recipes import AssistantWorld
    >>> world = AssistantWorld.build()
    >>> model = pipeline.sft_model(world)          # trains base and SFT once, then loads them

``finetune`` and ``train_reward`` run one stage's recipe on any model, for the experiments of
the chapters (another learning rate, a LoRA model, poisoned data): they pass the recipe's plain
values to ``minigpt.methods.sft`` and ``minigpt.methods.reward``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from minigpt.core.io import write_text_atomic
from minigpt.core.runtime import cache_dir
from minigpt.data import batching
from minigpt.methods import reward, sft
from minigpt.models.gpt import GPT
from minigpt.train.cache import load_or_build, save_model_file
from minigpt.train.config import History, TrainConfig
from minigpt.train.trainer import Trainer
from minigpt.world.comparisons import Preference, preference_data, preference_from_dict, to_pairs
from minigpt.world.questions import Question, instruction_data
from minigpt.world.recipes import AssistantWorld, SFTRecipe

__all__ = ["CACHE_FORMAT", "base_model", "cache_model", "finetune", "preferences", "reward_model",
           "sft_model", "train_reward"]

CACHE_FORMAT = "minigpt.assistant/1"


def _cache_path(world: AssistantWorld, stage: str, suffix: str = ".pt") -> Path:
    return Path(cache_dir()) / "assistant" / f"{stage}-{world.key(stage)}{suffix}"


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
    r = world.base

    def build() -> GPT:
        torch.manual_seed(r.seed)
        model = GPT(world.config())
        ids = world.pretraining_ids()
        cut = int(len(ids) * (1 - r.val_share))
        get_batch = batching.make_get_batch({"train": ids[:cut], "val": ids[cut:]},
                                            r.batch_size, r.block_size)
        cfg = TrainConfig(max_steps=r.steps, lr=r.lr, min_lr_ratio=r.min_lr_ratio,
                          warmup_steps=min(r.warmup_steps, r.steps // 5),
                          weight_decay=r.weight_decay, eval_interval=0, progress=progress,
                          seed=r.seed)
        Trainer(model, get_batch, cfg).fit()
        return model
    return _cached_model(world, "base", build)


def finetune(model: nn.Module, world: AssistantWorld, recipe: SFTRecipe | None = None,
             examples: Sequence[tuple[Question, str]] | None = None,
             progress: bool = True) -> History:
    """Fine-tune ``model`` in place with ``recipe`` (the world's SFT recipe unless given; vary
    one value with ``dataclasses.replace(world.sft, lr=...)``) on ``examples``, or on the
    recipe's ``instruction_data``. Returns the training history."""
    r = recipe or world.sft
    if examples is None:
        examples = instruction_data(r.examples, seed=r.seed)
    return sft.finetune(model, world.tokenizer, [(q.prompt, answer) for q, answer in examples],
                        steps=r.steps, lr=r.lr, batch_size=r.batch_size,
                        min_lr_ratio=r.min_lr_ratio, warmup_steps=r.warmup_steps,
                        weight_decay=r.weight_decay,
                        replay=world.pretraining_ids() if r.replay else None,
                        replay_share=r.replay, seed=r.seed, progress=progress)


def sft_model(world: AssistantWorld, progress: bool = True) -> GPT:
    """The base model after full fine-tuning on the instruction data (cached like the base)."""
    def build() -> GPT:
        model = base_model(world, progress)
        finetune(model, world, progress=progress)
        return model
    return _cached_model(world, "sft", build)


def preferences(world: AssistantWorld, progress: bool = True
                ) -> tuple[list[Preference], list[Preference]]:
    """Chapter 09's preference pairs from the world's SFT model (``preference_data``; train and
    held out), cached as JSON beside the models: chapters 09 and 10 share one set, and sampling
    it takes minutes on a CPU. A cache file that cannot be read is ignored with a message and
    sampled again."""
    path = _cache_path(world, "preferences", ".json")
    if path.exists():
        try:
            saved = json.loads(path.read_text())
            if saved.get("format") != CACHE_FORMAT:
                raise ValueError(f"{path} is not a {CACHE_FORMAT} file")
            return ([preference_from_dict(d) for d in saved["train"]],
                    [preference_from_dict(d) for d in saved["val"]])
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
                 progress: bool = True) -> tuple[reward.RewardModel, History]:
    """A reward model started from ``model`` and trained on ``train`` with the Bradley-Terry
    loss and the world's reward recipe (``steps`` of it unless given); returns it and the
    training history."""
    r = world.reward
    rm = reward.RewardModel.from_gpt(model)
    steps = r.steps if steps is None else steps
    config = TrainConfig(max_steps=steps, lr=r.lr, warmup_steps=min(r.warmup_steps, steps // 5),
                         weight_decay=r.weight_decay, eval_interval=max(steps // 6, 5),
                         eval_steps=5, progress=progress, seed=r.seed)
    history = reward.train_reward_model(rm, to_pairs(world, train), config,
                                        pad_id=world.tokenizer.end_id, batch_size=r.batch_size,
                                        val_pairs=to_pairs(world, val) if val else None)
    return rm, history


def reward_model(world: AssistantWorld, progress: bool = True) -> reward.RewardModel:
    """Chapter 09's reward model (cached like the others): trained on ``preferences`` from the
    SFT model."""
    def build() -> reward.RewardModel:
        train, val = preferences(world, progress)
        return train_reward(world, sft_model(world, progress), train, val, progress=progress)[0]
    return _cached_model(world, "reward", build, lambda: reward.RewardModel(GPT(world.config())))
