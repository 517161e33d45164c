"""The chapter 06 build task's checks (batched generation with one KV cache) pass right answers,
written two ways, and catch the usual mistakes, naming them where one explains the answer."""

import math

import pytest
import torch
import torch.nn.functional as F

from minigpt.course import checks
from minigpt.course.checks import gpt_build

# --- right answers ---------------------------------------------------------------------------


def padded_forward(model, idx, real, cache=None, *, slip=None):
    """The solution's way: SDPA with a boolean mask, positions from a cumulative sum, a list
    cache. ``slip`` plants one of the mistakes a learner makes (for the wrong answers below)."""
    B, T = idx.shape
    past = real.size(1) - T
    C, H = model.cfg.n_embd, model.cfg.n_head
    counted = real[:, past:] if slip == "positions restart" else real
    pos = (counted.long().cumsum(1) - 1).clamp(min=0)[:, -T:]  # (B, T)
    if slip == "positions from padding":
        pos = torch.arange(past, past + T).expand(B, T)
    x = model.tok_emb(idx) + model.pos_emb(pos)  # (B, T, C)
    causal = torch.ones(T, past + T, dtype=torch.bool).tril(0 if slip == "no offset" else past)
    causal = causal.expand(B, T, past + T)
    allowed = causal if slip == "attend padding" else causal & real[:, None, :]  # (B, T, past+T)
    if slip == "no mask when cached" and past > 0 and T == 1:
        allowed = torch.ones(B, T, past + T, dtype=torch.bool)
    itself = torch.arange(past + T) == torch.arange(past, past + T)[:, None]  # (T, past + T)
    if slip != "no offset":
        allowed = allowed | itself  # no query sees nothing
    for i, block in enumerate(model.blocks):
        q, k, v = block.attn.qkv(block.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            if cache[i] is not None:
                k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
                if slip == "appended twice":
                    k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
            cache[i] = (k, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
        x = x + block.attn.proj(y.transpose(1, 2).reshape(B, T, C))
        x = x + block.mlp(block.ln2(x))
    return model.head(model.ln_f(x))


def padded_forward_by_hand(model, idx, real, cache=None, see_itself=True):
    """Right, written differently: softmax by hand with an additive mask, positions from the
    padding count, a cache of dicts. (``see_itself=False``: a padding query may see nothing.)"""
    B, T = idx.shape
    n_pad = (~real).sum(1, keepdim=True)  # left padding: all of it comes first
    total = real.size(1)
    pos = torch.arange(total - T, total)[None, :] - n_pad  # (B, T), negative on padding
    x = model.tok_emb(idx) + model.pos_emb(pos.clamp(min=0))
    cols, rows = torch.arange(total), torch.arange(total - T, total)
    ok = (cols[None, :] <= rows[:, None])[None] & real[:, None, :]  # (B, T, total)
    if see_itself:
        ok = ok | (cols[None, :] == rows[:, None])[None]
    bias = torch.zeros(ok.shape, dtype=x.dtype).masked_fill(~ok, -math.inf)[:, None]
    H = model.cfg.n_head
    for i, block in enumerate(model.blocks):
        h = block.ln1(x)
        q, k, v = block.attn.qkv(h).chunk(3, dim=-1)
        q, k, v = (t.reshape(B, T, H, -1).permute(0, 2, 1, 3) for t in (q, k, v))
        if cache is not None:
            old = cache[i] or {"k": k[:, :, :0], "v": v[:, :, :0]}
            k, v = torch.cat([old["k"], k], 2), torch.cat([old["v"], v], 2)
            cache[i] = {"k": k, "v": v}
        w = (q @ k.transpose(-1, -2) / math.sqrt(q.size(-1)) + bias).softmax(-1)
        x = x + block.attn.proj((w @ v).permute(0, 2, 1, 3).reshape(B, T, -1))
        x = x + block.mlp(block.ln2(x))
    return model.head(model.ln_f(x))


def generate_batch(model, prompts, max_new_tokens, pad_id=0, *, forward=padded_forward):
    T = max(len(p) for p in prompts)
    idx = torch.tensor([[pad_id] * (T - len(p)) + list(p) for p in prompts])
    real = torch.tensor([[False] * (T - len(p)) + [True] * len(p) for p in prompts])
    cache, new, out = [None] * model.cfg.n_layer, idx, [list(p) for p in prompts]
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = forward(model, new, real, cache)
            new = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
            real = torch.cat([real, torch.ones_like(new, dtype=torch.bool)], 1)
            for row, t in zip(out, new[:, 0].tolist()):
                row.append(t)
    return out


def generate_batch_tensors(model, prompts, max_new_tokens):
    """Right, written differently: pad by flipping pad_sequence, keep one growing tensor, and
    strip the padding at the end."""
    flipped = [torch.tensor(p[::-1]) for p in prompts]
    idx = torch.nn.utils.rnn.pad_sequence(flipped, batch_first=True, padding_value=-1).flip(1)
    real = idx >= 0
    seq, cache, fed = idx.clamp(min=0), [None] * model.cfg.n_layer, 0
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = padded_forward_by_hand(model, seq[:, fed:], real, cache)
        fed = seq.size(1)
        nxt = logits[torch.arange(len(prompts)), -1].argmax(-1)
        seq, real = torch.cat([seq, nxt[:, None]], 1), torch.cat([real, real[:, -1:] | True], 1)
    return [row[r].tolist() for row, r in zip(seq, real)]


# --- task 4 ----------------------------------------------------------------------------------

@pytest.mark.parametrize("right", [padded_forward, padded_forward_by_hand])
def test_right_padded_forwards_pass(right, capsys):
    checks.check_padded_forward(right)
    assert "Task 4 (padded_forward) passed" in capsys.readouterr().out


def _slipped(slip):
    return lambda model, idx, real, cache=None: padded_forward(model, idx, real, cache, slip=slip)


def _no_self(model, idx, real, cache=None):
    return padded_forward_by_hand(model, idx, real, cache, see_itself=False)


PADDED_WRONG = {
    "positions not offset for cached steps": (_slipped("positions restart"),
                                              "start again at position 0"),
    "positions counted from the padding": (_slipped("positions from padding"),
                                           "positions count the padding"),
    "padding attended to": (_slipped("attend padding"), "attend to the padding"),
    "new tokens masked without the offset": (_slipped("no offset"), "ignores the cache"),
    "mask dropped in cached steps": (_slipped("no mask when cached"), "dropped the mask"),
    "cache appended twice": (_slipped("appended twice"), "store each layer's keys"),
    "padding query sees nothing (NaN)": (_no_self, "NaN"),
    "logits of the last position only": (lambda *a: padded_forward(*a)[:, -1], "shape"),
}


@pytest.mark.parametrize("name", PADDED_WRONG)
def test_wrong_padded_forwards_fail_with_the_mistake_named(name):
    wrong, words = PADDED_WRONG[name]
    with pytest.raises(AssertionError, match=words) as info:
        checks.check_padded_forward(wrong)
    assert "Hint:" in str(info.value)


def test_a_forward_that_crashes_is_reported_not_raised():
    def crashes(model, idx, real, cache=None):  # the padding mask of the new columns only
        return padded_forward(model, idx, real[:, -idx.size(1):], cache)
    with pytest.raises(AssertionError, match="raised RuntimeError"):
        checks.check_padded_forward(crashes)


# --- task 5 ----------------------------------------------------------------------------------

@pytest.mark.parametrize("right", [generate_batch, generate_batch_tensors])
def test_right_generations_pass(right, capsys):
    checks.check_generate_batch(right)
    assert "Task 5 (generate_batch) passed" in capsys.readouterr().out


def _first_row(model, prompts, n):
    return gpt_build.reference_generate(model, prompts, n, row=0)


GENERATE_WRONG = {
    "argmax of the first position's row": (_first_row, "first position"),
    "softmax over the batch": (lambda m, p, n: gpt_build.reference_generate(m, p, n, norm_dim=0),
                               "normalised over the batch"),
    "right padding": (lambda m, p, n: gpt_build.reference_generate(m, p, n, right_pad=True),
                      "padded on the right"),
    "padding left in the output": (lambda m, p, n: [[0] * (max(map(len, p)) - len(q)) + row
                                                    for q, row in zip(p, generate_batch(m, p, n))],
                                   "without padding"),
    "a wrong forward underneath": (lambda m, p, n: generate_batch(
        m, p, n, forward=_slipped("positions restart")), "Hint:"),
}


@pytest.mark.parametrize("name", GENERATE_WRONG)
def test_wrong_generations_fail_with_the_mistake_named(name):
    wrong, words = GENERATE_WRONG[name]
    with pytest.raises(AssertionError, match=words):
        checks.check_generate_batch(wrong)


def test_greedy_choices_are_never_near_ties():
    """The two likeliest tokens differ by far more than float64 rounding at every step of every
    case, so a right batched answer cannot flip a greedy choice."""
    smallest = math.inf
    for sizes, lengths, n_new, seed in gpt_build._GENERATE_CASES:
        model = gpt_build.make_model(sizes, seed)
        for p in gpt_build.make_prompts(sizes[0], lengths, seed):
            out = model.generate(torch.tensor([p]), n_new, temperature=0)
            with torch.no_grad():
                logits = model(out[:, :-1])[0][0, len(p) - 1:]
            top2 = logits.topk(2, dim=-1).values
            smallest = min(smallest, float((top2[:, 0] - top2[:, 1]).min()))
    assert smallest > 1e-4, smallest


def test_stubs_are_not_done_yet_with_a_hint():
    def stub(*_args, **_kwargs):
        raise NotImplementedError
    for check in (checks.check_padded_forward, checks.check_generate_batch):
        with pytest.raises(checks.NotDoneYet, match="Hint:"):
            check(stub)
