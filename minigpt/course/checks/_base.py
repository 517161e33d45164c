"""What every topic's checks share: the NotDoneYet error, calling a learner's function, reading
a number, naming a mistake, and printing a pass."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable


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
    """``x`` as a float if it is a finite real number (int, float, NumPy or 0-d tensor), else
    None: a string or a bool is not one, although ``float("6e6")`` and ``float(True)`` work."""
    if isinstance(x, (str, bytes, bool)):
        return None
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def matching_tip(results: Iterable[tuple[tuple, object]],
                 mistakes: Iterable[tuple[str, Callable]],
                 same: Callable[[object, object], bool]) -> str:
    """The message of the first usual mistake that gives every one of the learner's answers
    (``results``: (arguments, answer) pairs; ``same(answer, mistake's answer)``), as " tip", or
    "". Naming a mistake only when it explains every case keeps a wrong tip from being shown."""
    results = list(results)
    for message, mistake in mistakes:
        try:
            if all(same(got, mistake(*args)) for args, got in results):
                return " " + message
        except (ZeroDivisionError, IndexError, ValueError):
            continue
    return ""
