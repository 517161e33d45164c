"""Checks for exercises/06_gpt.ipynb: counting the parameters of a GPT variant, temperature,
and top-p. (The build task, batched generation with a KV cache, is in ``gpt_build``.)

The references are the package's own: a real ``GPT`` built with ``bias=False``, its MLP widened
to ``mlp_ratio x n_embd`` and its output layer untied, counted parameter by parameter; and
``gpt.filter_logits`` for the nucleus. Inputs catch the usual slips, each named in the message
where the wrong answer gives it away: counting the output layer as tied (or with a bias),
forgetting the position embedding or the LayerNorms, counting biases that are switched off,
keeping the MLP at 4x, a number that fits one size only; multiplying the logits by the
temperature, applying it after the softmax, dividing by a temperature of 0; dropping the token
that carries the nucleus over ``top_p``, sorting ascending, comparing the running total with the
current token included, and returning the mask in sorted order. No case puts a running total of
the nucleus within 0.01 of ``top_p``, and no two probabilities in a case are equal, so rounding
and the order of ties cannot decide a check.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from minigpt.course.checks._base import _number
from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.models.gpt import GPT, GPTConfig, filter_logits

__all__ = ["check_apply_temperature", "check_count_params", "check_top_p_keep"]

# (vocab_size, block_size, n_layer, n_embd, mlp_ratio). The first is small with every slip
# giving a different total; the last is GPT-2 small's shape.
_COUNT_SIZES = [(65, 64, 1, 16, 2), (50, 32, 2, 32, 3), (97, 40, 3, 24, 8),
                (2048, 128, 4, 128, 1), (50257, 1024, 12, 768, 4)]


def variant(vocab_size: int, block_size: int, n_layer: int, n_embd: int, mlp_ratio: int) -> GPT:
    """The package's GPT with no biases, an MLP of width ``mlp_ratio x n_embd`` and an output
    layer of its own (untied), built on the meta device (shapes only, no memory)."""
    cfg = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=1,
                    n_embd=n_embd, bias=False)
    with torch.device("meta"):
        model = GPT(cfg)
        for block in model.blocks:
            block.mlp.fc = nn.Linear(n_embd, mlp_ratio * n_embd, bias=False)
            block.mlp.proj = nn.Linear(mlp_ratio * n_embd, n_embd, bias=False)
        model.head = nn.Linear(n_embd, vocab_size, bias=False)  # its own weight: untied
    return model


def _count_slips(V: int, T: int, L: int, C: int, r: int) -> list[tuple[int, str]]:
    """(answer - right answer, what it means) for the usual slips in counting."""
    linear_biases = L * (5 + r) * C  # qkv 3C, attention out C, MLP rC and C
    norm_biases = (2 * L + 1) * C
    return [
        (-V * C, ("You left out the output layer: here it is untied, a vocab_size x n_embd "
                  "matrix of its own.")),
        (V, "The output layer has no bias here (bias=False everywhere)."),
        (-T * C, "You left out the position embedding (block_size x n_embd)."),
        (norm_biases, ("You counted LayerNorm biases: with bias=False a LayerNorm has only its "
                       "weight (gain), n_embd numbers.")),
        (linear_biases, "You counted the Linear layers' biases: this variant has none."),
        (linear_biases + norm_biases, "You counted biases: this variant has none at all."),
        (2 * L * (4 - r) * C * C, ("You kept the MLP at 4 x n_embd: its hidden width is "
                                  "mlp_ratio x n_embd, in both of its matrices.")),
        (-(2 * L + 1) * C, ("You left out the LayerNorms (two per block and the final one, an "
                           "n_embd gain each).")),
        (-C, "You left out the final LayerNorm (an n_embd gain)."),
        (-L * r * C * C, "You counted one MLP matrix: there are two, C x rC and rC x C."),
    ]


def check_count_params(count_params: Callable[[int, int, int, int, int], int]) -> None:
    """Task 1: ``count_params(vocab_size, block_size, n_layer, n_embd, mlp_ratio)`` = the
    parameters of the package's GPT without biases, with an untied head and that MLP width."""
    task = "Task 1 (count_params)"
    hint = ("per block: two LayerNorms (a gain of n_embd each), attention (qkv n_embd x 3 "
            "n_embd, output n_embd x n_embd), MLP (n_embd x r n_embd and back); plus both "
            "embeddings, the final LayerNorm and the untied output layer (n_embd x vocab_size); "
            "no biases anywhere.")
    wants = {sizes: sum(p.numel() for p in variant(*sizes).parameters()) for sizes in _COUNT_SIZES}
    for sizes, want in wants.items():
        got = _call(task, hint, count_params, *sizes)
        value = _number(got)
        if value != want:
            tip = ""
            if value is None:
                tip = " Return the count as a whole number (an int)."
            elif value in [w for s, w in wants.items() if s != sizes]:
                tip = (" That is the count for other sizes: compute it from the arguments, "
                       "not a fixed number.")
            else:
                tip = next((" " + why for diff, why in _count_slips(*sizes)
                            if value - want == diff), "")
            args = ", ".join(map(str, sizes))
            raise AssertionError(f"{task}: count_params({args}) returned {got!r}, the model has "
                                 f"{want:,}.{tip} Hint: {hint}")
    gpt2 = wants[_COUNT_SIZES[-1]]
    _passed(task, f"GPT-2 small's shape without biases, its head untied, has {gpt2:,} parameters")


def _close(got, want: torch.Tensor) -> bool:
    return (isinstance(got, torch.Tensor) and got.shape == want.shape
            and bool(torch.allclose(got.detach().double(), want, atol=1e-5)))


def check_apply_temperature(apply_temperature: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """Task: ``apply_temperature(logits, t)`` -> probabilities; t = 0 puts all mass on the argmax."""
    task = "Task 2 (apply_temperature)"
    hint = "softmax(logits / t); for t == 0 return a one-hot vector at logits.argmax()."
    cases = [([2.0, 1.0, 0.5, -1.0], (1.0, 0.5, 2.0, 0.0)),
             ([-0.5, 1.5, 3.0, 0.2, -2.0], (0.7, 1.3, 0.0))]  # argmax not first
    for values, temperatures in cases:
        for t in temperatures:
            logits = torch.tensor(values)
            exact = torch.tensor(values, dtype=torch.float64)
            got = _call(task, hint, apply_temperature, logits, t)
            if t == 0:
                want = torch.zeros_like(exact)
                want[exact.argmax()] = 1.0
            else:
                want = torch.softmax(exact / t, dim=-1)
            if _close(got, want):
                continue
            tip = ""
            plain = torch.softmax(exact, dim=-1)
            if not isinstance(got, torch.Tensor):
                tip = " Return a tensor of probabilities, one per logit."
            elif t == 0 and got.numel() == 1:
                tip = (" At t = 0 return the probabilities (one-hot at the argmax), not the "
                       "argmax's index.")
            elif got.shape != want.shape:
                tip = f" Return one probability per logit (shape {tuple(want.shape)})."
            elif t == 0:
                tip = (" t = 0 means greedy: all the probability on logits.argmax(), none "
                       "elsewhere (dividing by 0 gives inf and nan).")
            elif _close(got, torch.softmax(exact * t, dim=-1)):
                tip = (" You multiplied the logits by t: divide them, so that t < 1 sharpens "
                       "and t > 1 flattens.")
            elif any(_close(got, bad) for bad in (plain, plain / t, plain * t)):
                tip = (" You applied t after the softmax: divide the logits by t first, then "
                       "take the softmax.")
            elif _close(got, exact / t) or _close(got, exact * t):
                tip = " Return probabilities: take the softmax of logits / t."
            raise AssertionError(f"{task}: apply_temperature({values}, {t}) returned {got}, "
                                 f"expected {[round(p, 6) for p in want.tolist()]}.{tip} "
                                 f"Hint: {hint}")
    _passed(task, "t < 1 sharpens, t > 1 flattens, t = 0 is greedy")


# (probs, top_p), each commented with what it is for. All probabilities in a case differ,
# and every running total (sorted descending) is at least 0.01 from top_p.
_TOP_P_CASES = [
    ([0.5, 0.3, 0.2], 0.7),                   # the crossing token (0.3) stays
    ([0.1, 0.6, 0.3], 0.65),                  # unsorted: the mask is in the original order
    ([0.06, 0.9, 0.04], 0.5),                 # the top token alone passes top_p: it stays
    ([0.15, 0.7, 0.1, 0.05], 0.2),            # the same, and ascending order keeps other tokens
    ([0.22, 0.18, 0.21, 0.19, 0.2], 0.6),     # a flat distribution: a wide nucleus
    ([0.2, 0.5, 0.3], 1.0),                   # top_p = 1 keeps everything
]


def _mask(probs: torch.Tensor, p: float, *, descending: bool = True,
          include_current: bool = False, sorted_order: bool = False) -> torch.Tensor:
    """A nucleus mask, right (the defaults) or with one of the usual slips."""
    sorted_probs, order = probs.sort(descending=descending)
    cum = sorted_probs.cumsum(-1)
    keep_sorted = cum < p if include_current else cum - sorted_probs < p
    if sorted_order:
        return keep_sorted
    return keep_sorted.scatter(-1, order, keep_sorted)


def check_top_p_keep(top_p_keep: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """Task: ``top_p_keep(probs, top_p)`` -> boolean mask of the nucleus."""
    task = "Task 3 (top_p_keep)"
    hint = ("sort the probabilities in descending order and keep tokens while the probability "
            "of the tokens before them is still below top_p; the token that crosses top_p stays.")
    results = []  # (probs, p, exact probs, want, got) for every case, so a slip is named only
    for probs, p in _TOP_P_CASES:  # when it explains all the answers
        exact = torch.tensor(probs, dtype=torch.float64)
        want = torch.isfinite(filter_logits(exact.log(), top_p=p))
        got = _call(task, hint, top_p_keep, torch.tensor(probs), p)
        results.append((probs, p, exact, want, got))

    def is_mask(got, want) -> bool:
        return isinstance(got, torch.Tensor) and got.dtype == torch.bool and \
            got.shape == want.shape

    def explains(**slip) -> bool:
        return all(is_mask(got, want) and torch.equal(got, _mask(exact, p, **slip))
                   for _, p, exact, want, got in results)

    for probs, p, exact, want, got in results:
        if is_mask(got, want) and torch.equal(got, want):
            continue
        tip = ""
        if not isinstance(got, torch.Tensor):
            tip = " Return a tensor of booleans, one per token."
        elif got.shape != want.shape:
            tip = (" Return one boolean per token (a mask the shape of probs), not the kept "
                   "tokens' indices or probabilities.")
        elif got.dtype != torch.bool:
            tip = (f" Return a boolean tensor (dtype torch.bool), not {got.dtype}: a comparison "
                   "such as `before < top_p` gives one, and only a boolean mask selects tokens.")
        elif explains(descending=False):
            tip = (" You sorted ascending: the nucleus starts from the likeliest token, so sort "
                   "in descending order.")
        elif explains(include_current=True):
            tip = (" You compared the running total including the current token, which drops "
                   "the token that crosses top_p (and the top token when it alone passes "
                   "top_p): compare the total of the tokens before it.")
        elif explains(sorted_order=True):
            tip = (" The mask is in sorted order: put it back in the original order of probs "
                   "(e.g. with scatter, or by indexing with the sort's indices).")
        elif not got[exact.argmax()]:
            tip = " The likeliest token is always in the nucleus."
        elif int((got & ~want).sum()) == 0 and int(got.sum()) == int(want.sum()) - 1:
            tip = " One token short: keep the token that carries the total over top_p."
        elif int((want & ~got).sum()) == 0 and int(got.sum()) == int(want.sum()) + 1:
            tip = " One token too many: stop as soon as the kept total reaches top_p."
        raise AssertionError(f"{task}: top_p_keep({probs}, {p}) returned {got}, expected "
                             f"{want.tolist()}.{tip} Hint: {hint}")
    _passed(task, "the nucleus of [0.5, 0.3, 0.2] at top_p=0.7 is the first two tokens")
