"""Smaller models from a trained one: knowledge distillation, magnitude pruning, shared layers.

    >>> from minigpt.methods import compress
    >>> teacher = compress.pretrained_gpt(cfg, ids, train_config, batch_size=16)   # cached
    >>> loss_fn = compress.distill_loss_fn(teacher, temperature=2.0, alpha=0.5)
    >>> Trainer(student, get_batch, config, loss_fn=loss_fn).fit()    # a smaller GPT learns
    >>> masks = compress.magnitude_prune(model, sparsity=0.5)        # half the block weights -> 0
    >>> compress.keep_pruned(model, masks)                           # ... and 0 they stay
    >>> shared = compress.share_layers(model)                        # every block, one set of weights

**Distillation** (Hinton et al. 2015; DistilBERT, Sanh et al. 2019): a small *student* learns to
match a large *teacher*'s next-token distributions, not just the one token that came next. Both
are softened by a temperature T (logits / T) so that the teacher's second and third choices
count; the KL divergence between them is multiplied by T^2: softening shrinks its gradients by
about 1/T^2, and the factor keeps the mix with the usual cross-entropy (``distill_loss_fn``)
balanced whatever T is.

**Magnitude pruning** (Han et al. 2015): set the smallest weights of each matrix to zero, then
fine-tune with them held at zero. A dense file stays the same size and a dense matrix multiply
the same speed: the zeros pay off only in a sparse format or on hardware that skips them.

**Shared layers** (ALBERT, Lan et al. 2019): every block uses one set of weights, so a deep model
stores the parameters of one block. The GPT already shares one matrix: its output layer is its
token embedding (weight tying). ``share_layers`` does this to a trained model, which then needs
some fine-tuning; ALBERT shares from the start of training.

``pretrained_gpt`` trains a GPT once and caches it (``cache.cached_model``): chapter 11's teacher.

Deliberately left out: structured pruning (whole heads or channels), iterative prune-and-retrain
schedules, sparse kernels, and distilling hidden states or attention maps.
"""

from __future__ import annotations

import copy
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.core.io import sha256_bytes
from minigpt.data.batching import make_get_batch
from minigpt.models.gpt import GPT, GPTConfig
from minigpt.train.cache import cached_model
from minigpt.train.config import TrainConfig
from minigpt.train.trainer import LossFn, Trainer

__all__ = ["distill_loss_fn", "distillation_loss", "keep_pruned", "magnitude_prune",
           "pretrained_gpt", "prunable_weights", "share_layers", "shared_fraction", "sparsity"]


# ---- a teacher --------------------------------------------------------------------------------


def pretrained_gpt(cfg: GPTConfig, ids: dict[str, np.ndarray], config: TrainConfig,
                   batch_size: int, seed: int = 0, name: str = "gpt") -> GPT:
    """A GPT of shape ``cfg`` trained with ``config`` on ``ids["train"]`` (``ids["val"]`` for the
    evaluations), batches of ``batch_size`` windows; cached under a hash of all of that (the
    token arrays included), so the same recipe trains once per machine."""
    recipe = {"cfg": asdict(cfg), "batch_size": batch_size, "seed": seed,
              "config": {k: v for k, v in asdict(config).items()
                         if k not in ("progress", "device", "checkpoint_path")},
              "data": {split: sha256_bytes(np.ascontiguousarray(ids[split]).tobytes())
                       for split in ("train", "val")}}

    def build() -> GPT:
        torch.manual_seed(seed)
        model = GPT(cfg)
        get_batch = make_get_batch({"train": ids["train"], "val": ids["val"]}, batch_size,
                                   cfg.block_size)
        Trainer(model, get_batch, config).fit()
        return model.cpu()

    return cached_model(name, recipe, build, lambda: GPT(cfg))


# ---- distillation -----------------------------------------------------------------------------


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor,
                      temperature: float = 2.0) -> Tensor:
    """T^2 KL(teacher || student) between the distributions softened by T, averaged over the
    positions: logits (..., vocab) -> a scalar. 0 when the student's logits equal the teacher's."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits differ in shape: "
                         f"{tuple(student_logits.shape)} vs {tuple(teacher_logits.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    vocab = student_logits.size(-1)
    log_p_student = F.log_softmax(student_logits.reshape(-1, vocab) / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.reshape(-1, vocab).detach() / temperature, dim=-1)
    # sum over the vocabulary of p_t (log p_t - log p_s), then the mean over positions
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


def distill_loss_fn(teacher: nn.Module, temperature: float = 2.0, alpha: float = 0.5) -> LossFn:
    """A ``loss_fn`` for the Trainer: ``alpha`` x the distillation loss + (1 - ``alpha``) x the
    cross-entropy with the real next tokens. The teacher only predicts (eval mode, no gradient)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    teacher.eval()

    def loss_fn(model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        x, y = batch
        logits, ce = model(x, y)
        with torch.no_grad():
            teacher_logits, _ = teacher.to(x.device)(x)
        return alpha * distillation_loss(logits, teacher_logits, temperature) + (1 - alpha) * ce

    return loss_fn


# ---- pruning ----------------------------------------------------------------------------------


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weight matrices pruning works on: every ``nn.Linear`` weight except one that is also
    an embedding (a GPT's tied head), i.e. the attention and MLP matrices of the blocks."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    found = {f"{name}.weight": m.weight for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and id(m.weight) not in embeddings}
    if not found:
        raise ValueError(f"{type(model).__name__} has no nn.Linear weights to prune")
    return found


@torch.no_grad()
def magnitude_prune(model: nn.Module, sparsity: float, method: str = "magnitude",
                    seed: int = 0) -> dict[str, Tensor]:
    """Zero ``sparsity`` of every prunable matrix in place (``prunable_weights``); returns the
    masks (True: kept). ``method="magnitude"`` zeroes each matrix's smallest |w|;
    ``"random"`` zeroes weights at random (the baseline that shows magnitude matters)."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1) (the share of weights set to zero), "
                         f"got {sparsity}")
    if method not in ("magnitude", "random"):
        raise ValueError(f"method must be 'magnitude' or 'random', got {method!r}")
    gen = torch.Generator().manual_seed(seed)
    masks = {}
    for name, w in prunable_weights(model).items():
        n_zero = round(sparsity * w.numel())
        score = w.abs() if method == "magnitude" else torch.rand(w.shape, generator=gen)
        order = score.flatten().cpu().argsort()  # smallest first; ties broken by position
        keep = torch.ones(w.numel(), dtype=torch.bool)
        keep[order[:n_zero]] = False
        mask = keep.view(w.shape).to(w.device)
        w.mul_(mask)
        masks[name] = mask
    return masks


def keep_pruned(model: nn.Module, masks: dict[str, Tensor]) -> list:
    """Hold the pruned weights at zero while fine-tuning: each gradient is multiplied by its mask.
    With a fresh AdamW (its moments start at zero) a weight whose gradient is always zero never
    moves, and weight decay keeps 0 at 0. Returns the hook handles (``.remove()`` them to stop)."""
    weights = prunable_weights(model)
    unknown = sorted(set(masks) - set(weights))
    if unknown:
        raise KeyError(f"masks for weights this model lacks: {unknown[:4]}")
    return [weights[name].register_hook(lambda g, m=mask: g * m) for name, mask in masks.items()]


def sparsity(model: nn.Module) -> float:
    """The share of the prunable weights that are exactly zero."""
    weights = prunable_weights(model).values()
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


# ---- shared layers ----------------------------------------------------------------------------


@torch.no_grad()
def share_layers(model: GPT, init: str = "first") -> GPT:
    """A copy of ``model`` whose blocks all use one set of weights (ALBERT's cross-layer sharing).

    ``init="first"`` keeps the first block's weights; ``"mean"`` starts from the mean of all the
    blocks'. Each block stays its own module (with its own KV-cache slot), but its parameters are
    the same tensors as block 0's: ``num_params()`` and ``quantize.saved_size`` count them once."""
    if not isinstance(model, GPT):
        raise TypeError(f"share_layers takes a minigpt.models.gpt.GPT, got {type(model).__name__}")
    if init not in ("first", "mean"):
        raise ValueError(f"init must be 'first' or 'mean', got {init!r}")
    shared = copy.deepcopy(model)
    first = shared.blocks[0]
    if init == "mean":
        for name, p in first.named_parameters():
            p.copy_(torch.stack([b.get_parameter(name) for b in shared.blocks]).mean(0))
    for block in shared.blocks[1:]:
        for (_, module), (_, source) in zip(block.named_modules(), first.named_modules()):
            for name, _p in list(module.named_parameters(recurse=False)):
                setattr(module, name, getattr(source, name))
    return shared


def shared_fraction(model: nn.Module) -> float:
    """1 - (distinct parameters) / (parameters counted once per place they are used)."""
    distinct = sum(p.numel() for p in model.parameters())
    used = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    return 1 - distinct / used
