"""Model cache: a trained model kept on disk, trained again only when its recipe changes.

Every chapter that needs a trained model it did not train in front of the learner (chapter 11's
teacher, the assistant's base, SFT and reward models of chapters 08-12) takes it from here, so
the first notebook that needs one trains it and the others load it.

``cached_model(name, recipe, build, empty)`` keeps the model in
``cache_dir()/models/{name}-{io.recipe_key(recipe)}.pt``: ``recipe_key`` is the first 12 hex
digits of the sha256 of the recipe's JSON with sorted keys, so the recipe must hold everything
that decides the weights (shape, steps, data, seed), and changing any of it trains the model
again. Other callers name their files themselves and call ``load_or_build``.

A file is written by ``save_model_file`` through ``checkpoint.write_torch_file`` (atomic, with
the checksum of its tensors) and read by ``load_or_build`` through
``checkpoint.read_torch_file`` (``weights_only=True``). A bad file (empty, truncated, changed
since it was saved, another format, a model of another shape) is not an error: it is rebuilt,
with a message naming the model and saying why.

    >>> from minigpt.train.cache import cached_model
    >>> teacher = cached_model("teacher", recipe, train_teacher, lambda: GPT(cfg))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from minigpt.core.io import recipe_key
from minigpt.core.runtime import cache_dir
from minigpt.train.checkpoint import check_state_dict, read_torch_file, write_torch_file

__all__ = ["MODEL_CACHE_FORMAT", "cached_model", "load_or_build", "save_model_file"]

MODEL_CACHE_FORMAT = "minigpt.model_cache/1"


def save_model_file(path: Path, model: nn.Module, fmt: str = MODEL_CACHE_FORMAT,
                    **meta: Any) -> Path:
    """Write ``{"format": fmt, **meta, "model": state_dict, "tensors_sha256": ...}`` to
    ``path`` atomically (a half-written file never has the final name). Tensors and plain
    values only, so it loads with ``weights_only=True``; ``load_or_build`` checks the checksum.
    Returns ``path``."""
    return write_torch_file(path, {"format": fmt, **meta, "model": model.state_dict()})


def load_or_build(path: Path, build: Callable[[], nn.Module], empty: Callable[[], nn.Module],
                  label: str, fmt: str = MODEL_CACHE_FORMAT, **meta: Any) -> nn.Module:
    """The model saved at ``path`` (loaded into ``empty()``, a model of the right shape), or
    ``build()`` saved there. A file that is corrupt (empty, truncated, changed since it was
    saved: see ``tensors_sha256``), of another ``fmt`` or of another shape is rebuilt, with a
    message naming ``label`` and saying why. Returns the model in eval mode.
    The cache helpers of every chapter (``cached_model``, ``pipeline.base_model``, ...) use it."""
    path = Path(path)
    # empty() comes first even on a miss: builders draw from the global random stream after it
    # (the reward head's init, for one), so moving it would change what a first run trains.
    model = empty()
    if path.exists():
        try:
            saved = read_torch_file(path, what=f"{fmt} file", name=path.name)
            if not isinstance(saved, dict) or saved.get("format") != fmt:
                raise ValueError(f"{path.name} is not a {fmt} file")
            check_state_dict(model, saved["model"], source=path.name)
            model.load_state_dict(saved["model"])
            return model.eval()
        except (ValueError, RuntimeError, KeyError, OSError) as e:
            # (UnreadableCheckpointError, a ValueError, covers the files torch cannot read.)
            print(f"Ignoring the cached {label} model ({type(e).__name__}: {e}); "
                  "training it again.")
    model = build()
    save_model_file(path, model, fmt, **meta)
    return model.eval()


def cached_model(name: str, recipe: dict[str, Any], build: Callable[[], nn.Module],
                 empty: Callable[[], nn.Module]) -> nn.Module:
    """A trained model, from the cache if this ``recipe`` was trained before, else ``build()``.

    The file is ``cache_dir()/models/{name}-{recipe_key(recipe)}.pt``: change anything in the
    recipe (it must hold everything that decides the weights: shape, steps, data, seed) and the
    model is trained again. It holds tensors only and loads with ``weights_only=True`` into
    ``empty()``, a model of the right shape. A file that is corrupt or does not fit is rebuilt,
    with a message saying why (``load_or_build``). Returns the model in eval mode.
    """
    path = cache_dir() / "models" / f"{name}-{recipe_key(recipe)}.pt"
    return load_or_build(path, build, empty, name, recipe=recipe)
