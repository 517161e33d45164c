"""In-context learning on a synthetic task: the GPT-2 and GPT-3 experiments in miniature.

GPT-2 (Radford et al. 2019) showed that a language model trained only to predict text can do
a task "zero-shot" when the prompt names it; GPT-3 (Brown et al. 2020) showed that showing a
few solved examples in the prompt ("few-shot") works better, the more so the bigger the model,
with no change to the weights. To watch that at toy scale we need a task that (1) the model can
meet during pre-training, (2) cannot be solved without reading the prompt, and (3) has
checkable answers. Here it is: three letters, and one of four rules that picks one of them::

    first: d a g -> d      last: d a g -> g      min: d a g -> a      max: d a g -> g

An *episode* is several such lines that all use the same rule, picked at random. With the rule
named at the top, the first line can already be solved (zero-shot); without the name, the
model has to work out the rule from the solved lines before it (few-shot), and one example is
not always enough (in ``d a g -> g`` the rule may be "last" or "max"). Episodes are mixed into
the pre-training text (``episodes_text``, ``mix``), so the model meets the format and the rules
the way GPT-3 met translation pairs and arithmetic scattered through the web.

    >>> from minigpt.methods import incontext
    >>> print(incontext.make_episode(random.Random(0), n_examples=2).prompt)     # doctest: +SKIP
    >>> accuracy = incontext.few_shot_accuracy(model, tokenizer, shots=range(6))  # doctest: +SKIP
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

LETTERS = "abcdefgh"  # a small alphabet: every string of it is seen many times in training

RULES: dict[str, Callable[[list[str]], list[str]]] = {
    "first": lambda s: s[:1],
    "last": lambda s: s[-1:],
    "min": lambda s: [min(s)],  # the letter earliest in the alphabet
    "max": lambda s: [max(s)],
}


def apply_rule(rule: str, letters: list[str]) -> list[str]:
    """The answer ``rule`` (a key of ``RULES``) gives for ``letters``, as a list of letters."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; known rules: {', '.join(RULES)}")
    bad = [c for c in letters if c not in LETTERS]
    if bad:
        raise ValueError(f"letters must come from {LETTERS!r}, got {bad}")
    return list(RULES[rule](list(letters)))


def line(letters: list[str], answer: list[str] | None = None) -> str:
    """One solved line, ``"d a g -> g a d"``, or the unsolved ``"d a g ->"``."""
    left = " ".join(letters) + " ->"
    return left if answer is None else f"{left} {' '.join(answer)}"


def random_letters(rng: random.Random, length: int) -> list[str]:
    """``length`` distinct letters in random order."""
    return rng.sample(LETTERS, length)


@dataclass(frozen=True)
class Episode:
    """A prompt ending in an unsolved line, and the answer that line expects."""

    rule: str
    prompt: str
    answer: str  # e.g. "g": what should follow the prompt's last "->" (after a space)


def make_episode(rng: random.Random, n_examples: int, rule: str | None = None,
                 named: bool = False, length: int = 3) -> Episode:
    """``n_examples`` solved lines and one to solve, all with one ``rule`` (random if None).
    ``named`` puts the rule's name on the first line, as a task description."""
    if n_examples < 0:
        raise ValueError(f"n_examples must be >= 0, got {n_examples}")
    if not 2 <= length <= len(LETTERS):
        raise ValueError(f"length must be between 2 and {len(LETTERS)}, got {length}")
    rule = rule if rule is not None else rng.choice(sorted(RULES))
    lines = [f"{rule}:"] if named else []
    for _ in range(n_examples):
        letters = random_letters(rng, length)
        lines.append(line(letters, apply_rule(rule, letters)))
    query = random_letters(rng, length)
    lines.append(line(query))
    return Episode(rule, "\n".join(lines), " ".join(apply_rule(rule, query)))


def episodes_text(n_episodes: int, seed: int = 0, max_examples: int = 8,
                  named_share: float = 0.5, length: int = 3) -> str:
    """Pre-training text: ``n_episodes`` solved episodes of 1 to ``max_examples + 1`` lines,
    a ``named_share`` of them with the rule named, separated by blank lines."""
    rng = random.Random(seed)
    episodes = []
    for _ in range(n_episodes):
        ep = make_episode(rng, rng.randint(0, max_examples), named=rng.random() < named_share,
                          length=length)
        episodes.append(f"{ep.prompt} {ep.answer}")
    return "\n\n".join(episodes) + "\n\n"


def mix(text: str, extra: str, share: float, seed: int = 0) -> str:
    """``text`` with paragraphs of ``extra`` inserted between its lines at random places, so
    that ``extra`` makes up about ``share`` of the characters (fewer if ``extra`` runs out).
    The order of each text's own parts is kept."""
    if not 0 <= share < 1:
        raise ValueError(f"share must be in [0, 1), got {share}")
    rng = random.Random(seed)
    lines = text.splitlines(keepends=True)
    pieces = ["\n" + p + "\n\n" for p in extra.split("\n\n") if p.strip()]  # blank line around
    want = share / (1 - share) * len(text)  # characters of extra for the share asked
    used, chosen = 0, []
    for piece in pieces:
        if used >= want:
            break
        chosen.append(piece)
        used += len(piece)
    slots = sorted(rng.randrange(len(lines) + 1) for _ in chosen)
    out, j = [], 0
    for i, ln in enumerate(lines + [""]):
        while j < len(slots) and slots[j] == i:
            out.append(chosen[j])
            j += 1
        out.append(ln)
    return "".join(out)


@torch.no_grad()
def complete(model, tokenizer, prompts: list[str], max_new_tokens: int = 12) -> list[str]:
    """Greedy continuations of ``prompts``, each cut at its first line break."""
    dev = next(model.parameters()).device
    answers = []
    for prompt in prompts:
        idx = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=dev)
        out = model.generate(idx, max_new_tokens, temperature=0)
        answers.append(tokenizer.decode(out[0, idx.size(1):].tolist()).split("\n")[0].strip())
    return answers


def accuracy(model, tokenizer, episodes: Iterable[Episode], max_new_tokens: int = 12) -> float:
    """Share of ``episodes`` whose greedy answer (up to the line break) matches exactly."""
    episodes = list(episodes)
    if not episodes:
        raise ValueError("no episodes to score")
    answers = complete(model, tokenizer, [ep.prompt for ep in episodes], max_new_tokens)
    return sum(a == ep.answer for a, ep in zip(answers, episodes)) / len(episodes)


def few_shot_accuracy(model, tokenizer, shots: Iterable[int], n: int = 100, named: bool = False,
                      seed: int = 1234, length: int = 3, max_new_tokens: int = 4
                      ) -> dict[int, float]:
    """Exact-match accuracy for each number of in-context examples in ``shots``, on ``n``
    fresh episodes each (the rules in turn, so every point sees each rule equally often).
    ``max_new_tokens`` must cover an answer and the line break after it."""
    rules = sorted(RULES)
    result = {}
    for k in shots:
        rng = random.Random(seed + k)
        episodes = [make_episode(rng, k, rule=rules[i % len(rules)], named=named, length=length)
                    for i in range(n)]
        result[k] = accuracy(model, tokenizer, episodes, max_new_tokens=max_new_tokens)
    return result
