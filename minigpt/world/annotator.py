"""The hidden annotator: it plays InstructGPT's human labellers and prefers an answer that is
correct, then helpful, then concise, then polite. ``Annotator.judge`` gives the four qualities
of one answer, ``score`` their weighted sum (the "true" reward the course evaluates with), and
``prefer`` labels a pair as a person would, with label noise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from minigpt.world.questions import OPENERS, Question, claims, words_of


@dataclass(frozen=True)
class Judgement:
    """The annotator's view of one answer: four qualities and the score they add up to."""

    correct: bool  # states the right value and no other candidate
    helpful: bool  # restates what was asked (the subject), not just the value
    concise: float  # 1 without extra words; less with every word beyond the helpful sentence
    polite: bool  # opens with a courtesy ("Sure!")
    score: float


@dataclass(frozen=True)
class Annotator:
    """The hidden judge that plays the human labellers: correct > helpful > concise > polite.

    ``score`` weighs the four qualities 4 : 2 : 1 : 0.5, so any gain in a higher quality
    outweighs every lower one. ``prefer`` labels a pair as a person would, flipping the label
    with probability ``noise`` (people disagree and make mistakes), and tossing a coin on ties.
    The course uses the noiseless ``score`` as the "true" reward when it evaluates models."""

    noise: float = 0.1
    weights: tuple[float, float, float, float] = (4.0, 2.0, 1.0, 0.5)
    extra_words_to_zero: int = 8  # extra words that take conciseness from 1 to 0

    def __post_init__(self) -> None:
        if not 0 <= self.noise <= 0.5:
            raise ValueError(f"noise is a flip probability in [0, 0.5], got {self.noise}")

    def judge(self, q: Question, response: str) -> Judgement:
        """The four qualities of ``response`` (the answer's text, without special tokens)."""
        words = words_of(response)
        correct = claims(q, response) == {q.value.lower()}
        helpful = q.subject.lower() in response.lower()
        polite = any(response.startswith(o) for o in OPENERS)
        needed = len(words_of(q.statement)) + (len(words_of(response.split("!")[0])) if polite else 0)
        extra = max(0, len(words) - needed)
        concise = max(0.0, 1.0 - extra / self.extra_words_to_zero)
        w = self.weights
        score = w[0] * correct + w[1] * helpful + w[2] * concise + w[3] * polite
        return Judgement(correct, helpful, concise, polite, score)

    def score(self, q: Question, response: str) -> float:
        """The "true" reward of ``response``: 0 (worst) to 7.5 (correct, helpful, concise and
        polite)."""
        return self.judge(q, response).score

    def prefer(self, q: Question, a: str, b: str, rng: random.Random) -> int:
        """0 if the annotator prefers ``a``, 1 if ``b``: the better score, a coin on ties, and
        the label flipped with probability ``noise``."""
        sa, sb = self.score(q, a), self.score(q, b)
        choice = rng.randrange(2) if sa == sb else int(sb > sa)
        return 1 - choice if rng.random() < self.noise else choice
