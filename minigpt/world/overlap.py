"""How much of an evaluation set a model already saw in training: verbatim and near duplicates.

A held-out score means something only if the held-out questions are not in the training data.
The assistant world's question spaces are small (a few hundred sums, a few dozen conversions and
facts), so sets drawn from the same space with different seeds share many questions. This
module measures that, for any evaluation set against every training set:

- **verbatim**: the same question text, after normalising case and spacing;
- **near duplicate**: the same words, numbers and symbols in another order ("What is 7 + 5?"
  and "What is 5 + 7?" ask the same sum), or verbatim.

    >>> from minigpt.world import overlap, questions
    >>> test = questions.make_questions(400, seed=400)                            # doctest: +SKIP
    >>> train = [q for q, _ in questions.instruction_data(2000, seed=0)]          # doctest: +SKIP
    >>> print(overlap.report(test, sft=train))                                    # doctest: +SKIP

Items may be ``Question``s, strings (a question's text), or pairs whose first element is one
(``instruction_data``'s (question, answer), a preference's prompt).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from minigpt.world.questions import Question

__all__ = ["Overlap", "measure", "near_key", "report", "verbatim_key"]

_TOKEN = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")


def _text(item: Question | str | tuple) -> str:
    if isinstance(item, tuple):
        item = item[0]
    if isinstance(item, Question):
        return item.prompt
    if isinstance(item, str):
        return item
    raise TypeError(f"expected a Question, a question's text, or a pair that starts with one; got {item!r}")


def verbatim_key(item: Question | str | tuple) -> str:
    """The question's text, lower-cased, with runs of white space made one space."""
    return " ".join(_text(item).lower().split())


def near_key(item: Question | str | tuple) -> tuple[str, ...]:
    """The question's words, numbers and symbols, sorted: equal for texts that differ only in
    order, case or spacing."""
    return tuple(sorted(_TOKEN.findall(verbatim_key(item))))


@dataclass(frozen=True)
class Overlap:
    """What share of an evaluation set appears in one training set."""

    training_set: str
    n_evaluation: int
    n_training: int
    verbatim: float  # share of evaluation questions found verbatim in the training set
    near: float  # share found as a near duplicate (verbatim included)

    def __str__(self) -> str:
        return (f"{self.training_set}: {self.verbatim:.1%} verbatim, {self.near:.1%} near duplicates "
                f"({self.n_evaluation:,} evaluation questions against {self.n_training:,})")


def measure(evaluation: Sequence[Question | str | tuple],
            **training: Iterable[Question | str | tuple]) -> list[Overlap]:
    """The overlap of ``evaluation`` with each named training set, in the order given."""
    if not evaluation:
        raise ValueError("the evaluation set is empty: there is nothing to compare")
    if not training:
        raise ValueError("name at least one training set, e.g. measure(test, sft=sft_questions)")
    results = []
    for name, items in training.items():
        items = list(items)
        seen_verbatim = {verbatim_key(item) for item in items}
        seen_near = {near_key(item) for item in items}
        verbatim = sum(verbatim_key(item) in seen_verbatim for item in evaluation)
        near = sum(near_key(item) in seen_near for item in evaluation)
        results.append(Overlap(name, len(evaluation), len(items), verbatim / len(evaluation),
                               near / len(evaluation)))
    return results


def report(evaluation: Sequence[Question | str | tuple], **training: Iterable[Question | str | tuple]) -> str:
    """``measure``'s result as lines of text, one per training set."""
    return "\n".join(str(result) for result in measure(evaluation, **training))
