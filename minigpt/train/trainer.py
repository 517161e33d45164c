"""Train: the one Trainer every neural chapter of the course uses.

A short training loop with the pieces real runs need: AdamW with weight decay on the right
parameters, linear warmup then cosine decay of the learning rate, gradient clipping and
accumulation, periodic evaluation, mixed precision on GPUs, a progress bar, a history ready to
plot, and checkpoints that resume a run exactly.

The model contract: a model is any ``torch.nn.Module`` whose ``forward(x, y)`` returns
``(logits, loss)``, ``loss`` being a scalar tensor, the mean cross-entropy of predicting the
targets ``y`` from the inputs ``x``. Chapters whose models look different (word2vec, a masked
LM, a reward model) pass ``loss_fn(model, batch) -> loss`` instead.

The data contract: ``get_batch(split)``, with ``split`` either ``"train"`` or ``"val"``, returns
a tuple of tensors such as ``(x, y)``; ``minigpt.data.batching`` makes such functions. The Trainer moves
the tensors to its device. The batch size lives in ``get_batch``, not in the config.

    >>> from minigpt.train.config import TrainConfig
    >>> from minigpt.train.evaluation import plot_history
    >>> from minigpt.train.trainer import Trainer
    >>> config = TrainConfig(max_steps=2000, lr=1e-3, warmup_steps=100)       # doctest: +SKIP
    >>> trainer = Trainer(model, get_batch, config)                            # doctest: +SKIP
    >>> history = trainer.fit()                                                # doctest: +SKIP
    >>> plot_history(history)                                                  # doctest: +SKIP
    >>> trainer.save("run.pt")                                                 # doctest: +SKIP
    >>> trainer = Trainer.load("run.pt", model, get_batch, max_steps=4000)     # doctest: +SKIP
    >>> trainer.fit()                       # continues from step 2000         # doctest: +SKIP

Randomness: ``TrainConfig.seed`` seeds Python, NumPy and torch when the Trainer is built (seed
your model's initialisation yourself, before building the model). A checkpoint stores those
generators' states, CUDA's too, and that of the ``torch.Generator`` passed as ``generator=`` if
your ``get_batch`` draws from its own. So a resumed run draws the same batches and dropout
masks as a run that never stopped, and on the CPU reproduces its losses exactly. Evaluation
saves the random state before it and restores it after, so how often you evaluate never changes
the training run.

Several processes (``torchrun``, see ``minigpt.train.distributed``): when a process group is up, the
Trainer runs the forward and backward passes through ``DistributedDataParallel``, which
averages the gradients across processes, so every process makes the same update, as one
process would with all their batches together. ``trainer.model`` stays the plain model (for
saving, evaluation and generation). Each process seeds with ``seed + rank``, so each draws its
own batches (the model's initial weights need no care: DDP copies rank 0's to every process);
``get_batch`` gives the batch of one process, so the global batch is that times the number of
processes. Logged losses are means over all processes; only rank 0 shows the progress bar and
writes checkpoints. Under DDP, ``loss_fn`` receives the wrapped model: call it, as
``model(x, y)``, rather than reaching into its attributes. Resuming a run exactly, batch for
batch, works for one process only: a resumed distributed run reseeds each process.

The settings and the schedule are ``minigpt.train.config``'s, held-out loss and plots
``minigpt.train.evaluation``'s, the checkpoint file (its keys, why it loads with
``weights_only=True``, its checksum, what its errors say) ``minigpt.train.checkpoint``'s, and
the cache of trained models that chapters share ``minigpt.train.cache``'s.

Deliberately left out: torch.compile, fused optimizers and TF32 settings, early stopping,
callbacks and logging services. Each is a few lines on top of this loop; none is needed to see
how training works.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from minigpt.core.runtime import check_device, evaluating, seed_everything
from minigpt.core.runtime import device as best_device
from minigpt.train import distributed
from minigpt.train.checkpoint import (
    CHECKPOINT_FORMAT,
    check_state_dict,
    get_rng_state,
    load_checkpoint,
    set_rng_state,
    write_torch_file,
)
from minigpt.train.config import History, TrainConfig, autocast_dtype, lr_at, param_groups
from minigpt.train.evaluation import model_vocab_size

__all__ = [
    "NonFiniteLossError", "Trainer", "model_loss",
]

Batch = tuple[Tensor, ...]
GetBatch = Callable[[str], Batch]
LossFn = Callable[[nn.Module, Batch], Tensor]


class NonFiniteLossError(RuntimeError):
    """The loss (or the gradient norm) became NaN or infinite, so training stopped."""


def model_loss(model: nn.Module, batch: Batch) -> Tensor:
    """The default loss_fn: ``model(x, y)`` returns ``(logits, loss)``; keep the loss."""
    x, y = batch
    _logits, loss = model(x, y)
    return loss


class Trainer:
    """Trains ``model`` on batches from ``get_batch`` as ``config`` says.

    Args:
        model: ``forward(x, y) -> (logits, loss)``; moved to the config's device.
        get_batch: ``get_batch("train" | "val") -> (x, y)`` or another tuple of tensors.
        config: the run's settings; ``TrainConfig()`` if None.
        loss_fn: ``loss_fn(model, batch) -> scalar loss``, replacing ``model(x, y)[1]``.
        generator: the ``torch.Generator`` that ``get_batch`` samples with, if it has its
            own, so that checkpoints save and restore it.

    Attributes: ``model``, ``config``, ``device``, ``optimizer``, ``scaler``, ``step`` (updates
    made so far), ``history``, ``checkpoint_extra``: plain values (e.g. the model's settings)
    that every checkpoint ``fit`` writes carries under ``"extra"``, and ``ddp``: the
    ``DistributedDataParallel`` wrapper that training runs through when a process group is up
    (``minigpt.train.distributed``), else None.
    """

    def __init__(
        self,
        model: nn.Module,
        get_batch: GetBatch,
        config: TrainConfig | None = None,
        *,
        loss_fn: LossFn | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        cfg = config if config is not None else TrainConfig()
        self.config = cfg
        self.device = best_device() if cfg.device is None else check_device(
            cfg.device, f"device={str(cfg.device)!r}",
            "use device='cpu', or leave device out (None) to use the best one there is")
        self.amp_dtype = autocast_dtype(self.device, cfg.dtype)
        self.generator = generator
        if distributed.is_distributed():
            self._seed_this_process(cfg.seed)
        elif cfg.seed is not None:
            seed_everything(cfg.seed)
        self.model = model.to(self.device)
        # With several processes, the forward and backward passes go through DDP; self.model
        # stays the plain model, whose parameters the wrapper shares.
        self.ddp: DistributedDataParallel | None = None
        if distributed.is_distributed():
            device_ids = None  # the CPU: DDP finds the device from the parameters
            if self.device.type == "cuda":  # "cuda" alone means the GPU setup() chose
                index = self.device.index
                device_ids = [index if index is not None else torch.cuda.current_device()]
            # Wrapping copies rank 0's parameters and buffers to every process.
            self.ddp = DistributedDataParallel(self.model, device_ids=device_ids)
        self.get_batch = get_batch
        self.loss_fn = loss_fn if loss_fn is not None else model_loss
        # Under the (x, y) contract, batches hold token ids that must fit the model's vocabulary
        # (checked per batch when the model says its size: see _check_batch).
        self._vocab_size = model_vocab_size(model) if loss_fn is None else None
        groups = param_groups(self.model, cfg.weight_decay)
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
        # float16 cannot represent very small gradients: the scaler multiplies the loss before
        # backward and divides the gradients after. bfloat16 and float32 don't need it; disabled,
        # the scaler does nothing and scaler.step(optimizer) is just optimizer.step().
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self.step = 0
        self.history = History()
        self.checkpoint_extra: dict[str, Any] = {}

    # ---- training -------------------------------------------------------------------------

    def fit(self, steps: int | None = None) -> History:
        """Train until ``config.max_steps`` updates (or ``steps`` more), then return the history.

        Calling it again continues where it stopped, as does calling it after ``resume``. It
        evaluates every ``eval_interval`` steps and at the end, and saves to
        ``checkpoint_path`` every ``checkpoint_interval`` steps and at the end.
        """
        cfg = self.config
        end = cfg.max_steps if steps is None else self.step + steps
        self.model.train()
        bar_options = {} if cfg.progress and distributed.is_main() else {"disable": True}
        bar = tqdm(total=end, initial=self.step, desc="train", unit="step", **bar_options)
        try:
            while self.step < end:
                if cfg.eval_interval and self.step % cfg.eval_interval == 0:
                    self._record_eval()
                self.train_step()
                bar.set_postfix(self._postfix(), refresh=False)
                bar.update(1)
                if (
                    cfg.checkpoint_path
                    and cfg.checkpoint_interval
                    and self.step % cfg.checkpoint_interval == 0
                    and distributed.is_main()  # one writer: every process holds the same weights
                ):
                    self.save(cfg.checkpoint_path)
            if cfg.eval_interval:
                self._record_eval()
                bar.set_postfix(self._postfix())
        finally:
            bar.close()
        if cfg.checkpoint_path and distributed.is_main():
            self.save(cfg.checkpoint_path)
        return self.history

    def train_step(self) -> float:
        """One optimizer update from ``grad_accum`` micro-batches; returns their mean loss."""
        cfg = self.config
        lr = lr_at(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        model = self.ddp if self.ddp is not None else self.model
        total_loss = 0.0
        for micro in range(cfg.grad_accum):
            with self._sync_gradients(micro == cfg.grad_accum - 1):
                batch = self._to_device(self._check_batch(self.get_batch("train"), "train"))
                with self._autocast():
                    loss = self._checked_loss(batch, model)
                # With several processes: the mean over all of them (the same on each, so that
                # all stop together if it is not finite).
                value = distributed.all_reduce_mean(loss.detach()).item()
                if not math.isfinite(value):
                    raise NonFiniteLossError(self._nonfinite_message("loss", value, lr))
                total_loss += value
                # The loss is a mean over one micro-batch. Dividing by grad_accum makes the
                # summed gradients of the micro-batches equal the gradient of the mean over all
                # of them, as if they were one batch grad_accum times larger.
                self.scaler.scale(loss / cfg.grad_accum).backward()
        # With float16 the gradients are scaled up: unscale them before measuring and clipping.
        self.scaler.unscale_(self.optimizer)
        max_norm = cfg.grad_clip if cfg.grad_clip else math.inf  # inf: only measure the norm
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm).item()
        if not math.isfinite(grad_norm) and not self.scaler.is_enabled():
            # (With float16 an overflow is routine: the scaler skips the step and scales down.)
            raise NonFiniteLossError(self._nonfinite_message("gradient norm", grad_norm, lr))
        self.scaler.step(self.optimizer)
        self.scaler.update()

        mean_loss = total_loss / cfg.grad_accum
        self.history.step.append(self.step)
        self.history.lr.append(lr)
        self.history.loss.append(mean_loss)
        self.history.grad_norm.append(grad_norm)
        self.step += 1
        return mean_loss

    @torch.no_grad()
    def evaluate(self, steps: int | None = None) -> dict[str, float]:
        """Mean loss over ``steps`` (default ``eval_steps``) batches of each split.

        Runs in ``model.eval()`` mode (no dropout) without tracking gradients, then restores
        the model's mode and the random state, so evaluating never changes the training run.
        Returns ``{"train": ..., "val": ...}``.
        """
        steps = steps if steps is not None else self.config.eval_steps
        rng_state = get_rng_state(self.generator)
        try:
            with evaluating(self.model):
                means = {}
                for split in ("train", "val"):
                    total = 0.0
                    for _ in range(steps):
                        batch = self._to_device(self._check_batch(self.get_batch(split), split))
                        with self._autocast():
                            total += self._checked_loss(batch).item()
                    means[split] = total / steps
        finally:
            set_rng_state(rng_state, self.generator)
        return means

    # ---- checkpoints ----------------------------------------------------------------------

    def save(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
        """Write a checkpoint that ``resume``/``Trainer.load`` continue from.

        ``extra`` stores your own plain values too (e.g. the model's settings; default:
        ``self.checkpoint_extra``). The file is
        written beside ``path`` and then renamed over it: an interrupted save leaves the old
        checkpoint intact. It loads with ``torch.load(path, weights_only=True)``, and holds a
        checksum of its tensors (``tensors_sha256``) that ``load_checkpoint`` verifies
        (``minigpt.train.checkpoint`` describes the file).
        """
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "config": asdict(self.config),
            "history": self.history.to_dict(),
            "rng": get_rng_state(self.generator),
            "extra": extra if extra is not None else self.checkpoint_extra,
        }
        write_torch_file(path, checkpoint)  # readers see the old file or the new one, never half

    def resume(self, path: str | os.PathLike) -> None:
        """Continue from a checkpoint: weights, optimizer, scaler, step, history, random state.

        The config stays this trainer's (so you can raise ``max_steps``, say);
        ``Trainer.load`` takes the checkpoint's instead.
        """
        self._restore(load_checkpoint(path), source=str(path))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        model: nn.Module,
        get_batch: GetBatch,
        *,
        loss_fn: LossFn | None = None,
        generator: torch.Generator | None = None,
        **overrides: Any,
    ) -> Trainer:
        """A Trainer with the checkpoint's config, ``overrides`` applied, resumed from it."""
        checkpoint = load_checkpoint(path)
        known = {f.name for f in fields(TrainConfig)}
        saved = {key: value for key, value in checkpoint["config"].items() if key in known}
        config = TrainConfig(**(saved | overrides))
        trainer = cls(model, get_batch, config, loss_fn=loss_fn, generator=generator)
        trainer._restore(checkpoint, source=str(path))
        return trainer

    # ---- helpers --------------------------------------------------------------------------

    def _restore(self, checkpoint: dict[str, Any], source: str) -> None:
        check_state_dict(self.model, checkpoint["model"], source)
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint["scaler"]:  # empty when saved without float16
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.step = int(checkpoint["step"])
        self.history = History.from_dict(checkpoint["history"])
        set_rng_state(checkpoint["rng"], self.generator)
        if distributed.is_distributed():
            # The checkpoint holds rank 0's random state only: reseed each process, or all of
            # them would draw rank 0's batches from here on.
            self._seed_this_process(self.config.seed, offset=self.step * distributed.world_size())

    def _seed_this_process(self, seed: int | None, offset: int = 0) -> None:
        """Seed with ``seed + offset + rank`` (and move ``generator``'s seed as far), so that
        each process of a distributed run draws its own batches. With ``offset`` 0, rank 0
        draws as a single process would."""
        shift = offset + distributed.rank()
        if seed is None:  # torch starts from the same seed in every process: make them differ
            seed = torch.initial_seed()
        seed_everything((seed + shift) % 2**32)
        if self.generator is not None and shift:
            self.generator.manual_seed((self.generator.initial_seed() + shift) % 2**64)

    def _sync_gradients(self, sync: bool) -> contextlib.AbstractContextManager:
        """Under DDP, ``no_sync()`` unless ``sync``: accumulate the micro-batches' gradients
        locally and average across processes once, in the last micro-batch's backward."""
        if self.ddp is None or sync:
            return contextlib.nullcontext()
        return self.ddp.no_sync()

    def _check_batch(self, batch: Batch, split: str) -> Batch:
        """``batch``, after a cheap check that its inputs are not empty and, when the model says
        its vocabulary size, that its ids fit it: clear errors instead of torch's."""
        parts = batch if isinstance(batch, tuple | list) else ()
        tensors = [t for t in parts if isinstance(t, Tensor)]
        # Under (x, y) both hold tokens; a loss_fn's batch may hold anything after its inputs.
        checked = tensors[:2] if self.loss_fn is model_loss else tensors[:1]
        if any(t.dim() >= 1 and t.numel() == 0 for t in checked):
            shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
            raise ValueError(
                f"get_batch({split!r}) returned an empty batch (shapes {shapes}): every batch "
                "needs at least one row and one token. Check the batch size and block size that "
                f"get_batch uses, and that the {split!r} split is longer than the block size."
            )
        vocab = self._vocab_size
        ids = [t for t in checked if not (t.is_floating_point() or t.is_complex()
                                          or t.dtype == torch.bool)]
        if vocab is None or len(ids) != 2:
            return batch
        x, y = ids
        # One small reduction and one sync, on the batch's device (usually still the CPU).
        low, high, high_y = torch.stack([x.min().long(), x.max().long(), y.max().long()]).tolist()
        for what, bad, values in (("input", low < 0 or high >= vocab, f"{low} .. {high}"),
                                  ("target", high_y >= vocab, f"up to {high_y}")):
            if bad:
                raise ValueError(
                    f"get_batch({split!r}) returned {what} token ids {values}, but the model's "
                    f"vocabulary holds ids 0 .. {vocab - 1} (vocab_size={vocab}). Build the model "
                    "with the vocab_size of the tokenizer that encoded the data, or encode the "
                    "data with the model's tokenizer."
                )
        return batch

    def _to_device(self, batch: Batch) -> Batch:
        return tuple(t.to(self.device) if isinstance(t, Tensor) else t for t in batch)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _checked_loss(self, batch: Batch, model: nn.Module | None = None) -> Tensor:
        loss = self.loss_fn(model if model is not None else self.model, batch)
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise TypeError(
                f"The loss must be a scalar tensor, got {shape}. The model's forward(x, y) "
                "must return (logits, loss) with a mean-reduced loss, or pass "
                "loss_fn=lambda model, batch: ... to the Trainer."
            )
        return loss

    def _nonfinite_message(self, what: str, value: float, lr: float) -> str:
        return (
            f"The {what} became {value} at step {self.step} (learning rate {lr:.3g}). Training "
            "stopped before this step's update; checkpoints on disk are untouched. Things to "
            "try: a lower learning rate (3-10x) or longer warmup_steps; gradient clipping "
            "(grad_clip=1.0); checking the data (token ids out of range, empty batches); "
            "dtype='float32' if you trained in float16."
        )

    def _record_eval(self) -> None:
        if self.history.eval_step and self.history.eval_step[-1] == self.step:
            return  # already evaluated at this step (e.g. at the end of the previous fit)
        means = self.evaluate()
        if distributed.is_distributed():  # each process evaluated its own batches: average them
            both = torch.tensor([means["train"], means["val"]], device=self.device)
            means = dict(zip(("train", "val"), distributed.all_reduce_mean(both).tolist()))
        self.history.eval_step.append(self.step)
        self.history.train_loss.append(means["train"])
        self.history.val_loss.append(means["val"])

    def _postfix(self) -> dict[str, str]:
        shown = {}
        if self.history.loss:
            shown["loss"] = f"{self.history.loss[-1]:.4f}"
            shown["lr"] = f"{self.history.lr[-1]:.2e}"
        if self.history.val_loss:
            shown["val"] = f"{self.history.val_loss[-1]:.4f}"
        return shown


