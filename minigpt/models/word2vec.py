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
    >>> vectors = WordVectors.from_model(model, batches.vocab)    # minigpt.models.word_vectors
    >>> vectors.neighbours("king", k=5)                                     # doctest: +SKIP
    >>> peer = w2v.train_gensim(sents, cfg)      # the same run in gensim   # doctest: +SKIP

The pieces, each a plain function the tests check on its own:

- ``keep_probabilities``: frequent-word subsampling (word2vec.c's formula, as gensim uses it);
- ``noise_distribution``: the unigram distribution raised to 3/4, for drawing negatives;
- ``skipgram_pairs`` / ``cbow_examples``: (input, target) examples with a dynamic window (each
  centre word draws its window size from 1..window, so near neighbours count more);
- ``sgns_loss`` and the ``Word2Vec`` module; ``Word2VecBatches`` feeds the course's one
  ``train.Trainer`` (with a ``loss_fn``), which runs Adam over many pairs per step;
- ``Word2VecRun`` and ``train_gensim``: gensim's run of the same settings, the peer.

What the vectors know (neighbours, analogies, the benchmarks, a PCA picture) is measured in
``minigpt.models.word_vectors``, for our vectors and gensim's alike.

Left out on purpose: hierarchical softmax, subword vectors (fastText), phrase detection,
Hogwild-style lock-free SGD, and streaming corpora bigger than memory. We train with Adam on
large batches rather than word2vec's per-pair SGD with a linearly decaying rate: on a CPU,
torch is fast on big tensor operations and slow on millions of tiny ones.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.data.tokenizers import WordTokenizer, sentences
from minigpt.models.word_vectors import WordVectors

__all__ = [
    "Word2Vec", "Word2VecBatches", "Word2VecConfig", "Word2VecRun", "batch_loss",
    "build_vocab", "cbow_examples", "corpus_sentences", "corpus_words", "encode_sentences",
    "keep_probabilities", "noise_distribution", "sgns_loss", "skipgram_pairs",
    "train_config_kwargs", "train_gensim",
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
    (B,) and ``negatives`` (B, K) are ids. Id 0 (``<unk>``) doubles as CBOW's padding: the context
    mean leaves it out (its row is an ordinary, trained row otherwise).
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
