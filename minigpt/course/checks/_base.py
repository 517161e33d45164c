"""What every topic's checks share: the NotDoneYet error, calling a learner's function, and
printing a pass."""

from __future__ import annotations

import math
from collections.abc import Callable


class NotDoneYet(AssertionError):
    """The exercise still holds its stub."""


def call(task: str, hint: str, fn: Callable, *args, **kwargs):
    """``fn(*args)``, turning a stub's ``NotImplementedError`` into :class:`NotDoneYet`."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise NotDoneYet(
            f"{task} is not done yet: replace `raise NotImplementedError` with your code. Hint: {hint}"
        ) from None


def passed(task: str, what: str) -> None:
    print(f"\u2713 {task} passed: {what}")


def _number(x) -> float | None:
    """``x`` as a float if it is a real number (int, float, NumPy or 0-d tensor), else None."""
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
