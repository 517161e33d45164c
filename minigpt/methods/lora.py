"""LoRA: low-rank adapters, from scratch (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large
Language Models").

Fine-tuning every weight of a model needs a gradient and two AdamW moments per weight, and a
full copy of the model per task. LoRA freezes a linear layer's weight W (out x in) and learns a
low-rank update instead: two small matrices B (out x r) and A (r x in), with r much smaller than
in and out, so that the layer computes

    y = x W^T + b + (alpha / r) x A^T B^T          i.e. the weight W + (alpha / r) B A

A starts small and random (as ``nn.Linear`` initialises its weights), B at zero: at the start
the update is zero and the adapted model is exactly the base model. Only A and B train:
r (in + out) numbers per layer instead of in x out. After training, the update can be folded
into W (``merge``), so inference costs nothing extra; ``unmerge`` takes it out again.

    >>> from minigpt.models.gpt import GPT, GPTConfig
    >>> from minigpt.methods import lora
    >>> model = GPT(GPTConfig.preset("micro", vocab_size=100))
    >>> wrapped = lora.apply_lora(model, rank=4, alpha=8)      # attention and MLP weights
    >>> wrapped[:2]
    ['blocks.0.attn.qkv', 'blocks.0.attn.proj']
    >>> round(lora.trainable_share(model), 4)                 # adapters only: 3.8% of the model
    0.0383
    >>> # Trainer(model, get_batch, config).fit() now trains the adapters only
    >>> adapters = lora.lora_state_dict(model)                # a small file's worth
    >>> plain = lora.remove_lora(model)                       # merged: a plain GPT again

Targets are picked by substring of the module names (``model.named_modules()``). In
``minigpt.models.gpt.GPT`` those are ``blocks.N.attn.qkv`` and ``blocks.N.attn.proj`` (attention) and
``blocks.N.mlp.fc`` and ``blocks.N.mlp.proj`` (the MLP), so ``("attn", "mlp")`` adapts all four
of every block, and ``("qkv",)`` only the query, key and value projections. The output layer
shares its weight with the token embedding and is never wrapped.

Deliberately left out: dropout on the adapter's input, adapters on embeddings, several adapters
per layer or switching between them, a quantised base (QLoRA) and LoRA variants (rsLoRA's
alpha / sqrt(r), DoRA). A merged layer computes with W + (alpha / r) B A only: merge for
inference or export, and unmerge before training on.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn
from torch.nn import functional as F

from minigpt.core.metrics import is_integer

__all__ = ["LoRALinear", "apply_lora", "load_lora_state_dict", "lora_layers", "lora_parameters",
           "lora_state_dict", "merge_lora", "remove_lora", "trainable_share", "unmerge_lora"]


def _check_rank_alpha(rank: int, alpha: float, layers: dict[str, nn.Linear]) -> None:
    """Raise ValueError, saying what to pass, unless ``rank`` is an integer from 1 to every
    layer's min(in_features, out_features) and ``alpha`` a finite number > 0."""
    if not (is_integer(rank) and rank >= 1):
        raise ValueError(f"rank must be an integer >= 1, got {rank!r}")
    if not (isinstance(alpha, numbers.Real) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0 (the update is scaled by "
                         f"alpha / rank; 2 x rank = {2 * rank} is usual), got {alpha!r}")
    for name, layer in layers.items():
        most = min(layer.in_features, layer.out_features)
        if rank > most:
            raise ValueError(f"rank={rank} is more than {name} can use: B A has rank at most "
                             f"min(in_features, out_features) = {most} ({layer.in_features} -> "
                             f"{layer.out_features}). Pass rank <= {most}, far less as a rule")


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` (``base``) plus a trainable low-rank update (alpha / r) B A.

    ``lora_A`` is (rank, in_features), ``lora_B`` is (out_features, rank); ``scaling`` is
    alpha / rank. ``merged`` tells whether the update currently sits inside ``base.weight``.
    """

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 16.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        _check_rank_alpha(rank, alpha, {"the layer": base})
        self.base = base
        self.rank = rank
        self.alpha = float(alpha)
        self.scaling = self.alpha / rank
        self.merged = False
        like = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **like))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **like))
        # A as nn.Linear initialises a weight (Kaiming-uniform); B = 0 makes the update zero.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """The update to the weight, (alpha / r) B A: (out_features, in_features)."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:  # the update is inside base.weight already
            return self.base(x)
        # (..., in) -> (..., r) -> (..., out): two thin matmuls, never the full B A
        update = F.linear(F.linear(x, self.lora_A), self.lora_B)
        return self.base(x) + self.scaling * update

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``base.weight``; forward then uses ``base`` alone. Merging a
        merged layer does nothing (the update is added once)."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update out of ``base.weight`` again (up to rounding). Does nothing unless
        merged."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, merged={self.merged}"


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The model's LoRA layers by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def _tied_to_embedding(model: nn.Module, linear: nn.Linear) -> bool:
    return any(isinstance(m, nn.Embedding) and m.weight is linear.weight for m in model.modules())


def apply_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16.0,
    targets: tuple[str, ...] = ("attn", "mlp"),
) -> list[str]:
    """Wrap every ``nn.Linear`` whose name contains one of ``targets`` in a ``LoRALinear``, in
    place, and freeze everything but the adapters. Returns the wrapped modules' names.

    A linear layer whose weight is tied to an embedding (GPT's output layer) is never wrapped.
    Raises ValueError, before changing anything, for ``rank < 1`` or above a wrapped layer's
    min(in_features, out_features), for ``alpha <= 0`` or NaN, if no linear layer matches
    (naming those that exist), or if the model has adapters already (``remove_lora`` first).
    """
    if isinstance(targets, str):
        targets = (targets,)
    if lora_layers(model):
        raise ValueError("the model has LoRA adapters already: merge them into its weights "
                         "with remove_lora(model) before adding new ones")
    linears = {name: m for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and not _tied_to_embedding(model, m)}
    chosen = [name for name in linears if any(t in name for t in targets)]
    if not chosen:
        raise ValueError(
            f"no linear layer's name contains any of {list(targets)}; the model's linear layers "
            f"are: {', '.join(linears) or 'none'} (an output layer tied to the embedding is "
            "never wrapped)"
        )
    _check_rank_alpha(rank, alpha, {name: linears[name] for name in chosen})
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(linears[name], rank, alpha))
    for p in model.parameters():
        p.requires_grad_(False)
    for p in lora_parameters(model):
        p.requires_grad_(True)
    return chosen


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The adapters' parameters: every LoRA layer's ``lora_A`` and ``lora_B``."""
    return [p for layer in lora_layers(model).values() for p in (layer.lora_A, layer.lora_B)]


def merge_lora(model: nn.Module) -> None:
    """Fold every adapter into its base weight (``LoRALinear.merge``)."""
    for layer in lora_layers(model).values():
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Take every merged adapter out of its base weight again (``LoRALinear.unmerge``)."""
    for layer in lora_layers(model).values():
        layer.unmerge()


def remove_lora(model: nn.Module) -> nn.Module:
    """Merge the adapters and put the plain ``nn.Linear`` layers back, in place; returns the
    model. Its state dict then has a plain model's keys (it loads into a fresh ``GPT``), and
    every parameter is trainable again, as in a freshly built model."""
    for name, layer in lora_layers(model).items():
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, layer.base)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def trainable_share(model: nn.Module) -> float:
    """Trainable parameters / all parameters (adapters included; a tied weight counted once,
    as ``GPT.num_params`` counts)."""
    params = list(model.parameters())  # parameters() yields a shared tensor once
    total = sum(p.numel() for p in params)
    return sum(p.numel() for p in params if p.requires_grad) / total


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapters' weights (``...lora_A`` and ``...lora_B``), e.g. for ``torch.save``:
    a few percent of the model's size. ``load_lora_state_dict`` puts them back."""
    return {k: v for k, v in model.state_dict().items() if k.endswith((".lora_A", ".lora_B"))}


def load_lora_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load adapters saved by ``lora_state_dict`` into a model prepared with the same
    ``apply_lora`` call. Raises ValueError naming the keys if they do not fit."""
    if any(layer.merged for layer in lora_layers(model).values()):
        raise ValueError("unmerge_lora(model) first: the merged weights hold the old adapters")
    expected = set(lora_state_dict(model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"the adapters do not fit this model: missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]} (apply_lora with the same targets first)")
    model.load_state_dict(state, strict=False)
