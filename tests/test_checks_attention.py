"""The chapter 04 exercise checks: they accept right answers and name the usual mistakes."""

import math

import pytest
import torch

from minigpt.course import checks
from minigpt.course.checks import attention as attention_checks
from minigpt.models.transformer import mask_tokens as package_mask_tokens


def stub(*args):
    raise NotImplementedError


def causal_mask(T):
    return torch.ones(T, T, dtype=torch.bool).tril()


def attention(q, k, v, mask=None, scale=True, dim=-1):
    scores = q @ k.transpose(-2, -1) / (math.sqrt(q.size(-1)) if scale else 1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=dim) @ v


def encoding(T, d, swap=False, freq_exponent=lambda i, d: 2 * i / d):
    t = torch.arange(T, dtype=torch.float32)[:, None]
    angle = t / 10000 ** freq_exponent(torch.arange(d // 2), d)
    pe = torch.empty(T, d)
    pe[:, 0::2], pe[:, 1::2] = (torch.cos(angle), torch.sin(angle)) if swap else (torch.sin(angle), torch.cos(angle))
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
    assert set(attention_checks.__all__) == {"check_causal_mask", "check_attention",
                                             "check_sinusoidal_encoding", "check_mask_tokens"}
    assert all(hasattr(checks, name) for name in attention_checks.__all__)


def test_causal_mask_check(capsys):
    checks.check_causal_mask(causal_mask)
    assert "passed" in capsys.readouterr().out
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_causal_mask(stub)
    with pytest.raises(AssertionError, match="transpose"):
        checks.check_causal_mask(lambda T: causal_mask(T).T)
    with pytest.raises(AssertionError, match="swapped"):
        checks.check_causal_mask(lambda T: ~causal_mask(T))
    with pytest.raises(AssertionError, match="diagonal is missing"):
        checks.check_causal_mask(lambda T: causal_mask(T).tril(-1))
    with pytest.raises(AssertionError, match="torch.bool"):
        checks.check_causal_mask(lambda T: causal_mask(T).float())


def test_attention_check(capsys):
    checks.check_attention(attention)
    assert "passed" in capsys.readouterr().out
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_attention(stub)
    with pytest.raises(AssertionError, match="not divided by sqrt"):
        checks.check_attention(lambda q, k, v, mask=None: attention(q, k, v, mask, scale=False))
    with pytest.raises(AssertionError, match="wrong axis"):
        checks.check_attention(lambda q, k, v, mask=None: attention(q, k, v, mask, dim=-2))
    with pytest.raises(AssertionError, match="mask is ignored"):
        checks.check_attention(lambda q, k, v, mask=None: attention(q, k, v))
    with pytest.raises(AssertionError, match="not a tuple"):
        checks.check_attention(lambda q, k, v, mask=None: (attention(q, k, v, mask), None))


def test_sinusoidal_encoding_check(capsys):
    checks.check_sinusoidal_encoding(encoding)
    assert "passed" in capsys.readouterr().out
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_sinusoidal_encoding(stub)
    with pytest.raises(AssertionError, match="sin and cos are swapped"):
        checks.check_sinusoidal_encoding(lambda T, d: encoding(T, d, swap=True))
    with pytest.raises(AssertionError, match="check the frequency"):
        checks.check_sinusoidal_encoding(lambda T, d: encoding(T, d, freq_exponent=lambda i, d: i / d))


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
