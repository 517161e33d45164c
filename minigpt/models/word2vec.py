"""word2vec: skip-gram and CBOW with negative sampling, and how to evaluate word vectors.

Mikolov et al. (2013) learn one dense vector per word from nothing but which words occur near
which. Skip-gram predicts each word's neighbours from the word; CBOW predicts a word from the
mean of its neighbours. Instead of a softmax over the whole vocabulary, *negative sampling*
turns each prediction into a few binary questions: is this (word, context) pair real, or is
the context drawn from a noise distribution?

    >>> from minigpt.data import corpora
    >>> from minigpt.models import word2vec as w2v
    >>> from minigpt.train.trainer import TrainConfig, Trainer
    >>> sents = w2v.corpus_sentences(corpora.load_corpus("wiki"))      # lists of lowercase words
    >>> cfg = w2v.Word2VecConfig(epochs=5)
    >>> batches = w2v.Word2VecBatches.from_sentences(sents, cfg)    # vocabulary + get_batch
    >>> model = w2v.Word2Vec(batches.vocab.vocab_size, cfg.dim)
    >>> settings = TrainConfig(**w2v.train_config_kwargs(cfg, batches.steps()))
    >>> Trainer(model, batches, settings, loss_fn=w2v.batch_loss).fit()     # doctest: +SKIP
    >>> vectors = w2v.WordVectors.from_model(model, batches.vocab)
    >>> vectors.neighbours("king", k=5)                                     # doctest: +SKIP
    >>> w2v.evaluate_similarity(vectors, corpora.load_benchmark("wordsim353"))  # doctest: +SKIP
    >>> peer = w2v.train_gensim(sents, cfg)      # the same run in gensim   # doctest: +SKIP

The pieces, each a plain function the tests check on its own:

- ``keep_probabilities``: frequent-word subsampling (word2vec.c's formula, as gensim uses it);
- ``noise_distribution``: the unigram distribution raised to 3/4, for drawing negatives;
- ``skipgram_pairs`` / ``cbow_examples``: (input, target) examples with a dynamic window (each
  centre word draws its window size from 1..window, so near neighbours count more);
- ``sgns_loss`` and the ``Word2Vec`` module; ``Word2VecBatches`` feeds the course's one
  ``train.Trainer`` (with a ``loss_fn``), which runs Adam over many pairs per step;
- ``WordVectors``: cosine neighbours and analogies by vector arithmetic (3CosAdd), for our
  vectors and gensim's alike; ``evaluate_similarity`` (Spearman's rho against human scores),
  ``evaluate_analogies`` (accuracy on in-vocabulary questions), ``pca_2d`` and
  ``plot_word_groups``.

Left out on purpose: hierarchical softmax, subword vectors (fastText), phrase detection,
Hogwild-style lock-free SGD, and streaming corpora bigger than memory. We train with Adam on
large batches rather than word2vec's per-pair SGD with a linearly decaying rate: on a CPU,
torch is fast on big tensor operations and slow on millions of tiny ones.
"""

from __future__ import annotations

import difflib
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.data.corpora import UnknownNameError
from minigpt.data.tokenizers import WordTokenizer, sentences

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "AnalogyResult", "SimilarityResult", "Word2Vec", "Word2VecBatches", "Word2VecConfig",
    "Word2VecRun", "WordVectors", "batch_loss", "build_vocab", "cbow_examples",
    "corpus_sentences", "corpus_words", "encode_sentences", "evaluate_analogies",
    "evaluate_similarity", "keep_probabilities", "noise_distribution", "parse_analogy",
    "pca_2d", "plot_word_groups", "sgns_loss", "skipgram_pairs", "train_config_kwargs",
    "train_gensim",
]

MAX_SENTENCE = 10_000  # gensim ignores words past this in a sentence; we cut sentences there
_WORD = re.compile(r"\w")


# ---- corpus and vocabulary ---------------------------------------------------------------------


def corpus_sentences(text: str, max_len: int = MAX_SENTENCE) -> list[list[str]]:
    """``text`` as sentences of lowercase words (``tokenizers.sentences``), punctuation dropped,
    sentences longer than ``max_len`` words cut into pieces. Give the same list to
    ``Word2VecBatches.from_sentences`` and ``train_gensim`` and both see exactly the same corpus."""
    if not text.strip():
        raise ValueError("the text is empty: give word2vec some text, e.g. "
                         "minigpt.data.corpora.load_corpus('wiki')")
    out = []
    for sentence in sentences(text):
        words = [w for w in sentence if _WORD.match(w)]
        out += [words[i:i + max_len] for i in range(0, len(words), max_len)]
    return out


def build_vocab(sents: Iterable[Sequence[str]], min_count: int = 5) -> WordTokenizer:
    """A ``WordTokenizer`` over the words seen at least ``min_count`` times, most frequent
    first. Ids 0-2 are its special tokens, which word2vec never trains; ``counts`` holds every
    word's frequency (rare ones too)."""
    counts = Counter(w for s in sents for w in s)
    kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    if not kept:
        raise ValueError(f"no word occurs min_count={min_count} times in {sum(counts.values())} "
                         "words: use more text or a lower min_count")
    return WordTokenizer([*WordTokenizer.SPECIALS, *kept], counts)


def encode_sentences(sents: Iterable[Sequence[str]], vocab: WordTokenizer
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Every in-vocabulary word as one flat id array, and beside it the index of the sentence
    it came from (windows never cross sentences). Rare words are dropped, as in word2vec.c."""
    ids, sent_ids = [], []
    for i, sentence in enumerate(sents):
        encoded = [t for t in vocab.encode_words(sentence) if t != vocab.unk_id]
        ids += encoded
        sent_ids += [i] * len(encoded)
    return np.array(ids, dtype=np.int64), np.array(sent_ids, dtype=np.int64)


def _word_counts(vocab: WordTokenizer) -> np.ndarray:
    """(V,) count of each id; 0 for the special tokens."""
    return np.array([0 if w in vocab.SPECIALS else vocab.counts[w] for w in vocab.itos], float)


# ---- subsampling, noise, windows ---------------------------------------------------------------


def keep_probabilities(counts: np.ndarray, sample: float = 1e-3) -> np.ndarray:
    """The chance that each occurrence of a word survives subsampling.

    With ``z = count / total`` the word's share of the corpus, word2vec.c (and gensim) keep it
    with probability ``(sqrt(z / sample) + 1) * sample / z``, capped at 1. Words rarer than
    about ``sample`` always stay; "the" (6% of English text) keeps about 1 occurrence in 6.
    (The paper's ``1 - sqrt(t / f)`` discard rule is close to this.) ``sample=0`` keeps all.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.sum() <= 0:
        raise ValueError("counts sum to zero: there are no words to subsample")
    if sample <= 0:
        return np.where(counts > 0, 1.0, 0.0)
    z = counts / counts.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = (np.sqrt(z / sample) + 1) * sample / z
    return np.where(counts > 0, np.minimum(keep, 1.0), 0.0)


def noise_distribution(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """Probabilities to draw negatives from: ``count ** power``, normalised. ``power=1`` is
    the unigram distribution; 3/4 (Mikolov et al.) flattens it, so rare words are drawn more
    often than their frequency and "the" less."""
    weights = np.asarray(counts, dtype=float) ** power * (np.asarray(counts) > 0)
    if weights.sum() <= 0:
        raise ValueError("counts sum to zero: no word to draw negatives from")
    return weights / weights.sum()


def _windows(n: int, window: int, rng: np.random.Generator) -> np.ndarray:
    """Dynamic window: each position's reach, drawn uniformly from 1..window."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return rng.integers(1, window + 1, size=n)


def skipgram_pairs(ids: np.ndarray, sent_ids: np.ndarray, window: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Every (centre, context) pair of one pass: context within the centre's dynamic window,
    in the same sentence. Returns two (P,) id arrays, in order of offset (shuffle them)."""
    reach = _windows(len(ids), window, rng)
    centres, contexts = [], []
    for offset in range(1, window + 1):
        same = sent_ids[:-offset] == sent_ids[offset:]  # (n - offset,) left i, right i + offset
        right = same & (reach[:-offset] >= offset)  # centre i sees i + offset
        left = same & (reach[offset:] >= offset)  # centre i + offset sees i
        centres += [ids[:-offset][right], ids[offset:][left]]
        contexts += [ids[offset:][right], ids[:-offset][left]]
    return np.concatenate(centres), np.concatenate(contexts)


def cbow_examples(ids: np.ndarray, sent_ids: np.ndarray, window: int,
                  rng: np.random.Generator, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CBOW examples of one pass: (N, 2 * window) context ids, ``pad_id`` where the dynamic
    window or the sentence ends, and the (N,) centre words. Centres with no context are
    dropped."""
    n = len(ids)
    reach = _windows(n, window, rng)
    contexts = np.full((n, 2 * window), pad_id, dtype=np.int64)
    for j, offset in enumerate([o for o in range(-window, window + 1) if o != 0]):
        pos = np.arange(n) + offset
        inside = (pos >= 0) & (pos < n)
        ok = inside.copy()
        ok[inside] = (sent_ids[pos[inside]] == sent_ids[inside]) & (reach[inside] >= abs(offset))
        contexts[ok, j] = ids[pos[ok]]
    has_context = (contexts != pad_id).any(axis=1)
    return contexts[has_context], ids[has_context]


# ---- the model ---------------------------------------------------------------------------------


def sgns_loss(inputs: Tensor, targets: Tensor, negatives: Tensor) -> Tensor:
    """The negative-sampling loss, averaged over the batch.

    ``inputs`` (B, d): the centre word's input vector (CBOW: the context mean); ``targets``
    (B, d): the output vector of the word to predict; ``negatives`` (B, K, d): output vectors
    of K noise words. Per example: ``-log σ(u_t·v) - Σ_k log σ(-u_k·v)``.
    """
    pos = (inputs * targets).sum(-1)  # (B,)
    neg = torch.bmm(negatives, inputs.unsqueeze(-1)).squeeze(-1)  # (B, K)
    return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean()


class Word2Vec(nn.Module):
    """Two embedding tables: ``inp`` (the word vectors we keep) and ``out`` (context vectors).

    ``forward(inputs, targets, negatives)`` returns the loss: ``inputs`` is (B,) centre ids for
    skip-gram, or (B, C) context ids padded with 0 for CBOW (their mean is used); ``targets``
    (B,) and ``negatives`` (B, K) are ids. Id 0 (``<unk>``) is a padding row that stays zero.
    Initialised as word2vec.c: small uniform input vectors, zero output vectors.
    """

    def __init__(self, vocab_size: int, dim: int = 100):
        super().__init__()
        self.inp = nn.Embedding(vocab_size, dim)
        self.out = nn.Embedding(vocab_size, dim)
        with torch.no_grad():
            self.inp.weight.uniform_(-0.5 / dim, 0.5 / dim)
            self.out.weight.zero_()

    def forward(self, inputs: Tensor, targets: Tensor, negatives: Tensor) -> Tensor:
        v = _rows(self.inp.weight, inputs)  # (B, d) or (B, C, d)
        if inputs.dim() == 2:  # CBOW: the mean of the real (non-padding) context vectors
            real = (inputs != 0).unsqueeze(-1).to(v.dtype)  # (B, C, 1)
            v = (v * real).sum(1) / real.sum(1).clamp(min=1)  # (B, d)
        return sgns_loss(v, _rows(self.out.weight, targets), _rows(self.out.weight, negatives))


def _rows(weight: Tensor, ids: Tensor) -> Tensor:
    """``weight[ids]``, shaped ``(*ids.shape, d)``. Same as ``nn.Embedding``'s lookup, but
    ``index_select``'s backward (an ``index_add``) is about 1.5x faster on a CPU."""
    return weight.index_select(0, ids.reshape(-1)).view(*ids.shape, weight.shape[1])


@dataclass
class Word2VecConfig:
    """Hyperparameters of a run, ours or gensim's (``train_gensim``); gensim's names."""

    dim: int = 100  # vector size
    window: int = 5  # largest distance between a word and its context
    negative: int = 5  # noise words per positive pair
    min_count: int = 5  # rarer words are dropped
    sample: float = 1e-3  # subsampling threshold (0: keep every word)
    epochs: int = 5  # passes over the corpus
    cbow: bool = False  # CBOW instead of skip-gram
    ns_exponent: float = 0.75  # power of the noise distribution
    batch_size: int = 4096  # examples per optimizer step (ours only)
    lr: float = 1e-2  # Adam's peak learning rate (ours only; gensim's SGD starts at 0.025)
    seed: int = 0


class Word2VecBatches:
    """The ``get_batch`` for ``train.Trainer``: ``batches("train") -> (inputs, targets,
    negatives)``. Each pass over the corpus redraws the subsampling and the windows, shuffles
    the examples, and serves them ``batch_size`` at a time with fresh negatives."""

    def __init__(self, ids: np.ndarray, sent_ids: np.ndarray, counts: np.ndarray,
                 config: Word2VecConfig):
        if len(ids) < 2:
            raise ValueError(f"{len(ids)} in-vocabulary words: too few to make word pairs. "
                             "Use more text, or a lower min_count")
        self.ids, self.sent_ids, self.config = ids, sent_ids, config
        self.vocab: WordTokenizer | None = None  # set by from_sentences
        self.keep = keep_probabilities(counts, config.sample)
        self.noise_cdf = np.cumsum(noise_distribution(counts, config.ns_exponent))
        self.rng = np.random.default_rng(config.seed)
        self.epoch, self._pos = 0, 0
        self._inputs, self._targets = self._make_epoch()

    @classmethod
    def from_sentences(cls, sents: Sequence[Sequence[str]], config: Word2VecConfig
                       ) -> Word2VecBatches:
        """Build the vocabulary (``batches.vocab``) and encode ``sents``, then batch them."""
        corpus_words(sents)  # a clear error for an empty corpus
        vocab = build_vocab(sents, config.min_count)
        batches = cls(*encode_sentences(sents, vocab), _word_counts(vocab), config)
        batches.vocab = vocab
        return batches

    def steps(self, epochs: int | None = None) -> int:
        """Optimizer steps for ``epochs`` passes (default ``config.epochs``), sized from the
        first pass's number of examples."""
        epochs = self.config.epochs if epochs is None else epochs
        return max(1, -(-self.examples_per_epoch() * epochs // self.config.batch_size))

    def _make_epoch(self) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        kept = self.rng.random(len(self.ids)) < self.keep[self.ids]
        ids, sent_ids = self.ids[kept], self.sent_ids[kept]
        if cfg.cbow:
            inputs, targets = cbow_examples(ids, sent_ids, cfg.window, self.rng)
        else:
            inputs, targets = skipgram_pairs(ids, sent_ids, cfg.window, self.rng)
        order = self.rng.permutation(len(targets))
        return inputs[order], targets[order]

    def examples_per_epoch(self) -> int:
        """Examples in the current pass (each pass varies a little: subsampling is random)."""
        return len(self._targets)

    def __call__(self, split: str = "train") -> tuple[Tensor, Tensor, Tensor]:
        b = self.config.batch_size
        if self._pos >= len(self._targets):
            self.epoch += 1
            self._inputs, self._targets = self._make_epoch()
            self._pos = 0
        sl = slice(self._pos, self._pos + b)
        inputs, targets = self._inputs[sl], self._targets[sl]
        self._pos += b
        u = self.rng.random((len(targets), self.config.negative))
        negatives = np.searchsorted(self.noise_cdf, u, side="right")  # (B, K) draws from noise
        negatives = np.minimum(negatives, len(self.noise_cdf) - 1)  # guard against rounding
        return torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(negatives)


# ---- word vectors and their evaluation ---------------------------------------------------------


class WordVectors:
    """Words and their vectors, with cosine neighbours and analogies.

    ``vectors`` is (V, d), row i for ``words[i]``. Build from our model with
    ``WordVectors.from_model`` or from gensim with ``WordVectors.from_gensim``.
    """

    def __init__(self, words: Sequence[str], vectors: np.ndarray):
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(words) != len(vectors) or not len(words):
            raise ValueError(f"need one vector per word, got {len(words)} words and "
                             f"vectors of shape {vectors.shape}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.vectors = vectors
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.unit = vectors / np.maximum(norms, 1e-12)  # (V, d), rows of length 1

    @classmethod
    def from_model(cls, model: Word2Vec, vocab: WordTokenizer) -> WordVectors:
        """The input vectors of ``model``, special tokens left out."""
        weight = model.inp.weight.detach().cpu().numpy()
        n = len(vocab.SPECIALS)
        return cls(vocab.itos[n:], weight[n:])

    @classmethod
    def from_gensim(cls, keyed_vectors) -> WordVectors:
        """gensim's ``model.wv`` (a ``KeyedVectors``)."""
        return cls(list(keyed_vectors.index_to_key), keyed_vectors.vectors)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __repr__(self) -> str:
        return f"WordVectors({len(self)} words, dim={self.vectors.shape[1]})"

    def _id(self, word: str) -> int:
        if word in self.index:
            return self.index[word]
        close = difflib.get_close_matches(word.lower(), self.words[:20_000], n=3)
        hint = f" Close ones that are: {', '.join(close)}." if close else ""
        raise UnknownNameError(
            f"{word!r} is not in the vocabulary ({len(self):,} words, lowercase, each seen at "
            f"least min_count times in the training text).{hint} Try a more frequent word.")

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two words' vectors, in [-1, 1]."""
        return float(self.unit[self._id(a)] @ self.unit[self._id(b)])

    def _nearest(self, query: np.ndarray, exclude: set[int], k: int) -> list[tuple[str, float]]:
        scores = self.unit @ (query / max(float(np.linalg.norm(query)), 1e-12))  # (V,)
        scores[list(exclude)] = -np.inf
        top = np.argsort(-scores)[:min(k, len(scores) - len(exclude))]
        return [(self.words[i], float(scores[i])) for i in top]

    def neighbours(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` words whose vectors are closest in cosine to ``word``'s, with scores."""
        i = self._id(word)
        return self._nearest(self.unit[i], {i}, k)

    def analogy(self, a: str, b: str, c: str, k: int = 5) -> list[tuple[str, float]]:
        """a is to b as c is to ?: the words nearest ``b - a + c`` (unit vectors; 3CosAdd as in
        gensim's ``most_similar(positive=[b, c], negative=[a])``), a, b and c excluded."""
        ia, ib, ic = (self._id(w) for w in (a, b, c))
        return self._nearest(self.unit[ib] - self.unit[ia] + self.unit[ic], {ia, ib, ic}, k)


def parse_analogy(query: str) -> tuple[str, str, str]:
    """``"man:king::woman"`` (or ``"man king woman"``, a trailing ``:?`` allowed) ->
    ``("man", "king", "woman")``, lowercased."""
    words = [w for w in re.split(r"[\s:]+", query.strip().lower().rstrip("?").strip(": "))
             if w]
    if len(words) != 3:
        raise ValueError(f"{query!r} is not an analogy: write a:b::c (e.g. man:king::woman), "
                         "three words meaning 'a is to b as c is to ?'")
    return words[0], words[1], words[2]


class SimilarityResult(NamedTuple):
    spearman: float  # rank correlation of cosine similarities with human scores
    pairs: int  # pairs with both words in the vocabulary (the others are skipped)
    total: int


class AnalogyResult(NamedTuple):
    accuracy: float  # share of in-vocabulary questions answered right (top 1)
    correct: int
    questions: int  # questions with all four words in the vocabulary
    total: int


def evaluate_similarity(vectors: WordVectors, pairs: Sequence[tuple[str, str, float]]
                        ) -> SimilarityResult:
    """Spearman's rho between cosine similarity and human scores over the pairs whose words
    are both known (as gensim's ``evaluate_word_pairs``); the others are counted, not scored."""
    from scipy.stats import spearmanr

    known = [(a, b, s) for a, b, s in pairs if a in vectors and b in vectors]
    if len(known) < 3:
        raise ValueError(f"only {len(known)} of {len(pairs)} pairs have both words in the "
                         "vocabulary: train on more text or lower min_count")
    ours = [vectors.similarity(a, b) for a, b, _ in known]
    rho = spearmanr(ours, [s for *_, s in known]).statistic
    return SimilarityResult(float(rho), len(known), len(pairs))


def evaluate_analogies(vectors: WordVectors, questions: dict[str, list] | Sequence,
                       batch: int = 1024) -> AnalogyResult:
    """Top-1 accuracy of ``analogy(a, b, c)`` on the questions whose four words are all known
    (``questions`` as ``corpora.load_benchmark("questions-words")`` gives them, or a flat list)."""
    flat = [q for qs in questions.values() for q in qs] if isinstance(questions, dict) \
        else list(questions)
    known = [q for q in flat if all(w in vectors for w in q)]
    if not known:
        return AnalogyResult(0.0, 0, 0, len(flat))
    idx = np.array([[vectors.index[w] for w in q] for q in known])  # (Q, 4)
    unit = vectors.unit
    correct = 0
    for s in range(0, len(idx), batch):
        a, b, c, d = idx[s:s + batch].T
        query = unit[b] - unit[a] + unit[c]  # (q, d)
        query /= np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
        scores = query @ unit.T  # (q, V)
        rows = np.arange(len(a))
        scores[rows, a] = scores[rows, b] = scores[rows, c] = -np.inf
        correct += int((scores.argmax(1) == d).sum())
    return AnalogyResult(correct / len(known), correct, len(known), len(flat))


def pca_2d(x: np.ndarray) -> np.ndarray:
    """(n, d) -> (n, 2): the points projected on their two directions of largest variance."""
    x = np.asarray(x, dtype=float)
    centred = x - x.mean(0)
    _u, _s, vt = np.linalg.svd(centred, full_matrices=False)  # rows of vt: principal axes
    return centred @ vt[:2].T


def plot_word_groups(vectors: WordVectors, groups: dict[str, Sequence[str]],
                     ax: Axes | None = None) -> Axes:
    """Scatter the words of each group (one colour a group) on the 2-D PCA of their vectors.
    Unknown words are left out (and named in the title)."""
    import matplotlib.pyplot as plt

    found = {g: [w for w in ws if w in vectors] for g, ws in groups.items()}
    missing = [w for g, ws in groups.items() for w in ws if w not in vectors]
    words = [w for ws in found.values() for w in ws]
    if len(words) < 2:
        raise ValueError("fewer than two of these words are in the vocabulary")
    xy = pca_2d(np.stack([vectors.vectors[vectors.index[w]] for w in words]))
    if ax is None:
        _fig, ax = plt.subplots(figsize=(8, 6))
    start = 0
    for group, ws in found.items():
        pts = xy[start:start + len(ws)]
        ax.scatter(pts[:, 0], pts[:, 1], label=group, s=25)
        for (px, py), w in zip(pts, ws):
            ax.annotate(w, (px, py), fontsize=9, xytext=(3, 3), textcoords="offset points")
        start += len(ws)
    ax.set_xlabel("first principal component")
    ax.set_ylabel("second principal component")
    ax.set_title("word vectors, 2-D PCA" + (f" (not in vocabulary: {', '.join(missing)})"
                                            if missing else ""))
    ax.legend()
    return ax


# ---- training: ours with the Trainer, gensim's as the peer -------------------------------------


@dataclass
class Word2VecRun:
    """What a training run gives back: the vectors, and how long it took."""

    vectors: WordVectors
    seconds: float  # training only (vocabulary building not included)
    words: int  # corpus words in one pass (rare ones included)
    epochs: int
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def words_per_second(self) -> float:
        """Corpus words per second of training (the same count for every trainer)."""
        return self.words * self.epochs / self.seconds


def corpus_words(sents: Sequence[Sequence[str]]) -> int:
    """Words in the corpus, rare ones included: the numerator of words per second."""
    total = sum(len(s) for s in sents)
    if total == 0:
        raise ValueError("the corpus has no words: give word2vec some sentences, e.g. "
                         "corpus_sentences(minigpt.data.corpora.load_corpus('wiki'))")
    return total


def batch_loss(model: Word2Vec, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """The ``loss_fn`` for ``train.Trainer``: the model's loss on one batch of examples."""
    return model(*batch)


def train_config_kwargs(config: Word2VecConfig, steps: int) -> dict:
    """The settings word2vec trains with, as keyword arguments for ``train.TrainConfig``
    (this module sits below ``train`` in the course's layers, so it cannot build one).

    Adam at ``config.lr``, a short warmup (2% of the steps), then a cosine decay to zero like
    word2vec's linear decay. No weight decay: it would shrink every vector, including those of
    words absent from the batch. No gradient clipping, no evaluation passes (we evaluate the
    vectors on benchmarks instead), always the CPU (the tables are small)."""
    return {"max_steps": steps, "lr": config.lr, "min_lr_ratio": 0.0,
            "warmup_steps": max(1, steps // 50), "weight_decay": 0.0, "grad_clip": None,
            "eval_interval": 0, "device": "cpu", "seed": config.seed}


def train_gensim(sents: Sequence[Sequence[str]], config: Word2VecConfig | None = None,
                 workers: int = 2) -> Word2VecRun:
    """The same run in gensim's ``Word2Vec`` (C code, SGD, ``workers`` threads), as a peer.
    ``batch_size`` and ``lr`` do not apply: gensim updates after every pair."""
    from gensim.models import Word2Vec as GensimWord2Vec

    cfg = config or Word2VecConfig()
    words = corpus_words(sents)
    model = GensimWord2Vec(vector_size=cfg.dim, window=cfg.window, negative=cfg.negative,
                           min_count=cfg.min_count, sample=cfg.sample, sg=0 if cfg.cbow else 1,
                           ns_exponent=cfg.ns_exponent, workers=workers, seed=cfg.seed)
    model.build_vocab(sents)
    start = time.perf_counter()
    model.train(sents, total_examples=len(sents), epochs=cfg.epochs)
    seconds = time.perf_counter() - start
    return Word2VecRun(WordVectors.from_gensim(model.wv), seconds, words, cfg.epochs, model)
