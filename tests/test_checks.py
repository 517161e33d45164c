"""The exercise checks themselves: they accept right answers and reject the usual mistakes."""

import math

import pytest

from minigpt.course import checks


def stub(*args):
    raise NotImplementedError


def test_bits_per_byte_check():
    checks.check_bits_per_byte(lambda loss, t, b: loss * t / b / math.log(2))
    with pytest.raises(checks.NotDoneYet, match="Hint"):
        checks.check_bits_per_byte(stub)
    with pytest.raises(AssertionError, match="nats per byte"):
        checks.check_bits_per_byte(lambda loss, t, b: loss * t / b)
    with pytest.raises(AssertionError, match="bits per token"):
        checks.check_bits_per_byte(lambda loss, t, b: loss / math.log(2))


def test_char_codec_check():
    def build(text):
        chars = sorted(set(text))
        return {c: i for i, c in enumerate(chars)}, dict(enumerate(chars))

    checks.check_char_codec(build, lambda s, stoi: [stoi[c] for c in s], lambda ids, itos: "".join(itos[i] for i in ids))
    with pytest.raises(checks.NotDoneYet):
        checks.check_char_codec(stub, stub, stub)
    with pytest.raises(AssertionError, match="one entry per distinct character"):
        checks.check_char_codec(lambda t: build(t[:5]), stub, stub)
    with pytest.raises(AssertionError, match="decode"):
        checks.check_char_codec(build, lambda s, stoi: [stoi[c] for c in s], lambda ids, itos: "x")


def test_training_compute_check():
    checks.check_training_compute(lambda n, d: 6 * n * d, lambda f: f / 8.64e19)
    with pytest.raises(AssertionError, match="6 \\* N \\* D"):
        checks.check_training_compute(lambda n, d: 2 * n * d, lambda f: f / 8.64e19)
    with pytest.raises(AssertionError, match="pf_days"):
        checks.check_training_compute(lambda n, d: 6 * n * d, lambda f: f / 1e15)
