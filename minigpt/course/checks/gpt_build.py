"""Checks for exercises/06_gpt.ipynb's build task: one KV cache for a batch of prompts of
different lengths (left padding, a padding mask, position ids), then batched greedy generation.

The reference is the package's GPT run on each prompt alone: ``model(prompt)`` for the logits
and ``model.generate(prompt, temperature=0)`` for the tokens. The learner's batch must give the
same numbers at every real (non-padding) position, with and without a cache, on small random
GPTs of several shapes. The models run in float64 with every weight (biases and LayerNorms
included) moved away from its initial value, so that no slip hides behind a zero bias or a
rounding error, and greedy choices are never near-ties (``test_checks_gpt_build`` measures the
smallest gap between the two likeliest tokens).

A wrong answer is named when one of the usual slips explains all of it: attending to the
padding, counting positions from the padding, restarting positions at 0 for cached tokens,
masking the new tokens against the cache without the offset, dropping the padding mask in the
cached steps; for generation, reading the logits of the wrong position, normalising over the
wrong dimension, padding on the right.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import torch
import torch.nn.functional as F

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import matching_tip
from minigpt.course.checks._base import passed as _passed
from minigpt.models.gpt import GPT, GPTConfig

__all__ = ["check_generate_batch", "check_padded_forward"]

# (vocab_size, block_size, n_layer, n_head, n_embd), prompt lengths, the cached feeding
# schedule after the prompt (new tokens per call), and the seed of the model and the tokens.
_FORWARD_CASES = [
    ((61, 24, 2, 2, 16), [5, 2, 7], [1, 2, 1], 1),
    ((43, 32, 3, 4, 24), [1, 6, 6, 3], [1, 1, 3], 2),
]
# (sizes, prompt lengths, new tokens, seed) for generation.
_GENERATE_CASES = [
    ((61, 24, 2, 2, 16), [3, 1, 6], 6, 3),
    ((43, 32, 3, 4, 24), [4, 4], 5, 4),
    ((43, 32, 3, 4, 24), [2, 7, 5, 1], 8, 5),
]
_SLIPS = {
    "attend_padding": ("You attend to the padding: the mask must hide every padding column "
                       "from every query (combine the causal mask with `real`)."),
    "positions_from_padding": ("Your positions count the padding: a prompt's first real token "
                               "is at position 0 however much padding precedes it (e.g. "
                               "`real.cumsum(1) - 1`)."),
    "positions_restart": ("With a cache, your new tokens start again at position 0: they sit "
                          "after the cached ones, so count positions over all of `real`, then "
                          "keep the last T."),
    "mask_no_offset": ("Your causal mask for the new tokens ignores the cache: new token i sits "
                       "at column past + i and may see columns 0 .. past + i "
                       "(`tril(diagonal=past)` on a (T, past + T) mask)."),
    "no_mask_when_cached": ("In the cached steps you dropped the mask: one new token may see "
                            "every earlier column except the padding, which it must still skip."),
}


def make_model(sizes: tuple[int, int, int, int, int], seed: int) -> GPT:
    """A small float64 GPT whose every weight, biases and LayerNorms included, is random."""
    V, T, L, H, C = sizes
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_embd=C)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model.eval()


def make_prompts(vocab_size: int, lengths: list[int], seed: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed + 100)
    return [torch.randint(1, vocab_size, (n,), generator=gen).tolist() for n in lengths]


def pad(prompts: list[list[int]], left: bool = True, pad_id: int = 0
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, real), both (B, longest): each prompt with padding before it (``left``) or after
    it; ``real`` is True at the prompt's tokens."""
    T = max(map(len, prompts))
    ids, real = [], []
    for p in prompts:
        fill = T - len(p)
        ids.append([pad_id] * fill + p if left else p + [pad_id] * fill)
        real.append([False] * fill + [True] * len(p) if left else [True] * len(p) + [False] * fill)
    return torch.tensor(ids), torch.tensor(real)


def slipped_forward(model: GPT, idx: torch.Tensor, real: torch.Tensor, cache: list | None,
                    slip: str) -> torch.Tensor:
    """A padded, cached forward pass with one of the usual slips (``_SLIPS``), to name it."""
    B, T = idx.shape
    past, C, H = real.size(1) - T, model.cfg.n_embd, model.cfg.n_head
    counted = real if slip != "positions_restart" else real[:, past:]
    pos = (counted.long().cumsum(1) - 1).clamp(min=0)[:, -T:]
    if slip == "positions_from_padding":
        pos = torch.arange(past, past + T).expand(B, T)
    allowed = torch.ones(T, past + T, dtype=torch.bool).tril(0 if slip == "mask_no_offset" else past)
    allowed = allowed.expand(B, T, past + T)  # (B, T, past + T): query row, key column
    if slip != "attend_padding":
        allowed = allowed & real[:, None, :]  # (B, T, past + T)
    if slip == "no_mask_when_cached" and past > 0 and T == 1:
        allowed = torch.ones(B, T, past + T, dtype=torch.bool)
    if slip != "mask_no_offset":  # every query sees itself, so that no row is empty
        allowed = allowed | (torch.arange(past + T) == torch.arange(past, past + T)[:, None])
    x = model.tok_emb(idx) + model.pos_emb(pos)
    for i, block in enumerate(model.blocks):
        q, k, v = block.attn.qkv(block.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            if cache[i] is not None:
                k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
            cache[i] = (k, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
        x = x + block.attn.proj(y.transpose(1, 2).reshape(B, T, C))
        x = x + block.mlp(block.ln2(x))
    return model.head(model.ln_f(x))


def _feed(forward: Callable, model: GPT, ids: torch.Tensor, real: torch.Tensor,
          schedule: list[int] | None) -> list:
    """What ``forward`` returns for each call: the whole batch at once (``schedule`` None), or
    the prompt's columns and then ``schedule``'s chunks of further columns through one cache."""
    cache = None if schedule is None else [None] * model.cfg.n_layer
    return [forward(model, ids[:, c], real[:, :c.stop], cache) for c in _columns(ids, schedule)]


def _reference(model: GPT, ids: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B, T, vocab_size): at each real column, the package's logits for that row alone."""
    want = torch.full((*ids.shape, model.cfg.vocab_size), float("nan"), dtype=torch.float64)
    for b in range(ids.size(0)):
        want[b, real[b]] = model(ids[b, real[b]][None])[0][0]
    return want


def _same(got, want: torch.Tensor, real: torch.Tensor) -> bool:
    return (isinstance(got, torch.Tensor) and got.shape == want.shape
            and bool(torch.allclose(got.detach().double()[real], want[real], atol=1e-7)))


def check_padded_forward(padded_forward: Callable) -> None:
    """Task 4: ``padded_forward(model, idx, real, cache)`` = the package's GPT on each prompt."""
    task = "Task 4 (padded_forward)"
    hint = ("positions = real.cumsum(1) - 1 (the last T columns); mask = causal "
            "(tril(diagonal=past) on (T, past + T)) & real[:, None, :], and let each query see "
            "itself so that no row is empty; with a cache, prepend the layer's cached k, v and "
            "store them back.")
    for sizes, lengths, schedule, seed in _FORWARD_CASES:
        model = make_model(sizes, seed)
        prompts = make_prompts(sizes[0], lengths, seed)
        more = make_prompts(sizes[0], [sum(schedule)] * len(prompts), seed + 1)
        full = [p + m for p, m in zip(prompts, more)]
        ids, real = pad(full)
        equal_ids, equal_real = pad([f[-min(lengths) - sum(schedule):] for f in full])
        with torch.no_grad():
            want = _reference(model, ids, real)
            runs = [("prompts of one length, no cache", equal_ids, equal_real, None,
                     _reference(model, equal_ids, equal_real)),
                    (f"left-padded prompts of lengths {lengths}, no cache", ids, real, None, want),
                    (f"the same prompts through a cache, then {schedule} new tokens a call",
                     ids, real, schedule, want)]
            for what, x, r, sched, ref in runs:
                cols = _columns(x, sched)
                cache = None if sched is None else [None] * model.cfg.n_layer
                got = []
                for c in cols:
                    try:
                        got.append(_call(task, hint, padded_forward, model, x[:, c], r[:, :c.stop],
                                         cache))
                    except (RuntimeError, IndexError, TypeError, ValueError) as e:
                        raise AssertionError(f"{task}: on {what}, padded_forward raised "
                                             f"{type(e).__name__}: {e}.{_cache_tip(cache, c)} "
                                             f"Hint: {hint}") from None
                    tip = _cache_tip(cache, c)
                    if tip:
                        raise AssertionError(f"{task}: on {what}:{tip} Hint: {hint}")
                if all(_same(g, ref[:, c], r[:, c]) for g, c in zip(got, cols)):
                    continue
                raise AssertionError(f"{task}: on {what} (model sizes {sizes}), "
                                     f"{_why(got, ref, x, r, sched, cols, model)} Hint: {hint}")
    _passed(task, "left padding, position ids and a KV cache give each prompt's own logits")


def _cache_tip(cache: list | None, columns: slice) -> str:
    """A message if the first layer's cached keys do not cover exactly the columns fed so far
    (only for a cache whose entries hold (B, heads, positions, head size) tensors)."""
    if not cache or cache[0] is None:
        return ""
    entry = cache[0].values() if isinstance(cache[0], dict) else cache[0]
    held = {t.size(2) for t in entry if isinstance(t, torch.Tensor) and t.dim() == 4}
    if not held or held == {columns.stop}:
        return ""
    return (f" Your cache holds {max(held)} positions per layer after columns "
            f"0..{columns.stop - 1} went in: store each layer's keys and values once "
            "(k = cat(cached, new), then cache that k, not cached + k again).")


def _columns(ids: torch.Tensor, schedule: list[int] | None) -> list[slice]:
    """The columns each call of ``_feed`` returns logits for."""
    if schedule is None:
        return [slice(0, ids.size(1))]
    ends = [ids.size(1) - sum(schedule) + sum(schedule[:i]) for i in range(len(schedule) + 1)]
    return [slice(0, ends[0])] + [slice(a, b) for a, b in pairwise(ends)]


def _why(got: list, ref: torch.Tensor, ids: torch.Tensor, real: torch.Tensor,
         schedule: list[int] | None, cols: list[slice], model: GPT) -> str:
    """What is wrong with the learner's logits ``got``, as precisely as the evidence allows."""
    bad = next(i for i, (g, c) in enumerate(zip(got, cols)) if not _same(g, ref[:, c], real[:, c]))
    g, c = got[bad], cols[bad]
    step = "the prompt" if bad == 0 else f"cached call {bad} (columns {c.start}..{c.stop - 1})"
    if not isinstance(g, torch.Tensor) or g.shape != ref[:, c].shape:
        shape = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
        return (f"for {step} it returned {shape}, expected logits of shape "
                f"{tuple(ref[:, c].shape)} (B, T, vocab_size) for the T tokens passed in.")
    if torch.isnan(g[real[:, c]]).any():
        return ("it returned NaN: a padding query that may see no column at all gets a softmax "
                "over nothing; let every query see at least itself.")

    def run(slip: str) -> Callable:
        return lambda: _feed(lambda *a: slipped_forward(*a, slip), model, ids, real, schedule)

    tip = matching_tip([((), got)], [(msg, run(slip)) for slip, msg in _SLIPS.items()],
                       lambda mine, theirs: all(_same(m, t, real[:, cc])
                                                for m, t, cc in zip(mine, theirs, cols)))
    diff = (g.detach().double() - ref[:, c])[real[:, c]].abs().max().item()
    return f"the logits of {step} differ from the package's by up to {diff:.3g}.{tip}"


def check_generate_batch(generate_batch: Callable) -> None:
    """Task 5: ``generate_batch(model, prompts, n)`` = ``model.generate`` on each prompt alone."""
    task = "Task 5 (generate_batch)"
    hint = ("left-pad the prompts, keep `real` (one column longer at each step) and one cache; "
            "feed the padded prompt once, then only the new tokens; the next token of each row "
            "is logits[:, -1].argmax(-1).")
    for sizes, lengths, n_new, seed in _GENERATE_CASES:
        model = make_model(sizes, seed)
        prompts = make_prompts(sizes[0], lengths, seed)
        with torch.no_grad():
            want = [model.generate(torch.tensor([p]), n_new, temperature=0)[0].tolist()
                    for p in prompts]
            got = _call(task, hint, generate_batch, model, [list(p) for p in prompts], n_new)
        rows = _as_rows(got)
        if rows == want:
            continue
        tip = ""
        if rows is None or len(rows) != len(want):
            tip = (" Return one list of token ids per prompt: the prompt followed by its "
                   f"{n_new} new tokens.")
        elif [len(r) for r in rows] != [len(w) for w in want]:
            tip = (" Each row must be its prompt (without padding) followed by exactly "
                   f"{n_new} new tokens.")
        else:
            tip = matching_tip([((model, prompts, n_new), rows)], _GENERATE_SLIPS,
                               lambda a, b: a == b) or (
                " If Task 4's check passes, the slip is in the loop: what goes in at each "
                "step, how `real` grows, which logits give the next token.")
        raise AssertionError(f"{task}: for prompts of lengths {lengths} (model sizes {sizes}), "
                             f"generate_batch returned {rows if rows is not None else got}, "
                             f"model.generate on each prompt alone gives {want}.{tip} "
                             f"Hint: {hint}")
    _passed(task, "one batch, one cache, the same greedy tokens as each prompt alone")


def _as_rows(got) -> list[list[int]] | None:
    try:
        return [[int(t) for t in row] for row in got]
    except (TypeError, ValueError):
        return None


def reference_generate(model: GPT, prompts: list[list[int]], n_new: int, *,
                       row: int = -1, norm_dim: int = -1, right_pad: bool = False
                       ) -> list[list[int]]:
    """Batched greedy generation; the keyword arguments reproduce the usual slips."""
    ids, real = pad(prompts, left=not right_pad)
    cache, new, out = [None] * model.cfg.n_layer, ids, [list(p) for p in prompts]
    with torch.no_grad():
        for _ in range(n_new):
            logits = slipped_forward(model, new, real, cache, "")
            new = F.softmax(logits[:, row], dim=norm_dim).argmax(-1, keepdim=True)
            real = torch.cat([real, torch.ones_like(real[:, :1])], 1)
            for seq, t in zip(out, new[:, 0].tolist()):
                seq.append(t)
    return out


_GENERATE_SLIPS = [
    (("You took the logits of the first position (logits[:, 0]): the next token comes from the "
      "last position, logits[:, -1], which left padding makes a real token in every row."),
     lambda m, p, n: reference_generate(m, p, n, row=0)),
    (("You normalised over the batch (softmax(..., dim=0)): the probabilities of one row are "
      "over the vocabulary, dim=-1 (and greedy needs no softmax at all: argmax of the logits)."),
     lambda m, p, n: reference_generate(m, p, n, norm_dim=0)),
    (("You padded on the right: then the last column of a short prompt is padding. Pad on the "
      "left, so that every row's last column is its newest real token."),
     lambda m, p, n: reference_generate(m, p, n, right_pad=True)),
]
