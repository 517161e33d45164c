"""Synthetic tasks with checkable answers, and two ways to score a model on them.

A task here is a list of ``Problem(prompt, answer)``: the model reads the prompt and should
continue it with the answer and a line break. Training text is the solved problems, one per
line (``problems_text``). The first family is multi-digit addition:

    >>> from minigpt.world import tasks
    >>> tasks.addition_problems(2, digits=3, seed=0)                # doctest: +SKIP
    [Problem(prompt='864+394=', answer='1258'), Problem(prompt='776+911=', answer='1687')]
    >>> tasks.answer_accuracy(model, tokenizer, problems)           # doctest: +SKIP
    {'exact_match': 0.12, 'token_accuracy': 0.71, 'answer_nll': 0.65, 'n': 200}

With ``reverse_answer=True`` the sum is written least-significant digit first ("579" becomes
"975"). Written that way, each digit depends only on digits the model has already seen (the two
operand digits at that place and the carry from the digit it just wrote), so small
Transformers learn it far more easily than the usual order, where the first digit written
depends on carries from every place to its right (Lee et al. 2023, "Teaching arithmetic to
small Transformers").

Two views of "emergence". Wei et al. (2022) saw abilities such as arithmetic jump from chance
to competent beyond some model size. Schaeffer et al. (2023) argued that the jump is in the
metric: exact match needs every digit right, so a per-digit accuracy p that improves smoothly
gives an exact match of about p^k for a k-digit answer, which sits near 0 and then shoots up.
``answer_accuracy`` reports both, plus the answer's loss per token:

- ``exact_match``: greedy generation of the whole answer, up to the line break, is exactly right;
- ``token_accuracy``: teacher-forced, the share of answer tokens the model ranks first given the
  right prefix (the prompt and the answer's earlier tokens);
- ``answer_nll``: the mean cross-entropy per answer token (nats), a smooth, continuous score.

Add a family by writing a function that returns ``list[Problem]``; scoring works unchanged.
Deliberately left out: other operations, operands of mixed lengths, and scratchpads or chain of
thought (chapters 08-10 add more families here).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from minigpt.core.runtime import evaluating

__all__ = [
    "FAMILIES", "HELD_OUT_COUNTRIES", "KNOWLEDGE_BASE", "STYLES", "STYLE_MIX", "TRAIN_COUNTRIES",
    "UNKNOWN_COUNTRIES", "Annotator", "Country", "Judgement", "Problem", "Question",
    "addition_problems", "answer", "answer_accuracy", "claims", "fact_questions",
    "instruction_data", "make_question",
    "make_questions", "parse_question", "problem_batches", "problems_text", "world_text",
]


@dataclass(frozen=True)
class Problem:
    """A prompt and the answer that should follow it (then a line break)."""

    prompt: str  # e.g. "123+456="
    answer: str  # e.g. "579"

    @property
    def text(self) -> str:
        """The solved problem, as it appears in training text."""
        return self.prompt + self.answer


def addition_problems(n: int, digits: int, seed: int = 0, reverse_answer: bool = False,
                      pad: bool = False) -> list[Problem]:
    """``n`` random sums of two ``digits``-digit numbers: ``"123+456="`` -> ``"579"``.

    Operands have exactly ``digits`` digits (0-9 for ``digits=1``), so every prompt of a set has
    the same length; the sum has ``digits`` or ``digits + 1``. ``reverse_answer`` writes the
    sum least-significant digit first. ``pad`` writes every sum with ``digits + 1`` digits
    (a leading zero, which comes last when reversed: "0579" or "9750"), so that every problem
    of a set has the same length and each digit sits at the same position every time.
    Problems may repeat (draws are independent): to hold some out, draw another seed and drop
    the prompts that the training set has."""
    if not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be an integer >= 1, got {digits!r}")
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    rng = random.Random(seed)
    low, high = (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1
    problems = []
    for _ in range(n):
        a, b = rng.randint(low, high), rng.randint(low, high)
        answer = str(a + b).zfill(digits + 1 if pad else 0)
        problems.append(Problem(f"{a}+{b}=", answer[::-1] if reverse_answer else answer))
    return problems


def problems_text(problems: Sequence[Problem]) -> str:
    """Training text: each solved problem on its own line."""
    return "".join(p.text + "\n" for p in problems)


def problem_batches(problems: Sequence[Problem], tokenizer, batch_size: int,
                    per_window: int = 4, generator: torch.Generator | None = None
                    ) -> tuple[Callable[[str], tuple[torch.Tensor, torch.Tensor]], int]:
    """``(get_batch, block_size)`` for the Trainer: each window holds ``per_window`` whole
    problems drawn at random (each followed by its line break), so a window always starts at
    the start of a problem. Unlike windows cut anywhere in ``problems_text``, the model sees
    each part of a problem at the same few positions, which makes it far quicker to learn.
    Problems must all have the same length (``addition_problems(..., pad=True)``).
    ``get_batch`` ignores its split argument: hold problems out by scoring other ones."""
    rows = [tokenizer.encode(p.text + "\n") for p in problems]
    if not rows or len({len(r) for r in rows}) != 1:
        raise ValueError("problem_batches needs problems of one length (and at least one): "
                         "use addition_problems(..., pad=True)")
    table = torch.tensor(rows, dtype=torch.long)  # (n, L): one problem and its line break a row
    n, length = table.shape

    def get_batch(_split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, n, (batch_size, per_window), generator=generator)
        seq = table[idx].reshape(batch_size, per_window * length)  # (B, K * L)
        return seq[:, :-1], seq[:, 1:]

    return get_batch, per_window * length - 1


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _groups(problems: Sequence[Problem], tokenizer) -> dict[tuple[int, int], list]:
    """Problems as (prompt ids, answer ids + line-break ids, answer), grouped by the lengths of
    prompt and answer so that each group stacks into one batch. The answer is encoded on its
    own, then the line break."""
    newline = tokenizer.encode("\n")
    groups: dict[tuple[int, int], list] = defaultdict(list)
    for p in problems:
        prompt, answer = tokenizer.encode(p.prompt), tokenizer.encode(p.answer)
        groups[len(prompt), len(answer)].append((prompt, answer + newline, p.answer))
    return groups


@torch.no_grad()
def answer_accuracy(model: nn.Module, tokenizer, problems: Sequence[Problem],
                    batch_size: int = 256) -> dict[str, float]:
    """Score ``model`` on ``problems``: ``exact_match``, ``token_accuracy``, ``answer_nll``
    (see the module docstring) and ``n``, the number of problems.

    ``model`` follows the course's contract (``model(idx)`` -> ``(logits, loss)``, and a
    ``generate`` method that is greedy at ``temperature=0``, as ``GPT.generate``);
    ``tokenizer`` has ``encode`` and ``decode``. ``token_accuracy`` and ``answer_nll`` count the
    answer's tokens, not the line break after it; ``exact_match`` also needs the line break
    (a model that keeps writing digits is wrong)."""
    if not problems:
        raise ValueError("no problems to score")
    with evaluating(model):
        dev = _device(model)
        exact, right, nll, n_tokens = 0, 0, 0.0, 0
        for (n_prompt, n_answer), group in _groups(problems, tokenizer).items():
            for i in range(0, len(group), batch_size):
                chunk = group[i:i + batch_size]
                prompts = torch.tensor([g[0] for g in chunk], dtype=torch.long, device=dev)
                answers = torch.tensor([g[1] for g in chunk], dtype=torch.long, device=dev)
                # exact match: greedy generation of the answer and the line break
                out = model.generate(prompts, answers.size(1), temperature=0)[:, n_prompt:]
                for row, (_p, _a, answer) in zip(out.tolist(), chunk):
                    exact += tokenizer.decode(row).split("\n")[0] == answer
                # teacher forcing: the logits that predict each answer token (not the line break)
                seq = torch.cat([prompts, answers], dim=1)  # (B, P + A)
                logits, _ = model(seq[:, :-1])  # position t predicts token t + 1
                pred = logits[:, n_prompt - 1:n_prompt - 1 + n_answer]  # (B, A, vocab)
                target = answers[:, :n_answer]  # (B, A): the answer without the line break
                right += (pred.argmax(-1) == target).sum().item()
                nll += F.cross_entropy(pred.reshape(-1, pred.size(-1)), target.reshape(-1),
                                       reduction="sum").item()
                n_tokens += target.numel()
    n_tokens = max(n_tokens, 1)
    return {"exact_match": exact / len(problems), "token_accuracy": right / n_tokens,
            "answer_nll": nll / n_tokens, "n": len(problems)}


# ==== The assistant world (chapters 08-12) ======================================================
#
# A small world with checkable answers: five families of questions, a knowledge base of invented
# countries (so no pre-training text can already know them), answers written in five styles, and
# a hidden annotator that plays the human labellers of InstructGPT: it prefers an answer that is
# correct, then helpful, then concise, then polite.

FAMILIES = ("arithmetic", "reverse", "sort", "fact", "units")

# The knowledge base: invented countries with a capital, a flag colour and a national animal.
# Pre-training text states every fact; SFT asks about some countries only (TRAIN_COUNTRIES),
# so that questions about the others show where the knowledge came from.
_COUNTRIES = (
    ("Zorvia", "Tam"), ("Quellan", "Mell"), ("Borada", "Orsk"), ("Mirest", "Vay"),
    ("Tavonia", "Pell"), ("Kelmar", "Duro"), ("Drussia", "Kesh"), ("Ostrel", "Rimo"),
    ("Veruna", "Sabe"), ("Pashti", "Lorn"), ("Lomdor", "Fenn"), ("Ankari", "Ilto"),
    ("Felmund", "Brask"), ("Risova", "Coru"), ("Caltha", "Nadh"), ("Yorren", "Welm"),
    ("Nubesh", "Ezro"), ("Ermitia", "Gilt"), ("Gallow", "Hask"), ("Sindra", "Jova"),
    ("Hovask", "Omby"), ("Tirel", "Quin"), ("Umbrant", "Yuld"), ("Xandel", "Zeph"),
)
COLOURS = ("red", "blue", "green", "yellow", "white", "black", "orange", "purple")
ANIMALS = ("otter", "heron", "fox", "lynx", "owl", "bear", "wolf", "crane", "seal", "hare")


@dataclass(frozen=True)
class Country:
    name: str
    capital: str
    colour: str
    animal: str


def _knowledge_base() -> tuple[Country, ...]:
    rng = random.Random(2022)  # fixed: the world is the same for everyone
    return tuple(Country(name, capital, rng.choice(COLOURS), rng.choice(ANIMALS))
                 for name, capital in _COUNTRIES)


KNOWLEDGE_BASE = _knowledge_base()
TRAIN_COUNTRIES = KNOWLEDGE_BASE[:16]  # asked about in instruction data
HELD_OUT_COUNTRIES = KNOWLEDGE_BASE[16:]  # known from pre-training only
# Countries the world has never heard of: no text mentions them (chapter 12: hallucination).
UNKNOWN_COUNTRIES = ("Brellin", "Corvath", "Dunmere", "Eskavar", "Fyrland", "Glenvost", "Harrowin",
                     "Istel")

# How questions are asked and how a helpful answer restates them. {s}: the subject, {v}: value.
_FACT_QUESTIONS = {  # (question, the helpful answer); the subject a helpful answer restates
    "capital": ("What is the capital of {s}?", "The capital is {v}.", "capital"),
    "colour": ("What colour is the flag of {s}?", "The flag is {v}.", "flag"),
    "animal": ("What is the national animal of {s}?", "The national animal is the {v}.",
               "national animal"),
}
_UNITS = (  # (from, to, factor)
    ("kilometres", "metres", 1000), ("kilograms", "grams", 1000), ("litres", "millilitres", 1000),
    ("hours", "minutes", 60), ("minutes", "seconds", 60), ("days", "hours", 24),
)
_OPENERS = ("Sure!", "Of course!", "Happy to help!")  # polite
_FILLERS = ("Let me think.", "Good question.", "Hmm, let me see.")  # neither polite nor concise
_CLOSERS = ("I hope this helps.", "Ask me more.")


@dataclass(frozen=True)
class Question:
    """A user's question with a checkable answer.

    ``value`` is the answer itself (``"68"``); ``subject`` is what a helpful answer restates
    (``"23 + 45"``); ``statement`` is the helpful sentence (``"23 + 45 = 68."``)."""

    family: str
    prompt: str
    value: str
    subject: str
    statement: str


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnoprstuvw") for _ in range(rng.randint(3, 5)))


def make_question(family: str, rng: random.Random,
                  countries: Sequence[Country] = KNOWLEDGE_BASE) -> Question:
    """A random question of ``family`` (one of ``FAMILIES``); facts about ``countries``."""
    if family == "arithmetic":
        a, b = rng.randint(2, 19), rng.randint(2, 9)  # small sums: a table the model can learn
        s, v = (f"{a} + {b}", a + b) if rng.random() < 0.5 else (f"{a} - {b}", a - b)
        if v == b:  # 14 - 7 = 7: the answer must not be a number of the question
            return make_question(family, rng, countries)
        return Question(family, f"What is {s}?", str(v), s, f"{s} = {v}.")
    if family in ("reverse", "sort"):
        w = _word(rng)
        v = w[::-1] if family == "reverse" else "".join(sorted(w))
        if v == w or v in _TEMPLATE_WORDS:
            return make_question(family, rng, countries)
        if family == "reverse":
            return Question(family, f"Reverse the word '{w}'.", v, f"'{w}'", f"'{w}' reversed is '{v}'.")
        return Question(family, f"Sort the letters of '{w}'.", v, f"'{w}'", f"'{w}' sorted is '{v}'.")
    if family == "fact":
        if not countries:
            raise ValueError("fact questions need at least one country")
        c = rng.choice(list(countries))
        kind = rng.choice(sorted(_FACT_QUESTIONS))
        ask, tell, subject = _FACT_QUESTIONS[kind]
        v = getattr(c, kind)
        return Question(family, ask.format(s=c.name), v, subject, tell.format(v=v))
    if family == "units":
        src, dst, factor = rng.choice(_UNITS)
        n = rng.randint(2, 12)
        s = f"{n} {src}"
        return Question(family, f"How many {dst} are in {s}?", str(n * factor), s,
                        f"{s} is {n * factor} {dst}.")
    raise ValueError(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")


def parse_question(text: str, countries: Sequence[Country] = KNOWLEDGE_BASE) -> Question | None:
    """The ``Question`` that ``text`` asks if it is worded as one of the world's questions
    (``make_question``'s wording, with any numbers, words or known country), else None: so a
    question typed into a chat can be judged."""
    text = text.strip()
    if m := re.fullmatch(r"What is (\d+) ([+-]) (\d+)\?", text):
        a, op, b = int(m[1]), m[2], int(m[3])
        s, v = f"{a} {op} {b}", a + b if op == "+" else a - b
        return Question("arithmetic", text, str(v), s, f"{s} = {v}.")
    if m := re.fullmatch(r"(Reverse the word|Sort the letters of) '([a-z]+)'\.", text):
        w = m[2]
        if m[1].startswith("Reverse"):
            return Question("reverse", text, w[::-1], f"'{w}'", f"'{w}' reversed is '{w[::-1]}'.")
        v = "".join(sorted(w))
        return Question("sort", text, v, f"'{w}'", f"'{w}' sorted is '{v}'.")
    for kind, (ask, tell, subject) in _FACT_QUESTIONS.items():
        for c in countries:
            if text == ask.format(s=c.name):
                v = getattr(c, kind)
                return Question("fact", text, v, subject, tell.format(v=v))
    for src, dst, factor in _UNITS:
        if m := re.fullmatch(rf"How many {dst} are in (\d+) {src}\?", text):
            n = int(m[1])
            return Question("units", text, str(n * factor), f"{n} {src}", f"{n} {src} is {n * factor} {dst}.")
    return None


def fact_questions(countries: Sequence[Country | str]) -> list[Question]:
    """Every fact question (capital, flag colour, national animal) about each of ``countries``,
    in order. A name given as a plain string is a country the world has never heard of (such as
    ``UNKNOWN_COUNTRIES``): its questions have no right answer (``value`` is ``""``), so any
    value stated in reply to them is made up (chapter 12: hallucination)."""
    out = []
    for c in countries:
        for kind, (ask, tell, subject) in _FACT_QUESTIONS.items():
            if isinstance(c, str):
                out.append(Question("fact", ask.format(s=c), "", subject, ""))
            else:
                v = getattr(c, kind)
                out.append(Question("fact", ask.format(s=c.name), v, subject, tell.format(v=v)))
    return out


def make_questions(n: int, seed: int = 0, families: Sequence[str] = FAMILIES,
                   countries: Sequence[Country] = KNOWLEDGE_BASE) -> list[Question]:
    """``n`` questions, the families taken in turn (so each is equally represented)."""
    rng = random.Random(seed)
    return [make_question(families[i % len(families)], rng, countries) for i in range(n)]


# ---- answers in five styles ----------------------------------------------------------------------

STYLES = ("polite", "plain", "bare", "polite_bare", "verbose")


def answer(q: Question, style: str, rng: random.Random | None = None) -> str:
    """An answer to ``q`` in ``style``: "polite" ("Sure! 23 + 45 = 68."), "plain"
    ("23 + 45 = 68."), "bare" ("68."), "polite_bare" ("Sure! 68.") or "verbose" ("Let me think.
    23 + 45 = 68. I hope this helps."). ``rng`` picks the opener, filler and closer."""
    rng = rng or random.Random(0)
    if style == "polite":
        return f"{rng.choice(_OPENERS)} {q.statement}"
    if style == "plain":
        return q.statement
    if style == "bare":
        return f"{q.value}."
    if style == "polite_bare":
        return f"{rng.choice(_OPENERS)} {q.value}."
    if style == "verbose":
        return f"{rng.choice(_FILLERS)} {q.statement} {rng.choice(_CLOSERS)}"
    raise ValueError(f"unknown style {style!r}; styles: {', '.join(STYLES)}")


# The share of each style in the instruction data: the labellers who wrote the demonstrations
# had different habits, so the SFT model learns all five (and chapters 09-10 teach it which the
# annotator prefers).
STYLE_MIX = {"polite": 0.2, "plain": 0.2, "bare": 0.25, "polite_bare": 0.15, "verbose": 0.2}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+|\d+", text.lower())


def _template_words() -> frozenset[str]:
    texts = [t for triple in _FACT_QUESTIONS.values() for t in triple]
    texts += [f"{a} {b} how many are in is reversed sorted the word letters of what reverse sort"
              for a, b, _ in _UNITS]
    texts += list(_OPENERS + _FILLERS + _CLOSERS)
    return frozenset(w for t in texts for w in _words(t.replace("{s}", "").replace("{v}", "")))


_TEMPLATE_WORDS = _template_words()


def claims(q: Question, response: str) -> set[str]:
    """The values that ``response`` states in reply to ``q``: its words (lower case) that are
    neither in the question nor part of the answer templates ("68" in "Sure! 23 + 45 = 68.").
    The annotator calls an answer correct when this is exactly ``{q.value}``."""
    asked = set(_words(q.prompt))
    return {w for w in _words(response) if w not in asked and w not in _TEMPLATE_WORDS}


# ---- the hidden annotator --------------------------------------------------------------------------

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
        words = _words(response)
        correct = claims(q, response) == {q.value.lower()}
        helpful = q.subject.lower() in response.lower()
        polite = any(response.startswith(o) for o in _OPENERS)
        needed = len(_words(q.statement)) + (len(_words(response.split("!")[0])) if polite else 0)
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


# ---- pre-training and instruction data ---------------------------------------------------------

def world_text(n_examples: int, seed: int = 0) -> str:
    """Plain text about the world, for pre-training: every fact of the knowledge base stated in
    several phrasings and as a question followed by its answer (repeated), and worked examples
    of the other families (``n_examples`` in all), in paragraphs of four sentences. Questions
    appear as a web page's FAQ would have them, never in the chat template: pre-training
    teaches knowledge, not the dialogue format."""
    rng = random.Random(seed)
    lines = []
    for c in KNOWLEDGE_BASE:
        lines += [f"The capital of {c.name} is {c.capital}.", f"{c.capital} is the capital of {c.name}.",
                  f"The flag of {c.name} is {c.colour}.", f"{c.name} has a {c.colour} flag.",
                  f"The national animal of {c.name} is the {c.animal}.",
                  f"In {c.name} the {c.animal} is the national animal."]
        # the same facts as a web page's questions and answers would give them (no chat markers)
        for kind, (ask, _tell, _subject) in _FACT_QUESTIONS.items():
            lines.append(f"{ask.format(s=c.name)} {getattr(c, kind)}.")
    facts = lines * max(1, n_examples // (2 * len(lines)))
    skills = []
    for i in range(n_examples):
        if FAMILIES[i % 5] != "fact":
            q = make_question(FAMILIES[i % 5], rng)
            skills.append(q.statement if rng.random() < 0.7 else f"{q.prompt} {q.value}.")
    rows = facts + skills
    rng.shuffle(rows)
    return "".join(" ".join(rows[i:i + 4]) + "\n\n" for i in range(0, len(rows), 4))


def instruction_data(n: int, seed: int = 0, countries: Sequence[Country] = TRAIN_COUNTRIES,
                     style_mix: dict[str, float] | None = None) -> list[tuple[Question, str]]:
    """``n`` (question, demonstration) pairs: the SFT data. Styles follow ``style_mix``
    (``STYLE_MIX`` by default); fact questions ask only about ``countries``."""
    mix = style_mix or STYLE_MIX
    rng = random.Random(seed)
    styles, weights = list(mix), list(mix.values())
    out = []
    for q in make_questions(n, seed, countries=countries):
        out.append((q, answer(q, rng.choices(styles, weights)[0], rng)))
    return out
