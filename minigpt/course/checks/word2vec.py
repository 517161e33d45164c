"""Checks for exercises/02_word2vec.ipynb: subsampling, CBOW's negative-sampling loss over
padded context windows, cosine similarity and analogies by vector arithmetic.

Each check compares the learner's function with ``minigpt.models.word2vec`` on inputs chosen to catch
the usual mistakes (the discard instead of the keep probability, a missing cap, pads counted in
the context mean, a sum instead of a mean, a sign slip on the noise words, answering with one of
the question's words).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from minigpt.course.checks._base import _number, matching_tip
from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.models import word2vec as w2v
from minigpt.models import word_vectors

__all__ = ["check_analogy", "check_cbow_loss", "check_keep_probability"]


def check_keep_probability(keep_probability: Callable[[int, int, float], float]) -> None:
    """Task: ``keep_probability(count, total, sample)``: the chance an occurrence survives."""
    task = "Task 1 (keep_probability)"
    hint = "z = count / total; keep (sqrt(z / sample) + 1) * sample / z, and never more than 1."
    cases = [(60_000, 1_000_000, 1e-3), (5_000, 1_000_000, 1e-3), (300, 1_000_000, 1e-3),
             (20, 1_000_000, 1e-3), (60_000, 1_000_000, 1e-4)]
    for count, total, sample in cases:
        got = _call(task, hint, keep_probability, count, total, sample)
        want = float(w2v.keep_probabilities(np.array([count, total - count]), sample)[0])
        if got is None or not math.isclose(float(got), want, rel_tol=1e-6):
            tip = ""
            if got is not None and math.isclose(float(got), 1 - want, rel_tol=1e-6):
                tip = " That is the chance to *discard* it: return 1 minus that."
            elif got is not None and float(got) > 1:
                tip = " A probability is at most 1: cap it with min(..., 1.0)."
            elif got is not None and math.isclose(float(got), min(1.0, math.sqrt(sample * total / count)),
                                                  rel_tol=1e-6):
                tip = (" That is the paper's sqrt(sample / z); word2vec.c (and gensim) keep "
                       "(sqrt(z / sample) + 1) * sample / z, a little more.")
            elif got is not None and math.isclose(
                    float(got), min(1.0, (math.sqrt(count / sample) + 1) * sample / count), rel_tol=1e-6):
                tip = " z is the word's share of the corpus: count / total, not the count."
            raise AssertionError(f"{task}: keep_probability({count}, {total}, {sample}) returned "
                                 f"{got}, expected {want:.6f}.{tip}")
    the = float(w2v.keep_probabilities(np.array([60_000, 940_000]), 1e-3)[0])
    _passed(task, f"a word that is 6% of the text (like 'the') keeps {the:.0%} of its occurrences; "
                  "rare words keep them all")


# ---- Task 2: CBOW's loss over padded context windows ------------------------------------------

# (B, W, K, d, V, pad_id): batch, padded window width, noise words, vector size, vocabulary, the
# padding id. Row 0 of every batch has one real context word and row 1 none padded; the last
# batch pads with id 7, so there id 0 is a real word.
_CBOW_CASES = [(1, 2, 1, 3, 7, 0), (6, 4, 3, 8, 20, 0), (16, 10, 5, 6, 50, 0), (8, 6, 4, 5, 12, 7)]


def _cbow_batch(b: int, width: int, k: int, d: int, vocab: int, pad_id: int, seed: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Random tables (the padding row too: it must not count) and ids for one CBOW batch.

    Returns ``(inp, out, contexts, centres, negatives, pad_id)``: (V, d), (V, d), (B, W),
    (B,), (B, K). Each row of ``contexts`` keeps 1..W real words at random places, ``pad_id``
    elsewhere (``cbow_examples`` pads at the window's ends; a mask must not care where)."""
    gen = torch.Generator().manual_seed(seed)
    inp, out = (0.5 * torch.randn(vocab, d, generator=gen) for _ in range(2))
    words = torch.tensor([i for i in range(vocab) if i != pad_id])

    def draw(*shape: int) -> torch.Tensor:
        return words[torch.randint(len(words), shape, generator=gen)]

    contexts = torch.full((b, width), pad_id, dtype=torch.int64)
    for row in range(b):
        n_real = [1, width][row] if row < 2 else int(torch.randint(1, width + 1, (), generator=gen))
        places = torch.randperm(width, generator=gen)[:n_real]
        contexts[row, places] = draw(n_real)
    return inp, out, contexts, draw(b), draw(b, k), pad_id


def _package_cbow_loss(inp: torch.Tensor, out: torch.Tensor, contexts: torch.Tensor,
                       centres: torch.Tensor, negatives: torch.Tensor, pad_id: int
                       ) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The loss of ``w2v.Word2Vec`` in CBOW mode on these tables, and its gradients on them.

    The package pads with id 0. For another ``pad_id`` the ids 0 and ``pad_id`` trade places,
    in the ids and in the tables' rows alike: the same words, so the same loss."""
    swap = torch.arange(len(inp))
    swap[[0, pad_id]] = torch.tensor([pad_id, 0])
    with torch.random.fork_rng():  # the tables' initial draw stays off the learner's stream
        model = w2v.Word2Vec(*inp.shape)
    model.load_state_dict({"inp.weight": inp[swap], "out.weight": out[swap]})
    loss = model(swap[contexts], swap[centres], swap[negatives])
    loss.backward()
    return loss.item(), model.inp.weight.grad[swap], model.out.weight.grad[swap]


def _cbow_slip(inp: torch.Tensor, out: torch.Tensor, contexts: torch.Tensor, centres: torch.Tensor,
               negatives: torch.Tensor, pad_id: int, *, tables: str = "inp, out",
               average: str = "real words", pad: int | None = None, neg_sign: float = -1.0,
               sign: float = -1.0, noise: str = "sum", batch: str = "mean") -> float:
    """CBOW's loss with one usual mistake switched on by a keyword (the defaults are right)."""
    ctx_table, word_table = {"inp, out": (inp, out), "out, out": (out, out),
                             "out, inp": (out, inp)}[tables]
    real = (contexts != (pad_id if pad is None else pad)).unsqueeze(-1).to(inp.dtype)  # (B, W, 1)
    vecs = ctx_table[contexts]  # (B, W, d)
    h = {"real words": (vecs * real).sum(1) / real.sum(1),  # (B, d)
         "width": vecs.mean(1), "width, pads zeroed": (vecs * real).sum(1) / contexts.shape[1],
         "sum": (vecs * real).sum(1)}[average]
    pos = (word_table[centres] * h).sum(-1)  # (B,)
    neg = (word_table[negatives] @ h.unsqueeze(-1)).squeeze(-1)  # (B, K)
    noise_terms = F.logsigmoid(neg_sign * neg)
    per_example = sign * (F.logsigmoid(pos) + getattr(noise_terms, noise)(-1))  # (B,)
    return float(getattr(per_example, batch)())


_PADS_COUNTED = ("You averaged over the padded width W, pads included: average only each row's "
                 "real context words (mask = contexts != pad_id; divide the masked sum by "
                 "mask.sum(1)).")
_CONTEXT_TABLE = ("The context words' vectors come from the input table `inp` (the vectors we "
                  "keep); the centre and the noise words are looked up in `out`.")
_CBOW_SLIPS = [
    (_PADS_COUNTED, partial(_cbow_slip, average="width")),
    (("You left the pads out of the sum but divided by the padded width W: divide by each row's "
      "number of real words (mask.sum(1))."), partial(_cbow_slip, average="width, pads zeroed")),
    (("You summed the context vectors: CBOW averages them (divide by each row's number of real "
      "words)."), partial(_cbow_slip, average="sum")),
    (_CONTEXT_TABLE, partial(_cbow_slip, tables="out, out")),
    (_CONTEXT_TABLE, partial(_cbow_slip, tables="out, inp")),
    ((f"The padding id is `pad_id`, not always 0: one batch pads with {_CBOW_CASES[-1][5]}, and "
      "there 0 is a real word. Mask with contexts != pad_id."), partial(_cbow_slip, pad=0)),
    ("The loss is *minus* the log-probabilities: put a minus sign in front.",
     partial(_cbow_slip, sign=1.0)),
    ("Noise words need log σ(-score): the model should score them low.",
     partial(_cbow_slip, neg_sign=1.0)),
    ("Sum the K noise words' terms, do not average them: each one is a question.",
     partial(_cbow_slip, noise="mean")),
    ("You summed over the batch: take the mean.", partial(_cbow_slip, batch="sum")),
]


def _same_loss(got: float, slip: float) -> bool:
    return math.isclose(got, slip, rel_tol=1e-5, abs_tol=1e-6)


def check_cbow_loss(cbow_loss: Callable[..., torch.Tensor]) -> None:
    """Task: ``cbow_loss(inp, out, contexts, centres, negatives, pad_id)``: CBOW's negative-
    sampling loss, the context mean taken over each row's real (non-padding) words.

    Compared with ``w2v.Word2Vec``'s CBOW loss, and its gradients, on four random batches: one
    row of one word; rows with and without padding; a batch padded with another id than 0."""
    task = "Task 2 (cbow_loss)"
    hint = ("mask = contexts != pad_id; h = (inp[contexts] * mask.unsqueeze(-1)).sum(1) / "
            "mask.sum(1, keepdim=True) is the (B, d) context mean; then skip-gram's loss with "
            "h as the centre vector, out[centres] and out[negatives], averaged over the batch.")
    results, wrong, grads = [], None, []
    for seed, case in enumerate(_CBOW_CASES):
        args = _cbow_batch(*case, seed=seed)
        want, *want_grads = _package_cbow_loss(*args)
        tables = [t.clone().requires_grad_() for t in args[:2]]
        got = _call(task, hint, cbow_loss, *tables, *(x.clone() for x in args[2:5]), args[5])
        if not isinstance(got, torch.Tensor) or got.dim() != 0:
            raise AssertionError(f"{task}: return a scalar tensor (the batch mean), got "
                                 f"{type(got).__name__} {getattr(got, 'shape', '')}")
        results.append((args, got.item()))
        if wrong is None and not _same_loss(got.item(), want):
            wrong = (case, want, got.item())
        grads.append((got, tables, want_grads))
    if wrong is not None:
        (b, width, k, d, _vocab, pad_id), want, got = wrong
        raise AssertionError(
            f"{task}: with B={b}, W={width}, K={k}, d={d} and pad_id={pad_id} the loss is "
            f"{want:.6f}, yours is {got:.6f}.{matching_tip(results, _CBOW_SLIPS, _same_loss)}")
    for got, tables, want_grads in grads:
        if not got.requires_grad:
            raise AssertionError(f"{task}: the value is right, but no gradient flows back to the "
                                 "tables: compute with torch operations (no .item(), NumPy or "
                                 ".detach()), or training cannot use it.")
        got.backward()
        for name, table, want_grad in zip(("inp", "out"), tables, want_grads):
            if table.grad is None or not torch.allclose(table.grad, want_grad, atol=1e-6):
                raise AssertionError(f"{task}: the loss is right, but its gradient on `{name}` "
                                     "differs from the package's: do not detach any piece of it.")
    _passed(task, f"your loss and its gradients equal minigpt.models.word2vec.Word2Vec's CBOW "
                  f"loss on {len(_CBOW_CASES)} padded batches")


# Task 3's hand-made vectors: axis 0 is gender (+ male, - female), axis 1 royalty, axis 2 the
# rest of a word's meaning. In every question below the right word wins by a cosine margin of
# about 0.2, and each usual mistake lands on a different wrong word (see _analogy_mistakes).
_ANALOGY_VECTORS = {
    "man": [3, 0, 0], "woman": [-16, 0, 0],  # woman is 5 times longer: normalise first
    "king": [1, 4, -1], "queen": [-1, 4, -1],
    "he": [2, -1, 1], "she": [-2, -1, 1],
    "commoner": [0, -1, 0],
    "crown": [0, 13, 6],  # the longest vector: a raw dot product picks it
}
# b - a + c is symmetric in b and c, so each pair of questions asks the same thing with b and c
# swapped: a version that forgets to leave out b or c fails one of them.
_ANALOGY_QUESTIONS = [("man", "king", "woman"), ("man", "woman", "king"),
                      ("woman", "queen", "man"), ("woman", "man", "queen")]
# When a, b and c are close, b - a + c stays near a: a version that leaves out b and c but not a
# answers a. good:better::bad:? asks that (cosine with b - a + c: good 0.82, worse 0.57, fine 0).
_CLOSE_VECTORS = {"good": [10, 0, 0], "better": [9, 4, 0], "bad": [9, 0, 4], "worse": [0, 3, 3],
                  "fine": [0, 2, -2]}
_CLOSE_QUESTION = ("good", "better", "bad")
_COSINE_PAIRS = [([1.0, 0.0], [0.0, 2.0]),  # orthogonal: 0
                 ([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]),  # parallel, different lengths: 1
                 ([1.0, -1.0], [-3.0, 3.0]),  # opposite: -1
                 ([0.3, 0.4], [4.0, 3.0])]  # 0.96, while the dot product is 2.4


def _analogy_vectors() -> dict[str, np.ndarray]:
    """A fresh copy of the hand-made vectors (a learner's function may change them in place)."""
    return {word: np.array(vec, dtype=np.float64) for word, vec in _ANALOGY_VECTORS.items()}


def _nearest(vectors: dict[str, np.ndarray], query: np.ndarray, exclude: tuple[str, ...],
             by_cosine: bool = True) -> str:
    words = [w for w in vectors if w not in exclude]
    scores = [vectors[w] @ query / (np.linalg.norm(vectors[w]) if by_cosine else 1.0)
              for w in words]
    return words[int(np.argmax(scores))]


def _analogy_mistakes(vectors: dict[str, np.ndarray], a: str, b: str, c: str) -> dict[str, str]:
    """For a:b::c:?, the word each usual mistake answers -> the tip that names that mistake."""
    unit = {w: v / np.linalg.norm(v) for w, v in vectors.items()}
    query = unit[b] - unit[a] + unit[c]
    longest = max((a, b, c), key=lambda w: np.linalg.norm(vectors[w]))
    shortest = min((a, b, c), key=lambda w: np.linalg.norm(vectors[w]))
    ratio = np.linalg.norm(vectors[longest]) / np.linalg.norm(vectors[shortest])

    def wrong_way(x: str, y: str, z: str) -> str:
        return (f" That is the word nearest {x} - {y} + {z}: the analogy asks for b - a + c "
                f"({b} - {a} + {c}): start from b, take a away, add c.")

    answers = [
        (_nearest(unit, unit[a] - unit[b] + unit[c], (a, b, c)), wrong_way(a, b, c)),
        (_nearest(unit, unit[b] - unit[c] + unit[a], (a, b, c)), wrong_way(b, c, a)),
        (_nearest(vectors, vectors[b] - vectors[a] + vectors[c], (a, b, c)),
         (f" That is the answer without normalising: the vector of {longest!r} is {ratio:.0f} "
          f"times longer than that of {shortest!r} and swamps b - a + c. Divide every vector by its length "
          "first.")),
        (_nearest(vectors, query, (a, b, c), by_cosine=False),
         (" That word has a long vector: rank the candidates by cosine (divide by their lengths), "
          "not by the dot product.")),
    ]
    tips: dict[str, str] = {}
    for word, tip in answers:
        tips[word] = tips.get(word, "") + tip
    return tips


def _cosine_tip(got: float | None, dot: float, nu: float, nv: float) -> str:
    """The tip for a wrong cosine: ``dot`` is u·v, ``nu`` and ``nv`` the two lengths."""
    if got is None:
        return " Return one number (a float)."
    for tip, values in [(" Divide the dot product by both lengths.", [dot, dot / nu, dot / nv]),
                        (" A vector's length is the square root of u·u (np.linalg.norm(u)).",
                         [dot / (nu * nv) ** 2]),
                        (" Opposite vectors have cosine -1: keep the sign.", [-dot / (nu * nv)])]:
        if any(math.isclose(got, x, rel_tol=1e-6) for x in values):
            return tip
    return ""


def check_analogy(cosine_similarity: Callable[[np.ndarray, np.ndarray], float],
                  analogy: Callable[[dict, str, str, str], str]) -> None:
    """Task: ``cosine_similarity(u, v)`` and ``analogy(vectors, a, b, c)`` -> the best word.

    Both run on hand-made vectors (not a trained model's), where the right answer wins by a clear
    margin and each usual mistake gives its own wrong answer, named in the error."""
    task = "Task 3 (cosine similarity and analogies)"
    hint = ("cosine = u·v / (|u| |v|); for a:b::c, normalise every vector to length 1, take "
            "b - a + c, and return the word of highest cosine with it that is not a, b or c.")
    for u, v in _COSINE_PAIRS:
        u, v = np.array(u), np.array(v)
        got = _number(_call(task, hint, cosine_similarity, u.copy(), v.copy()))
        dot, nu, nv = float(u @ v), float(np.linalg.norm(u)), float(np.linalg.norm(v))
        want = dot / (nu * nv)
        if got is None or not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
            tip = _cosine_tip(got, dot, nu, nv)
            raise AssertionError(f"{task}: cosine_similarity({u.tolist()}, {v.tolist()}) "
                                 f"returned {got}, expected {want:.4f}.{tip}")
    vectors = _analogy_vectors()
    close = {word: np.array(vec, dtype=np.float64) for word, vec in _CLOSE_VECTORS.items()}
    for a, b, c in [*_ANALOGY_QUESTIONS, _CLOSE_QUESTION]:
        given = vectors if a in vectors else close
        reference = word_vectors.WordVectors(list(given), np.stack(list(given.values())))
        want = reference.analogy(a, b, c, k=1)[0][0]
        got = _call(task, hint, analogy, {w: v.copy() for w, v in given.items()}, a, b, c)
        if not isinstance(got, str):
            tip = (" That is a position, not a word: return the word itself."
                   if isinstance(got, (int, np.integer)) else " Return only the word (a str).")
            shown = got.item() if isinstance(got, np.generic) else got
            raise AssertionError(  # noqa: TRY004 (a check reports every mistake as an AssertionError)
                f"{task}: {a}:{b}::{c}:? should be {want!r}, got {shown!r} of type "
                f"{type(got).__name__}.{tip}")
        got = str(got)  # a NumPy string would print as np.str_('...')
        if got != want:
            if got == a:
                tip = (f" {got!r} is a, the question's first word: leave a out too, not only b and "
                       "c (when a, b and c are close, b - a + c stays near a).")
            elif got in (b, c):
                tip = f" {got!r} is one of the question's words: leave a, b and c out."
            else:
                tip = _analogy_mistakes(given, a, b, c).get(got, "")
            raise AssertionError(f"{task}: {a}:{b}::{c}:? should be {want!r}, got {got!r}.{tip}")
    _passed(task, f"cosine on {len(_COSINE_PAIRS)} pairs, and man:king::woman:queen and "
                  f"{len(_ANALOGY_QUESTIONS)} more analogies on hand-made vectors")
