"""n-gram language models: count, then smooth (chapter 01).

An n-gram model predicts the next token from the previous ``n - 1`` tokens only, using counts
of what followed them in the training text. ``count_ngrams`` counts every n-gram of a token
stream once; this module turns the counts into a language model with one of four smoothings:

- ``"mle"``   maximum likelihood: ``c(h w) / c(h)``. Unseen n-grams get probability 0, so
  held-out perplexity is infinite; a context never seen at all falls back to its longest
  seen suffix.
- ``"addk"``  add-k (Lidstone; add-one is Laplace): ``(c(h w) + k) / (c(h) + k V)``.
- ``"kn"``    interpolated Kneser-Ney (Kneser & Ney 1995; Chen & Goodman 1998), one discount
  per order, ``D = n1 / (n1 + 2 n2)``.
- ``"mkn"``   modified Kneser-Ney (Chen & Goodman 1998): three discounts per order, for
  n-grams seen once, twice, and three times or more.

Both Kneser-Ney variants mix a uniform distribution into the lowest order, so no token ever
gets probability 0; add-k uses the top order only.

    >>> from minigpt.data.tokenizers import WordTokenizer
    >>> from minigpt.models.ngram import NGramLM
    >>> tok = WordTokenizer.fit(train_text, min_count=2)                  # doctest: +SKIP
    >>> lm = NGramLM.fit(train_text, tok, order=3, smoothing="kn")        # doctest: +SKIP
    >>> lm.next_distribution("the history of", k=3)                       # doctest: +SKIP
    [('the', 0.36), ('alchemy', 0.09), ('animals', 0.04)]
    >>> lm.evaluate(test_text).perplexity                                 # doctest: +SKIP
    >>> lm.variant(order=2, smoothing="addk", k=0.01)    # same counts, another model  # doctest: +SKIP

The counting itself (every n-gram of a stream, once, as sorted NumPy arrays) is
``minigpt.models.ngram_counts``; this module smooths the counts into a model.

Word streams mark sentences with ``<s>`` ... ``</s>`` (``WordTokenizer.encode(...,
sentence_boundaries=True)``): an n-gram never reaches back past a ``<s>``, and ``<s>`` is never
predicted (its probability is 0). Character streams have no boundaries: a newline is a token.

Deliberately left out: back-off models (Katz, stupid back-off), pruning, interpolation weights
tuned on held-out data, and class-based or cache models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from minigpt.core import metrics
from minigpt.data.tokenizers import CharTokenizer, WordTokenizer
from minigpt.models.ngram_counts import (
    Level,
    NGramCounts,
    check_order,
    count_ngrams,
    find_keys,
)

__all__ = [
    "SMOOTHINGS", "NGramLM", "Score", "encode", "kn_discounts",
]

SMOOTHINGS = ("mle", "addk", "kn", "mkn")
Tokenizer = CharTokenizer | WordTokenizer


# ---- counting -----------------------------------------------------------------------------------


# ---- smoothing ----------------------------------------------------------------------------------


def kn_discounts(counts: np.ndarray, modified: bool) -> np.ndarray:
    """Discounts ``[0, D1, D2, D3+]`` estimated from count-of-counts (Chen & Goodman 1998):
    ``Y = n1 / (n1 + 2 n2)``; plain KN uses ``D = Y`` for every count, modified KN
    ``D_c = c - (c + 1) Y n_{c+1} / n_c`` for c = 1, 2, 3+. Falls back to 0.75 when a
    count-of-count is zero (tiny corpora)."""
    n = np.bincount(np.minimum(counts[counts > 0], 5), minlength=5)  # n[c]: how many seen c times
    if n[1] == 0 or n[2] == 0:
        return np.array([0.0, 0.75, 0.75, 0.75])
    y = n[1] / (n[1] + 2 * n[2])
    if not modified or n[3] == 0 or n[4] == 0:
        return np.array([0.0, y, y, y])
    d = [1 - 2 * y * n[2] / n[1], 2 - 3 * y * n[3] / n[2], 3 - 4 * y * n[4] / n[3]]
    return np.array([0.0, *np.clip(d, 0.0, [1.0, 2.0, 3.0])])


@dataclass(frozen=True)
class _Table:
    """One order's numbers for scoring: for each n-gram, its discounted count; for each
    context, the total count and the mass set aside for the lower order. Each array ends with
    an extra 0, so that indexing with -1 (an unseen n-gram or context) reads 0."""

    kept: np.ndarray  # (U_n + 1,) float: count minus discount (the raw count for mle / addk)
    total: np.ndarray  # (U_{n-1} + 1,) float: sum of counts over the context's continuations
    backoff: np.ndarray  # (U_{n-1} + 1,) float: discount mass of the context (kn / mkn)


def _table(level: Level, n_contexts: int, vocab_size: int, discounts: np.ndarray | None,
           use_continuations: bool) -> _Table:
    counts = level.continuations if use_continuations else level.counts
    counts = counts.astype(np.float64)
    context = level.keys // vocab_size
    total = np.bincount(context, weights=counts, minlength=n_contexts)
    kept = counts
    if discounts is not None:
        kept = np.maximum(counts - discounts[np.minimum(counts, 3).astype(np.int64)], 0.0)
    backoff = np.bincount(context, weights=counts - kept, minlength=n_contexts)
    return _Table(*(np.append(a, 0.0) for a in (kept, total, backoff)))


# ---- the model ----------------------------------------------------------------------------------


class Score(NamedTuple):
    """Held-out scores of a text (``NGramLM.evaluate``)."""

    nats: float  # mean -ln p per predicted token (inf if some token got probability 0)
    n_tokens: int  # predicted tokens (every token but <s>)
    n_bytes: int  # UTF-8 bytes of the text
    zero_probability: int  # tokens the model gave probability 0 (mle only)
    unknown: int  # tokens that are <unk>
    bits_per_byte: float | None  # None for lossy tokenizers: see NGramLM.evaluate

    @property
    def perplexity(self) -> float:
        return metrics.perplexity(self.nats)


class NGramLM:
    """An n-gram language model of order ``order`` over counts (see the module docstring).

    Build it with ``NGramLM.fit(text, tokenizer, order, smoothing)``, or from counts shared
    between models: ``NGramLM(count_ngrams(ids, V, 5), order=3, smoothing="kn")``.
    ``discount`` overrides Kneser-Ney's estimated discount (a number, or three for ``mkn``);
    ``k`` is add-k's pseudo-count.
    """

    def __init__(self, counts: NGramCounts, order: int, smoothing: str = "kn", *,
                 k: float = 1.0, discount: float | tuple[float, float, float] | None = None,
                 tokenizer: Tokenizer | None = None):
        check_order(order, counts.max_order)
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"unknown smoothing {smoothing!r}; choose one of {SMOOTHINGS}")
        if smoothing == "addk" and not k > 0:
            raise ValueError(f"add-k needs k > 0, got {k} (k = 0 is smoothing='mle')")
        self.counts, self.order, self.smoothing = counts, int(order), smoothing
        self.k, self.discount, self.tokenizer = float(k), discount, tokenizer
        V = counts.vocab_size
        self.predictable = np.ones(V, dtype=bool)  # every token but <s>
        if counts.bos_id is not None:
            self.predictable[counts.bos_id] = False
        self.tables = [self._make_table(m) for m in range(1, self.order + 1)]

    def _make_table(self, m: int) -> _Table:
        """Order m's table, cached on the counts: models of other orders share it."""
        kneser_ney = self.smoothing in ("kn", "mkn")
        use_cont = kneser_ney and m < self.order  # lower orders count contexts, not occurrences
        discount = None if self.discount is None else tuple(np.broadcast_to(self.discount, (3,)))
        key = (m, self.smoothing if kneser_ney else "counts", use_cont, discount)
        if key not in self.counts.tables:
            level = self.counts.levels[m - 1]
            n_contexts = 1 if m == 1 else len(self.counts.levels[m - 2].keys)
            discounts = None
            if kneser_ney and discount is None:
                cnt = level.continuations if use_cont else level.counts
                discounts = kn_discounts(cnt, modified=self.smoothing == "mkn")
            elif kneser_ney:
                if any(not 0 <= d <= c for d, c in zip(discount, (1, 2, 3))):
                    raise ValueError(f"discounts must lie in [0, 1], [0, 2], [0, 3]; got {discount}")
                discounts = np.array([0.0, *discount])
            self.counts.tables[key] = _table(level, n_contexts, self.counts.vocab_size,
                                             discounts, use_cont)
        return self.counts.tables[key]

    @classmethod
    def fit(cls, text: str, tokenizer: Tokenizer, order: int, smoothing: str = "kn",
            **options) -> NGramLM:
        """Count ``text`` (encoded by ``tokenizer``; sentences marked for a WordTokenizer) up
        to ``order`` and smooth; ``options`` go to the constructor (``k``, ``discount``)."""
        check_order(order)
        ids = encode(text, tokenizer)
        bos = tokenizer.bos_id if isinstance(tokenizer, WordTokenizer) else None
        counts = count_ngrams(ids, tokenizer.vocab_size, order, bos)
        return cls(counts, order, smoothing, tokenizer=tokenizer, **options)

    def variant(self, **changes) -> NGramLM:
        """The same counts with other settings: ``lm.variant(order=2, smoothing="addk")``."""
        settings = {"order": self.order, "smoothing": self.smoothing, "k": self.k,
                    "discount": self.discount, "tokenizer": self.tokenizer}
        return NGramLM(self.counts, **{**settings, **changes})

    def __repr__(self) -> str:
        return (f"NGramLM(order={self.order}, smoothing={self.smoothing!r}, "
                f"vocab_size={self.counts.vocab_size}, ngrams={self.num_ngrams:,})")

    @property
    def num_ngrams(self) -> int:
        """Distinct n-grams of orders 1..order the model stores (its "parameters")."""
        return self.counts.num_ngrams(self.order)

    # -- probabilities ---------------------------------------------------------------------------

    def _levels(self) -> range:
        """The orders whose counts the model uses: add-k only the top one."""
        return range(self.order, self.order + 1) if self.smoothing == "addk" else range(1, self.order + 1)

    def _combine(self, m: int, context: np.ndarray, gram: np.ndarray, tokens: np.ndarray,
                 lower: np.ndarray) -> np.ndarray:
        """p_m(token | context) from p_{m-1} (``lower``), for arrays of contexts, n-grams (ids,
        -1 when unseen) and tokens: the positions of a text, or a whole vocabulary."""
        t = self.tables[m - 1]
        total, kept = t.total[context], t.kept[gram]  # index -1 reads the trailing 0
        if self.smoothing == "addk":  # (c(hw) + k) / (c(h) + kV), over predictable tokens
            return (kept + self.k * self.predictable[tokens]) / (total + self.k * self.predictable.sum())
        seen = total > 0
        denom = np.where(seen, total, 1.0)
        if self.smoothing == "mle":
            p = kept / denom
        else:  # interpolated Kneser-Ney: discounted counts + set-aside mass x lower order
            p = (kept + t.backoff[context] * lower) / denom
        return np.where(seen, p, lower)  # an unseen context: the lower order alone

    def _uniform(self, tokens: np.ndarray) -> np.ndarray:
        return self.predictable[tokens] / self.predictable.sum()

    def log_probs(self, ids) -> np.ndarray:
        """``ln p(token | previous tokens)`` for every token of ``ids`` but ``<s>``, vectorised
        (the first tokens see as much context as there is)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        grams = self.counts.lookup(ids, self.order)  # grams[m-1][i]: m-gram ending at i
        contexts = [np.zeros(len(ids), dtype=np.int64)]  # the (m-1)-gram ending at i - 1
        contexts += [np.concatenate([[-1], g[:-1]]) for g in grams[:-1]]
        p = self._uniform(ids)
        for m in self._levels():
            p = self._combine(m, contexts[m - 1], grams[m - 1], ids, p)
        with np.errstate(divide="ignore"):
            return np.log(p[self.predictable[ids]])

    def next_probs(self, context_ids) -> np.ndarray:
        """The distribution of the next token after ``context_ids`` (a list of ids): an array
        of ``vocab_size`` probabilities summing to 1 (only the last order-1 ids matter)."""
        history = [int(i) for i in context_ids]
        V = self.counts.vocab_size
        tokens = np.arange(V)
        p = self._uniform(tokens)
        for m in self._levels():
            # the context of order m is the last m - 1 tokens, if there are that many
            c = self._gram_id(history[len(history) - (m - 1):]) if len(history) >= m - 1 else -1
            gram = find_keys(self.counts.levels[m - 1].keys, max(c, 0) * V + tokens,
                         valid=np.full(V, c >= 0))
            p = self._combine(m, np.full(V, c), gram, tokens, p)
        return p

    def _gram_id(self, tokens: list[int]) -> int:
        """Id of the n-gram ``tokens`` in the counts (0 for the empty one), or -1 if unseen."""
        if not tokens:
            return 0
        if any(not 0 <= t < self.counts.vocab_size for t in tokens):
            raise ValueError(f"token ids must lie in 0..{self.counts.vocab_size - 1}, got {tokens}")
        return int(self.counts.lookup(np.array(tokens), len(tokens))[-1][-1])

    # -- text in, text out -----------------------------------------------------------------------

    def _require_tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer: build it with NGramLM.fit(text, "
                             "tokenizer, ...) or pass tokenizer= to NGramLM(...)")
        return self.tokenizer

    def context_ids(self, context: str) -> list[int]:
        """The ids the model conditions on after ``context``: for words, the sentence so far
        after ``<s>`` (unknown words become ``<unk>``); cut to the last order-1 tokens."""
        tok = self._require_tokenizer()
        if isinstance(tok, WordTokenizer):
            ids = encode(context, tok) if context.strip() else [tok.bos_id]
            if ids[-1] == tok.eos_id and len(ids) > 1:
                ids = ids[:-1]  # the context's last sentence is still open
        else:
            ids = tok.encode(context)
        return ids[len(ids) - (self.order - 1):] if self.order > 1 else []

    def context_used(self, context: str) -> list[str]:
        """The last order-1 tokens of ``context``, as the model sees them."""
        tok = self._require_tokenizer()
        return [tok.itos[i] for i in self.context_ids(context)]

    def next_distribution(self, context: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` likeliest next tokens after ``context``, with their probabilities."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        tok = self._require_tokenizer()
        p = self.next_probs(self.context_ids(context))
        top = np.argsort(-p, kind="stable")[:k]
        return [(tok.itos[i], float(p[i])) for i in top]

    def prob(self, token: str, context: str = "") -> float:
        """``p(token | context)``; ``token`` must be in the vocabulary."""
        tok = self._require_tokenizer()
        if token not in tok.stoi:
            unk = ("; unknown words are all '<unk>': ask for prob('<unk>', ...)"
                   if isinstance(tok, WordTokenizer) else "")
            raise ValueError(f"{token!r} is not in the vocabulary ({tok.vocab_size} tokens){unk}")
        return float(self.next_probs(self.context_ids(context))[tok.stoi[token]])

    def evaluate(self, text: str) -> Score:
        """Score held-out ``text``: mean nats per predicted token, and bits per byte.

        ``bits_per_byte`` is None for a WordTokenizer: it predicts ``<unk>`` instead of the
        word's spelling and drops case and spacing, so its cost does not pay for every byte.
        """
        tok = self._require_tokenizer()
        if not text:
            raise ValueError("nothing to score: the text is empty")
        ids = encode(text, tok)
        logp = self.log_probs(ids)
        if len(logp) == 0:
            raise ValueError("nothing to score: the text has no tokens to predict")
        nats = float(-logp.mean())
        n_bytes = len(text.encode("utf-8"))
        lossless = isinstance(tok, CharTokenizer) and tok.unk is None
        bpb = metrics.bits_per_byte(nats, len(logp), n_bytes) if lossless else None
        unknown = int(np.sum(np.asarray(ids) == tok.unk_id)) if isinstance(tok, WordTokenizer) else 0
        return Score(nats, len(logp), n_bytes, int(np.isinf(logp).sum()), unknown, bpb)

    def generate(self, context: str = "", n_tokens: int = 30, seed: int = 0) -> str:
        """Sample ``n_tokens`` tokens after ``context``, one at a time from ``next_probs``.
        Word samples are joined with spaces, without the sentence markers."""
        tok = self._require_tokenizer()
        rng = np.random.default_rng(seed)
        history = self.context_ids(context) if self.order > 1 else []
        out: list[int] = []
        for _ in range(n_tokens):
            p = self.next_probs(history)
            nxt = int(rng.choice(len(p), p=p / p.sum()))
            out.append(nxt)
            history = (history + [nxt])[-(self.order - 1):] if self.order > 1 else []
            if isinstance(tok, WordTokenizer) and nxt == tok.eos_id and self.order > 1:
                history = (history + [tok.bos_id])[-(self.order - 1):]
        if isinstance(tok, WordTokenizer):
            return " ".join(tok.itos[i] for i in out if i not in (tok.bos_id, tok.eos_id))
        return tok.decode(out)


def encode(text: str, tokenizer: Tokenizer) -> list[int]:
    """``text`` as the ids an n-gram model reads: words with ``<s>`` ... ``</s>`` around each
    sentence, or characters."""
    if isinstance(tokenizer, WordTokenizer):
        return tokenizer.encode(text, sentence_boundaries=True)
    return tokenizer.encode(text)
