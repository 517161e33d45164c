"""Byte-level BPE, the tokenizer family of GPT-2, GPT-4 and most LLMs since: train it in pure
Python, encode and decode with it, and hand it to tiktoken for speed.

    >>> from minigpt.data.tokenizers import train_bpe
    >>> tok = train_bpe("the lowest, the lower, the newest, the widest. " * 20, vocab_size=270)
    >>> ids = tok.encode("the slowest")
    >>> ids
    [257, 32, 115, 108, 262, 260]
    >>> [tok.vocab[i] for i in ids]
    [b'the', b' ', b's', b'l', b'ow', b'est']
    >>> tok.decode(ids)
    'the slowest'
    >>> enc = tok.to_tiktoken()                          # a real tiktoken.Encoding, same ids
    >>> enc.encode("the slowest") == ids
    True

On the course's 3 MB wiki corpus, a 4,096-token vocabulary trains in about 2.5 s.

How BPE (byte-pair encoding, Sennrich et al. 2016, on bytes as in GPT-2) is trained:

1. A regex splits the text into *pre-tokens* (" the", " cat", "!", " 2024" ...). Merges never
   cross a pre-token boundary, so a token never glues a word to the next one.
2. Each pre-token is the list of its UTF-8 bytes: ids 0-255. Any text can be encoded, nothing is
   ever unknown.
3. Repeat until the vocabulary is full: find the adjacent pair of tokens seen most often (over
   all pre-tokens, weighted by how often each occurs), give it a new id, and replace every
   occurrence, left to right: merging (a, a) turns "aaa" into "Aa" and "aaaa" into "AA".
   Ties go to the highest count, then the smallest pair (a, b) in id order: training is
   deterministic.

Why it trains in seconds in pure Python: each distinct pre-token is stored once with its count
(3 MB of English has ~50 k distinct ones), pair counts are kept up to date rather than recounted,
an index says which pre-tokens hold each pair, a merge only touches the pairs next to the
places it merges, and a heap finds the most frequent pair. The test file holds the obvious
trainer (recount every pair, every merge); both must produce the same merges.

Token ids: 0-255 are the bytes, merge i makes token 256 + i, special tokens come last. One
guard: should a merge ever spell the bytes of an existing token ("ab" + "c" after "a" + "bc";
we have not seen training do it), it reuses that token's id, as HuggingFace's trainer does.
Every token then has its own bytes, which tiktoken needs: it stores a vocabulary as
bytes -> id, and encodes a pre-token by merging, again and again, the adjacent pair whose
*bytes* form the lowest-id token. ``encode_python`` follows that rule exactly, so pure Python
and tiktoken give the same ids.

Left out: text normalisation, GPT-2's remapping of bytes to printable characters in its files
(we store raw bytes), BPE dropout, and a fast (Rust) trainer.
"""

from __future__ import annotations

import heapq
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import pairwise
from typing import TYPE_CHECKING

import regex

if TYPE_CHECKING:
    import tiktoken

# GPT-2's pre-tokenizer (Radford et al. 2019): contractions, words and numbers with their
# leading space, runs of other symbols, whitespace.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# GPT-4's (tiktoken's cl100k_base): case-insensitive contractions, numbers in groups of at
# most 3 digits, newlines kept apart from other whitespace.
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
ENDOFTEXT = "<|endoftext|>"

Pair = tuple[int, int]


class BPETokenizer:
    """A byte-level BPE tokenizer: 256 byte tokens, then one token per merge, then specials.

    Attributes:
        merges: the merges ``(a, b)`` in the order they were learnt.
        vocab: id -> the bytes the token stands for (special tokens excluded).
        pattern: the pre-tokenizer regex.
        special_tokens: e.g. ``{"<|endoftext|>": 4095}``; they take the ids after ``vocab``.
    """

    def __init__(
        self,
        merges: Iterable[Pair],
        pattern: str = GPT4_PATTERN,
        special_tokens: dict[str, int] | None = None,
    ):
        self.merges: list[Pair] = [(int(a), int(b)) for a, b in merges]
        self.vocab: dict[int, bytes] = _vocab_from_merges(self.merges)
        self.pattern = pattern
        self.special_tokens: dict[str, int] = dict(special_tokens or {})
        expected = set(range(len(self.vocab), len(self.vocab) + len(self.special_tokens)))
        if set(self.special_tokens.values()) != expected:
            raise ValueError(
                f"special tokens must take the ids right after the {len(self.vocab)} merged "
                f"tokens ({sorted(expected)}), got {self.special_tokens}"
            )
        self._regex = regex.compile(pattern)
        names = sorted(self.special_tokens, key=len, reverse=True)  # longest first
        self._special_regex = (
            regex.compile("(" + "|".join(regex.escape(s) for s in names) + ")") if names else None
        )
        self._ranks = {token: i for i, token in self.vocab.items()}
        self._special_names = {i: s for s, i in self.special_tokens.items()}
        self._bpe_cached = lru_cache(maxsize=2**16)(self._bpe)
        self._tiktoken = None

    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 bytes, the merged tokens, and the special tokens."""
        return len(self.vocab) + len(self.special_tokens)

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"special_tokens={self.special_tokens})"
        )

    def to_dict(self) -> dict:
        """The tokenizer as JSON-ready data; the merges rebuild the vocabulary."""
        return {
            "pattern": self.pattern,
            "merges": [list(pair) for pair in self.merges],
            "special_tokens": self.special_tokens,
        }

    @classmethod
    def from_dict(cls, data: dict) -> BPETokenizer:
        """The inverse of ``to_dict``."""
        return cls(data["merges"], data["pattern"], data["special_tokens"])

    def __getstate__(self) -> dict:  # pickle (e.g. DataLoader workers) the data, not the caches
        return self.to_dict()

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["merges"], state["pattern"], state["special_tokens"])

    # ---- encoding ------------------------------------------------------------------------------

    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        """Token ids of ``text``, computed by tiktoken (fast); same result as ``encode_python``.

        With ``allow_special``, a special token written in the text (e.g. "<|endoftext|>")
        becomes its id; without, it is encoded as ordinary text. Text with a lone surrogate
        raises ValueError (``check_text``); the raw ``to_tiktoken()`` encoding would silently
        turn it into U+FFFD instead.
        """
        check_text(text)
        try:
            enc = self.to_tiktoken()
        except ImportError:  # tiktoken is a dependency of minigpt, but the algorithm needs none
            return self.encode_python(text, allow_special)
        return (
            enc.encode(text, allowed_special="all") if allow_special else enc.encode_ordinary(text)
        )

    def encode_python(self, text: str, allow_special: bool = True) -> list[int]:
        """Token ids of ``text``, in pure Python: the algorithm, step by step."""
        check_text(text)
        ids: list[int] = []
        for part, special in self._split_special(text, allow_special):
            if special:
                ids.append(self.special_tokens[part])
                continue
            for piece in self._regex.findall(part):
                ids.extend(self._bpe_cached(piece.encode("utf-8")))
        return ids

    def _split_special(self, text: str, allow_special: bool) -> list[tuple[str, bool]]:
        """Cut ``text`` into (part, is_special_token) pieces."""
        if not allow_special or self._special_regex is None:
            return [(text, False)]
        parts = self._special_regex.split(text)  # odd positions hold the special tokens
        return [(p, i % 2 == 1) for i, p in enumerate(parts) if p]

    def _bpe(self, piece: bytes) -> list[int]:
        """Encode one pre-token the way tiktoken does: a pre-token that is a token is that
        token; otherwise start from its bytes and keep merging the adjacent pair whose
        concatenation is the lowest-id token (leftmost on ties) until no pair is a token."""
        ranks = self._ranks
        if piece in ranks:
            return [ranks[piece]]
        parts = [piece[i : i + 1] for i in range(len(piece))]
        while len(parts) > 1:
            best, best_i = None, -1
            for i in range(len(parts) - 1):
                rank = ranks.get(parts[i] + parts[i + 1])
                if rank is not None and (best is None or rank < best):
                    best, best_i = rank, i
            if best is None:
                break
            parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        return [ranks[p] for p in parts]

    # ---- decoding ------------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes the ids stand for (a special token gives its UTF-8 text)."""
        out = []
        for i in as_id_list(ids):
            if i in self.vocab:
                out.append(self.vocab[i])
            elif i in self._special_names:
                out.append(self._special_names[i].encode("utf-8"))
            else:
                raise ValueError(
                    f"token id {i} is outside the vocabulary (0..{self.vocab_size - 1})"
                )
        return b"".join(out)

    def decode(self, ids: Iterable[int]) -> str:
        """The text the ids stand for. A slice of ids can cut a character's bytes in two; the
        broken character then shows as U+FFFD (errors="replace"), as in tiktoken."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ---- tiktoken ------------------------------------------------------------------------------

    def to_tiktoken(self, name: str | None = None) -> tiktoken.Encoding:
        """This tokenizer as a ``tiktoken.Encoding`` (built once, then cached on the object).

        Built directly from the ranks, never through a file: tiktoken caches files by path, so
        re-training into the same file could hand back stale ranks.
        """
        if self._tiktoken is None or (name is not None and name != self._tiktoken.name):
            import tiktoken

            self._tiktoken = tiktoken.Encoding(
                name=name or f"minigpt-bpe-{self.vocab_size}",
                pat_str=self.pattern,
                mergeable_ranks=self._ranks,
                special_tokens=self.special_tokens,
                explicit_n_vocab=self.vocab_size,
            )
        return self._tiktoken


def check_text(text: str) -> None:
    """Raise ValueError unless ``text`` is valid Unicode, i.e. has UTF-8 bytes.

    A Python ``str`` can hold a lone surrogate (U+D800 to U+DFFF), e.g. from
    ``errors="surrogateescape"``; it has no UTF-8 bytes, so byte-level BPE can neither train on
    it nor encode it. We refuse it rather than replace it silently."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"text has a lone surrogate {text[e.start]!r} at position {e.start}: byte-level BPE "
            "needs valid Unicode. Read files with open(path, encoding='utf-8', errors='replace')"
            " (not errors='surrogateescape'), or replace the surrogates with '?' first: "
            "text.encode('utf-8', errors='replace').decode('utf-8')"
        ) from None


def as_id_list(ids: Iterable[int]) -> list[int]:
    """Token ids as a list of Python ints, from a list, a NumPy array or a torch tensor."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    return [int(i) for i in ids]


def _vocab_from_merges(merges: Sequence[Pair]) -> dict[int, bytes]:
    """Replay the merges: a merge whose bytes are new gets the next id, others reuse theirs."""
    vocab = [bytes([i]) for i in range(256)]
    ids = {token: i for i, token in enumerate(vocab)}
    for a, b in merges:
        if not (0 <= a < len(vocab) and 0 <= b < len(vocab)):
            raise ValueError(f"merge {(a, b)} uses an id not yet in the vocabulary")
        token = vocab[a] + vocab[b]
        if token not in ids:
            ids[token] = len(vocab)
            vocab.append(token)
    return dict(enumerate(vocab))


# ---- training ----------------------------------------------------------------------------------


def train_bpe(
    text: str,
    vocab_size: int,
    pattern: str = GPT4_PATTERN,
    special_tokens: Sequence[str] = (),
) -> BPETokenizer:
    """Learn a byte-level BPE tokenizer of ``vocab_size`` ids (256 bytes + merges + specials).

    Special tokens (e.g. ``["<|endoftext|>"]``) get the last ids; where they appear in
    ``text`` they only separate it, they are not learnt from. If the text runs out of pairs
    to merge first, the vocabulary comes out smaller (with a warning). Text with a lone
    surrogate raises ValueError, as in ``encode`` (``check_text``).
    """
    n_tokens = vocab_size - len(special_tokens)  # ids for bytes and merged tokens
    if n_tokens < 256:
        raise ValueError(
            f"vocab_size={vocab_size} leaves no room for the 256 byte tokens "
            f"and {len(special_tokens)} special tokens"
        )
    check_text(text)
    counts = _count_pretokens(text, regex.compile(pattern), special_tokens)
    words = [list(w.encode("utf-8")) for w in counts]  # each distinct pre-token once ...
    freqs = list(counts.values())  # ... with how often it occurs

    pair_counts: dict[Pair, int] = defaultdict(int)  # pair -> occurrences in the text
    where: dict[Pair, set[int]] = defaultdict(set)  # pair -> words that may hold it
    for w, (word, n) in enumerate(zip(words, freqs)):
        for pair in pairwise(word):
            pair_counts[pair] += n
            where[pair].add(w)
    # A min-heap of (-count, a, b): the top is the most frequent pair, smallest (a, b) on ties.
    # Entries go stale as counts change; each is checked when popped ("lazy invalidation").
    heap = [(-n, a, b) for (a, b), n in pair_counts.items()]
    heapq.heapify(heap)

    vocab = [bytes([i]) for i in range(256)]
    ids = {token: i for i, token in enumerate(vocab)}
    merges: list[Pair] = []
    while len(vocab) < n_tokens and heap:
        neg_count, a, b = heapq.heappop(heap)
        count = pair_counts.get((a, b), 0)
        if count != -neg_count:  # stale: the count went down since this entry was pushed
            if count > 0:
                heapq.heappush(heap, (-count, a, b))
            continue
        token = vocab[a] + vocab[b]
        if token not in ids:  # else: the bytes of an earlier token; reuse its id (a guard)
            ids[token] = len(vocab)
            vocab.append(token)
        merges.append((a, b))
        grown = _apply_merge((a, b), ids[token], words, freqs, pair_counts, where)
        for pair in grown:
            heapq.heappush(heap, (-pair_counts[pair], *pair))

    if len(vocab) < n_tokens:
        warnings.warn(
            f"the text ran out of pairs to merge: vocab_size is "
            f"{len(vocab) + len(special_tokens)}, not {vocab_size}",
            stacklevel=2,
        )
    specials = {s: len(vocab) + i for i, s in enumerate(special_tokens)}
    return BPETokenizer(merges, pattern, specials)


def _count_pretokens(text: str, splitter: regex.Pattern, special_tokens: Sequence[str]) -> Counter:
    """How often each pre-token occurs in ``text`` (special tokens only split the text)."""
    parts = [text]
    if special_tokens:
        parts = regex.split("|".join(regex.escape(s) for s in special_tokens), text)
    counts: Counter = Counter()
    for part in parts:
        counts.update(splitter.findall(part))
    return counts


def _apply_merge(
    pair: Pair,
    new_id: int,
    words: list[list[int]],
    freqs: list[int],
    pair_counts: dict[Pair, int],
    where: dict[Pair, set[int]],
) -> set[Pair]:
    """Merge ``pair`` into ``new_id`` in every word that holds it; update the pair counts and
    the index near each merge site only. Returns the pairs whose count went up."""
    grown = set()
    for w in where.pop(pair, ()):
        old = words[w]
        new, sites = merge_word(old, pair, new_id)
        if not sites:  # the index is lazy too: an earlier merge took this word's pairs
            continue
        n = freqs[w]
        # The k-th merged token sits at sites[k] in the new word, at sites[k] + k in the old.
        for q in _pairs_touching([t + k for k, t in enumerate(sites)], 2, len(old)):
            p = (old[q], old[q + 1])
            pair_counts[p] -= n
            if not pair_counts[p]:
                del pair_counts[p]
        for q in _pairs_touching(sites, 1, len(new)):
            p = (new[q], new[q + 1])
            pair_counts[p] += n
            where[p].add(w)
            grown.add(p)
        words[w] = new
    return {p for p in grown if pair_counts.get(p, 0) > 0}


def merge_word(word: list[int], pair: Pair, new_id: int) -> tuple[list[int], list[int]]:
    """Replace each occurrence of ``pair`` in ``word`` by ``new_id``, left to right.
    Returns the new word and the positions of the merged tokens in it."""
    a, b = pair
    out: list[int] = []
    sites: list[int] = []
    i, n = 0, len(word)
    while i < n:
        if word[i] == a and i + 1 < n and word[i + 1] == b:
            sites.append(len(out))
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out, sites


def _pairs_touching(starts: list[int], width: int, length: int) -> list[int]:
    """Positions q of the pairs (word[q], word[q+1]) that overlap the spans
    ``starts[k] .. starts[k] + width - 1`` of a word of ``length`` tokens, each once."""
    out: list[int] = []
    for s in starts:
        for q in range(s - 1, s + width):
            if 0 <= q < length - 1 and (not out or q > out[-1]):
                out.append(q)
    return out
