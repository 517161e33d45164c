"""Checks for exercises/08_sft.ipynb's build task: the SFT loss of a batch of chats, from the
(ids, mask) rows that ``minigpt.methods.sft.render`` gives to one number that training can
backpropagate: right-pad the rows, shift them into inputs and targets (the mask moves with the
targets), run the model, and average the cross-entropy over answer tokens only.

The reference is the package's own: ``sft.sft_batches`` pads and shifts exactly the check's rows
(a seed whose batch holds each row once is searched for), and ``sft.sft_loss`` (``masked_loss`` on
the model's logits) gives the loss. The model is a small float64 GPT whose every weight is moved
away from its initial value (``gpt_build.make_model``), so that per-token losses differ widely
and no slip hides behind a near-uniform prediction. Three batches: one chat without padding; chats
of different lengths padded with a token of their own; and chats padded with ``end_id``, as
``sft.finetune`` pads them, where the ``<|end|>`` that closes an answer is a target that counts
while the same id in the padding after it is not.

A wrong answer is named when one of the usual slips explains all three losses: the mask left on
the inputs instead of moved to the targets, padding counted, prompt tokens counted, every
position counted, a mean of per-row means, targets equal to ``pad_id`` dropped (which drops each
answer's ``<|end|>`` when the pad is the end token), the mask computed again from the padded ids
(which counts the first pad after an answer cut off when the pad is the end token), and left
padding.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import matching_tip
from minigpt.course.checks._base import passed as _passed
from minigpt.course.checks.gpt_build import make_model
from minigpt.methods.sft import answer_mask, sft_batches, sft_loss

__all__ = ["check_sft_batch_loss", "sft_build_cases"]

Rows = list[tuple[list[int], list[bool]]]

PAD, SYSTEM, USER, ASSISTANT, END = 0, 16, 17, 18, 19  # ordinary tokens are 1 .. 15
_SIZES = (20, 24, 2, 2, 16)  # vocab_size, block_size, n_layer, n_head, n_embd
_NAMES = {PAD: "<pad>", SYSTEM: "<|system|>", USER: "<|user|>", ASSISTANT: "<|assistant|>",
          END: "<|end|>"}
_CHATS = {
    "one": [USER, 5, 6, 2, END, ASSISTANT, 7, 8, END],
    "two rounds": [SYSTEM, 9, END, USER, 5, END, ASSISTANT, 8, 8, END, USER, 6, END,
                   ASSISTANT, 7, 3, END],
    "only the end": [USER, 4, 4, END, ASSISTANT, END],
    "cut off": [USER, 3, 3, END, ASSISTANT, 9, 9, 9, 9, 9],
    "long answer": [USER, 1, END, ASSISTANT, 2, 12, 13, 14, 15, 11, 10, END],
    "short": [USER, 6, END, ASSISTANT, 4, END],
}
_SLIPS = {
    "mask_not_shifted": ("The mask stayed on the inputs: position t predicts token t + 1, so the "
                         "mask must move with the targets (mask[:, 1:], beside y = ids[:, 1:])."),
    "padding_counted": ("The padding counts in your loss: pad the mask with False, so that no "
                        "prediction of a padding token is graded."),
    "prompt_counted": ("The prompt counts in your loss: you kept every real target, but only the "
                       "answers' tokens (the rows' masks) may count."),
    "every_position": ("You averaged over every position, prompt and padding included: keep only "
                       "the positions where the shifted mask is True."),
    "row_means": ("You averaged each row, then the rows: a row with more answer tokens must weigh "
                  "more. Average over all the answer tokens of the batch at once."),
    "pad_targets_dropped": ("You dropped every target equal to pad_id (y != pad_id, or "
                            "ignore_index=pad_id): when the pad is the end token that also drops "
                            "the <|end|> that closes each answer, which the model must learn to "
                            "write. Mask the padding by position (the padded mask is False "
                            "there), never by the token's id."),
    "mask_from_padded_ids": ("You computed the mask again from the padded ids: when the pad is "
                             "the end token, the first pad after an answer cut off (no <|end|> "
                             "of its own) looks like its closing <|end|> and counts. Take each "
                             "row's own mask and pad it with False."),
    "left_pad": ("You padded on the left: the GPT's positions then start in the padding and every "
                 "real token's prediction changes. Pad on the right, after each chat."),
}


def sft_build_cases() -> list[tuple[str, Rows, int]]:
    """(what the batch is, its (ids, mask) rows, pad_id) for each case of the check."""
    def rows(*names: str) -> Rows:
        return [(list(_CHATS[n]), answer_mask(_CHATS[n], ASSISTANT, END)) for n in names]

    return [("one chat, no padding", rows("one"), END),
            ("three chats of different lengths, padded with a token of its own (pad_id=0)",
             rows("long answer", "one", "only the end"), PAD),
            ("four chats padded with end_id (pad_id=19), as sft.finetune pads them",
             rows("two rounds", "short", "cut off", "one"), END)]


def _package_batch(rows: Rows, pad_id: int, block_size: int) -> tuple[Tensor, ...]:
    """``sft_batches``' (x, y, mask) for exactly ``rows``, each once (in the order it drew them):
    the first seed whose batch holds each row once. The extra last example is ``sft_batches``'
    validation split, never drawn for "train"."""
    T = max(len(ids) for ids, _ in rows)
    want = sorted((tuple(ids + [pad_id] * (T - len(ids))), tuple(mask[1:] + [False] * (T - len(ids))))
                  for ids, mask in rows)
    for seed in range(500):
        get_batch = sft_batches(list(rows) + [rows[0]], len(rows), block_size, pad_id,
                                val_fraction=0.0, generator=torch.Generator().manual_seed(seed))
        x, y, mask = get_batch("train")[:3]
        full = torch.cat([x, y[:, -1:]], dim=1)  # (B, T): the padded rows
        if sorted(zip(map(tuple, full.tolist()), map(tuple, mask.tolist()))) == want:
            return x, y, mask
    raise AssertionError("the check found no seed for which sft_batches draws each of its rows "
                         "once: minigpt.methods.sft.sft_batches changed how it draws a batch")


def slipped_loss(model: nn.Module, rows: Rows, pad_id: int, slip: str = "") -> Tensor:
    """The SFT loss of ``rows`` with one of the usual slips (``_SLIPS``; "" for none)."""
    B, T = len(rows), max(len(ids) for ids, _ in rows)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    keep = torch.zeros(B, T, dtype=torch.bool)
    real = torch.zeros(B, T, dtype=torch.bool)
    for r, (row, mask) in enumerate(rows):
        cols = slice(T - len(row), T) if slip == "left_pad" else slice(0, len(row))
        ids[r, cols], keep[r, cols], real[r, cols] = torch.tensor(row), torch.tensor(mask), True
    keep = {"padding_counted": keep | ~real, "prompt_counted": real,
            "every_position": torch.ones_like(keep)}.get(slip, keep)
    if slip == "mask_from_padded_ids":
        keep = torch.tensor([answer_mask(row, ASSISTANT, END) for row in ids.tolist()])
    x, y = ids[:, :-1], ids[:, 1:]  # position t predicts token t + 1
    m = keep[:, :-1] if slip == "mask_not_shifted" else keep[:, 1:]
    if slip == "pad_targets_dropped":
        m = m & (y != pad_id)
    logits, _ = model(x)
    per_token = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # (B, T - 1)
    if slip == "row_means":
        return ((per_token * m).sum(1) / m.sum(1)).mean()
    return per_token[m].mean()


def _value(got) -> float | None:
    """The loss ``got`` as a float if it is a 0-dim tensor, else None."""
    if isinstance(got, Tensor) and got.dim() == 0 and got.is_floating_point():
        return float(got.detach())
    return None


def _same(a: float | None, b: float | None) -> bool:
    return (a is not None and b is not None and math.isfinite(a)
            and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9))


def _show(rows: Rows) -> str:
    return "; ".join(" ".join(_NAMES.get(t, str(t)) for t in ids) for ids, _ in rows)


def check_sft_batch_loss(sft_batch_loss: Callable[[nn.Module, Rows, int], Tensor]) -> None:
    """Task 5: ``sft_batch_loss(model, rows, pad_id)`` = ``sft_loss`` on ``sft_batches``' batch."""
    task = "Task 5 (sft_batch_loss)"
    hint = ("T = the longest row; ids (B, T) full of pad_id and a mask (B, T) full of False, each "
            "row copied in from the left; x = ids[:, :-1], y = ids[:, 1:], mask = mask[:, 1:]; "
            "logits, _ = model(x); the mean of F.cross_entropy(..., reduction='none') over the "
            "positions where mask is True (or your masked_loss from Task 2).")
    model = make_model(_SIZES, seed=8)
    results, wants = [], []
    for what, rows, pad_id in sft_build_cases():
        with torch.no_grad():
            want = sft_loss(model, _package_batch(rows, pad_id, model.cfg.block_size)).item()
        copies = [(list(ids), list(mask)) for ids, mask in rows]
        try:
            got = _call(task, hint, sft_batch_loss, model, copies, pad_id)
        except (RuntimeError, IndexError, TypeError, ValueError) as e:
            raise AssertionError(f"{task}: on {what}, sft_batch_loss raised {type(e).__name__}: "
                                 f"{e} Hint: {hint}") from None
        if _value(got) is None:
            kind = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
            raise AssertionError(f"{task}: on {what}, you returned {kind}; return the loss as a "
                                 f"scalar tensor (0-dim), the mean over answer tokens. Hint: {hint}")
        if _same(_value(got), want) and not got.requires_grad:
            raise AssertionError(f"{task}: on {what}, the loss is right but carries no gradient: "
                                 "keep it a tensor computed from the model's logits (no .item(), "
                                 "no torch.tensor(...) around it, no torch.no_grad()) so that "
                                 f"loss.backward() can train the model. Hint: {hint}")
        results.append(((model, rows, pad_id), _value(got)))
        wants.append((what, rows, pad_id, want))
    for (_args, got), (what, rows, pad_id, want) in zip(results, wants):
        if _same(got, want):
            continue
        with torch.no_grad():
            tip = matching_tip(results, [(message, _slip_fn(slip)) for slip, message in
                                         _SLIPS.items()], _same)
        raise AssertionError(f"{task}: on {what} (rows: {_show(rows)}), the loss over answer "
                             f"tokens is {want:.6f} (sft.sft_batches + sft.sft_loss), you "
                             f"returned {got:.6f}.{tip} Hint: {hint}")
    _passed(task, "the same loss as sft.sft_batches + sft.sft_loss on three batches: the mask "
                  "moved with the targets, padding and prompts left out, every answer token "
                  "weighed alike, and each answer's <|end|> kept when the pad is the end token")


def _slip_fn(slip: str) -> Callable[[nn.Module, Rows, int], float]:
    return lambda model, rows, pad_id: slipped_loss(model, rows, pad_id, slip).item()

