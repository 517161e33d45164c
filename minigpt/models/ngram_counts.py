"""Counting every n-gram of a token stream once, with NumPy (chapter 01's counts).

How the counting works. An n-gram is stored as an integer key ``prefix_id * V + last_token``,
where ``prefix_id`` numbers the distinct (n-1)-grams. ``np.unique`` over the keys of every
position gives the distinct n-grams (sorted, so all continuations of one context sit side by
side) and their counts, one order after another: a trie kept as sorted arrays, with no Python
object per n-gram. Scoring looks keys up with ``np.searchsorted``, for all positions at once.

With a sentence-start id ``<s>``, an n-gram never reaches back past a ``<s>`` and ``<s>`` is never
counted as a prediction. Kneser-Ney's continuation counts (how many distinct tokens precede an
n-gram) are counted here too; the smoothing that uses them is ``minigpt.models.ngram``.

    >>> from minigpt.models.ngram_counts import count_ngrams
    >>> counts = count_ngrams([0, 1, 2, 1, 2], vocab_size=3, max_order=2)
    >>> counts.num_ngrams(), counts.levels[1].counts.tolist()
    (6, [1, 2, 1])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Level", "NGramCounts", "check_order", "count_ngrams", "find_keys"]


@dataclass(frozen=True)
class Level:
    """The distinct n-grams of one order n, sorted by ``key = prefix_id * V + last_token``."""

    keys: np.ndarray  # (U_n,) int64, sorted; prefix id = keys // V, last token = keys % V
    counts: np.ndarray  # (U_n,) int64: how often each n-gram occurs (as a prediction)
    continuations: np.ndarray | None  # (U_n,) int64: distinct left extensions (KN); None at top


@dataclass(frozen=True)
class NGramCounts:
    """Counts of every n-gram of orders 1..``max_order`` of a token stream (``count_ngrams``)."""

    vocab_size: int
    max_order: int
    bos_id: int | None
    levels: tuple[Level, ...]  # levels[n - 1] holds the n-grams
    tables: dict = field(default_factory=dict, repr=False, compare=False)  # NGramLM's cache

    def num_ngrams(self, order: int | None = None) -> int:
        """How many distinct n-grams of orders 1..``order`` are stored (the model's "size")."""
        order = self.max_order if order is None else order
        return int(sum(len(level.keys) for level in self.levels[:order]))

    def lookup(self, ids: np.ndarray, order: int) -> list[np.ndarray]:
        """For each position i of ``ids``: the id of the m-gram ending at i, for m = 1..order
        (-1 where it was never seen in training, or would reach back past a ``<s>``)."""
        ids = np.asarray(ids, dtype=np.int64)
        grams, prefix = [], np.zeros(len(ids), dtype=np.int64)  # the empty gram is id 0
        for level in self.levels[:order]:
            # (<s> inside an n-gram is never found: no such key is ever stored)
            gram = find_keys(level.keys, prefix * self.vocab_size + ids, valid=prefix >= 0)
            grams.append(gram)
            prefix = np.concatenate([[-1], gram[:-1]])
        return grams

    def unseen_fraction(self, ids, order: int) -> float:
        """Share of the n-grams of ``ids`` (order ``order``) never seen in training. Counted
        are the n-grams the text really has: not reaching back past its start or a ``<s>``."""
        check_order(order, self.max_order)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        start = np.arange(len(ids)) - (order - 1)  # where the n-gram ending at i starts
        exists = start >= 0
        if self.bos_id is not None:
            is_bos = ids == self.bos_id
            last_bos = np.maximum.accumulate(np.where(is_bos, np.arange(len(ids)), -1))
            exists &= (last_bos <= start) & ~is_bos  # <s> only as the first token
        if not exists.any():
            raise ValueError(f"the text has no {order}-grams: give it at least {order} tokens")
        return float(np.mean(self.lookup(ids, order)[-1][exists] < 0))


def find_keys(keys: np.ndarray, queries: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Index of each query in the sorted ``keys``, or -1 where absent or not ``valid``."""
    if len(keys) == 0:
        return np.full(len(queries), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
    return np.where(valid & (keys[pos] == queries), pos, -1)


def check_order(order: int, max_order: int | None = None) -> None:
    if not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"order must be a whole number >= 1 (1 = unigram), got {order!r}")
    if max_order is not None and order > max_order:
        raise ValueError(
            f"these counts go up to order {max_order}, not {order}: count again with "
            f"count_ngrams(ids, vocab_size, max_order={order})"
        )


def count_ngrams(ids, vocab_size: int, max_order: int, bos_id: int | None = None) -> NGramCounts:
    """Count every n-gram of orders 1..``max_order`` in the token stream ``ids``, vectorised.

    With ``bos_id`` (sentence start), an n-gram may hold ``<s>`` only as its first token, and
    ``<s>`` itself is never counted as a prediction. Kneser-Ney's *continuation count* of an
    n-gram (below the top order) is the number of distinct tokens seen just before it, plus its
    raw count where nothing can come before it (after ``<s>``, or at the very start).
    """
    check_order(max_order)
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) == 0:
        raise ValueError("cannot count n-grams of an empty text: give it at least one token")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(f"token ids must lie in 0..{vocab_size - 1}, got {ids.min()}..{ids.max()}")
    is_bos = ids == bos_id if bos_id is not None else np.zeros(len(ids), dtype=bool)
    grams: list[np.ndarray] = []  # grams[m - 1][i]: id of the m-gram ending at i, or -1
    keys_by_order, counts_by_order = [], []
    prefix = np.zeros(len(ids), dtype=np.int64)  # the empty gram, id 0, ends everywhere
    for m in range(1, max_order + 1):
        valid = prefix >= 0
        if m > 1:
            valid &= ~is_bos
        keys, inverse = np.unique(prefix[valid] * vocab_size + ids[valid], return_inverse=True)
        gram = np.full(len(ids), -1, dtype=np.int64)
        gram[valid] = inverse.reshape(-1)
        counts = np.bincount(gram[valid], minlength=len(keys))
        grams.append(gram)
        keys_by_order.append(keys)
        counts_by_order.append(counts)
        prefix = np.concatenate([[-1], gram[:-1]])
    levels = []
    for m in range(1, max_order + 1):
        cont = None
        if m < max_order:  # distinct left extensions = distinct (m+1)-grams with this suffix
            longer, here = grams[m], grams[m - 1]
            has_longer = longer >= 0
            suffix = np.zeros(len(keys_by_order[m]), dtype=np.int64)
            suffix[longer[has_longer]] = here[has_longer]
            no_left = (here >= 0) & ~has_longer
            cont = np.bincount(suffix, minlength=len(keys_by_order[m - 1]))
            cont += np.bincount(here[no_left], minlength=len(keys_by_order[m - 1]))
        if m == 1 and bos_id is not None:  # <s> is a context, never a prediction
            at = np.searchsorted(keys_by_order[0], bos_id)
            if at < len(keys_by_order[0]) and keys_by_order[0][at] == bos_id:
                counts_by_order[0][at] = 0
                if cont is not None:
                    cont[at] = 0
        levels.append(Level(keys_by_order[m - 1], counts_by_order[m - 1], cont))
    return NGramCounts(int(vocab_size), int(max_order), bos_id, tuple(levels))
