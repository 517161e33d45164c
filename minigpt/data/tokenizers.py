"""Tokenizers: text -> list of ids -> text, the kinds the course uses.

    >>> from minigpt.data.tokenizers import CharTokenizer, WordTokenizer
    >>> tok = CharTokenizer.fit("hello world")
    >>> tok.encode("hold")
    [3, 5, 4, 1]
    >>> tok.decode([3, 5, 4, 1])
    'hold'
    >>> words = WordTokenizer.fit("The cat sat. The dog sat!")
    >>> words.decode(words.encode("the cat sat on the mat"))
    'the cat sat <unk> the <unk>'
    >>> save_tokenizer(words, "words.json"); words = load_tokenizer("words.json")  # doctest: +SKIP

- ``CharTokenizer``  one id per character (chapter 00).
- ``WordTokenizer``  one id per word or punctuation mark, with ``<unk>``, ``<s>`` and ``</s>``
  (chapters 01-03: n-grams, word2vec, RNN language models).
- ``ChatTokenizer``  a base tokenizer plus the chat template's special tokens (chapters 08-12).
- ``save_tokenizer`` / ``load_tokenizer``  any course tokenizer as a JSON file, byte-level BPE
  (``minigpt.data.bpe``) included. OpenAI's own encodings, offline: ``minigpt.data.openai``.

Invalid Unicode: a ``str`` can hold a lone surrogate (U+D800 to U+DFFF, e.g. from reading a file
with ``errors="surrogateescape"``). It has no UTF-8 bytes, so ``train_bpe`` and
``BPETokenizer.encode`` refuse it with a ValueError naming its position (``bpe.check_text``)
rather than replace it silently. ``CharTokenizer`` and ``WordTokenizer`` work on characters, not
bytes: to them it is one more character.

Left out: subword schemes other than BPE (WordPiece, Unigram/SentencePiece), Unicode
normalisation, and a trainable word splitter: the word rule is one regex, documented below.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import regex

from minigpt.core.io import write_text_atomic
from minigpt.data.bpe import BPETokenizer, as_id_list

__all__ = [
    "SENTENCE_BREAK", "WORD_PATTERN", "CharTokenizer", "ChatTokenizer", "WordTokenizer",
    "load_tokenizer", "save_tokenizer", "sentences", "split_words", "tokenizer_from_dict",
    "tokenizer_to_dict",
]


# ---- characters --------------------------------------------------------------------------------


class CharTokenizer:
    """One token per character; the vocabulary is the sorted set of characters seen in ``fit``.

    A character outside the vocabulary is an error, unless the tokenizer was fitted with an
    ``unk`` character, which then stands in for every unseen character.
    """

    def __init__(self, chars: Iterable[str], unk: str | None = None):
        self.itos: list[str] = list(chars)  # id -> character
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos) or any(len(c) != 1 for c in self.itos):
            raise ValueError("a CharTokenizer's vocabulary must be distinct single characters")
        if unk is not None and unk not in self.stoi:
            raise ValueError(f"unk={unk!r} must be one of the vocabulary's characters")
        self.unk = unk

    @classmethod
    def fit(cls, text: str, unk: str | None = None) -> CharTokenizer:
        """The tokenizer whose vocabulary is every character of ``text`` (plus ``unk``)."""
        chars = set(text) | ({unk} if unk is not None else set())
        return cls(sorted(chars), unk)

    @property
    def vocab_size(self) -> int:
        """Number of ids: one per character."""
        return len(self.itos)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, unk={self.unk!r})"

    def encode(self, text: str) -> list[int]:
        """One id per character of ``text``."""
        stoi = self.stoi
        if self.unk is not None:
            unk_id = stoi[self.unk]
            return [stoi.get(c, unk_id) for c in text]
        try:
            return [stoi[c] for c in text]
        except KeyError:
            pos, c = next((i, c) for i, c in enumerate(text) if c not in stoi)
            raise ValueError(
                f"character {c!r} (U+{ord(c):04X}) at position {pos} is not in this "
                f"CharTokenizer's vocabulary of {self.vocab_size} characters. Fit the tokenizer "
                "on text that contains it (e.g. all of the corpus, not only the training split), "
                "or fit it with an unknown-character stand-in: CharTokenizer.fit(text, unk='?')."
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of the ids (a list, a NumPy array or a torch tensor), joined."""
        ids = as_id_list(ids)
        bad = next((i for i in ids if not 0 <= i < self.vocab_size), None)
        if bad is not None:
            raise ValueError(f"token id {bad} is outside the vocabulary (0..{self.vocab_size - 1})")
        return "".join(self.itos[i] for i in ids)

    def to_dict(self) -> dict:
        """The tokenizer as JSON-ready data."""
        return {"itos": self.itos, "unk": self.unk}

    @classmethod
    def from_dict(cls, data: dict) -> CharTokenizer:
        """The inverse of ``to_dict``."""
        return cls(data["itos"], data["unk"])


# ---- chat: a base tokenizer plus special tokens -------------------------------------------------

CHAT_SPECIALS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")


class ChatTokenizer:
    """A base tokenizer plus the chat template's special tokens (chapters 08-10).

    The special tokens get the ids after the base vocabulary: ``system_id``, ``user_id``,
    ``assistant_id`` and ``end_id``. ``encode`` never produces them: a user who types
    ``"<|end|>"`` gets its ordinary characters, so no text can forge the end of a turn (the same
    reason tiktoken refuses special tokens in ordinary text unless told). Only ``render``, which
    builds a conversation from (role, text) turns, places them:

        <|user|>What is 23 + 45?<|end|><|assistant|>Sure! 23 + 45 = 68.<|end|>

    ``decode`` writes the special tokens by their names.
    """

    ROLES = ("system", "user", "assistant")

    def __init__(self, base: Tokenizer):
        if isinstance(base, ChatTokenizer):
            raise TypeError("the base of a ChatTokenizer must be a plain tokenizer")
        self.base = base
        n = base.vocab_size
        self.special_ids = {name: n + i for i, name in enumerate(CHAT_SPECIALS)}
        self.system_id, self.user_id, self.assistant_id, self.end_id = range(n, n + 4)

    @property
    def vocab_size(self) -> int:
        """The base vocabulary and the four special tokens."""
        return self.base.vocab_size + len(CHAT_SPECIALS)

    def __repr__(self) -> str:
        return f"ChatTokenizer({self.base!r})"

    def encode(self, text: str) -> list[int]:
        """Ids of ordinary text: special-token names in ``text`` stay ordinary characters."""
        return self.base.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Text for ``ids``; special tokens appear as their names (``"<|end|>"``)."""
        out, run = [], []
        for i in as_id_list(ids):
            if i >= self.base.vocab_size:
                if i >= self.vocab_size:
                    raise ValueError(f"token id {i} is outside the vocabulary (0..{self.vocab_size - 1})")
                out.append(self.base.decode(run))
                run = []
                out.append(CHAT_SPECIALS[i - self.base.vocab_size])
            else:
                run.append(i)
        out.append(self.base.decode(run))
        return "".join(out)

    def role_id(self, role: str) -> int:
        """The special token that opens a turn of ``role``."""
        if role not in self.ROLES:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(self.ROLES)}")
        return {"system": self.system_id, "user": self.user_id, "assistant": self.assistant_id}[role]

    def render(self, turns: Sequence[tuple[str, str]], add_generation_prompt: bool = False
               ) -> list[int]:
        """Ids of a conversation: each (role, text) turn as ``<|role|>text<|end|>``. With
        ``add_generation_prompt`` an open ``<|assistant|>`` follows, for the model to answer."""
        ids: list[int] = []
        for role, text in turns:
            ids += [self.role_id(role), *self.encode(text), self.end_id]
        if add_generation_prompt:
            ids.append(self.assistant_id)
        return ids

    def to_dict(self) -> dict:
        """The tokenizer as JSON-ready data."""
        return {"base": tokenizer_to_dict(self.base)}

    @classmethod
    def from_dict(cls, data: dict) -> ChatTokenizer:
        """The inverse of ``to_dict``."""
        return cls(tokenizer_from_dict(data["base"], source="the chat tokenizer's base"))


# ---- words -------------------------------------------------------------------------------------

# A word is a run of letters, digits or "_", with inner apostrophes ("don't", "o'clock"); any
# other visible character is a token on its own. "3.14" gives "3", ".", "14".
WORD_PATTERN = r"\w+(?:['’]\w+)*|[^\w\s]"
_WORD_RE = regex.compile(WORD_PATTERN)
# A sentence ends at whitespace after ".", "!" or "?" (and any closing quotes or brackets),
# and at a blank line.
SENTENCE_BREAK = r"""(?<=[.!?]["'”’)\]]*)\s+|\n[ \t]*\n\s*"""
_SENTENCE_BREAK_RE = regex.compile(SENTENCE_BREAK)


def split_words(text: str, lowercase: bool = True) -> list[str]:
    """``text`` as a list of words and punctuation marks (``WORD_PATTERN``)."""
    return _WORD_RE.findall(text.lower() if lowercase else text)


def sentences(text: str, lowercase: bool = True) -> list[list[str]]:
    """``text`` as sentences, each a list of words (``split_words``).

    The rule (``SENTENCE_BREAK``) is simple on purpose: a sentence ends at a space or line
    break after ".", "!" or "?", and at a blank line. "3.14" stays whole; "Dr. Smith" becomes
    two sentences.
    """
    pieces = (split_words(piece, lowercase) for piece in _SENTENCE_BREAK_RE.split(text))
    return [words for words in pieces if words]


class WordTokenizer:
    """One token per word or punctuation mark, for n-gram, word2vec and RNN models.

    Ids 0, 1 and 2 are ``<unk>`` (a word outside the vocabulary), ``<s>`` and ``</s>``
    (sentence start and end); the words follow, most frequent first. ``decode`` joins words
    with spaces, so it is lossy by design: case (with ``lowercase``), spacing and rare words
    (now ``<unk>``) do not come back.
    """

    UNK, BOS, EOS = "<unk>", "<s>", "</s>"
    SPECIALS = (UNK, BOS, EOS)
    unk_id, bos_id, eos_id = 0, 1, 2

    def __init__(
        self, itos: Iterable[str], counts: dict[str, int] | None = None, lowercase: bool = True
    ):
        self.itos: list[str] = list(itos)  # id -> word
        if tuple(self.itos[:3]) != self.SPECIALS:
            raise ValueError(f"a WordTokenizer's vocabulary must start with {self.SPECIALS}")
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("a WordTokenizer's vocabulary has a word twice")
        # How often each word occurs in the fitting text, rare ones included (for Zipf plots).
        self.counts: Counter = Counter(counts or {})
        self.lowercase = lowercase

    @classmethod
    def fit(
        cls, text: str, min_count: int = 1, max_vocab: int | None = None, lowercase: bool = True
    ) -> WordTokenizer:
        """Vocabulary: the words of ``text`` seen at least ``min_count`` times, most frequent
        first (ties in alphabetical order), cut so that ``vocab_size <= max_vocab`` (which
        counts the three special tokens). Every other word will encode as ``<unk>``."""
        counts = Counter(split_words(text, lowercase))
        kept = sorted(
            (w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)
        )
        if max_vocab is not None:
            if max_vocab < len(cls.SPECIALS):
                raise ValueError(f"max_vocab={max_vocab} leaves no room for {cls.SPECIALS}")
            kept = kept[: max_vocab - len(cls.SPECIALS)]
        return cls([*cls.SPECIALS, *kept], counts, lowercase)

    @property
    def vocab_size(self) -> int:
        """Number of ids: the three special tokens and the words."""
        return len(self.itos)

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase})"

    def split(self, text: str) -> list[str]:
        """``text`` as words, split the way this tokenizer splits it."""
        return split_words(text, self.lowercase)

    def sentences(self, text: str) -> list[list[str]]:
        """``text`` as sentences of words, split the way this tokenizer splits it."""
        return sentences(text, self.lowercase)

    def encode_words(self, words: Iterable[str]) -> list[int]:
        """Ids of already split words; a word outside the vocabulary gives ``unk_id``."""
        return [self.stoi.get(w, self.unk_id) for w in words]

    def encode(self, text: str, sentence_boundaries: bool = False) -> list[int]:
        """Ids of the words of ``text``; with ``sentence_boundaries``, each sentence is wrapped
        in ``<s>`` ... ``</s>``."""
        if not sentence_boundaries:
            return self.encode_words(self.split(text))
        ids: list[int] = []
        for sentence in self.sentences(text):
            ids += [self.bos_id, *self.encode_words(sentence), self.eos_id]
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The words, joined by single spaces (special tokens appear as written)."""
        ids = as_id_list(ids)
        bad = next((i for i in ids if not 0 <= i < self.vocab_size), None)
        if bad is not None:
            raise ValueError(f"token id {bad} is outside the vocabulary (0..{self.vocab_size - 1})")
        return " ".join(self.itos[i] for i in ids)

    def to_dict(self) -> dict:
        """The tokenizer as JSON-ready data."""
        return {"itos": self.itos, "counts": dict(self.counts), "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, data: dict) -> WordTokenizer:
        """The inverse of ``to_dict``."""
        counts = data["counts"]
        if not all(isinstance(n, int) for n in counts.values()):
            raise ValueError("counts must be integers")
        return cls(data["itos"], counts, bool(data["lowercase"]))


# ---- OpenAI's encodings, offline ---------------------------------------------------------------


# ---- saving and loading ------------------------------------------------------------------------

Tokenizer = CharTokenizer | WordTokenizer | BPETokenizer | ChatTokenizer  # any course tokenizer
FORMAT = "minigpt-tokenizer"
FORMAT_VERSION = 1
_KINDS = {"char": CharTokenizer, "word": WordTokenizer, "bpe": BPETokenizer, "chat": ChatTokenizer}


def tokenizer_to_dict(tok: Tokenizer) -> dict:
    """``tok`` as plain JSON-able values, tagged with its kind and format version. It goes in a
    JSON file (``save_tokenizer``) or in a checkpoint next to the model that reads its ids."""
    kind = next((k for k, cls in _KINDS.items() if isinstance(tok, cls)), None)
    if kind is None:
        known = ", ".join(cls.__name__ for cls in _KINDS.values())
        raise TypeError(f"cannot save a {type(tok).__name__}; known: {known}")
    return {"format": FORMAT, "version": FORMAT_VERSION, "kind": kind, **tok.to_dict()}


def tokenizer_from_dict(data: object, source: str = "the data"
                        ) -> Tokenizer:
    """The tokenizer ``tokenizer_to_dict`` described; ``source`` names where ``data`` came from
    in the error raised if it is not such a description."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f'{source} is not a minigpt tokenizer (no "format": "{FORMAT}")')
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{source} has format version {data.get('version')!r}; this minigpt reads version "
            f"{FORMAT_VERSION}. Update minigpt, or re-create the tokenizer."
        )
    kind = data.get("kind")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(
            f"{source} holds an unknown kind of tokenizer {kind!r}; known: {', '.join(_KINDS)}"
        )
    try:
        return cls.from_dict(data)
    except Exception as e:  # missing fields, wrong types, bad merges or pattern
        raise ValueError(f"{source} is a corrupt minigpt {kind} tokenizer: {e!r}") from e


def save_tokenizer(tok: Tokenizer, path: str | Path) -> None:
    """Write ``tok`` to ``path`` as JSON (atomically); ``load_tokenizer`` reads it back."""
    write_text_atomic(path, json.dumps(tokenizer_to_dict(tok)))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer written by ``save_tokenizer``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a minigpt tokenizer file: it is not JSON ({e})") from None
    return tokenizer_from_dict(data, source=f"{path}")
