"""The chapter 04 exercise checks: they accept right answers and name the usual mistakes."""

import math

import pytest
import torch
import torch.nn.functional as F

from minigpt.course import checks
from minigpt.course.checks import attention as attention_checks
from minigpt.models.transformer import mask_tokens as package_mask_tokens


def stub(*args):
    raise NotImplementedError


def causal_mask(T):
    return torch.ones(T, T, dtype=torch.bool).tril()


def alibi(q, k, v, slopes, sign=-1, scale=True, causal=True, dim=-1, slope_shape=(-1, 1, 1)):
    """ALiBi attention with switches for the usual mistakes (matmul, masked_fill)."""
    T = q.size(-2)
    distance = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # i - j
    scores = q @ k.transpose(-2, -1) / (math.sqrt(q.size(-1)) if scale else 1)
    scores = scores + sign * slopes.view(slope_shape) * distance
    if causal:
        scores = scores.masked_fill(distance < 0, float("-inf"))
    return torch.softmax(scores, dim=dim) @ v


def alibi_einsum(q, k, v, slopes):
    """Right, written differently: einsum, an additive -inf bias built with torch.where, a loop over heads."""
    T, d = q.shape[-2:]
    i, j = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    heads = []
    for h, m in enumerate(slopes.tolist()):
        bias = torch.where(j <= i, -m * (i - j).float(), torch.tensor(float("-inf")))
        scores = torch.einsum("bqd,bkd->bqk", q[:, h], k[:, h]) / d ** 0.5 + bias
        heads.append(scores.softmax(-1) @ v[:, h])
    return torch.stack(heads, dim=1)


def alibi_package(q, k, v, slopes):
    """Right, a third way: the penalty folded into the keys' side is not possible, so the scores are
    the package's (scaled) ones times sqrt(d) / sqrt(d); here: torch's function with a float mask."""
    T = q.size(-2)
    pos = torch.arange(T, dtype=torch.float32)
    bias = -slopes[:, None, None] * (pos[:, None] - pos[None, :])
    bias = bias.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def encoding(T, d, swap=False, freq_exponent=lambda i, d: 2 * i / d):
    t = torch.arange(T, dtype=torch.float32)[:, None]
    angle = t / 10000 ** freq_exponent(torch.arange(d // 2), d)
    pe = torch.empty(T, d)
    pe[:, 0::2], pe[:, 1::2] = (torch.cos(angle), torch.sin(angle)) if swap else (torch.sin(angle), torch.cos(angle))
    return pe


def encoding_loops(T, d):
    """Right, written differently: plain Python loops and math, exp-log form of the frequency."""
    rows = [[0.0] * d for _ in range(T)]
    for t in range(T):
        for i in range(d // 2):
            angle = t * math.exp(-math.log(10000.0) * 2 * i / d)
            rows[t][2 * i], rows[t][2 * i + 1] = math.sin(angle), math.cos(angle)
    return torch.tensor(rows)


def encoding_stack(T, d):
    """Right, a third way: outer product, then sin and cos stacked on a new last axis and flattened."""
    angle = torch.outer(torch.arange(T).float(), 1 / 10000 ** (torch.arange(0, d, 2).float() / d))
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)


def encoding_halves(T, d):
    pe = encoding(T, d)
    return torch.cat([pe[:, 0::2], pe[:, 1::2]], dim=1)


def encoding_per_feature(T, d):
    """The frequency from the feature's index k rather than the pair's: t / 10000 ** (2k / d)."""
    angle = torch.arange(T).float()[:, None] / 10000 ** (2 * torch.arange(d).float() / d)
    pe = angle.sin()
    pe[:, 1::2] = angle[:, 1::2].cos()
    return pe


def mask_tokens(ids, mask_id, vocab_size, generator=None, p=0.15, split=(0.8, 0.9), draw=None):
    """BERT's masking with torch.rand thresholds; ``draw(ids, where, vocab_size, generator)`` gives
    the random tokens (by default one uniform token of 0 .. vocab_size - 1 per position)."""
    chosen = torch.rand(ids.shape, generator=generator) < p
    r = torch.rand(ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (r < split[0])] = mask_id
    where = chosen & (r >= split[0]) & (r < split[1])
    draw = draw or (lambda ids, where, V, g: torch.randint(0, V, (int(where.sum()),), generator=g))
    inputs[where] = draw(ids, where, vocab_size, generator)
    return inputs, torch.where(chosen, ids, torch.full_like(ids, -100))


def mask_tokens_bernoulli(ids, mask_id, vocab_size, generator=None):
    """The same, written differently: Bernoulli choice, then one multinomial draw of
    [MASK] / random / keep per chosen position; its random numbers come in another order."""
    chosen = torch.bernoulli(torch.full(ids.shape, 0.15), generator=generator).bool()
    how = torch.multinomial(torch.tensor([0.8, 0.1, 0.1]), int(chosen.sum()), replacement=True,
                            generator=generator)
    new = ids[chosen]
    new[how == 0] = mask_id
    new[how == 1] = torch.randint(vocab_size, (int((how == 1).sum()),), generator=generator)
    inputs = ids.clone()
    inputs[chosen] = new
    return inputs, ids.masked_fill(~chosen, -100)


def test_checks_are_exported():
    assert set(attention_checks.__all__) == {"check_causal_mask", "check_alibi_attention",
                                             "check_sinusoidal_encoding", "check_mask_tokens"}
    assert all(hasattr(checks, name) for name in attention_checks.__all__)


@pytest.mark.parametrize("right", [
    causal_mask,
    lambda T: torch.arange(T)[:, None] >= torch.arange(T)[None, :],
    lambda T: ~torch.ones(T, T, dtype=torch.bool).triu(1),
], ids=["tril", "arange-compare", "not-triu"])
def test_causal_mask_check_accepts_right_answers(right, capsys):
    checks.check_causal_mask(right)
    assert "passed" in capsys.readouterr().out


def test_causal_mask_check(capsys):
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_causal_mask(stub)
    with pytest.raises(AssertionError, match="transpose"):
        checks.check_causal_mask(lambda T: causal_mask(T).T)
    with pytest.raises(AssertionError, match="transpose"):
        checks.check_causal_mask(lambda T: torch.ones(T, T, dtype=torch.bool).triu())
    with pytest.raises(AssertionError, match="swapped"):
        checks.check_causal_mask(lambda T: ~causal_mask(T))
    with pytest.raises(AssertionError, match="diagonal is missing"):
        checks.check_causal_mask(lambda T: causal_mask(T).tril(-1))
    with pytest.raises(AssertionError, match="torch.bool"):
        checks.check_causal_mask(lambda T: causal_mask(T).float())


@pytest.mark.parametrize("right", [alibi, alibi_einsum, alibi_package], ids=["matmul", "einsum-loop", "torch-sdpa"])
def test_alibi_attention_check_accepts_right_answers(right, capsys):
    checks.check_alibi_attention(right)
    assert "passed" in capsys.readouterr().out


def test_alibi_slopes_zero_is_causal_attention():
    """The reference itself: with every slope 0, ALiBi attention is the package's causal attention."""
    from minigpt.models.attention import scaled_dot_product_attention
    q, k, v = torch.randn(3, 2, 4, 6, 8).unbind(0)
    want, _ = scaled_dot_product_attention(q, k, v, causal_mask(6))
    torch.testing.assert_close(alibi_package(q, k, v, torch.zeros(4)), want)


ALIBI_WRONG = {
    "no sqrt(d)": (lambda q, k, v, s: alibi(q, k, v, s, scale=False), "not divided by sqrt"),
    "penalty added": (lambda q, k, v, s: alibi(q, k, v, s, sign=1), "raises the scores of distant keys"),
    "distance j - i": (lambda q, k, v, s: alibi(q, k, v, -s), "raises the scores of distant keys"),
    "no causal mask": (lambda q, k, v, s: alibi(q, k, v, s, causal=False), "causal mask is missing"),
    "softmax over queries": (lambda q, k, v, s: alibi(q, k, v, s, dim=-2), "wrong axis"),
    "slopes along the keys": (lambda q, k, v, s: alibi(q, k, v, s, slope_shape=(-1,)), "slopes run along the keys"),
    "weights returned too": (lambda q, k, v, s: (alibi(q, k, v, s), None), "not a tuple"),
}


@pytest.mark.parametrize("name", ALIBI_WRONG)
def test_alibi_attention_check_names_the_mistake(name):
    wrong, mistake = ALIBI_WRONG[name]
    with pytest.raises(AssertionError, match=mistake) as error:
        checks.check_alibi_attention(wrong)
    assert "Hint:" in str(error.value) and not isinstance(error.value, checks.NotDoneYet)


def test_alibi_attention_check_stub_is_not_done_yet():
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_alibi_attention(stub)


def test_alibi_attention_check_reports_a_shape_error():
    with pytest.raises(AssertionError, match="slopes\\[:, None, None\\]") as error:
        checks.check_alibi_attention(lambda q, k, v, s: alibi(q, k, v, s, slope_shape=(-1, 1, 1, 1)))
    assert "raised" in str(error.value)


@pytest.mark.parametrize("right", [encoding, encoding_loops, encoding_stack], ids=["slices", "loops", "stack"])
def test_sinusoidal_encoding_check_accepts_right_answers(right, capsys):
    checks.check_sinusoidal_encoding(right)
    assert "passed" in capsys.readouterr().out


def test_sinusoidal_encoding_check(capsys):
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_sinusoidal_encoding(stub)
    with pytest.raises(AssertionError, match="sin and cos are swapped"):
        checks.check_sinusoidal_encoding(lambda T, d: encoding(T, d, swap=True))
    with pytest.raises(AssertionError, match="check the frequency"):
        checks.check_sinusoidal_encoding(lambda T, d: encoding(T, d, freq_exponent=lambda i, d: i / d))
    with pytest.raises(AssertionError, match="two halves"):
        checks.check_sinusoidal_encoding(encoding_halves)
    with pytest.raises(AssertionError, match="start at 1"):
        checks.check_sinusoidal_encoding(lambda T, d: encoding(T + 1, d)[1:])
    with pytest.raises(AssertionError, match="feature's index"):
        checks.check_sinusoidal_encoding(encoding_per_feature)
    with pytest.raises(AssertionError, match="odd \\(cos\\) ones"):
        checks.check_sinusoidal_encoding(lambda T, d: encoding(T, d).index_fill(1, torch.tensor([1]), 0.0))


def test_mask_tokens_check(capsys):
    checks.check_mask_tokens(mask_tokens)
    assert "passed" in capsys.readouterr().out
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_mask_tokens(stub)
    with pytest.raises(AssertionError, match="BERT chooses 15%"):
        checks.check_mask_tokens(lambda *a: mask_tokens(*a, p=0.3))
    with pytest.raises(AssertionError, match="80% \\[MASK\\]"):
        checks.check_mask_tokens(lambda *a: mask_tokens(*a, split=(1.0, 1.0)))
    with pytest.raises(AssertionError, match="keep their token"):
        checks.check_mask_tokens(lambda ids, *a: (mask_tokens(ids, *a)[0] * 0, mask_tokens(ids, *a)[1]))
    with pytest.raises(AssertionError, match="original token"):
        checks.check_mask_tokens(lambda ids, *a: (ids, torch.zeros_like(ids)))
    with pytest.raises(AssertionError, match="pair"):
        checks.check_mask_tokens(lambda *a: mask_tokens(*a)[0])


@pytest.mark.parametrize("right", [
    mask_tokens,  # torch.rand thresholds, a randint only for the positions that need one
    mask_tokens_bernoulli,  # bernoulli + multinomial: other draws, in another order
    lambda ids, mask_id, V, g=None: package_mask_tokens(ids, mask_id, V, generator=g),
], ids=["rand-thresholds", "bernoulli-multinomial", "package"])
def test_mask_tokens_check_accepts_right_answers_written_differently(right, capsys):
    checks.check_mask_tokens(right)
    assert "passed" in capsys.readouterr().out


def _all_positions(ids, mask_id, V, g=None):
    """The 80/10/10 split applied to every position, not only to the chosen 15%."""
    chosen = torch.rand(ids.shape, generator=g) < 0.15
    r = torch.rand(ids.shape, generator=g)
    inputs = ids.masked_fill(r < 0.8, mask_id)
    where = (r >= 0.8) & (r < 0.9)
    inputs[where] = torch.randint(0, V, (int(where.sum()),), generator=g)
    return inputs, torch.where(chosen, ids, -100)


def _in_place(ids, mask_id, V, g=None):
    """Targets made first, then the caller's ids corrupted in place."""
    inputs, targets = mask_tokens(ids, mask_id, V, g)
    ids.copy_(inputs)
    return ids, targets


def _targets_where_changed(ids, mask_id, V, g=None):
    inputs, _ = mask_tokens(ids, mask_id, V, g)
    return inputs, torch.where(inputs != ids, ids, -100)


def _draw(fn):
    return lambda ids, mask_id, V, g=None: mask_tokens(ids, mask_id, V, g, draw=fn)


WRONG = {
    "one random token for all": (_draw(lambda ids, w, V, g: torch.randint(0, V, (1,), generator=g)),
                                 "not one token"),
    "random token always 0": (_draw(lambda ids, w, V, g: 0), "100% of them are token 0"),
    "random tokens include mask_id": (_draw(lambda ids, w, V, g: torch.randint(0, V + 1, (int(w.sum()),),
                                                                               generator=g)),
                                      "include mask_id"),
    "random tokens 0 .. V - 2": (_draw(lambda ids, w, V, g: torch.randint(0, V - 1, (int(w.sum()),),
                                                                          generator=g)),
                                 "replaced by token \\[49\\]"),
    "random tokens 1 .. V - 1": (_draw(lambda ids, w, V, g: torch.randint(1, V, (int(w.sum()),), generator=g)),
                                 "replaced by token \\[0\\]"),
    "random tokens from the batch": (_draw(lambda ids, w, V, g: ids.flatten()[
        torch.randint(0, ids.numel(), (int(w.sum()),), generator=g)]), "not spread evenly"),
    "random token never the original": (_draw(lambda ids, w, V, g: (ids[w] + torch.randint(
        1, V, (int(w.sum()),), generator=g)) % V), "never the original"),
    "80/10/10 over all positions": (_all_positions, "only to the chosen 15%"),
    "targets on every position": (lambda ids, *a: (mask_tokens(ids, *a)[0], ids.clone()),
                                  "Every position has a target"),
    "targets only where changed": (_targets_where_changed, "Every chosen position changed"),
    "targets are the corrupted inputs": (lambda *a: (mask_tokens(*a)[0],) * 2, "corrupted inputs"),
    "[MASK] for 15% of the chosen": (lambda *a: mask_tokens(*a, split=(0.15, 0.9)), "not 15%"),
    "generator not used": (lambda ids, mask_id, V, g=None: mask_tokens(ids, mask_id, V), "seeded alike"),
    "own fixed seed": (lambda ids, mask_id, V, g=None: mask_tokens(ids, mask_id, V, torch.Generator().manual_seed(0)),
                       "seeded differently"),
    "ids changed in place": (_in_place, "in place"),
    "float targets": (lambda *a: tuple(t.float() for t in mask_tokens(*a)), "dtype"),
}


@pytest.mark.parametrize("name", WRONG)
def test_mask_tokens_check_names_the_mistake(name):
    wrong, mistake = WRONG[name]
    with pytest.raises(AssertionError, match=mistake) as error:
        checks.check_mask_tokens(wrong)
    assert "Hint:" in str(error.value) and not isinstance(error.value, checks.NotDoneYet)
