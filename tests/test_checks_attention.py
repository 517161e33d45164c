"""The chapter 04 exercise checks: they accept right answers and name the usual mistakes."""

import math

import pytest
import torch

from minigpt.course import checks
from minigpt.course.checks import attention as attention_checks


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


def mask_tokens(ids, mask_id, vocab_size, generator=None, p=0.15, split=(0.8, 0.9)):
    chosen = torch.rand(ids.shape, generator=generator) < p
    r = torch.rand(ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (r < split[0])] = mask_id
    rand = chosen & (r >= split[0]) & (r < split[1])
    inputs[rand] = torch.randint(0, vocab_size, (int(rand.sum()),), generator=generator)
    return inputs, torch.where(chosen, ids, torch.full_like(ids, -100))


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
