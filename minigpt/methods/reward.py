"""A reward model: a GPT that reads a prompt and a response and returns one number, how good.

People can compare two answers more easily and more consistently than they can score one.
InstructGPT (Ouyang et al. 2022) therefore had labellers rank several answers to the same prompt
and trained a reward model on those rankings; PPO then tuned the language model to earn high
rewards (chapter 10). The reward model is a language model (usually the fine-tuned one;
InstructGPT's had 6B parameters) with its next-token head replaced by a scalar one: a
``nn.Linear(n_embd, 1)`` reading the final hidden state at the last real token of
``prompt + response`` (in a causal model that is the only position that has seen the whole
text).

It learns from pairs (prompt, chosen, rejected) through the Bradley-Terry model (Bradley and
Terry 1952), which says how rewards turn into preferences:

    P(chosen > rejected) = sigmoid(r(chosen) - r(rejected))

and its loss is the negative log-likelihood of the labels, ``-log sigmoid(r_c - r_r)``. Only
differences of rewards matter: adding a constant to every reward changes nothing.

Everything here works on token ids (lists of ints); chapter 09 makes them with its chat
tokenizer. Sequences are right-padded with ``pad_id`` to batch them: in a causal model the pads
come after the real tokens and never change them, and the reward is read before them.

    >>> from minigpt.methods.reward import Pair, RewardModel, pairwise_accuracy, score, train_reward_model
    >>> rm = RewardModel.from_gpt(sft_model)       # a copy: the language model stays as it was
    >>> pairs = [Pair(prompt=[5, 7], chosen=[3, 3, 9], rejected=[4, 1, 2]), ...]
    >>> history = train_reward_model(rm, pairs, TrainConfig(max_steps=500, lr=1e-4),
    ...                              pad_id=0, batch_size=32, val_pairs=held_out)
    >>> pairwise_accuracy(rm, held_out, pad_id=0, block_size=rm.block_size)   # e.g. 0.93
    >>> score(rm, [prompt + response], pad_id=0, block_size=rm.block_size)   # tensor([1.27])

How good can it get? With labels that disagree with the true preference at random a share p of
the time, even a perfect model agrees with only 1 - p of the held-out labels: ``noise_ceiling``.
InstructGPT's labellers agreed with each other about 73% of the time.

Deliberately left out: rankings of K > 2 answers (InstructGPT used every one of the K choose 2
pairs of a ranking together, as one batch element), normalising the rewards (InstructGPT
shifted them so that labellers' demonstrations scored 0 on average), margins, ensembles, and
left padding. What a
policy does to a reward model that it optimises against (reward hacking) is chapter 10's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.core.runtime import evaluating
from minigpt.models.gpt import GPT
from minigpt.train.config import History, TrainConfig
from minigpt.train.trainer import Trainer

__all__ = [
    "Pair", "RewardModel", "bradley_terry_loss", "collate_pairs", "noise_ceiling",
    "pad_sequences", "pair_batches", "pairwise_accuracy", "reward_loss", "score",
    "train_reward_model",
]

# (chosen_idx, chosen_len, rejected_idx, rejected_len): see collate_pairs
PairBatch = tuple[Tensor, Tensor, Tensor, Tensor]


class RewardModel(nn.Module):
    """A GPT backbone with a scalar head. ``forward(idx, lengths) -> rewards (B,)``."""

    def __init__(self, backbone: GPT):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.cfg.n_embd, 1)
        nn.init.normal_(self.head.weight, mean=0.0, std=0.02)  # GPT-2's init, as the backbone's
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_gpt(cls, gpt: GPT) -> RewardModel:
        """A reward model that starts from a copy of ``gpt``'s weights (deepcopy): training it
        leaves ``gpt`` unchanged. The copy's next-token head stays in it, unused."""
        return cls(copy.deepcopy(gpt))

    @property
    def block_size(self) -> int:
        """The longest prompt + response the backbone reads."""
        return self.backbone.cfg.block_size

    def forward(self, idx: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Rewards (B,) for right-padded token ids ``idx`` (B, T) whose rows hold ``lengths``
        (B,) real tokens each (None: every row is all real). Each reward is read from the
        final hidden state at the row's last real token, position ``lengths - 1``."""
        B, T = idx.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=idx.device)
        if lengths.shape != (B,):
            raise ValueError(f"lengths must hold one length per row, shape ({B},); "
                             f"got {tuple(lengths.shape)}")
        if B and (lengths.min() < 1 or lengths.max() > T):
            raise ValueError(f"lengths must be between 1 and T={T} (the padded width); got "
                             f"min {int(lengths.min())}, max {int(lengths.max())}: a row needs at "
                             "least one real token, and cannot hold more than T")
        hidden = self.backbone.features(idx)  # (B, T, C)
        rows = torch.arange(B, device=idx.device)
        last = hidden[rows, lengths.to(idx.device) - 1]  # (B, C): each row's last real token
        return self.head(last).squeeze(-1)  # (B,)


def bradley_terry_loss(r_chosen: Tensor, r_rejected: Tensor) -> Tensor:
    """The mean of ``-log sigmoid(r_chosen - r_rejected)``: the negative log-likelihood of the
    labels under Bradley-Terry. ``F.logsigmoid`` keeps it finite for any margin, where
    ``log(sigmoid(x))`` becomes ``log(0) = -inf`` once ``sigmoid(x)`` rounds to 0 (x < -104 in
    float32). A margin of 0 costs log 2 = 0.693 per pair; the loss falls to 0 as the chosen
    reward pulls ahead."""
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(f"r_chosen and r_rejected must have one shape, got "
                         f"{tuple(r_chosen.shape)} and {tuple(r_rejected.shape)}")
    if r_chosen.numel() == 0:  # the mean of nothing is NaN
        raise ValueError("r_chosen and r_rejected are empty: pass the rewards of at least one "
                         "pair")
    return -F.logsigmoid(r_chosen - r_rejected).mean()


@dataclass
class Pair:
    """One preference: for ``prompt``, the response ``chosen`` is better than ``rejected``.
    All three are token ids; the reward model reads ``prompt + chosen`` and
    ``prompt + rejected``."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int, block_size: int,
                  width: int | None = None) -> tuple[Tensor, Tensor]:
    """Right-pad ``sequences`` with ``pad_id`` into ``(idx (N, T), lengths (N,))``; T is the
    longest sequence's length, or ``width`` if given. Each sequence needs 1 to ``block_size``
    tokens."""
    if not sequences:
        raise ValueError("no sequences to pad: pass at least one")
    lengths = [len(s) for s in sequences]
    for i, n in enumerate(lengths):
        if not 1 <= n <= block_size:
            raise ValueError(f"sequence {i} has {n} tokens; the model reads 1 to {block_size} "
                             "(block_size): drop it, or cut it to fit")
    T = max(lengths) if width is None else width
    idx = torch.full((len(sequences), T), pad_id, dtype=torch.long)
    for i, s in enumerate(sequences):
        idx[i, :len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return idx, torch.tensor(lengths, dtype=torch.long)


def collate_pairs(pairs: Sequence[Pair], pad_id: int, block_size: int) -> PairBatch:
    """``(chosen_idx, chosen_len, rejected_idx, rejected_len)`` for ``pairs``: each
    ``prompt + response`` right-padded with ``pad_id``, chosen and rejected to one width T (the
    longest of them all), so that both fit in one forward pass. idx: (N, T); len: (N,)."""
    if not pairs:
        raise ValueError("no preference pairs: pass at least one Pair(prompt, chosen, rejected)")
    for i, p in enumerate(pairs):
        n_c, n_r = len(p.prompt) + len(p.chosen), len(p.prompt) + len(p.rejected)
        if max(n_c, n_r) > block_size:
            raise ValueError(
                f"pair {i} is too long: prompt {len(p.prompt)} + chosen {len(p.chosen)} = {n_c} "
                f"and prompt + rejected {len(p.rejected)} = {n_r} tokens, but the model reads at "
                f"most {block_size} (block_size). Drop the pair, shorten its prompt or responses, "
                "or use a model with a longer context")
        if min(n_c, n_r) < 1:
            raise ValueError(f"pair {i} has an empty prompt + response: the reward is read at "
                             "the last token, so each needs at least one")
    chosen = [list(p.prompt) + list(p.chosen) for p in pairs]
    rejected = [list(p.prompt) + list(p.rejected) for p in pairs]
    T = max(len(s) for s in chosen + rejected)
    chosen_idx, chosen_len = pad_sequences(chosen, pad_id, block_size, width=T)
    rejected_idx, rejected_len = pad_sequences(rejected, pad_id, block_size, width=T)
    return chosen_idx, chosen_len, rejected_idx, rejected_len


def pair_batches(pairs: Sequence[Pair], batch_size: int, pad_id: int, block_size: int,
                 generator: torch.Generator | None = None,
                 val_pairs: Sequence[Pair] | None = None) -> Callable[[str], PairBatch]:
    """``get_batch(split)`` for the Trainer: ``batch_size`` pairs drawn at random (with
    replacement) on every call, collated as ``collate_pairs`` does and cut to the batch's
    longest sequence. ``split="train"`` draws from ``pairs``; ``"val"`` from ``val_pairs`` if
    given, else from ``pairs`` too (then the Trainer's val loss is not held out). Every pair is
    checked and padded once, here."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tables = {"train": collate_pairs(pairs, pad_id, block_size)}
    tables["val"] = tables["train"] if val_pairs is None else \
        collate_pairs(val_pairs, pad_id, block_size)

    def get_batch(split: str = "train") -> PairBatch:
        if split not in tables:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        chosen_idx, chosen_len, rejected_idx, rejected_len = tables[split]
        pick = torch.randint(0, len(chosen_len), (batch_size,), generator=generator)
        c_len, r_len = chosen_len[pick], rejected_len[pick]
        T = int(torch.maximum(c_len, r_len).max())  # drop the columns that are pads in every row
        return chosen_idx[pick, :T], c_len, rejected_idx[pick, :T], r_len

    return get_batch


def reward_loss(model: nn.Module, batch: PairBatch) -> Tensor:
    """A ``loss_fn`` for the Trainer: the Bradley-Terry loss of ``model`` on a batch from
    ``collate_pairs`` or ``pair_batches``. Chosen and rejected go through one forward pass."""
    chosen_idx, chosen_len, rejected_idx, rejected_len = batch
    B = chosen_idx.size(0)
    rewards = model(torch.cat([chosen_idx, rejected_idx]),
                    torch.cat([chosen_len, rejected_len]))  # (2B,)
    return bradley_terry_loss(rewards[:B], rewards[B:])


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def score(model: nn.Module, sequences: Sequence[Sequence[int]], pad_id: int, block_size: int,
          batch_size: int = 256) -> Tensor:
    """The rewards (N,) of token-id ``sequences`` (each a prompt + response), on the CPU, in
    batches of ``batch_size``. Runs in eval mode and restores the model's mode."""
    pad_sequences(sequences, pad_id, block_size)  # check them all before the first batch
    with evaluating(model):
        out = []
        for start in range(0, len(sequences), batch_size):
            idx, lengths = pad_sequences(sequences[start:start + batch_size], pad_id, block_size)
            out.append(model(idx.to(_device(model)), lengths.to(_device(model))).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def pairwise_accuracy(model: nn.Module, pairs: Sequence[Pair], pad_id: int, block_size: int,
                      batch_size: int = 256) -> float:
    """The share of ``pairs`` whose chosen response gets the strictly higher reward (a tie
    counts as wrong). Eval mode, no gradients; the model's mode is restored."""
    collate_pairs(pairs, pad_id, block_size)  # check them all before the first batch
    with evaluating(model):
        right = 0
        for start in range(0, len(pairs), batch_size):
            batch = collate_pairs(pairs[start:start + batch_size], pad_id, block_size)
            c_idx, c_len, r_idx, r_len = (t.to(_device(model)) for t in batch)
            right += int((model(c_idx, c_len) > model(r_idx, r_len)).sum())
    return right / len(pairs)


def train_reward_model(model: RewardModel, train_pairs: Sequence[Pair], config: TrainConfig,
                       pad_id: int, batch_size: int, *, val_pairs: Sequence[Pair] | None = None,
                       generator: torch.Generator | None = None) -> History:
    """Train ``model`` on ``train_pairs`` with the Bradley-Terry loss through the course's
    Trainer (``pair_batches`` + ``reward_loss``); returns the Trainer's History, whose
    ``val_loss`` is measured on ``val_pairs`` when given."""
    get_batch = pair_batches(train_pairs, batch_size, pad_id, model.block_size,
                             generator=generator, val_pairs=val_pairs)
    trainer = Trainer(model, get_batch, config, loss_fn=reward_loss, generator=generator)
    return trainer.fit()


def noise_ceiling(flip_prob: float) -> float:
    """The best accuracy any model can reach on held-out labels that were flipped at random
    with probability ``flip_prob`` (0 to 0.5): ``1 - flip_prob``.

    Why: say each pair has a true preference and its label shows it, except that with
    probability p, independently of everything the model sees, the label was flipped. No
    model can predict the flips, so the best it can do is to agree with the true preference
    everywhere; it then agrees with the label exactly when the label was not flipped, a share
    1 - p of the time. (Past p = 0.5 the labels mean the opposite more often than not: swap
    chosen and rejected.)"""
    if not 0.0 <= flip_prob <= 0.5:
        raise ValueError(f"flip_prob must be between 0 and 0.5, got {flip_prob}; above 0.5 the "
                         "labels are mostly reversed: swap chosen and rejected, and use "
                         "1 - flip_prob")
    return 1.0 - flip_prob
