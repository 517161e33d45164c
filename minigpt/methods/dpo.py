"""DPO: learn from preference pairs directly, without a reward model or RL (chapter 10).

Rafailov et al. (2023, "Direct preference optimization"): on pairs (prompt, chosen, rejected)
minimise -log sigmoid(beta * (log-ratio of the chosen response - log-ratio of the rejected
one)), each log-ratio being log pi - log pi_ref summed over the response. ``label_smoothing``
makes it conservative (cDPO) for labels known to be noisy.

    >>> from minigpt.methods import dpo
    >>> dpo.train_dpo(policy, ref, pairs, beta=0.1, config=TrainConfig(max_steps=300),
    ...               pad_id=pad_id)                                          # doctest: +SKIP

Deliberately left out: DPO's relatives (IPO, KTO, ...) and online or iterative DPO.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.core.runtime import evaluating
from minigpt.methods.logprobs import check_same_shape, sequence_logprobs
from minigpt.models.gpt import GPT
from minigpt.train.config import History, TrainConfig
from minigpt.train.trainer import Trainer


def _check_beta(beta: float) -> None:
    if not beta > 0:  # also catches NaN
        raise ValueError(f"beta must be > 0 (0.1 is usual), got {beta}")


def dpo_loss(policy_chosen_logp: Tensor, policy_rejected_logp: Tensor,
             ref_chosen_logp: Tensor, ref_rejected_logp: Tensor, beta: float = 0.1,
             label_smoothing: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """DPO's loss over a batch of pairs -> (loss, chosen_rewards, rejected_rewards).

    Inputs are (B,) sequence log-probs (summed over the response tokens). The implicit reward
    of a response is beta (log pi - log pi_ref); the loss is the mean of
    -log sigmoid(chosen reward - rejected reward), Bradley-Terry's loss on those rewards. The
    rewards come back detached, for logging.

    ``label_smoothing`` = eps is "conservative DPO": if a share eps of the labels is flipped
    (annotators err), the loss is the expected one over that noise, (1 - eps) of the loss
    above plus eps of the loss with chosen and rejected swapped. Raises ValueError for an
    empty batch, inputs of different shapes, or beta <= 0."""
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing is the share of wrong labels, in [0, 0.5): got {label_smoothing}")
    _check_beta(beta)
    check_same_shape({"policy_chosen_logp": policy_chosen_logp,
                       "policy_rejected_logp": policy_rejected_logp,
                       "ref_chosen_logp": ref_chosen_logp, "ref_rejected_logp": ref_rejected_logp},
                      "give one log-prob per pair, (B,) each (sequence_logprobs(...).sum(1))")
    if policy_chosen_logp.numel() == 0:  # the mean of nothing is NaN
        raise ValueError("the batch is empty: pass the log-probs of at least one pair")
    chosen = beta * (policy_chosen_logp - ref_chosen_logp)
    rejected = beta * (policy_rejected_logp - ref_rejected_logp)
    margin = chosen - rejected
    loss = (-(1 - label_smoothing) * F.logsigmoid(margin) - label_smoothing * F.logsigmoid(-margin)).mean()
    return loss, chosen.detach(), rejected.detach()


def _triple(pair) -> tuple[list[int], list[int], list[int]]:
    """(prompt, chosen, rejected) token-id lists from a Pair-like object or a 3-tuple."""
    if all(hasattr(pair, name) for name in ("prompt", "chosen", "rejected")):
        parts = (pair.prompt, pair.chosen, pair.rejected)
    else:
        parts = tuple(pair)
        if len(parts) != 3:
            raise ValueError("a preference pair is (prompt, chosen, rejected) token ids, or an "
                             f"object with those attributes; got {pair!r}")
    prompt, chosen, rejected = (
        p.tolist() if isinstance(p, Tensor) else [int(t) for t in p] for p in parts)
    if not prompt or not chosen or not rejected:
        raise ValueError("every pair needs a prompt of at least one token and non-empty chosen "
                         f"and rejected responses; got lengths {len(prompt)}, {len(chosen)}, "
                         f"{len(rejected)}")
    return prompt, chosen, rejected


def collate_dpo(pairs: Sequence, pad_id: int, block_size: int | None = None
                ) -> tuple[Tensor, Tensor, Tensor]:
    """A batch for DPO from preference pairs -> ``(idx, start, mask)``.

    Rows 0..B-1 are prompt + chosen, rows B..2B-1 prompt + rejected (one forward pass for
    both), right-padded with ``pad_id``: ``idx`` (2B, T). ``start`` (2B,) holds each row's
    prompt length, ``mask`` (2B, T - min start) is True on each row's response tokens in the
    response-aligned layout of ``sequence_logprobs``. Right padding is safe for a causal
    model: padding comes after every real token, so no real token attends to it. Pairs are
    ``(prompt, chosen, rejected)`` lists of ids or objects with those attributes (such as
    ``minigpt.methods.reward.Pair``)."""
    if len(pairs) == 0:
        raise ValueError("no preference pairs to collate: give at least one (prompt, chosen, "
                         "rejected)")
    triples = [_triple(p) for p in pairs]
    rows = [(p, c) for p, c, _ in triples] + [(p, r) for p, _, r in triples]
    T = max(len(p) + len(x) for p, x in rows)
    if block_size is not None and T > block_size:
        too_long = sum(len(p) + max(len(c), len(r)) > block_size for p, c, r in triples)
        raise ValueError(f"{too_long} pair(s) need more than block_size={block_size} tokens "
                         f"(the longest {T}): leave them out, e.g. [p for p in pairs if "
                         "len(p.prompt) + max(len(p.chosen), len(p.rejected)) <= block_size]")
    idx = torch.full((len(rows), T), pad_id, dtype=torch.long)
    start = torch.tensor([len(p) for p, _ in rows], dtype=torch.long)
    width = T - int(start.min())
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, (p, x) in enumerate(rows):
        idx[i, : len(p) + len(x)] = torch.tensor(p + x)
        mask[i, : len(x)] = True
    return idx, start, mask


def _dpo_batch_logps(model: nn.Module, batch: tuple[Tensor, Tensor, Tensor]
                     ) -> tuple[Tensor, Tensor]:
    idx, start, mask = batch
    logp = sequence_logprobs(model, idx, start, mask).sum(dim=1)  # (2B,)
    return logp.chunk(2)  # chosen, rejected


@torch.no_grad()
def pair_logprobs(model: nn.Module, pairs: Sequence, pad_id: int, batch_size: int = 64
                  ) -> tuple[Tensor, Tensor]:
    """Sequence log-probs (N,), (N,) of every pair's chosen and rejected response under
    ``model`` (eval mode, no gradients), e.g. to watch DPO's margins."""
    device = next(model.parameters()).device
    with evaluating(model):
        chosen, rejected = [], []
        for i in range(0, len(pairs), batch_size):
            batch = tuple(t.to(device) for t in collate_dpo(pairs[i : i + batch_size], pad_id))
            c, r = _dpo_batch_logps(model, batch)
            chosen.append(c)
            rejected.append(r)
    if not chosen:
        raise ValueError("no preference pairs given")
    return torch.cat(chosen), torch.cat(rejected)


def train_dpo(policy: GPT, ref: GPT, pairs: Sequence, beta: float = 0.1,
              config: TrainConfig | None = None, pad_id: int = 0, batch_size: int = 16,
              block_size: int | None = None, val_pairs: Sequence | None = None,
              label_smoothing: float = 0.0) -> History:
    """Train ``policy`` with DPO on ``pairs`` with the course ``Trainer``; returns its History.

    Each step draws ``batch_size`` pairs at random and minimises ``dpo_loss`` against the
    frozen ``ref`` (computed without gradients). ``block_size`` (default the policy's) is the
    longest sequence allowed. The Trainer's "val" loss is on ``val_pairs`` if given, else on
    the training pairs. ``label_smoothing``: the share of labels known to be wrong (see
    ``dpo_loss``; chapter 10 passes the annotator's noise)."""
    if len(pairs) == 0:
        raise ValueError("train_dpo needs preference pairs: got an empty list")
    if ref is policy:
        raise ValueError("ref must be a separate, frozen copy: ref = copy.deepcopy(sft_model)")
    _check_beta(beta)
    block_size = block_size if block_size is not None else policy.cfg.block_size
    config = config if config is not None else TrainConfig()
    pools = {"train": list(pairs), "val": list(val_pairs) if val_pairs else list(pairs)}
    for pool in pools.values():  # fail now, not at some later step, on a pair that won't fit
        for i in range(0, len(pool), 256):
            collate_dpo(pool[i : i + 256], pad_id, block_size)
    generator = torch.Generator().manual_seed(config.seed if config.seed is not None else 0)

    def get_batch(split: str) -> tuple[Tensor, Tensor, Tensor]:
        pool = pools[split]
        picks = torch.randint(len(pool), (batch_size,), generator=generator).tolist()
        return collate_dpo([pool[i] for i in picks], pad_id)

    ref.eval().requires_grad_(False)

    def loss_fn(model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        chosen, rejected = _dpo_batch_logps(model, batch)
        with torch.no_grad():
            ref_chosen, ref_rejected = _dpo_batch_logps(ref, batch)
        return dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta, label_smoothing)[0]

    trainer = Trainer(policy, get_batch, config, loss_fn=loss_fn, generator=generator)
    ref.to(trainer.device)
    return trainer.fit()
