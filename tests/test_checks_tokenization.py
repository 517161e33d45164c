"""The chapter 05 exercise checks accept right answers and name the usual mistakes."""

from collections import Counter
from itertools import pairwise

import pytest

from minigpt.course import checks
from minigpt.data.bpe import merge_word


def stub(*args):
    raise NotImplementedError


def count_pairs(ids):
    return Counter(pairwise(ids))


def merge(ids, pair, new_id):
    return merge_word(list(ids), pair, new_id)[0]  # the package's own merge is a right answer


def bytes_per_token(text, encode):
    return len(text.encode("utf-8")) / len(encode(text))


RIGHT = [
    (checks.check_count_pairs, count_pairs),
    (checks.check_merge, merge),
    (checks.check_bytes_per_token, bytes_per_token),
]


@pytest.mark.parametrize(("check", "solution"), RIGHT)
def test_right_answers_pass(check, solution, capsys):
    check(solution)
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize("check", [check for check, _ in RIGHT])
def test_stubs_are_not_done_yet_with_a_hint(check):
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        check(stub)


def test_non_overlapping_pair_count_is_named():
    def every_other(ids):
        return Counter(zip(ids[::2], ids[1::2]))

    with pytest.raises(AssertionError, match="Pairs overlap"):
        checks.check_count_pairs(every_other)


def test_merge_that_drops_the_last_token_is_named():
    def drops_last(ids, pair, new_id):
        out, i = [], 0
        while i < len(ids) - 1:
            if (ids[i], ids[i + 1]) == pair:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        return out

    with pytest.raises(AssertionError, match="last token went missing"):
        checks.check_merge(drops_last)


def test_merge_right_to_left_fails():
    def right_to_left(ids, pair, new_id):
        return merge(ids[::-1], pair[::-1], new_id)[::-1]

    with pytest.raises(AssertionError, match=r"\[256, 97\]"):
        checks.check_merge(right_to_left)


def test_counting_characters_instead_of_bytes_is_named():
    def per_char(text, encode):
        return len(text) / len(encode(text))

    with pytest.raises(AssertionError, match="3 bytes"):
        checks.check_bytes_per_token(per_char)


def test_tokens_per_byte_is_named():
    def inverted(text, encode):
        return len(encode(text)) / len(text.encode("utf-8"))

    with pytest.raises(AssertionError, match="tokens per byte"):
        checks.check_bytes_per_token(inverted)
