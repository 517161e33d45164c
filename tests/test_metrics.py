"""Tests for minigpt.core.metrics: values worked out by hand, properties, and input checks."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minigpt.core.metrics import bits_per_byte, bits_per_token, perplexity


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    for vocab in (2, 65, 256, 50257):
        assert perplexity(math.log(vocab)) == pytest.approx(vocab, rel=1e-12)


def test_perplexity_of_a_perfect_model_is_one():
    assert perplexity(0.0) == 1.0


def test_uniform_over_bytes_with_byte_tokens_is_exactly_8_bits_per_byte():
    assert bits_per_byte(math.log(256), n_tokens=1000, n_bytes=1000) == 8.0
    assert bits_per_token(math.log(256)) == 8.0


def test_bits_per_byte_spreads_the_bits_over_the_bytes():
    # A word-level model: 100 tokens, 2 nats each, covering 500 bytes of text.
    # Total 200 nats = 200 / ln 2 bits, over 500 bytes: 0.4 / ln 2 = 0.57708 bits per byte.
    assert bits_per_byte(2.0, n_tokens=100, n_bytes=500) == pytest.approx(0.4 / math.log(2))
    assert bits_per_byte(2.0, n_tokens=100, n_bytes=500) == pytest.approx(0.57708, abs=1e-5)
    # Uniform over 4 tokens that each encode 2 bytes: 2 bits per token, 1 bit per byte.
    assert bits_per_byte(math.log(4), n_tokens=10, n_bytes=20) == pytest.approx(1.0)


def test_bits_per_byte_is_the_same_for_two_tokenizations_of_one_text():
    # The same total information (nats) over the same bytes, tokenized coarsely or finely.
    total_nats, n_bytes = 1234.5, 1000
    coarse = bits_per_byte(total_nats / 250, n_tokens=250, n_bytes=n_bytes)
    fine = bits_per_byte(total_nats / 1000, n_tokens=1000, n_bytes=n_bytes)
    assert coarse == pytest.approx(fine)


@given(st.floats(min_value=0.0, max_value=50.0, allow_nan=False))
def test_two_to_the_bits_per_token_is_the_perplexity(loss):
    assert 2 ** bits_per_token(loss) == pytest.approx(perplexity(loss), rel=1e-9)


@given(
    st.floats(min_value=0.0, max_value=20.0),
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=1, max_value=10**6),
)
def test_bits_per_byte_times_bytes_is_the_total_bits(loss, n_tokens, n_bytes):
    total_bits = bits_per_byte(loss, n_tokens, n_bytes) * n_bytes
    assert total_bits == pytest.approx(loss * n_tokens / math.log(2), rel=1e-9, abs=1e-12)


def test_accepts_tensors_and_numpy_values():
    assert perplexity(torch.tensor(math.log(3.0))) == pytest.approx(3.0)
    assert bits_per_byte(np.float32(math.log(2)), np.int64(5), np.int64(5)) == pytest.approx(1.0)


def test_infinite_loss_gives_infinite_metrics():
    assert perplexity(math.inf) == math.inf
    assert perplexity(1000.0) == math.inf  # beyond float range, not an OverflowError
    assert bits_per_byte(math.inf, 3, 4) == math.inf


def test_nan_loss_is_a_clear_error():
    with pytest.raises(ValueError, match="NaN"):
        perplexity(float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        bits_per_byte(float("nan"), 1, 1)


def test_negative_loss_is_an_error():
    with pytest.raises(ValueError, match="never negative"):
        bits_per_token(-0.1)


@pytest.mark.parametrize("n_tokens, n_bytes", [(0, 10), (10, 0), (-1, 10), (10, -5)])
def test_counts_must_be_positive(n_tokens, n_bytes):
    with pytest.raises(ValueError, match="positive"):
        bits_per_byte(1.0, n_tokens, n_bytes)


def test_counts_must_be_integers():
    with pytest.raises(TypeError, match="n_bytes"):
        bits_per_byte(1.0, 10, 10.5)
