"""Checks for the build tasks of exercises/05_tokenization.ipynb: a BPE trainer that keeps its pair
counts up to date (task 4), and tiktoken's encoding rule on the learner's own ranks (task 5).

The reference is the package: ``train_bpe`` for the merges, ``BPETokenizer`` for the ranks, and
tiktoken itself for the encodings. The texts are chosen so that the usual mistakes change the
answer: English and Chinese prose, emoji and accented letters (bytes, not characters), runs such
as "aaaa" and "====" (overlapping pairs), short words that end in the same letters (pairs across
pre-tokens), and small counts (ties). A trainer that goes wrong is diagnosed at its first wrong
merge: the check replays the right merges up to there and compares the counts of the pair it
took with the pair it should have taken.
"""

from __future__ import annotations

import random
import warnings
from collections import Counter
from collections.abc import Callable
from itertools import pairwise

import regex

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import matching_tip as _tip
from minigpt.course.checks._base import passed as _passed
from minigpt.data.bpe import GPT4_PATTERN, BPETokenizer, merge_word, train_bpe
from minigpt.data.samples import CHINESE, ENGLISH

__all__ = ["check_bpe_encoder", "check_bpe_trainer"]

Pair = tuple[int, int]

_EMOJI = ("emoji 🙂🙂 and 👍🏽👍🏽 thumbs, 🎉🎉🎉 parties; café, naïve, Straße, 你好，世界！ "
          "the 🙂 smile, the 👍🏽 thumb, the 🎉 party. Ünïcödé ✨✨ sparkles ✨ ") * 4
_RUNS = ("aaa aaaa aaaaa baaa aaab ==== ======== ... ..... zzz zzzz !!!! 1111 11111111 "
         "mmm hmm hmmm aaaa aaa ") * 3
_ENDS = "the then they them there these other mother brother father either neither " * 5
_RANDOM = "".join(random.Random(5).choices("aab  ab\né€🙂1", k=800))  # many ties and overlaps
_TRAIN_CASES = [  # (text, vocab_size)
    (ENGLISH, 400),
    (CHINESE, 330),
    (_EMOJI, 320),
    (_RUNS, 300),
    (_ENDS, 290),
    (_RANDOM, 330),
    (ENGLISH + "\n" + CHINESE, 256),  # no merges at all
    ("ab ab ab", 270),  # runs out of pairs after one merge
]


def _merges(text: str, vocab_size: int) -> list[Pair]:
    with warnings.catch_warnings():  # "ran out of pairs" is part of a case, not news
        warnings.simplefilter("ignore")
        return train_bpe(text, vocab_size).merges


def _show(vocab: dict[int, bytes], pair: Pair) -> str:
    """A pair of ids with the bytes they stand for."""
    a, b = pair
    return f"{pair} = {vocab.get(a, '?')!r} + {vocab.get(b, '?')!r}"


def _state(text: str, merges: list[Pair]) -> tuple[list[list[int]], dict[int, bytes]]:
    """Every pre-token of ``text``, in order, as its ids after ``merges``; and the vocabulary."""
    vocab = BPETokenizer(merges).vocab
    ranks = {token: i for i, token in vocab.items()}
    words = {p: list(p.encode("utf-8")) for p in set(regex.findall(GPT4_PATTERN, text))}
    for a, b in merges:
        new_id = ranks[vocab[a] + vocab[b]]
        words = {p: merge_word(w, (a, b), new_id)[0] for p, w in words.items()}
    return [words[p] for p in regex.findall(GPT4_PATTERN, text)], vocab


def _diagnose(text: str, want: list[Pair], got: list[Pair]) -> str:
    """What went wrong at the first merge where ``got`` leaves ``want``."""
    k = next((i for i, (w, g) in enumerate(zip(want, got)) if w != g), min(len(want), len(got)))
    if k == len(want):
        return (f"you made {len(got)} merges where {len(want)} fit: vocab_size counts the 256 byte "
                "tokens too, so make vocab_size - 256 merges at most, and stop when no pair is left.")
    words, vocab = _state(text, want[:k])
    counts = Counter(pair for w in words for pair in pairwise(w))
    best = want[k]
    head = f"merge {k + 1} should be {_show(vocab, best)}, which occurs {counts[best]} times"
    if k == len(got):
        return f"you stopped after {k} merges, but {head}: keep merging until vocab_size ids."
    mine = got[k]
    bad = [i for i in mine if not 0 <= i < 256 + k]
    if bad:
        return (f"{head}; you merged {mine}, and {bad[0]} is not an id yet (only 0-{255 + k} "
                "exist). Ids above 255 at the start are characters' code points (ord): BPE starts "
                "from the UTF-8 bytes, list(pretoken.encode('utf-8')), so any text has ids 0-255.")
    tail = f"{head}; you merged {_show(vocab, mine)}, which occurs {counts[mine]} times."
    if counts[mine] == counts[best]:
        return (f"{tail} A tie: train_bpe takes the smallest pair (a, b) (compare the tuples), "
                "e.g. min(counts, key=lambda p: (-counts[p], p)); max(counts, key=counts.get) "
                "takes whichever pair was counted first.")
    joined = [i for w in words for i in w]
    if counts[mine] < Counter(pairwise(joined))[mine]:
        return (f"{tail} You counted it across pre-tokens too: split the text with "
                "regex.findall(GPT4_PATTERN, text) and count pairs inside each pre-token only.")
    if best[0] == best[1]:
        return (f"{tail} Overlapping pairs count: in [a, a, a] the pair (a, a) occurs twice, "
                "although merging it makes one token, [A, a]. Count with zip(word, word[1:]).")
    if mine[0] == mine[1] or any(a == b for a, b in want[:k]):
        return (f"{tail} Neighbouring merge sites: when a word holds the merged pair twice in a row "
                "([a, a, a, a] with (a, a), or b'inin' with (b'i', b'n')), the pair between the two "
                "sites is one pair; updating the pairs around each site on its own counts it twice. "
                "Update a word whole: subtract all its old pairs, then add all its new ones.")
    return (f"{tail} Your counts drifted from a fresh count: after each merge, subtract all the old "
            "pairs of each pre-token that held the pair and add all its new ones, times its count.")


def check_bpe_trainer(train: Callable[[str, int], list[Pair]]) -> None:
    """Task 4: ``train(text, vocab_size)`` returns ``train_bpe(text, vocab_size).merges``."""
    task = "Task 4 (train_bpe_fast)"
    hint = "count the pairs once, then after each merge update only the pre-tokens that held the pair."
    for text, vocab_size in _TRAIN_CASES:
        got = _call(task, hint, train, text, vocab_size)
        call = f"train({text[:30]!r}..., vocab_size={vocab_size})"
        if got is None:
            raise AssertionError(f"{task}: {call} returned None: did you forget `return merges`?")
        try:
            got = [(int(a), int(b)) for a, b in got]
        except (TypeError, ValueError):
            raise AssertionError(f"{task}: {call} returned {str(got)[:80]}; return the list of merges, "
                                 "each a pair of ids (a, b), in the order you learnt them.") from None
        want = _merges(text, vocab_size)
        if got != want:
            raise AssertionError(f"{task}: {call}: {_diagnose(text, want, got)}")
    _passed(task, f"the same merges as train_bpe on {len(_TRAIN_CASES)} texts (English, Chinese, emoji, runs, random)")


# ---------------------------------------------------------------------------------------------
# Task 5: ranks and tiktoken's encoding rule
# ---------------------------------------------------------------------------------------------

# (text the ranks are trained on, vocab_size, text to encode): unseen words, characters and emoji,
# digits in groups, runs, and a pre-token that is a whole token.
_ENCODE_CASES = [
    (ENGLISH, 400, "The tokenizer's rules: the slowest, lowest ones!! 1234567 tokens, aaaa. 你好 🙂"),
    (ENGLISH, 400, ENGLISH[500:900]),
    (CHINESE, 330, CHINESE[100:260] + " language 语言模型"),
    (_EMOJI, 320, "🎉🎉 the 👍🏽 party, café 🙂🙂🙂 ✨ Straße 世界"),
    (_RUNS, 300, "aaaaaaa ======= ....... zzzzz hmmmm 111111111 baaaa"),
    (_ENDS, 290, "the other mothers and brothers, neither father nor them"),
    (_RANDOM, 330, "".join(random.Random(6).choices("aab  ab\né€🙂1", k=300))),
]


def _encode_ref(text: str, ranks: dict[bytes, int], rule: str = "rank",
                pattern: str | None = GPT4_PATTERN) -> list[int]:
    """tiktoken's rule ("rank"), or a usual mistake: "leftmost" merges the first pair that is a
    token; without ``pattern``, the text is one piece."""
    ids = []
    for piece in (regex.findall(pattern, text) if pattern else [text]):
        parts = [bytes([b]) for b in piece.encode("utf-8")]
        while len(parts) > 1:
            found = [i for i in range(len(parts) - 1) if parts[i] + parts[i + 1] in ranks]
            if not found:
                break
            i = found[0] if rule == "leftmost" else min(found, key=lambda i: ranks[parts[i] + parts[i + 1]])
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        ids.extend(ranks[p] for p in parts)
    return ids


_ENCODE_MISTAKES = [
    (("Merge by rank, not left to right: neither the first pair that is a token nor the longest "
      "token from the left, but the adjacent pair whose bytes have the lowest rank, then look again."),
     lambda text, ranks: _encode_ref(text, ranks, "leftmost")),
    (("Split the text into pre-tokens first (regex.findall(GPT4_PATTERN, text)): tokens never "
      "cross them."), lambda text, ranks: _encode_ref(text, ranks, pattern=None)),
]


def _check_ranks(task: str, ranks_from_merges: Callable, merges: list[Pair]) -> dict[bytes, int]:
    """The learner's ranks for ``merges``, if they are the package's; else an error that says which differ."""
    want = {token: i for i, token in BPETokenizer(merges).vocab.items()}
    got = _call(task, "bytes([i]) -> i for the 256 bytes, then each merge's bytes -> 256 + i.",
                ranks_from_merges, list(merges))
    call = f"ranks_from_merges(<{len(merges)} merges>)"
    if not isinstance(got, dict):
        raise AssertionError(f"{task}: {call} returned {type(got).__name__}; return a dict from each "  # noqa: TRY004
                             "token's bytes to its id.")
    if got != want:
        wrong = next((t for t in want if got.get(t) != want[t]), None)
        extra = next((t for t in got if t not in want), None)
        tip = ""
        if wrong is not None and len(wrong) == 1:
            tip = " Include the 256 single bytes: bytes([i]) -> i for i in range(256)."
        elif wrong is not None and got.get(wrong) == want[wrong] - 256:
            tip = " Merge i makes token 256 + i (the ids 0-255 are the bytes)."
        elif extra is not None and not isinstance(extra, bytes):
            tip = " The keys are bytes (vocab[a] + vocab[b]), not str or pairs of ids."
        key = wrong if wrong is not None else extra
        raise AssertionError(f"{task}: {call} gives {key!r} -> {got.get(key)}, expected "
                             f"{want.get(key)}.{tip}")
    return got


def check_bpe_encoder(ranks_from_merges: Callable[[list[Pair]], dict[bytes, int]],
                      encode: Callable[[str, dict[bytes, int]], list[int]]) -> None:
    """Task 5: ``ranks_from_merges(merges)`` is tiktoken's ``mergeable_ranks`` for those merges,
    and ``encode(text, ranks)`` gives the ids that ``tiktoken.Encoding`` gives on those ranks."""
    import tiktoken

    task, hint = "Task 5 (ranks_from_merges, encode)", "in each pre-token, merge the adjacent pair whose bytes have the lowest rank."
    results = []
    for train_text, vocab_size, text in _ENCODE_CASES:
        ranks = _check_ranks(task, ranks_from_merges, _merges(train_text, vocab_size))
        enc = tiktoken.Encoding(name="learner", pat_str=GPT4_PATTERN, mergeable_ranks=ranks, special_tokens={})
        try:
            got = _call(task, hint, encode, text, dict(ranks))
        except KeyError as e:
            raise AssertionError(f"{task}: encode({text[:30]!r}..., ranks) raised KeyError({e.args[0]!r}): "
                                 "a piece that is not a token. Start from single bytes, "
                                 "[bytes([b]) for b in piece.encode('utf-8')], and merge only pairs "
                                 "whose bytes are in ranks.") from None
        if got is None:
            raise AssertionError(f"{task}: encode(...) returned None: did you forget `return ids`?")
        results.append(((text, ranks), [int(i) for i in got], enc.encode(text)))
    for (text, ranks), got, want in results:
        if got != want:
            vocab = {i: t for t, i in ranks.items()}
            at = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
            raise AssertionError(
                f"{task}: encode({text[:40]!r}..., ranks), from token {at} on, gives "
                f"{[vocab.get(i, i) for i in got[at:at + 6]]}; tiktoken on the same ranks gives "
                f"{[vocab[i] for i in want[at:at + 6]]}."
                f"{_tip([(args, g) for args, g, _ in results], _ENCODE_MISTAKES, lambda g, m: g == m)}")
    _passed(task, f"your ids equal tiktoken's on your own ranks, on {len(results)} texts")
