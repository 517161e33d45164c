"""The exercise checks themselves: they accept right answers and reject the usual mistakes."""

import math

import numpy as np
import pytest

from minigpt.course import checks


def stub(*args):
    raise NotImplementedError


# --------------------------------------------------------------------------- welcome (chapter 00)

LN2 = math.log(2)


def assert_rejected(check, *fns, match):
    """The check raises a plain AssertionError (not NotDoneYet) whose message matches ``match``."""
    with pytest.raises(AssertionError, match=match) as caught:
        check(*fns)
    assert not isinstance(caught.value, checks.NotDoneYet)


def assert_passes(check, *fns, capsys):
    check(*fns)
    assert "passed" in capsys.readouterr().out


BPB_RIGHT = [
    pytest.param(lambda loss, t, b: loss * t / b / math.log(2), id="solution"),
    pytest.param(lambda loss, t, b: math.log2(math.e) * loss * (t / b), id="log2-e-factor"),
    pytest.param(lambda loss, t, b: np.float64(loss) * t / (b * np.log(2)), id="numpy-float"),
]

BPB_WRONG = [
    pytest.param(lambda loss, t, b: loss * t / b, "nats per byte", id="ln-not-log2"),
    pytest.param(lambda loss, t, b: loss * t / b * LN2, "wrong way", id="times-ln2"),
    pytest.param(
        lambda loss, t, b: loss * t / b / math.log2(math.e), "wrong way", id="over-log2-e"
    ),
    pytest.param(lambda loss, t, b: loss / LN2, "bits per token", id="bits-per-token"),
    pytest.param(lambda loss, t, b: loss * t / t / LN2, "bits per token", id="divide-by-tokens"),
    pytest.param(lambda loss, t, b: loss * b / t / LN2, "instead of n_bytes", id="ratio-inverted"),
    pytest.param(lambda loss, t, b: loss / LN2 / b, "forgot the n_tokens factor", id="no-n_tokens"),
    pytest.param(
        lambda loss, t, b: loss * t / b / math.log10(2), r"expected 8\.000000\. Hint", id="log10"
    ),
    pytest.param(lambda loss, t, b: str(loss * t / b / LN2), "one finite number", id="returns-str"),
]


@pytest.mark.parametrize("fn", BPB_RIGHT)
def test_bits_per_byte_accepts(fn, capsys):
    assert_passes(checks.check_bits_per_byte, fn, capsys=capsys)


@pytest.mark.parametrize(("fn", "match"), BPB_WRONG)
def test_bits_per_byte_rejects(fn, match):
    assert_rejected(checks.check_bits_per_byte, fn, match=match)


def test_bits_per_byte_stub():
    with pytest.raises(checks.NotDoneYet, match="Hint"):
        checks.check_bits_per_byte(stub)


def build_sorted(text):
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    return stoi, {i: ch for ch, i in stoi.items()}


def build_loop(text):
    stoi = {}
    for ch in sorted(set(text)):
        stoi[ch] = len(stoi)
    return stoi, dict(zip(stoi.values(), stoi.keys()))


def encode_ok(text, stoi):
    return [stoi[ch] for ch in text]


def decode_ok(ids, itos):
    return "".join(itos[i] for i in ids)


def build_first_appearance(text):
    stoi = {ch: i for i, ch in enumerate(dict.fromkeys(text))}
    return stoi, {i: ch for ch, i in stoi.items()}


def build_from_1(text):
    chars = sorted(set(text))
    return {ch: i for i, ch in enumerate(chars, 1)}, dict(enumerate(chars, 1))


def build_reversed(text):
    chars = sorted(set(text), reverse=True)
    return {ch: i for i, ch in enumerate(chars)}, dict(enumerate(chars))


def build_no_set(text):
    chars = sorted(text)
    return {ch: i for i, ch in enumerate(chars)}, dict(enumerate(chars))


def build_swapped(text):
    stoi, itos = build_sorted(text)
    return itos, stoi


def build_itos_by_char(text):
    chars = sorted(set(text))
    return {ch: i for i, ch in enumerate(chars)}, {ch: i for i, ch in enumerate(chars)}


def build_off_by_one(text):
    chars = sorted(set(text))
    n = len(chars) - 1  # range(len(chars) - 1) drops the last character
    return {chars[i]: i for i in range(n)}, {i: chars[i] for i in range(n)}


CODEC_RIGHT = [
    pytest.param(build_sorted, encode_ok, decode_ok, id="solution"),
    pytest.param(
        build_loop,
        lambda text, stoi: list(map(stoi.__getitem__, text)),
        lambda ids, itos: "".join(map(itos.get, ids)),
        id="loop-and-map",
    ),
    pytest.param(
        build_loop,
        lambda text, stoi: np.array([stoi[ch] for ch in text]),
        lambda ids, itos: "".join([itos[int(i)] for i in ids]),
        id="numpy-ids",
    ),
]

CODEC_WRONG = [
    pytest.param(
        build_first_appearance,
        encode_ok,
        decode_ok,
        "order of first appearance",
        id="first-appearance",
    ),
    pytest.param(build_from_1, encode_ok, decode_ok, "start at 1", id="ids-from-1"),
    pytest.param(
        build_sorted,
        encode_ok,
        lambda ids, itos: [itos[i] for i in ids],
        "decode returned a list",
        id="decode-list",
    ),
    pytest.param(
        build_reversed, encode_ok, decode_ok, "sorted character order", id="reverse-sorted"
    ),
    pytest.param(
        build_no_set, encode_ok, decode_ok, "keeps repeated characters", id="sorted-without-set"
    ),
    pytest.param(
        build_swapped, encode_ok, decode_ok, r"returned \(itos, stoi\)", id="swapped-return"
    ),
    pytest.param(
        build_itos_by_char, encode_ok, decode_ok, "itos must invert stoi", id="itos-keyed-by-char"
    ),
    pytest.param(
        build_off_by_one,
        encode_ok,
        decode_ok,
        "one entry per distinct character",
        id="last-char-dropped",
    ),
    pytest.param(
        build_sorted,
        lambda text, stoi: [stoi[ch] for ch in set(text)],
        decode_ok,
        r"encode\(.*\) should map each character to its id",
        id="encode-set",
    ),
    pytest.param(
        build_sorted, lambda text, stoi: list(text), decode_ok, "integer ids", id="encode-chars"
    ),
    pytest.param(
        build_sorted, encode_ok, lambda ids, itos: "x", "give the text back", id="decode-wrong"
    ),
]


@pytest.mark.parametrize(("build", "enc", "dec"), CODEC_RIGHT)
def test_char_codec_accepts(build, enc, dec, capsys):
    assert_passes(checks.check_char_codec, build, enc, dec, capsys=capsys)


@pytest.mark.parametrize(("build", "enc", "dec", "match"), CODEC_WRONG)
def test_char_codec_rejects(build, enc, dec, match):
    assert_rejected(checks.check_char_codec, build, enc, dec, match=match)


def test_char_codec_stubs():
    with pytest.raises(checks.NotDoneYet):
        checks.check_char_codec(stub, stub, stub)
    with pytest.raises(checks.NotDoneYet):
        checks.check_char_codec(build_sorted, stub, stub)
    with pytest.raises(checks.NotDoneYet):
        checks.check_char_codec(build_sorted, encode_ok, stub)


def flops_ok(n, d):
    return 6 * n * d


def pf_days_ok(flops):
    return flops / 8.64e19


COMPUTE_RIGHT = [
    pytest.param(flops_ok, pf_days_ok, id="solution"),
    pytest.param(
        lambda n, d: 2 * n * d + 4 * n * d,
        lambda f: f / 1e15 / (24 * 60 * 60),
        id="forward-plus-backward",
    ),
    pytest.param(
        lambda n, d: np.float64(n) * d * 6, lambda f: np.float64(f) / (1e15 * 86_400), id="numpy"
    ),
]

COMPUTE_WRONG = [
    pytest.param(
        lambda n, d: 3.15e23,
        pf_days_ok,
        "same value for different arguments",
        id="flops-hard-coded",
    ),
    pytest.param(lambda n, d: 2 * n * d, pf_days_ok, "forward pass", id="2ND"),
    pytest.param(lambda n, d: 4 * n * d, pf_days_ok, "backward pass", id="4ND"),
    pytest.param(lambda n, d: n * d, pf_days_ok, "factor 6", id="ND"),
    pytest.param(flops_ok, lambda f: f / (1e15 * 3_600), "3,600 s", id="pf-hour"),
    pytest.param(flops_ok, lambda f: f / 1e15, "PF-seconds", id="pf-seconds"),
    pytest.param(flops_ok, lambda f: f / 86_400, "peta", id="pf-no-1e15"),
    pytest.param(flops_ok, lambda f: f * 8.64e19, "multiplied", id="pf-multiply"),
    pytest.param(
        flops_ok,
        lambda f: 3.15e23 / 8.64e19,
        "same value for different FLOP counts",
        id="pf-hard-coded",
    ),
    pytest.param(flops_ok, lambda f: f / 8.64e19 / 365, r"= 3,646\. Hint", id="pf-years"),
]


@pytest.mark.parametrize(("flops", "days"), COMPUTE_RIGHT)
def test_training_compute_accepts(flops, days, capsys):
    assert_passes(checks.check_training_compute, flops, days, capsys=capsys)


@pytest.mark.parametrize(("flops", "days", "match"), COMPUTE_WRONG)
def test_training_compute_rejects(flops, days, match):
    assert_rejected(checks.check_training_compute, flops, days, match=match)


def test_training_compute_stubs():
    with pytest.raises(checks.NotDoneYet, match="Hint"):
        checks.check_training_compute(stub, stub)
    with pytest.raises(checks.NotDoneYet, match="Hint"):
        checks.check_training_compute(flops_ok, stub)
