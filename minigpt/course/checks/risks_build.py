"""Checks for exercises/12_risks.ipynb's build task: a canary's exposure measured whole (Carlini et
al. 2019, "The Secret Sharer"), from a model's log-likelihood of texts to bits, over every
possible secret or over a random sample of them with the rank extrapolated.

The learner's ``measure_exposure(log_likelihood, canary, alphabet, n_samples, seed)`` scores the
candidate canaries ``canary.prefix + s`` (s: every string of ``len(canary.secret)`` characters
of ``alphabet``, or the true secret and ``n_samples`` others drawn at random), ranks the true one
by log-perplexity and returns log2(|space|) - log2(rank). The check hands it scorers whose
ranks are known: toy functions of the secret (no model, ties included) and a tiny random GPT.
Each scorer records every text it is asked about, so the check also sees what was scored: the
whole space, or the secret and ``n_samples`` distinct others that change with the seed. The
reference is the package's ``minigpt.world.risks.exposure`` on the scores of the candidates
(for the tiny GPT, on ``risks.secret_logprobs``); for a sample, on the candidates the learner
drew, whose rank among m + 1 extrapolates to |space| x rank / (m + 1). A wrong answer is named
when one usual slip explains it: the rank counted from 0, ties counted in the secret's favour,
natural logarithms, the order reversed (the likeliest ranked last), the canary left out of the
candidates, a sample's rank not extrapolated.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from minigpt.course.checks._base import _number, matching_tip
from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.data.tokenizers import CharTokenizer
from minigpt.models.gpt import GPT, GPTConfig
from minigpt.world import risks

__all__ = ["check_measure_exposure", "gpt_log_likelihood"]

TASK = "Task 4 (measure_exposure)"
HINT = ("the space is every string of len(canary.secret) characters of alphabet "
        "(itertools.product(alphabet, repeat=...)), |space| = len(alphabet) ** len(secret); score "
        "canary.prefix + s for each candidate s (every secret, or the true one and n_samples "
        "others from random.Random(seed).sample); rank = 1 + the number of other candidates at "
        "least as likely; exposure = log2(|space|) - log2(rank x |space| / number of candidates).")
_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, KeyError, AttributeError)
_PREFIX = "The PIN of Kalo Renvel is "


def gpt_log_likelihood(model: GPT, tokenizer) -> Callable[[list[str]], np.ndarray]:
    """``log_likelihood(texts)``: each text's log-probability under ``model`` (natural log, every
    token after the first), one text at a time, so that a text's score never depends on what
    else was scored with it."""
    dev = next(model.parameters()).device

    @torch.no_grad()
    def log_likelihood(texts: Sequence[str]) -> np.ndarray:
        out = []
        for text in texts:
            ids = torch.tensor([tokenizer.encode(text)], device=dev)
            logp = F.log_softmax(model(ids)[0][0, :-1].float(), dim=-1)  # (T - 1, V)
            out.append(logp.gather(1, ids[0, 1:, None]).sum().item())
        return np.array(out)

    return log_likelihood


class _Scorer:
    """A log-likelihood over candidate canaries that remembers each text it scored and refuses
    texts that are not candidates."""

    def __init__(self, prefix: str, alphabet: str, digits: int, score: Callable[[str], float]):
        self.prefix, self.alphabet, self.digits, self.score = prefix, alphabet, digits, score
        self.memo: dict[str, float] = {}

    def __call__(self, texts) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("log_likelihood takes a list of texts, not one text: "
                            "log_likelihood([text])")
        out = []
        for text in texts:
            secret = text[len(self.prefix):] if isinstance(text, str) else None
            if (secret is None or not text.startswith(self.prefix) or len(secret) != self.digits
                    or any(ch not in self.alphabet for ch in secret)):
                raise ValueError(f"{text!r} is not a candidate canary: score canary.prefix + s, "
                                 f"s a string of {self.digits} characters of {self.alphabet!r}")
            if text not in self.memo:
                self.memo[text] = float(self.score(secret))
            out.append(self.memo[text])
        return np.array(out)


def _space(alphabet: str, digits: int) -> list[str]:
    return ["".join(p) for p in itertools.product(alphabet, repeat=digits)]


def _tiny_gpt(seed: int = 4) -> tuple[GPT, CharTokenizer]:
    """A random GPT over the characters of ``_PREFIX`` and the digits, its weights moved away from
    their near-uniform start so that the secrets' log-likelihoods are far apart."""
    tok = CharTokenizer.fit(_PREFIX + "0123456789.")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2,
                              n_embd=16)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return model, tok


@dataclass(frozen=True)
class ExposureCase:
    """A canary ``_PREFIX + secret`` in the space of ``alphabet`` strings of its length, a
    ``score`` (log-likelihood in nats) per secret, ``n_samples`` (None: the whole space), the
    secret's ``rank`` in the whole space (known), and ``space_lp``: the package's view, every
    secret's log-likelihood in lexicographic order."""

    what: str
    alphabet: str
    secret: str
    score: Callable[[str], float]
    n_samples: int | None
    rank: int
    space_lp: np.ndarray

    @property
    def size(self) -> int:
        return len(self.alphabet) ** len(self.secret)


def _hamming_to_abca(s: str) -> float:
    return -2.0 * sum(a != b for a, b in zip(s, "abca"))


def exposure_cases() -> list[ExposureCase]:
    """The check's cases, the true ranks worked out in the comments."""
    model, tok = _tiny_gpt()
    tiny_ll = gpt_log_likelihood(model, tok)
    package = risks.secret_logprobs(model, tok, _PREFIX, digits=2)  # every PIN's log p

    def case(what, alphabet, secret, score, n_samples, rank, space_lp=None) -> ExposureCase:
        space_lp = space_lp if space_lp is not None else np.array(
            [score(s) for s in _space(alphabet, len(secret))])
        return ExposureCase(what, alphabet, secret, score, n_samples, rank, space_lp)

    return [
        # -1.5 x (|s - 37| // 2): 36-38 tie first, then 34, 35, 39 and 40: "40" ranks 7th
        case("100 two-digit PINs, likelier nearer 37, in ties of two or three", "0123456789",
             "40", lambda s: -1.5 * (abs(int(s) - 37) // 2), None, 7),
        # the secret itself is the only one at Hamming distance 0
        case("81 secrets of 4 letters from 'abc', likelier nearer 'abca'", "abc", "abca",
             _hamming_to_abca, None, 1),
        # a permutation of 0..999: "007" -> 7 x 7919 % 1000 = 433, so 433 PINs rank above it
        case("1,000 three-digit PINs, no ties, the secret '007'", "0123456789", "007",
             lambda s: -((int(s) * 7919) % 1000) / 250, None, 434),
        # the fifth likeliest PIN by risks.secret_logprobs
        case("a tiny random GPT's log-likelihood, 100 two-digit PINs", "0123456789",
             f"{int(np.argsort(-package, kind='stable')[4]):02d}",
             lambda s: float(tiny_ll([_PREFIX + s])[0]), None, 5, package),
        # (s x 7919) % 10,000 = 299 for this secret: 299 PINs rank above it
        case("10,000 four-digit PINs, 199 of them sampled", "0123456789",
             f"{299 * pow(7919, -1, 10_000) % 10_000:04d}",
             lambda s: -((int(s) * 7919) % 10_000) / 1000, 199, 300),
        case("81 secrets of 4 letters from 'abc', 20 of them sampled", "abc", "abca",
             _hamming_to_abca, 20, 1),
    ]


def _slips(lp: np.ndarray, index: int, size: int) -> list[tuple[str, Callable[[], float]]]:
    """What the usual wrong answers give for the candidates' log-likelihoods ``lp`` (the true
    one at ``index``) from a space of ``size``, each with the tip that explains it."""
    others, n = np.delete(lp, index), len(lp)
    above, tied = int((others > lp[index]).sum()), int((others == lp[index]).sum())

    def bits(rank: float, log: Callable[[float], float] = math.log2, count: int = n) -> float:
        return log(size) - log(rank * size / count)  # the rank among count candidates, scaled

    slips = [
        (("Your rank starts at 0: the likeliest candidate has rank 1 (1 + the number of "
          "others at least as likely)."), lambda: bits(above + tied)),
        (("Ties went the secret's way: a candidate exactly as likely as the secret ranks ahead "
          "of it (>=, not >)."), lambda: bits(1 + above)),
        ("Natural logarithms: exposure is in bits, so use log2.",
         lambda: bits(1 + above + tied, math.log)),
        (("You ranked from the least likely: rank 1 is the candidate with the lowest "
          "log-perplexity, i.e. the highest log-likelihood."), lambda: bits(n - above)),
        (("The canary is left out of its own candidates: rank it among all of them, itself "
          "included (|space| candidates, or n_samples + 1)."),
         lambda: bits(1 + above + tied, count=n - 1)),
    ]
    if n < size:
        slips.append((("Extrapolate the sample's rank to the whole space: a rank r among the "
                       "n_samples + 1 candidates stands for about r x |space| / (n_samples + 1)."),
                      lambda: math.log2(size) - math.log2(1 + above + tied)))
    return slips


# ---- the check ----------------------------------------------------------------------------------


def _run(measure_exposure: Callable, case: ExposureCase, seed: int, where: str
         ) -> tuple[float, dict[str, float]]:
    """The learner's exposure for ``case`` with ``seed``, and every text it scored (with its
    score); raises, saying what is wrong, if it cannot be read or scored the wrong texts."""
    scorer = _Scorer(_PREFIX, case.alphabet, len(case.secret), case.score)
    canary = risks.Canary(_PREFIX, case.secret)
    try:
        got = _call(TASK, HINT, measure_exposure, scorer, canary, case.alphabet, case.n_samples,
                    seed)
    except _ERRORS as error:
        tip = (" log2(0): a rank counted from 0 is 0 for the likeliest candidate; the likeliest "
               "has rank 1." if "math domain" in str(error) else "")
        raise AssertionError(f"{where}: measure_exposure raised {type(error).__name__}: "
                             f"{error}.{tip} Hint: {HINT}") from None
    scored, text = scorer.memo, canary.prefix + case.secret
    if text not in scored:
        raise AssertionError(f"{where}: you never scored the canary itself ({text!r}): it is one "
                             f"of its own candidates, and its rank is what exposure measures. "
                             f"Hint: {HINT}")
    if case.n_samples is None and len(scored) != case.size:
        raise AssertionError(f"{where}: you scored {len(scored)} distinct candidates; the space "
                             f"holds {len(case.alphabet)} ** {len(case.secret)} = {case.size}: "
                             f"score every one. Hint: {HINT}")
    if case.n_samples is not None and len(scored) != case.n_samples + 1:
        tip = ("score only the sample (the point of sampling: a space too large to score)"
               if len(scored) == case.size else
               "draw n_samples different secrets, other than the canary's, without repeats "
               "(random.Random(seed).sample of the other secrets), and add the canary")
        raise AssertionError(f"{where}: you scored {len(scored)} distinct candidates, expected "
                             f"n_samples + 1 = {case.n_samples + 1}: {tip}. Hint: {HINT}")
    value = _number(got)
    if value is None:
        raise AssertionError(f"{where}: you returned {got!r:.100}; return one finite number (a "
                             f"rank counted from 0 gives log2(0) for the likeliest). Hint: {HINT}")
    return value, scored


def _check_case(measure_exposure: Callable, case: ExposureCase) -> float:
    """Check one case; returns the learner's exposure."""
    where = f"{TASK}, on {case.what}"
    value, scored = _run(measure_exposure, case, 0, where)
    texts = sorted(scored)
    lp = np.array([scored[t] for t in texts])
    index = texts.index(_PREFIX + case.secret)
    if case.n_samples is None:
        want = risks.exposure(case.space_lp, _space(case.alphabet, len(case.secret)).index(case.secret))
        truth = math.log2(case.size) - math.log2(case.rank)
        if not math.isclose(want, truth, abs_tol=1e-9) or not math.isclose(
                want, risks.exposure(lp, index), abs_tol=1e-9):
            raise RuntimeError(f"{where}: the case's rank is not what risks.exposure finds: "
                               "update minigpt/course/checks/risks_build.py")
    else:
        want = risks.exposure(lp, index)  # log2(m + 1) - log2(rank): the extrapolated rank
    if not math.isclose(value, want, abs_tol=1e-9):
        tip = matching_tip([((lp, index, case.size), value)],
                           [(msg, lambda *_, f=f: f()) for msg, f in _slips(lp, index, case.size)],
                           lambda got, slip: math.isclose(got, slip, abs_tol=1e-9))
        shown = (f"|space| = {case.size}" if case.n_samples is None else
                 f"|space| = {case.size}, {len(lp)} candidates scored")
        raise AssertionError(f"{where} ({shown}): the exposure is {want:.4f} bits, you returned "
                             f"{value:.4f}.{tip} Hint: {HINT}")
    if case.n_samples is not None:
        again, other = (set(_run(measure_exposure, case, seed, where)[1]) for seed in (0, 1))
        if again != set(scored):
            raise AssertionError(f"{where}: seed 0 gave two different samples: draw them with "
                                 "random.Random(seed), not the global random module. "
                                 f"Hint: {HINT}")
        if other == set(scored):
            raise AssertionError(f"{where}: seeds 0 and 1 drew the same sample: draw the "
                                 "candidates at random with the seed (random.Random(seed)). "
                                 f"Hint: {HINT}")
    return value


def check_measure_exposure(measure_exposure: Callable[..., float]) -> None:
    """Task 4: ``measure_exposure(log_likelihood, canary, alphabet, n_samples, seed)`` is
    Carlini et al.'s exposure: over the whole space as ``risks.exposure`` ranks it, or over a
    random sample with its rank extrapolated."""
    shown = []
    for case in exposure_cases():
        value = _check_case(measure_exposure, case)
        if case.n_samples is not None:
            truth = math.log2(case.size) - math.log2(case.rank)
            shown.append(f"{value:.2f} bits from {case.n_samples} samples of {case.size:,} "
                         f"(the whole space: {truth:.2f})")
    _passed(TASK, "ranks from 1, ties against the secret, bits, on three toy scorers and a tiny "
                  f"GPT as risks.exposure ranks them; sampled: {'; '.join(shown)}")
