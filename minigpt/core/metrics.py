"""Metrics: perplexity, bits per token and bits per byte.

Every model in the course, from a bigram count table to a GPT, is trained and judged by its
*cross-entropy*: the mean of ``-ln p(next token)`` over a text, in nats per token. That is the
number PyTorch's ``F.cross_entropy`` returns. This module turns it into the three numbers
the course reports:

- ``perplexity(loss)``          ``e ** loss``: "as unsure as a uniform choice among this many tokens"
- ``bits_per_token(loss)``      the same loss in bits instead of nats
- ``bits_per_byte(loss, n_tokens, n_bytes)``   the one number comparable across tokenizers

    >>> import math
    >>> round(perplexity(math.log(65)), 6)               # uniform over 65 characters
    65.0
    >>> bits_per_byte(math.log(256), n_tokens=1000, n_bytes=1000)   # uniform over bytes
    8.0

Why bytes: perplexity and bits per token depend on what a token is. A word-level model
predicts fewer, harder tokens than a character-level one, so their per-token losses can't be
compared. Every tokenizer, however, encodes the same text as the same UTF-8 bytes, so the total
information a model needs to reproduce the text, divided by its number of bytes, is a
tokenizer-independent score: bits per byte. Lower is better; 8 means "no better than guessing
bytes uniformly"; good compressors of English reach about 2, large language models well under 1.

Deliberately left out: accuracy, BLEU and other task metrics; confidence intervals.
"""

from __future__ import annotations

import math
import operator

__all__ = ["bits_per_byte", "bits_per_token", "check_count", "is_integer", "perplexity"]


def _check_loss(loss_nats: float) -> float:
    """Return ``loss_nats`` as a float, or raise ValueError if it can't be a cross-entropy."""
    loss = float(loss_nats)  # also accepts 0-d tensors and NumPy scalars
    if math.isnan(loss):
        raise ValueError(
            "The loss is NaN, so no metric can be computed from it. Training or evaluation "
            "diverged or divided by zero: check the data (empty split?) and try a lower "
            "learning rate."
        )
    if loss < 0:
        raise ValueError(
            f"A cross-entropy loss is never negative, got {loss}. Pass the mean of "
            "-ln p(token) in nats (what F.cross_entropy returns), not a log-probability."
        )
    return loss  # +inf is allowed: a model that gives a seen token probability 0


def is_integer(value: object) -> bool:
    """True for integers (Python, NumPy, 0-d integer tensors); False for bools and for floats,
    even whole ones such as 5.0. The one test of "is this a count?" the package uses."""
    try:
        operator.index(value)
    except TypeError:
        return False
    return not isinstance(value, bool)


def check_count(value: int, name: str) -> int:
    """Return ``value`` as an int, or raise if it is not a positive integer."""
    if not is_integer(value):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    count = operator.index(value)
    if count <= 0:
        raise ValueError(f"{name} must be positive, got {count}")
    return count


def perplexity(loss_nats: float) -> float:
    """Perplexity of a mean cross-entropy ``loss_nats`` (nats per token): ``exp(loss_nats)``.

    A model with perplexity V is, on average, as uncertain as a uniform choice among V tokens,
    so an untrained model over a vocabulary of V tokens starts near perplexity V. An infinite
    loss (some token got probability 0) gives an infinite perplexity.
    """
    loss = _check_loss(loss_nats)
    try:
        return math.exp(loss)
    except OverflowError:  # loss > ~709 nats: still a number, just beyond float range
        return math.inf


def bits_per_token(loss_nats: float) -> float:
    """The mean cross-entropy in bits per token: ``loss_nats / ln 2``.

    ``2 ** bits_per_token(loss) == perplexity(loss)``.
    """
    return _check_loss(loss_nats) / math.log(2)


def bits_per_byte(loss_nats: float, n_tokens: int, n_bytes: int) -> float:
    """Bits per UTF-8 byte of a text, the course's metric across tokenizers.

    Args:
        loss_nats: mean cross-entropy per token, in nats, over the text.
        n_tokens: how many tokens the loss was averaged over (predicted tokens).
        n_bytes: how many UTF-8 bytes those tokens encode (``len(text.encode("utf-8"))``).

    Returns:
        ``loss_nats / ln 2 * n_tokens / n_bytes``: the total information in bits, spread over
        the bytes. With byte-level tokens (``n_tokens == n_bytes``) this equals bits per token.
    """
    loss = _check_loss(loss_nats)
    tokens = check_count(n_tokens, "n_tokens")
    n = check_count(n_bytes, "n_bytes")
    total_bits = loss / math.log(2) * tokens  # bits per token, times tokens
    return total_bits / n
