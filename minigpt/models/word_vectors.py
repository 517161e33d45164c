"""Word vectors and what they know: ``WordVectors`` (cosine neighbours, analogies by vector
arithmetic, 3CosAdd), the benchmark evaluations (word similarity against human scores, the
Google analogies) and a 2-D PCA picture of word groups. Vectors come from our word2vec
(``WordVectors.from_model``) or gensim's (``from_gensim``), so chapter 02 compares the two on
one scale."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from torch import nn

from minigpt.data.corpora import UnknownNameError
from minigpt.data.tokenizers import WordTokenizer

if TYPE_CHECKING:
    from matplotlib.axes import Axes


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
    def from_model(cls, model: nn.Module, vocab: WordTokenizer) -> WordVectors:
        """The input vectors of ``model`` (a ``minigpt.models.word2vec.Word2Vec``), special
        tokens left out."""
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
