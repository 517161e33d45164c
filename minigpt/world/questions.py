"""The assistant world's questions and answers (chapters 08-12).

A small world with checkable answers: five ``FAMILIES`` of questions (arithmetic, reverse, sort,
facts, units), a knowledge base of invented countries (so no pre-training text can already know
them), ``UNKNOWN_COUNTRIES`` that have no facts at all (chapter 12's hallucinations), and
answers written in five ``STYLES``.

Every question belongs to one of three ``SPLITS``, fixed by what it asks (``split_of``): "train"
questions are the only ones that fine-tuning data (SFT, preferences, RL prompts) and the worked
examples of pre-training text use; "validation" questions choose settings; "test" questions are
scored once. Sums, conversions and words go to a split by a hash of what they ask, so "7 + 5"
and "5 + 7", or reversing and sorting one word's letters, always land together; facts go by
country: ``TRAIN_COUNTRIES`` are asked about in the training data, ``VALIDATION_COUNTRIES`` and
``HELD_OUT_COUNTRIES`` (the test's) are known from pre-training text only.

    >>> from minigpt.world import questions
    >>> q = questions.make_questions(1, seed=0, split="test")[0]   # doctest: +SKIP
    >>> questions.split_of(q), questions.answer(q, "polite")       # doctest: +SKIP

``world_text`` is the world as plain pre-training text (facts and worked examples, no chat
markers); ``instruction_data`` the (question, answer) pairs of SFT; ``parse_question`` finds the
world's question in a typed text; ``claims`` reads which candidate values an answer states. The
hidden judge of answers is ``minigpt.world.annotator``.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "FAMILIES", "HELD_OUT_COUNTRIES", "KNOWLEDGE_BASE", "SPLITS", "SPLIT_COUNTRIES", "STYLES",
    "STYLE_MIX", "TRAIN_COUNTRIES", "UNKNOWN_COUNTRIES", "VALIDATION_COUNTRIES", "Country",
    "Question", "answer", "claims", "fact_questions", "instruction_data", "make_question",
    "make_questions", "parse_question", "split_of", "worked_examples", "world_text",
]


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
    ("Parvenia", "Sollo"), ("Eldmark", "Trin"), ("Cordavel", "Bexa"), ("Marisko", "Ulla"),
    ("Thessor", "Grim"), ("Wendal", "Pirro"), ("Jurovia", "Nerb"), ("Lisseth", "Kadd"),
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
TRAIN_COUNTRIES = KNOWLEDGE_BASE[:16]  # asked about in the training data
HELD_OUT_COUNTRIES = KNOWLEDGE_BASE[16:24]  # the test's: known from pre-training only
VALIDATION_COUNTRIES = KNOWLEDGE_BASE[24:]  # for choosing settings: known from pre-training only
SPLITS = ("train", "validation", "test")
SPLIT_COUNTRIES = {"train": TRAIN_COUNTRIES, "validation": VALIDATION_COUNTRIES,
                   "test": HELD_OUT_COUNTRIES}
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
OPENERS = ("Sure!", "Of course!", "Happy to help!")  # polite
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


def _draw(family: str, rng: random.Random, countries: Sequence[Country]) -> Question | None:
    """One random question of ``family``, or None when the draw is refused (redraw)."""
    if family == "arithmetic":
        a, b = rng.randint(2, 19), rng.randint(2, 9)  # small sums: a table the model can learn
        s, v = (f"{a} + {b}", a + b) if rng.random() < 0.5 else (f"{a} - {b}", a - b)
        if v == b:  # 14 - 7 = 7: the answer must not be a number of the question
            return None
        return Question(family, f"What is {s}?", str(v), s, f"{s} = {v}.")
    if family in ("reverse", "sort"):
        w = _word(rng)
        v = w[::-1] if family == "reverse" else "".join(sorted(w))
        if v == w or v in _TEMPLATE_WORDS:
            return None
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


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")


_COUNTRY_SPLIT = {c.name: name for name, cs in SPLIT_COUNTRIES.items() for c in cs}


def split_of(q: Question) -> str:
    """The split ("train", "validation" or "test") that ``q`` belongs to. A fact question goes
    with its country (``SPLIT_COUNTRIES``); any other goes by a hash of what it asks, taken
    so that questions with the same numbers or letters in another order share a split: the sum
    "7 + 5" with "5 + 7", "12 - 3" with "3 - 12", reversing "abc" with sorting "cab". About 60%
    of them are train, 20% validation, 20% test."""
    if q.family == "fact":
        name = next((n for n in _COUNTRY_SPLIT if re.search(rf"\b{n}\b", q.prompt)), None)
        if name is None:
            raise ValueError(f"{q.prompt!r} asks about no country of the knowledge base")
        return _COUNTRY_SPLIT[name]
    if q.family == "arithmetic":
        key = "sum:" + " ".join(sorted(q.subject.split()))
    elif q.family in ("reverse", "sort"):
        key = "word:" + "".join(sorted(q.subject.strip("'")))
    elif q.family == "units":
        key = "units:" + q.subject
    else:
        raise ValueError(f"unknown family {q.family!r}; families: {', '.join(FAMILIES)}")
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 10
    return "train" if bucket < 6 else "validation" if bucket < 8 else "test"


def make_question(family: str, rng: random.Random, countries: Sequence[Country] | None = None,
                  split: str | None = None) -> Question:
    """A random question of ``family`` (one of ``FAMILIES``) from ``split`` (any split if None);
    facts about ``countries`` (by default the split's ``SPLIT_COUNTRIES``, or every country)."""
    if split is not None:
        _check_split(split)
    if countries is None:
        countries = SPLIT_COUNTRIES[split] if split else KNOWLEDGE_BASE
    elif split is not None and family == "fact":
        outside = [c.name for c in countries if _COUNTRY_SPLIT.get(c.name) != split]
        if outside:
            raise ValueError(f"{', '.join(outside)} not in the {split} split: fact questions of a "
                             f"split ask about SPLIT_COUNTRIES[{split!r}] only")
    for _ in range(10_000):
        q = _draw(family, rng, countries)
        if q is not None and (split is None or split_of(q) == split):
            return q
    raise RuntimeError(f"no {family} question of the {split} split in 10,000 draws")


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
                   countries: Sequence[Country] | None = None,
                   split: str | None = None) -> list[Question]:
    """``n`` questions of ``split`` (any split if None), the families taken in turn (so each is
    equally represented); facts about ``countries`` (the split's by default)."""
    rng = random.Random(seed)
    return [make_question(families[i % len(families)], rng, countries, split) for i in range(n)]


# ---- answers in five styles ----------------------------------------------------------------------

STYLES = ("polite", "plain", "bare", "polite_bare", "verbose")


def answer(q: Question, style: str, rng: random.Random | None = None) -> str:
    """An answer to ``q`` in ``style``: "polite" ("Sure! 23 + 45 = 68."), "plain"
    ("23 + 45 = 68."), "bare" ("68."), "polite_bare" ("Sure! 68.") or "verbose" ("Let me think.
    23 + 45 = 68. I hope this helps."). ``rng`` picks the opener, filler and closer."""
    rng = rng or random.Random(0)
    if style == "polite":
        return f"{rng.choice(OPENERS)} {q.statement}"
    if style == "plain":
        return q.statement
    if style == "bare":
        return f"{q.value}."
    if style == "polite_bare":
        return f"{rng.choice(OPENERS)} {q.value}."
    if style == "verbose":
        return f"{rng.choice(_FILLERS)} {q.statement} {rng.choice(_CLOSERS)}"
    raise ValueError(f"unknown style {style!r}; styles: {', '.join(STYLES)}")


# The share of each style in the instruction data: the labellers who wrote the demonstrations
# had different habits, so the SFT model learns all five (and chapters 09-10 teach it which the
# annotator prefers).
STYLE_MIX = {"polite": 0.2, "plain": 0.2, "bare": 0.25, "polite_bare": 0.15, "verbose": 0.2}


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z]+|\d+", text.lower())


def _template_words() -> frozenset[str]:
    texts = [t for triple in _FACT_QUESTIONS.values() for t in triple]
    texts += [f"{a} {b} how many are in is reversed sorted the word letters of what reverse sort"
              for a, b, _ in _UNITS]
    texts += list(OPENERS + _FILLERS + _CLOSERS)
    return frozenset(w for t in texts for w in words_of(t.replace("{s}", "").replace("{v}", "")))


_TEMPLATE_WORDS = _template_words()


def claims(q: Question, response: str) -> set[str]:
    """The values that ``response`` states in reply to ``q``: its words (lower case) that are
    neither in the question nor part of the answer templates ("68" in "Sure! 23 + 45 = 68.").
    The annotator calls an answer correct when this is exactly ``{q.value}``."""
    asked = set(words_of(q.prompt))
    return {w for w in words_of(response) if w not in asked and w not in _TEMPLATE_WORDS}


# ---- pre-training and instruction data ---------------------------------------------------------

def world_text(n_examples: int, seed: int = 0) -> str:
    """Plain text about the world, for pre-training: every fact of the knowledge base stated in
    several phrasings and as a question followed by its answer (repeated), and worked examples
    of the other families (``n_examples`` in all), in paragraphs of four sentences. Questions
    appear as a web page's FAQ would have them, never in the chat template: pre-training
    teaches knowledge, not the dialogue format. The worked examples come from the train split
    only, so no validation or test sum, word or conversion is ever seen; the facts of every
    country are stated, since the held-out countries' knowledge must come from somewhere."""
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
    skills = [q.statement if rng.random() < 0.7 else f"{q.prompt} {q.value}."
              for q in worked_examples(n_examples, seed)]
    rows = facts + skills
    rng.shuffle(rows)
    return "".join(" ".join(rows[i:i + 4]) + "\n\n" for i in range(0, len(rows), 4))


def worked_examples(n_examples: int, seed: int = 0) -> list[Question]:
    """The questions whose worked examples ``world_text(n_examples, seed)`` writes out (every
    family but facts, of the train split), so that evaluation sets can be checked against
    pre-training text as against any training set (``minigpt.world.overlap``)."""
    rng = random.Random(seed)
    return [make_question(family, rng, split="train")
            for family in (FAMILIES[i % 5] for i in range(n_examples)) if family != "fact"]


def instruction_data(n: int, seed: int = 0, countries: Sequence[Country] = TRAIN_COUNTRIES,
                     style_mix: dict[str, float] | None = None) -> list[tuple[Question, str]]:
    """``n`` (question, demonstration) pairs of the train split: the SFT data. Styles follow
    ``style_mix`` (``STYLE_MIX`` by default); fact questions ask only about ``countries``
    (train countries)."""
    mix = style_mix or STYLE_MIX
    rng = random.Random(seed)
    styles, weights = list(mix), list(mix.values())
    out = []
    for q in make_questions(n, seed, countries=countries, split="train"):
        out.append((q, answer(q, rng.choices(styles, weights)[0], rng)))
    return out
