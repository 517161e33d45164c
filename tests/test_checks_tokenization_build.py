"""The chapter 05 build checks (a BPE trainer with counts kept up to date; tiktoken's encoder on the
learner's own ranks) accept right answers written differently and name the usual mistakes."""

# ruff: noqa: RUF007 (learners write zip(ids, ids[1:]); the right and wrong answers do too)

import heapq
import json
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path

import pytest
import regex

from minigpt.course import checks
from minigpt.data.bpe import GPT4_PATTERN, merge_word

ROOT = Path(__file__).resolve().parent.parent


def stub(*args):
    raise NotImplementedError


def pretoken_counts(text):
    return Counter(regex.findall(GPT4_PATTERN, text))


# ---------------------------------------------------------------------------------------------
# Task 4: the trainer. Right answers
# ---------------------------------------------------------------------------------------------

def train_recount(text, vocab_size):  # the notebook's slow way: recount every pair, every merge
    words = {tuple(p.encode()): n for p, n in pretoken_counts(text).items()}
    merges = []
    for new_id in range(256, vocab_size):
        counts = Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                counts[pair] += n
        if not counts:
            break
        top = max(counts.values())
        best = min(p for p, c in counts.items() if c == top)
        merges.append(best)
        words = {tuple(merge_word(list(w), best, new_id)[0]): n for w, n in words.items()}
    return merges


def train_heap(text, vocab_size):  # incremental, per word, with a lazy heap and no index
    words = [[list(p.encode("utf-8")), n] for p, n in pretoken_counts(text).items()]
    counts = defaultdict(int)
    for word, n in words:
        for pair in pairwise(word):
            counts[pair] += n
    heap = [(-c, p) for p, c in counts.items()]
    heapq.heapify(heap)
    merges = []
    while len(merges) < vocab_size - 256 and heap:
        neg, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -neg:  # stale entry
            continue
        new_id = 256 + len(merges)
        merges.append(pair)
        for entry in words:
            word, n = entry
            if pair not in set(pairwise(word)):
                continue
            new = merge_word(word, pair, new_id)[0]
            for p in pairwise(word):
                counts[p] -= n
            for p in pairwise(new):
                counts[p] += n
            for p in set(pairwise(word)) | set(pairwise(new)):
                if counts[p] > 0:
                    heapq.heappush(heap, (-counts[p], p))
                else:
                    counts.pop(p)
            entry[0] = new
    return merges


# ---------------------------------------------------------------------------------------------
# Task 4: wrong answers, as learners write them
# ---------------------------------------------------------------------------------------------

def _recount_variant(text, vocab_size, *, pick, units, pieces):
    words = Counter(tuple(units(p)) for p in pieces(text))
    merges = []
    for new_id in range(256, vocab_size):
        counts = Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                counts[pair] += n
        if not counts:
            break
        best = pick(counts)
        merges.append(best)
        words = Counter({tuple(merge_word(list(w), best, new_id)[0]): n for w, n in words.items()})
    return merges


def _bytes(p):
    return p.encode("utf-8")


def _smallest(counts):
    return min(counts, key=lambda p: (-counts[p], p))


def train_ties_first_counted(text, vocab_size):  # max(counts, key=counts.get): first pair counted wins
    return _recount_variant(text, vocab_size, pick=lambda c: max(c, key=c.get), units=_bytes,
                            pieces=lambda t: regex.findall(GPT4_PATTERN, t))


def train_ties_largest(text, vocab_size):  # ties go to the largest pair
    return _recount_variant(text, vocab_size, pick=lambda c: max(c, key=lambda p: (c[p], p)), units=_bytes,
                            pieces=lambda t: regex.findall(GPT4_PATTERN, t))


def train_across_pretokens(text, vocab_size):  # no pre-tokenizer: pairs span words
    return _recount_variant(text, vocab_size, pick=_smallest, units=_bytes, pieces=lambda t: [t])


def train_characters(text, vocab_size):  # code points, not UTF-8 bytes
    return _recount_variant(text, vocab_size, pick=_smallest, units=lambda p: [ord(c) for c in p],
                            pieces=lambda t: regex.findall(GPT4_PATTERN, t))


def train_non_overlapping(text, vocab_size):  # counts (a, a) in "aaa" once, like str.count
    words = {tuple(p.encode()): n for p, n in pretoken_counts(text).items()}
    merges = []
    for new_id in range(256, vocab_size):
        counts = Counter()
        for word, n in words.items():
            for pair in set(pairwise(word)):
                counts[pair] += n * len(merge_word(list(word), pair, -1)[1])
        if not counts:
            break
        best = _smallest(counts)
        merges.append(best)
        words = {tuple(merge_word(list(w), best, new_id)[0]): n for w, n in words.items()}
    return merges


def train_site_updates(text, vocab_size):  # updates the neighbours of each merge site on its own:
    words = [[list(p.encode()), n] for p, n in pretoken_counts(text).items()]  # overlapping sites
    counts = Counter()                                                        # are counted twice
    for word, n in words:
        for pair in pairwise(word):
            counts[pair] += n
    merges = []
    while len(merges) < vocab_size - 256 and +counts:
        counts = +counts
        best = _smallest(counts)
        new_id = 256 + len(merges)
        merges.append(best)
        for entry in words:
            word, n = entry
            new, sites = merge_word(word, best, new_id)
            for k, s in enumerate(sites):  # s: the site in new; s + k: in the old word
                old = s + k
                counts[best] -= n
                if old > 0:
                    counts[word[old - 1], best[0]] -= n
                    counts[new[s - 1], new_id] += n
                if old + 2 < len(word):
                    counts[best[1], word[old + 2]] -= n
                    counts[new_id, new[s + 1]] += n
            entry[0] = new
    return merges


def train_one_too_many(text, vocab_size):  # vocab_size merges on top of the bytes, less 255
    return train_recount(text, vocab_size + 1)


def train_forgot_return(text, vocab_size):
    train_recount(text, vocab_size)


@pytest.mark.parametrize("right", [train_recount, train_heap])
def test_trainer_right_answers_pass(right, capsys):
    checks.check_bpe_trainer(right)
    assert "Task 4 (train_bpe_fast) passed" in capsys.readouterr().out


@pytest.mark.parametrize(("wrong", "tip"), [
    (train_ties_first_counted, "A tie: train_bpe takes the smallest pair"),
    (train_ties_largest, "A tie: train_bpe takes the smallest pair"),
    (train_across_pretokens, "across pre-tokens"),
    (train_characters, "code points"),
    (train_non_overlapping, "Overlapping pairs count"),
    (train_site_updates, "Neighbouring merge sites"),
    (train_one_too_many, "vocab_size counts the 256 byte tokens"),
    (train_forgot_return, "forget `return merges`"),
])
def test_trainer_wrong_answers_are_named(wrong, tip):
    with pytest.raises(AssertionError, match=tip) as info:
        checks.check_bpe_trainer(wrong)
    assert not isinstance(info.value, checks.NotDoneYet)


# ---------------------------------------------------------------------------------------------
# Task 5: ranks and the encoder
# ---------------------------------------------------------------------------------------------

def ranks_loop(merges):
    vocab = [bytes([i]) for i in range(256)]
    for a, b in merges:
        vocab.append(vocab[a] + vocab[b])
    return {token: i for i, token in enumerate(vocab)}


def ranks_without_bytes(merges):
    return {t: i for t, i in ranks_loop(merges).items() if i >= 256}


def ranks_from_zero(merges):  # merge i gets id i
    return {t: (i - 256 if i >= 256 else i) for t, i in ranks_loop(merges).items()}


def encode_lowest_rank(text, ranks):  # one merge at a time, as tiktoken does
    ids = []
    for piece in regex.findall(GPT4_PATTERN, text):
        parts = [bytes([b]) for b in piece.encode()]
        while True:
            found = [(ranks[a + b], i) for i, (a, b) in enumerate(zip(parts, parts[1:])) if a + b in ranks]
            if not found:
                break
            i = min(found)[1]
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        ids += [ranks[p] for p in parts]
    return ids


def encode_all_at_once(text, ranks):  # the best pair's every occurrence, left to right, in one pass
    ids = []
    for piece in regex.findall(GPT4_PATTERN, text):
        parts = [bytes([b]) for b in piece.encode()]
        while len(parts) > 1:
            best = min(pairwise(parts), key=lambda p: ranks.get(p[0] + p[1], float("inf")))
            if best[0] + best[1] not in ranks:
                break
            out, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        ids.extend(ranks[p] for p in parts)
    return ids


def encode_leftmost(text, ranks):  # merges the first pair that is a token, not the lowest-ranked one
    ids = []
    for piece in regex.findall(GPT4_PATTERN, text):
        parts = [bytes([b]) for b in piece.encode()]
        merged = True
        while merged:
            merged = False
            for i in range(len(parts) - 1):
                if parts[i] + parts[i + 1] in ranks:
                    parts[i:i + 2] = [parts[i] + parts[i + 1]]
                    merged = True
                    break
        ids += [ranks[p] for p in parts]
    return ids


def encode_longest_match(text, ranks):  # greedy longest token from the left, WordPiece-style
    ids = []
    for piece in regex.findall(GPT4_PATTERN, text):
        data = piece.encode()
        while data:
            n = max(n for n in range(1, len(data) + 1) if data[:n] in ranks)
            ids.append(ranks[data[:n]])
            data = data[n:]
    return ids


def _lowest(data, ranks):
    parts = [bytes([b]) for b in data]
    while True:
        found = [(ranks[a + b], i) for i, (a, b) in enumerate(zip(parts, parts[1:])) if a + b in ranks]
        if not found:
            return [ranks[p] for p in parts]
        i = min(found)[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]


def encode_whole_text(text, ranks):  # no pre-tokenizer: the whole text is one piece
    return _lowest(text.encode(), ranks)


def encode_characters(text, ranks):  # starts from characters: a Chinese character is not a token
    ids = []
    for piece in regex.findall(GPT4_PATTERN, text):
        parts = [c.encode() for c in piece]
        while True:
            found = [(ranks[a + b], i) for i, (a, b) in enumerate(zip(parts, parts[1:])) if a + b in ranks]
            if not found:
                break
            i = min(found)[1]
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        ids += [ranks[p] for p in parts]
    return ids


@pytest.mark.parametrize("ranks", [ranks_loop])
@pytest.mark.parametrize("encode", [encode_lowest_rank, encode_all_at_once])
def test_encoder_right_answers_pass(ranks, encode, capsys):
    checks.check_bpe_encoder(ranks, encode)
    assert "Task 5 (ranks_from_merges, encode) passed" in capsys.readouterr().out


@pytest.mark.parametrize(("ranks", "encode", "tip"), [
    (ranks_loop, encode_leftmost, "Merge by rank, not left to right"),
    (ranks_loop, encode_longest_match, "Merge by rank, not left to right"),
    (ranks_loop, encode_whole_text, "pre-tokens first"),
    (ranks_loop, encode_characters, "KeyError"),
    (ranks_without_bytes, encode_lowest_rank, "Include the 256 single bytes"),
    (ranks_from_zero, encode_lowest_rank, "Merge i makes token 256 \\+ i"),
])
def test_encoder_wrong_answers_are_named(ranks, encode, tip):
    with pytest.raises(AssertionError, match=tip) as info:
        checks.check_bpe_encoder(ranks, encode)
    assert not isinstance(info.value, checks.NotDoneYet)


# ---------------------------------------------------------------------------------------------
# Stubs, and the solution notebook's own functions
# ---------------------------------------------------------------------------------------------

def test_stubs_are_not_done_yet_with_a_hint():
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_bpe_trainer(stub)
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_bpe_encoder(stub, stub)
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_bpe_encoder(ranks_loop, stub)


def test_the_solution_notebooks_build_functions_pass(capsys):
    cells = json.loads((ROOT / "exercises/solutions/05_tokenization.ipynb").read_text())["cells"]
    namespace = {}
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.lstrip().startswith(("def ", "from ", "import ")):
            exec(source, namespace)  # noqa: S102 (the notebook's own cells)
    checks.check_bpe_trainer(namespace["train_bpe_fast"])
    checks.check_bpe_encoder(namespace["ranks_from_merges"], namespace["encode"])
    assert capsys.readouterr().out.count("passed") == 2
