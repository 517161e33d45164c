"""Supervised fine-tuning (SFT): turn a text predictor into an assistant (chapter 08).

InstructGPT (Ouyang et al. 2022) fine-tuned GPT-3 on conversations that people wrote as an
ideal assistant would. The model does not learn new facts that way; it learns a *format*: a
user's turn, then an answer, then stop. A conversation becomes tokens through the chat template
of ``minigpt.data.tokenizers.ChatTokenizer``:

    <|user|>What is 23 + 4?<|end|><|assistant|>Sure! 23 + 4 = 27.<|end|>

and the loss is taken only on the answer and its ``<|end|>`` (``answer_mask``): the model is not
asked to predict what users type, only how to reply and when to stop.

    >>> from minigpt.methods import sft
    >>> ids, mask = sft.render(tokenizer, "What is 2 + 3?", "5.")          # doctest: +SKIP
    >>> history = sft.finetune(model, tokenizer, [("What is 2 + 3?", "5.")],  # doctest: +SKIP
    ...                        steps=600, lr=1e-3)      # in place; loss on answers only

``finetune`` takes plain values: a model, a chat tokenizer, (prompt, answer) pairs and the
settings. The assistant world's recipe for it, and its cached SFT model, are
``minigpt.world.recipes`` and ``minigpt.world.pipeline``. Deliberately left out: multi-turn
training data, packing several conversations into one window, and the chat templates of other
projects (each names its special tokens differently).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from minigpt.core.metrics import check_count
from minigpt.data.tokenizers import ChatTokenizer
from minigpt.train.config import History, TrainConfig
from minigpt.train.trainer import Trainer

__all__ = ["answer_mask", "finetune", "masked_loss", "render", "sft_batches", "sft_loss"]


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
    """Mean cross-entropy over the positions where ``mask`` (B, T), one flag per target, is
    True."""
    if mask.shape != targets.shape:
        raise ValueError(f"mask must have the shape of targets, {tuple(targets.shape)}, got "
                         f"{tuple(mask.shape)}: one True/False per target token (sft_batches "
                         "gives x, y and mask of one shape)")
    if not mask.any():
        raise ValueError("the loss mask selects no token: every example needs an answer")
    per_token = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return per_token[mask.flatten()].mean()


def sft_batches(examples: Sequence[tuple[list[int], list[bool]]], batch_size: int,
                block_size: int, pad_id: int, val_fraction: float = 0.1,
                generator: torch.Generator | None = None, replay: np.ndarray | None = None,
                replay_share: float = 0.0) -> Callable[[str], tuple[torch.Tensor, ...]]:
    """``get_batch(split) -> (x, y, mask)`` for the Trainer: random examples, right-padded with
    ``pad_id`` (masked out) to the longest in the batch. The last ``val_fraction`` of the
    examples are the "val" split. With ``replay`` (pre-training token ids), ``replay_share`` of
    each training batch's rows are windows of it (as long as the batch's longest chat), trained
    on every token, so that fine-tuning does not wipe out what pre-training taught (a "replay"
    of old data); batches then carry a fourth tensor, ``replay_rows`` (B,), True on those rows,
    so that ``sft_loss`` can give the replay ``replay_share`` of the loss (not the share of its
    tokens, several times the answers')."""
    check_count(batch_size, "batch_size")
    if not 0 <= replay_share < 1 or (replay_share > 0 and replay is None):
        raise ValueError("replay_share must be in [0, 1), and > 0 only with replay ids")
    n_replay = int(batch_size * replay_share)
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
        n_old = n_replay if split == "train" else 0
        pick = torch.randint(0, len(rows), (batch_size - n_old,), generator=generator).tolist()
        length = max(len(rows[i][0]) for i in pick)  # replay windows as long as the chats
        x = torch.full((batch_size, length), pad_id, dtype=torch.long)
        m = torch.zeros((batch_size, length), dtype=torch.bool)
        for r, i in enumerate(pick):
            ids, mask = rows[i]
            x[r, :len(ids)] = torch.tensor(ids)
            m[r, :len(mask)] = torch.tensor(mask)
        if n_old:  # the last rows: windows of pre-training text, every token counts
            starts = torch.randint(0, len(replay) - length, (n_old,), generator=generator)
            x[-n_old:] = torch.stack([torch.from_numpy(replay[s:s + length]) for s in starts.tolist()])
            m[-n_old:] = True
        batch = (x[:, :-1], x[:, 1:], m[:, 1:])  # position t predicts token t + 1
        if n_replay:
            replay_rows = torch.zeros(batch_size, dtype=torch.bool)
            replay_rows[batch_size - n_old:] = True
            return (*batch, replay_rows)
        return batch

    return get_batch


def sft_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The Trainer's ``loss_fn`` for SFT: cross-entropy on answer tokens only. A batch with
    replay rows (``sft_batches``' fourth tensor) weighs the two kinds of row by their share of
    the batch: (chat rows / B) x the answers' mean loss + (replay rows / B) x the replay's mean
    loss per token."""
    x, y, mask = batch[:3]
    logits, _ = model(x)
    replay_rows = batch[3] if len(batch) > 3 else None
    if replay_rows is None or not replay_rows.any():
        return masked_loss(logits, y, mask)
    chat = ~replay_rows
    share = replay_rows.float().mean()
    replay_loss = F.cross_entropy(logits[replay_rows].flatten(0, 1), y[replay_rows].flatten())
    return (1 - share) * masked_loss(logits[chat], y[chat], mask[chat]) + share * replay_loss


def finetune(model: nn.Module, tokenizer: ChatTokenizer, examples: Sequence[tuple[str, str]], *,
             steps: int, lr: float, batch_size: int = 32, min_lr_ratio: float = 0.1,
             warmup_steps: int = 30, weight_decay: float = 0.0,
             replay: np.ndarray | None = None, replay_share: float = 0.0, seed: int = 0,
             progress: bool = True) -> History:
    """Fine-tune ``model`` in place on ``examples``, (prompt, answer) pairs, with the loss on
    answers only (``sft_batches``); ``replay_share`` of each batch is windows of ``replay``,
    pre-training token ids, if given. Warmup is ``warmup_steps``, at most a fifth of the run;
    then cosine decay to ``lr * min_lr_ratio``. Returns the training history."""
    rows = [render(tokenizer, prompt, answer) for prompt, answer in examples]
    get_batch = sft_batches(rows, batch_size, model.cfg.block_size, pad_id=tokenizer.end_id,
                            generator=torch.Generator().manual_seed(seed),
                            replay=replay if replay_share else None, replay_share=replay_share)
    cfg = TrainConfig(max_steps=steps, lr=lr, min_lr_ratio=min_lr_ratio,
                      warmup_steps=min(warmup_steps, steps // 5), weight_decay=weight_decay,
                      eval_interval=max(steps // 5, 1), eval_steps=5, progress=progress, seed=seed)
    return Trainer(model, get_batch, cfg, loss_fn=sft_loss).fit()
