"""The chapter 05 exercise checks accept right answers and name the usual mistakes.

Every check gets two or more right implementations written differently (each must pass) and at
least three wrong ones a learner would plausibly write (each must be rejected, with a tip that
names the mistake).
"""

# ruff: noqa: RUF007 (learners write zip(ids, ids[1:]); the right and wrong answers do too)

import json
from collections import Counter, defaultdict
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from minigpt.course import checks
from minigpt.data.bpe import merge_word

ROOT = Path(__file__).resolve().parent.parent


def stub(*args):
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Task 1: count_pairs
# ---------------------------------------------------------------------------------------------

def count_pairs_zip(ids):  # as in the solution notebook
    return Counter(zip(ids, ids[1:]))


def count_pairs_loop(ids):  # a plain dict and an index loop
    counts = {}
    for i in range(len(ids) - 1):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def count_pairs_defaultdict(ids):  # defaultdict over itertools.pairwise
    counts = defaultdict(int)
    for a, b in pairwise(ids):
        counts[a, b] += 1
    return counts


def count_pairs_with_zeros(ids):  # a Counter that lists a pair at count 0
    counts = Counter(zip(ids, ids[1:]))
    counts[(-1, -1)] = 0
    return counts


def count_step_two(ids):  # steps by 2: [a, a, a] gives (a, a) once
    counts, i = Counter(), 0
    while i < len(ids) - 1:
        counts[ids[i], ids[i + 1]] += 1
        i += 2
    return counts


def count_every_other(ids):
    return Counter(zip(ids[::2], ids[1::2]))


def count_missing_last(ids):
    counts = {}
    for i in range(len(ids) - 2):
        counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
    return counts


def count_missing_first(ids):
    return Counter(zip(ids[1:], ids[2:]))


def count_reversed(ids):
    return Counter((ids[i + 1], ids[i]) for i in range(len(ids) - 1))


def count_wraps_around(ids):  # ids[i - 1] at i = 0 is the last id
    counts = Counter()
    for i in range(len(ids)):
        counts[ids[i - 1], ids[i]] += 1
    return counts


def count_distinct(ids):  # a set of pairs, each counted once
    return {pair: 1 for pair in set(zip(ids, ids[1:]))}


def count_list_of_items(ids):  # dict(...) of this looks right, but the task asks for a dict
    return list(Counter(zip(ids, ids[1:])).items())


def count_list_of_pairs(ids):
    return list(zip(ids, ids[1:]))


def count_ids(ids):  # counts the ids, not the pairs
    return Counter(ids)


def count_forgot_return(ids):
    Counter(zip(ids, ids[1:]))


@pytest.mark.parametrize("right", [count_pairs_zip, count_pairs_loop, count_pairs_defaultdict, count_pairs_with_zeros])
def test_count_pairs_right_answers_pass(right, capsys):
    checks.check_count_pairs(right)
    assert "Task 1 (count_pairs) passed" in capsys.readouterr().out


@pytest.mark.parametrize(("wrong", "tip"), [
    (count_step_two, "Pairs overlap"),
    (count_every_other, "Pairs overlap"),
    (count_missing_last, "last pair went missing"),
    (count_missing_first, "first pair went missing"),
    (count_reversed, r"counted \(b, a\)"),
    (count_wraps_around, "wraps around"),
    (count_distinct, "every occurrence"),
    (count_list_of_items, r"returned a list of \(pair, count\) items.*; return a dict"),
    (count_list_of_pairs, "the pairs themselves"),
    (count_ids, "must be a pair"),
    (count_forgot_return, "forget `return`"),
])
def test_count_pairs_wrong_answers_are_named(wrong, tip):
    with pytest.raises(AssertionError, match=tip) as info:
        checks.check_count_pairs(wrong)
    assert not isinstance(info.value, checks.NotDoneYet)


# ---------------------------------------------------------------------------------------------
# Task 2: merge
# ---------------------------------------------------------------------------------------------

def merge_while(ids, pair, new_id):  # as in the solution notebook
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_skip_flag(ids, pair, new_id):  # a for loop over indices with a flag for the used-up token
    out, skip = [], False
    for i, x in enumerate(ids):
        if skip:
            skip = False
        elif i + 1 < len(ids) and x == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            skip = True
        else:
            out.append(x)
    return out


def merge_on_a_copy(ids, pair, new_id):  # slice assignment, on a copy of ids
    ids = list(ids)
    i = 0
    while i < len(ids) - 1:
        if tuple(ids[i:i + 2]) == pair:
            ids[i:i + 2] = [new_id]
        i += 1
    return ids


def merge_package(ids, pair, new_id):  # the package's own merge
    return merge_word(list(ids), pair, new_id)[0]


def merge_no_skip(ids, pair, new_id):  # steps by 1 after a match
    out = []
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
        else:
            out.append(ids[i])
    return out


def merge_every_match(ids, pair, new_id):  # drops every token that ends a pair: [a, a, a] -> [new, new]
    out = []
    for i, x in enumerate(ids):
        starts = i + 1 < len(ids) and (x, ids[i + 1]) == pair
        ends = i > 0 and (ids[i - 1], x) == pair
        if starts:
            out.append(new_id)
        elif not ends:
            out.append(x)
    return out


def merge_right_to_left(ids, pair, new_id):
    out, i = [], len(ids) - 1
    while i >= 0:
        if i > 0 and (ids[i - 1], ids[i]) == pair:
            out.append(new_id)
            i -= 2
        else:
            out.append(ids[i])
            i -= 1
    return out[::-1]


def merge_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return ids[:i] + [new_id] + ids[i + 2:]
    return ids


def merge_drops_last(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_slice_vs_tuple(ids, pair, new_id):  # a list slice never equals the tuple pair
    out, i = [], 0
    while i < len(ids):
        if ids[i:i + 2] == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_via_string(ids, pair, new_id):
    text = " ".join(str(i) for i in ids).replace(f"{pair[0]} {pair[1]}", str(new_id))
    return [int(t) for t in text.split()]


def merge_in_place(ids, pair, new_id):  # right tokens, but the caller's list is changed
    i = 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            ids[i:i + 2] = [new_id]
        i += 1
    return ids


def merge_generator(ids, pair, new_id):
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            yield new_id
            i += 2
        else:
            yield ids[i]
            i += 1


def merge_tuple(ids, pair, new_id):
    return tuple(merge_while(ids, pair, new_id))


@pytest.mark.parametrize("right", [merge_while, merge_skip_flag, merge_on_a_copy, merge_package])
def test_merge_right_answers_pass(right, capsys):
    checks.check_merge(right)
    assert "Task 2 (merge) passed" in capsys.readouterr().out


@pytest.mark.parametrize(("wrong", "tip"), [
    (merge_no_skip, "step on by 2"),
    (merge_every_match, r"\[new_id, a\], not \[new_id, new_id\]"),
    (merge_right_to_left, "Scan left to right"),
    (merge_first_only, "not only the first"),
    (merge_drops_last, "last token went missing"),
    (merge_slice_vs_tuple, "slice never equals a tuple"),
    (merge_via_string, "string of digits"),
    (merge_in_place, "changed the list passed in"),
    (merge_generator, "returned a generator"),
    (merge_tuple, "returned a tuple"),
])
def test_merge_wrong_answers_are_named(wrong, tip):
    with pytest.raises(AssertionError, match=tip) as info:
        checks.check_merge(wrong)
    assert not isinstance(info.value, checks.NotDoneYet)


def test_merge_of_an_overlapping_run_is_shown():
    with pytest.raises(AssertionError, match=r"merge\(\[97, 97, 97\], \(97, 97\), 256\) returned \[256, 256\]"):
        checks.check_merge(merge_every_match)


# ---------------------------------------------------------------------------------------------
# Task 3: bytes_per_token
# ---------------------------------------------------------------------------------------------

def bpt_divide(text, encode):  # as in the solution notebook
    return len(text.encode("utf-8")) / len(encode(text))


def bpt_per_char_bytes(text, encode):  # bytes summed per character; exact Fraction
    n_bytes = sum(len(ch.encode()) for ch in text)
    return Fraction(n_bytes, len(list(encode(text))))


def bpt_numpy(text, encode):
    return np.float64(len(bytes(text, "utf-8"))) / np.array(encode(text)).size


def bpt_characters(text, encode):
    return len(text) / len(encode(text))


def bpt_inverted(text, encode):
    return len(encode(text)) / len(text.encode("utf-8"))


def bpt_floor(text, encode):
    return len(text.encode("utf-8")) // len(encode(text))


def bpt_int(text, encode):
    return int(len(text.encode("utf-8")) / len(encode(text)))


def bpt_rounded(text, encode):
    return round(len(text.encode("utf-8")) / len(encode(text)), 2)


def bpt_ignores_encode(text, encode):  # divides by the characters, not the tokens
    return len(text.encode("utf-8")) / len(text)


def bpt_distinct_tokens(text, encode):
    return len(text.encode("utf-8")) / len(set(encode(text)))


def bpt_string(text, encode):
    return f"{len(text.encode('utf-8')) / len(encode(text)):.2f}"


def bpt_prints(text, encode):
    print(len(text.encode("utf-8")) / len(encode(text)))


@pytest.mark.parametrize("right", [bpt_divide, bpt_per_char_bytes, bpt_numpy])
def test_bytes_per_token_right_answers_pass(right, capsys):
    checks.check_bytes_per_token(right)
    assert "Task 3 (bytes_per_token) passed" in capsys.readouterr().out


@pytest.mark.parametrize(("wrong", "tip"), [
    (bpt_characters, "You counted characters"),
    (bpt_inverted, "tokens per byte"),
    (bpt_floor, "integer division"),
    (bpt_int, "integer division"),
    (bpt_rounded, "Don't round"),
    (bpt_ignores_encode, r"number of tokens, len\(encode\(text\)\)"),
    (bpt_distinct_tokens, "distinct ids"),
    (bpt_string, "return a number"),
    (bpt_prints, "forget `return`"),
])
def test_bytes_per_token_wrong_answers_are_named(wrong, tip):
    with pytest.raises(AssertionError, match=tip) as info:
        checks.check_bytes_per_token(wrong)
    assert not isinstance(info.value, checks.NotDoneYet)


# ---------------------------------------------------------------------------------------------
# All three: stubs, and the solution notebook's own functions
# ---------------------------------------------------------------------------------------------

CHECKS = [checks.check_count_pairs, checks.check_merge, checks.check_bytes_per_token]


@pytest.mark.parametrize("check", CHECKS)
def test_stubs_are_not_done_yet_with_a_hint(check):
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        check(stub)


def test_the_solution_notebooks_functions_pass(capsys):
    cells = json.loads((ROOT / "exercises/solutions/05_tokenization.ipynb").read_text())["cells"]
    namespace = {}
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.lstrip().startswith(("def ", "from collections")):
            exec(source, namespace)  # noqa: S102 (the notebook's own cells)
    for check, name in zip(CHECKS, ["count_pairs", "merge", "bytes_per_token"]):
        check(namespace[name])
    assert capsys.readouterr().out.count("passed") == 3
