"""Supervised fine-tuning (SFT): turn a text predictor into an assistant (chapter 08).

InstructGPT (Ouyang et al. 2022) fine-tuned GPT-3 on conversations that people wrote as an
ideal assistant would. The model does not learn new facts that way; it learns a *format*: a
user's turn, then an answer, then stop. Here the conversations come from the assistant world
of ``minigpt.tasks`` and the chat template of ``minigpt.tokenizers.ChatTokenizer``:

    <|user|>What is 23 + 45?<|end|><|assistant|>Sure! 23 + 45 = 68.<|end|>

The loss is taken only on the answer and its ``<|end|>`` (``answer_mask``): the model is not
asked to predict what users type, only how to reply and when to stop.

    >>> from minigpt import sft
    >>> world = sft.AssistantWorld.build()                          # tokenizer + data recipe
    >>> base = sft.base_model(world)        # cached: pre-trained on wiki + world facts
    >>> ids, mask = sft.render(world.tokenizer, "What is 2 + 3?", "5.")
    >>> model = sft.finetune(base, world, steps=300)                 # doctest: +SKIP
    >>> sft.evaluate(model, world, questions)                        # doctest: +SKIP

The base and SFT models of chapters 08-12 come from ``base_model`` and ``sft_model``, which
train them the first time and then load them from the cache folder (checkpoints hold only
tensors and plain values, read with ``torch.load(weights_only=True)``). Deliberately left out:
multi-turn training data, packing several conversations into one window, and chat templates
of other projects (each names its special tokens differently).
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
import string
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from minigpt import data, incontext, tasks
from minigpt.gpt import GPT, GPTConfig
from minigpt.runtime import by_profile, cache_dir
from minigpt.tokenizers import CharTokenizer, ChatTokenizer
from minigpt.train import History, TrainConfig, Trainer, check_state_dict

__all__ = [
    "AssistantWorld", "Reply", "answer_mask", "base_model", "evaluate", "finetune", "generate",
    "masked_loss", "render", "sft_batches", "sft_loss", "sft_model",
]


# ---- the chat template and the loss mask -------------------------------------------------------

def answer_mask(ids: Sequence[int], assistant_id: int, end_id: int) -> list[bool]:
    """Per position: True on the tokens of assistant answers (after each ``assistant_id`` up to
    and including its ``end_id``: the model must learn to stop), False elsewhere. An answer
    that is cut off stays True to the end."""
    mask, inside = [], False
    for i in ids:
        if inside:
            mask.append(True)
            inside = i != end_id
        else:
            mask.append(False)
            inside = i == assistant_id
    return mask


def render(tok: ChatTokenizer, prompt: str, response: str | None = None,
           system: str | None = None) -> tuple[list[int], list[bool]]:
    """``(ids, mask)`` of one exchange through the chat template. Without ``response`` the ids
    end with an open ``<|assistant|>``: a prompt for the model to answer."""
    turns = ([("system", system)] if system else []) + [("user", prompt)]
    if response is None:
        ids = tok.render(turns, add_generation_prompt=True)
    else:
        ids = tok.render(turns + [("assistant", response)])
    return ids, answer_mask(ids, tok.assistant_id, tok.end_id)


def masked_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions where ``mask`` (B, T) is True."""
    if not mask.any():
        raise ValueError("the loss mask selects no token: every example needs an answer")
    per_token = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return per_token[mask.flatten()].mean()


def sft_batches(examples: Sequence[tuple[list[int], list[bool]]], batch_size: int,
                block_size: int, pad_id: int, val_fraction: float = 0.1,
                generator: torch.Generator | None = None) -> Callable[[str], tuple[torch.Tensor, ...]]:
    """``get_batch(split) -> (x, y, mask)`` for the Trainer: random examples, right-padded with
    ``pad_id`` (masked out) to the longest in the batch. The last ``val_fraction`` of the
    examples are the "val" split."""
    too_long = [i for i, (ids, _) in enumerate(examples) if len(ids) > block_size + 1]
    if too_long:
        i = too_long[0]
        raise ValueError(f"example {i} has {len(examples[i][0])} tokens, more than block_size + 1 "
                         f"= {block_size + 1}: shorten it or use a model with a longer context")
    if len(examples) < 2:
        raise ValueError("sft_batches needs at least two examples (one for validation)")
    n_val = max(1, int(len(examples) * val_fraction))
    splits = {"train": examples[:-n_val], "val": examples[-n_val:]}

    def get_batch(split: str = "train") -> tuple[torch.Tensor, ...]:
        rows = splits[split]
        pick = torch.randint(0, len(rows), (batch_size,), generator=generator).tolist()
        length = max(len(rows[i][0]) for i in pick)
        x = torch.full((batch_size, length), pad_id, dtype=torch.long)
        m = torch.zeros((batch_size, length), dtype=torch.bool)
        for r, i in enumerate(pick):
            ids, mask = rows[i]
            x[r, :len(ids)] = torch.tensor(ids)
            m[r, :len(mask)] = torch.tensor(mask)
        return x[:, :-1], x[:, 1:], m[:, 1:]  # position t predicts token t + 1

    return get_batch


def sft_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The Trainer's ``loss_fn`` for SFT: cross-entropy on answer tokens only."""
    x, y, mask = batch
    logits, _ = model(x)
    return masked_loss(logits, y, mask)


# ---- the world: tokenizer, data recipe and models -----------------------------------------------

@dataclass
class AssistantWorld:
    """Everything chapters 08-12 share about the assistant world: the chat tokenizer, the model
    shape and the recipes of the base and SFT models, sized by the profile."""

    tokenizer: ChatTokenizer
    model: dict = field(default_factory=lambda: dict(block_size=128, n_layer=2, n_head=4,
                                                     n_embd=128))
    pretrain_steps: int = by_profile(ci=40, cpu=1500, gpu=4000)
    pretrain_batch: int = 32
    world_share: float = 0.6  # share of the pre-training characters about the world
    sft_examples: int = by_profile(ci=400, cpu=4000, gpu=8000)
    sft_steps: int = by_profile(ci=20, cpu=300, gpu=600)
    sft_batch: int = 32
    seed: int = 0

    @classmethod
    def build(cls, **overrides) -> AssistantWorld:
        """The world with its character-level chat tokenizer (every character of the
        pre-training text and of printable ASCII, "?" for anything else)."""
        text = _pretraining_text(overrides.get("world_share", cls.world_share))
        base = CharTokenizer.fit(text + string.printable, unk="?")
        return cls(ChatTokenizer(base), **overrides)

    def config(self) -> GPTConfig:
        return GPTConfig(vocab_size=self.tokenizer.vocab_size, **self.model)

    def key(self, stage: str) -> str:
        """A short hash of everything that determines the ``stage`` model (its cache name)."""
        recipe = {k: v for k, v in asdict(self).items() if k != "tokenizer"}
        recipe["vocab"] = self.tokenizer.base.itos
        recipe["stage"] = stage
        # the world's code: a change to its text, questions or answers makes new models
        recipe["world"] = tasks.world_text(100, seed=1) + repr(tasks.instruction_data(50, seed=1))
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


@functools.cache  # built once per process (about 10 s)
def _pretraining_text(world_share: float) -> str:
    wiki = data.split_text(data.load_corpus("wiki"))["train"]
    return incontext.mix(wiki, tasks.world_text(200_000, seed=0), share=world_share, seed=0)


CACHE_FORMAT = "minigpt.sft/1"


def _cached_model(world: AssistantWorld, stage: str, build: Callable[[], GPT]) -> GPT:
    path = Path(cache_dir()) / "assistant" / f"{stage}-{world.key(stage)}.pt"
    model = GPT(world.config())
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(saved, dict) or saved.get("format") != CACHE_FORMAT:
                raise ValueError(f"{path} is not a {CACHE_FORMAT} file")
            check_state_dict(model, saved["model"], source=str(path))
            model.load_state_dict(saved["model"])
            return model.eval()
        except (ValueError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as e:
            print(f"Ignoring the cached {stage} model ({type(e).__name__}: {str(e)[:120]}); "
                  "training it again.")
    model = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"format": CACHE_FORMAT, "model": model.state_dict()}, tmp)
    tmp.replace(path)  # atomic: a half-written file never has the final name
    return model.eval()


def base_model(world: AssistantWorld, progress: bool = True) -> GPT:
    """The pre-trained base model: trained on wiki mixed with plain text about the world (facts
    and worked examples, no chat markers), or loaded from the cache if it was before."""
    def build() -> GPT:
        torch.manual_seed(world.seed)
        model = GPT(world.config())
        text = _pretraining_text(world.world_share)
        ids = np.array(world.tokenizer.encode(text), dtype=np.int64)
        cut = int(len(ids) * 0.98)
        get_batch = data.make_get_batch({"train": ids[:cut], "val": ids[cut:]},
                                        world.pretrain_batch, world.model["block_size"])
        steps = world.pretrain_steps
        cfg = TrainConfig(max_steps=steps, lr=3e-3, min_lr_ratio=0.1, warmup_steps=min(100, steps // 5),
                          weight_decay=0.1, eval_interval=0, progress=progress, seed=world.seed)
        Trainer(model, get_batch, cfg).fit()
        return model
    return _cached_model(world, "base", build)


def finetune(model: GPT, world: AssistantWorld, steps: int | None = None, lr: float = 1e-3,
             examples: Sequence[tuple[tasks.Question, str]] | None = None,
             progress: bool = True) -> History:
    """Fine-tune ``model`` in place on instruction data (``tasks.instruction_data``, or
    ``examples``), with the loss on answers only. Returns the training history."""
    tok = world.tokenizer
    examples = examples if examples is not None else tasks.instruction_data(world.sft_examples,
                                                                            seed=world.seed)
    rows = [render(tok, q.prompt, response) for q, response in examples]
    get_batch = sft_batches(rows, world.sft_batch, model.cfg.block_size, pad_id=tok.end_id,
                            generator=torch.Generator().manual_seed(world.seed))
    steps = world.sft_steps if steps is None else steps
    cfg = TrainConfig(max_steps=steps, lr=lr, min_lr_ratio=0.1, warmup_steps=min(30, steps // 5),
                      weight_decay=0.0, eval_interval=max(steps // 5, 1), eval_steps=5,
                      progress=progress, seed=world.seed)
    return Trainer(model, get_batch, cfg, loss_fn=sft_loss).fit()


def sft_model(world: AssistantWorld, progress: bool = True) -> GPT:
    """The base model after full fine-tuning on the instruction data (cached like the base)."""
    def build() -> GPT:
        model = base_model(world, progress)
        finetune(model, world, progress=progress)
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


@torch.no_grad()
def generate(model: GPT, world: AssistantWorld, questions: Sequence[tasks.Question],
             temperature: float = 0.0, max_new_tokens: int = 80, seed: int = 0,
             batch_size: int = 256) -> list[Reply]:
    """The model's answers to ``questions`` through the chat template: greedy at temperature 0,
    sampled otherwise. Prompts of one length are generated together (no padding needed)."""
    tok = world.tokenizer
    dev = next(model.parameters()).device
    gen = torch.Generator(dev).manual_seed(seed)
    by_length: dict[int, list[int]] = defaultdict(list)
    prompts = [render(tok, q.prompt)[0] for q in questions]
    for i, ids in enumerate(prompts):
        by_length[len(ids)].append(i)
    replies: list[Reply | None] = [None] * len(questions)
    for length, idx in sorted(by_length.items()):
        new = min(max_new_tokens, model.cfg.block_size - length)
        if new < 1:
            raise ValueError(f"a prompt of {length} tokens leaves no room to answer in the model's "
                             f"context of {model.cfg.block_size}: ask a shorter question")
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            x = torch.tensor([prompts[i] for i in chunk], dtype=torch.long, device=dev)
            out = model.generate(x, new, temperature=temperature, generator=gen)[:, length:]
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
