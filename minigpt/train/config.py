"""What a training run is given and what it gives back, apart from the model and the data.

- ``TrainConfig``: every setting of a run (steps, learning rate and its schedule, AdamW's
  betas and weight decay, clipping, accumulation, evaluation, precision, seed), checked when made.
- ``lr_at``: linear warmup, then cosine decay to ``lr * min_lr_ratio`` (GPT-3's schedule).
- ``param_groups``: weight decay on matrices and embeddings only, never on biases and norms.
- ``autocast_dtype``: the mixed-precision dtype for a device (bfloat16 on GPUs that have it,
  float16 with a gradient scaler on older ones, none on CPUs unless asked).
- ``History``: the run's record (step, train and val loss, learning rate, gradient norm),
  plain lists, saved in checkpoints and drawn by ``minigpt.train.evaluation.plot_history``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class TrainConfig:
    """Everything about a training run except the model and the data."""

    max_steps: int = 1000  # optimizer updates in the whole run
    lr: float = 1e-3  # peak learning rate, reached at the end of warmup
    min_lr_ratio: float = 0.1  # the cosine decays to lr * min_lr_ratio at max_steps
    warmup_steps: int = 100  # steps of linear warmup from ~0 to lr
    weight_decay: float = 0.1  # AdamW decay, for matrices and embeddings only (param_groups)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0  # clip the gradient norm to this; None or 0: don't clip
    grad_accum: int = 1  # micro-batches per optimizer step (their gradients add up)
    eval_interval: int = 100  # evaluate every this many steps and at the end; 0: never
    eval_steps: int = 20  # batches per split averaged in one evaluation
    device: str | None = None  # None: minigpt.device(), i.e. CUDA, then MPS, then the CPU
    dtype: str = "auto"  # "auto", "float32", "bfloat16" or "float16": see autocast_dtype
    progress: bool = True  # show a progress bar (tqdm; TQDM_DISABLE=1 also hides it)
    seed: int | None = 1337  # seeds python, numpy and torch when the Trainer is built
    checkpoint_path: str | None = None  # where fit() saves; None: fit() doesn't save
    checkpoint_interval: int = 0  # save every this many steps and at the end; 0: at the end

    def __post_init__(self) -> None:
        # Plain types, so that the config fits in a checkpoint that loads with weights_only=True.
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.device is not None:
            self.device = str(self.device)
        if self.checkpoint_path is not None:
            self.checkpoint_path = str(self.checkpoint_path)
        rules = [
            (self.max_steps >= 0, "max_steps must be >= 0"),
            (self.lr > 0, "lr must be > 0"),
            (0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be between 0 and 1"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.grad_clip is None or self.grad_clip >= 0, "grad_clip must be >= 0 or None"),
            (self.grad_accum >= 1, "grad_accum must be >= 1"),
            (self.eval_interval >= 0, "eval_interval must be >= 0"),
            (self.eval_steps >= 1, "eval_steps must be >= 1"),
            (self.dtype in DTYPES, f"dtype must be one of {DTYPES}"),
            (self.checkpoint_interval >= 0, "checkpoint_interval must be >= 0"),
        ]
        broken = [message for ok, message in rules if not ok]
        if broken:
            raise ValueError("Invalid TrainConfig: " + "; ".join(broken) + f". Got {self}.")
        if 0 < self.max_steps < self.warmup_steps:
            # A warning, not an error: TrainConfig(max_steps=50) with the default warmup is a
            # common quick run, and existing code builds such configs.
            warnings.warn(
                f"warmup_steps={self.warmup_steps} is more than max_steps={self.max_steps}: the "
                "learning rate never reaches its peak lr. Use warmup_steps <= max_steps, e.g. "
                "warmup_steps=min(100, max_steps // 10).",
                UserWarning,
                stacklevel=3,
            )


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate for optimizer step ``step`` (counted from 0).

    Linear warmup over ``warmup_steps`` steps (lr/warmup, 2 lr/warmup, ..., lr), then half a
    cosine from ``lr`` down to ``lr * min_lr_ratio`` at ``max_steps``, and flat after that.
    Warmup keeps the first, large and noisy updates of a random model from wrecking it; the
    decay lets the run settle into a minimum at the end.
    """
    min_lr = cfg.lr * cfg.min_lr_ratio
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_steps = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)  # 0 -> 1
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return min_lr + cosine * (cfg.lr - min_lr)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The model's trainable parameters in two AdamW groups: with and without weight decay.

    Weight decay pulls weights towards zero each step, a regulariser meant for the tensors that
    mix features: matrices of linear layers and embedding tables (``dim >= 2``). Biases and the
    gains and shifts of normalisation layers (``dim < 2``) are not decayed: shrinking them does
    not make the model simpler, it only shifts or rescales activations. Frozen parameters are
    left out; a tied (shared) parameter appears once.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.dim() >= 2]
    no_decay = [p for p in trainable if p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def autocast_dtype(device: torch.device, policy: str = "auto") -> torch.dtype | None:
    """The dtype the forward pass runs in under autocast, or None for plain float32.

    ``"auto"``: on CUDA, bfloat16 on GPUs with native support (Ampere and newer), else float16
    (which needs a gradient scaler, see Trainer); on the CPU and Apple's MPS, float32.
    ``"bfloat16"`` works on CUDA and the CPU, ``"float16"`` on CUDA only.
    """
    if policy == "float32":
        return None
    if policy == "auto":
        if device.type != "cuda":
            return None
        # bfloat16 tensor cores arrived with compute capability 8.0 (Ampere). Older GPUs such as
        # Colab's T4 (7.5) only emulate bfloat16, slowly, although torch.cuda.is_bf16_supported()
        # says True there: float16 is their fast path.
        native_bf16 = torch.cuda.get_device_capability(device)[0] >= 8
        return torch.bfloat16 if native_bf16 else torch.float16
    if policy == "bfloat16" and device.type in ("cuda", "cpu"):
        return torch.bfloat16
    if policy == "float16" and device.type == "cuda":
        return torch.float16
    raise ValueError(
        f"dtype={policy!r} is not available on device {device.type!r}. Use dtype='auto' "
        "(picks what the device does well), 'float32', 'bfloat16' (CUDA or CPU) or 'float16' "
        "(CUDA only)."
    )


@dataclass
class History:
    """What happened during training, as lists ready to plot.

    Per optimizer step: ``step``, ``lr``, ``loss`` (mean over the step's micro-batches) and
    ``grad_norm`` (the global gradient norm before clipping). Per evaluation: ``eval_step``,
    ``train_loss`` and ``val_loss`` (each a mean over ``eval_steps`` batches). A step number
    counts the updates made before it: ``loss[i]`` and an evaluation at ``step[i]`` both
    measure the model after ``step[i]`` updates.
    """

    step: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, list]:
        return asdict(self)

    @classmethod
    def from_dict(cls, lists: dict[str, list]) -> History:
        return cls(**{f.name: list(lists.get(f.name, [])) for f in fields(cls)})
