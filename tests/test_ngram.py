"""n-gram models: counts, the four smoothings against hand-computed values, probabilities that
sum to one for every context, scoring, sampling, and clear errors on bad input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.data.tokenizers import CharTokenizer, WordTokenizer
from minigpt.models.ngram import SMOOTHINGS, NGramLM, Score, encode, kn_discounts
from minigpt.models.ngram_counts import count_ngrams

# a b a b c a b, with a=0, b=1, c=2
TOY = [0, 1, 0, 1, 2, 0, 1]


def test_counts_of_every_order():
    counts = count_ngrams(TOY, vocab_size=3, max_order=3)
    uni, bi, tri = counts.levels
    assert dict(zip(uni.keys.tolist(), uni.counts.tolist())) == {0: 3, 1: 3, 2: 1}
    # a bigram's key is (id of its first token's unigram) * V + second token
    bigrams = {(int(uni.keys[k // 3]), int(k % 3)): int(c) for k, c in zip(bi.keys, bi.counts)}
    assert bigrams == {(0, 1): 3, (1, 0): 1, (1, 2): 1, (2, 0): 1}
    assert tri.counts.sum() == 5 and len(tri.keys) == 5 and tri.continuations is None
    assert counts.num_ngrams() == 3 + 4 + 5 and counts.num_ngrams(1) == 3


def test_continuation_counts_are_distinct_left_neighbours():
    uni = count_ngrams(TOY, 3, 2).levels[0]
    # "a" follows b and c (2 distinct), plus once at the start where nothing precedes it
    assert uni.continuations.tolist() == [3, 1, 1]


def test_sentence_boundaries_open_ngrams_and_are_never_predicted():
    bos, eos = 1, 2  # 0 a 3 b: <s> a b </s> <s> b a </s>
    stream = [bos, 0, 3, eos, bos, 3, 0, eos]
    counts = count_ngrams(stream, vocab_size=4, max_order=3, bos_id=bos)
    uni = counts.levels[0]
    assert dict(zip(uni.keys.tolist(), uni.counts.tolist()))[bos] == 0
    bi_tokens = (counts.levels[1].keys % 4).tolist()
    assert bos not in bi_tokens  # no n-gram runs across "</s> <s>"
    assert counts.levels[1].counts.sum() == 6  # <s>a, ab, b</s>, <s>b, ba, a</s>
    lm = NGramLM(counts, 3, "kn")
    assert lm.next_probs([bos])[bos] == 0
    assert len(lm.log_probs(stream)) == 6  # every token but the two <s>


def test_kneser_ney_bigram_matches_hand_computation():
    # D = 0.5. Unigram continuation counts a:3 b:1 c:1 (total 5, 3 types), interpolated with
    # uniform 1/3: p1(a) = (2.5 + 0.5*3/3)/5 = 0.6, p1(b) = p1(c) = 0.2.
    # After "b": c(ba)=1, c(bc)=1, total 2, two types so 0.5*2 = 1 set aside:
    # p(a|b) = (0.5 + 0.6)/2, p(b|b) = 0.2/2, p(c|b) = (0.5 + 0.2)/2.
    # After "a": c(ab)=3, one type, 0.5 set aside: p(b|a) = (2.5 + 0.5*0.2)/3.
    lm = NGramLM(count_ngrams(TOY, 3, 2), order=2, smoothing="kn", discount=0.5)
    np.testing.assert_allclose(lm.next_probs([]), [0.6, 0.2, 0.2])
    np.testing.assert_allclose(lm.next_probs([1]), [0.55, 0.1, 0.35])
    np.testing.assert_allclose(lm.next_probs([0]), [0.3 / 3, 2.6 / 3, 0.1 / 3])


def test_kneser_ney_trigram_matches_hand_computation():
    # Middle order uses continuation counts: ab:3 (after b, after c, at the start), ba:1, bc:1,
    # ca:1. After "b": total 2, 1 set aside: p2(a|b) = (0.5+0.6)/2 = 0.55, p2(b|b) = 0.1,
    # p2(c|b) = (0.5+0.2)/2 = 0.35. Top order after "a b": c(aba)=1, c(abc)=1, 1 set aside:
    # p(a|ab) = (0.5+0.55)/2, p(b|ab) = 0.1/2, p(c|ab) = (0.5+0.35)/2.
    lm = NGramLM(count_ngrams(TOY, 3, 3), order=3, smoothing="kn", discount=0.5)
    np.testing.assert_allclose(lm.next_probs([0, 1]), [0.525, 0.05, 0.425])
    # an unseen context ("c b") falls back to the bigram level after "b"
    np.testing.assert_allclose(lm.next_probs([2, 1]), [0.55, 0.1, 0.35])


def test_mle_and_add_k_match_hand_computation():
    counts = count_ngrams(TOY, 3, 2)
    np.testing.assert_allclose(NGramLM(counts, 2, "mle").next_probs([1]), [1 / 2, 0, 1 / 2])
    np.testing.assert_allclose(NGramLM(counts, 2, "addk", k=1).next_probs([1]), [2 / 5, 1 / 5, 2 / 5])
    np.testing.assert_allclose(NGramLM(counts, 1, "mle").next_probs([1]), [3 / 7, 3 / 7, 1 / 7])
    assert math.isinf(-NGramLM(counts, 2, "mle").log_probs([1, 1]).min())  # "b b" never seen


def test_discounts_from_count_of_counts():
    counts = np.repeat([1, 2, 3, 4], [10, 5, 3, 2])  # n1=10, n2=5, n3=3, n4=2: Y = 0.5
    np.testing.assert_allclose(kn_discounts(counts, modified=False), [0, 0.5, 0.5, 0.5])
    np.testing.assert_allclose(kn_discounts(counts, modified=True), [0, 0.5, 1.1, 3 - 4 / 3])
    np.testing.assert_allclose(kn_discounts(np.array([1, 1, 1]), modified=True), [0, 0.75, 0.75, 0.75])


streams = st.lists(st.integers(0, 5), min_size=1, max_size=60)
boundaries = st.sampled_from([None, 5])  # token 5 as <s>, or no sentence marks


@settings(max_examples=80, deadline=None)
@given(stream=streams, context=st.lists(st.integers(0, 6), max_size=5), order=st.integers(1, 4),
       smoothing=st.sampled_from(SMOOTHINGS), bos=boundaries)
def test_next_token_probabilities_sum_to_one_for_every_context(stream, context, order, smoothing, bos):
    """Seen and unseen contexts alike (token 6 never occurs in training)."""
    counts = count_ngrams(stream, vocab_size=7, max_order=order, bos_id=bos)
    p = NGramLM(counts, order, smoothing, k=0.1).next_probs(context)
    assert p.shape == (7,) and np.all(p >= 0)
    assert math.isclose(p.sum(), 1.0, rel_tol=1e-9)
    assert bos is None or p[bos] == 0


@settings(max_examples=40, deadline=None)
@given(stream=streams, order=st.integers(1, 4), smoothing=st.sampled_from(SMOOTHINGS), bos=boundaries)
def test_vectorised_scores_equal_one_context_at_a_time(stream, order, smoothing, bos):
    lm = NGramLM(count_ngrams(stream, 6, order, bos_id=bos), order, smoothing, k=0.5)
    test = [5, 3, 1, 4, 1, 5, 0, 2, 5, 5, 1]
    want = [lm.next_probs(test[:i])[t] for i, t in enumerate(test) if t != bos]
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(lm.log_probs(test), np.log(want))


def test_lookup_finds_each_ngram_ending_at_each_position():
    counts = count_ngrams(TOY, 3, 2)
    uni, bi = counts.lookup(np.array([0, 1, 1, 2]), order=2)  # a b b c
    assert (counts.levels[0].keys[uni] == [0, 1, 1, 2]).all()
    assert bi[0] == -1 and bi[1] >= 0 and bi[2] == -1 and bi[3] >= 0  # "b b" never occurs
    assert counts.levels[1].counts[bi[1]] == 3  # "a b"


def test_sentence_probabilities_sum_to_one_with_boundaries():
    tok = WordTokenizer.fit("the cat sat. the dog sat. a cat ran.")
    lm = NGramLM.fit("the cat sat. the dog sat. a cat ran.", tok, order=3, smoothing="mkn")
    for context in ["", "the", "the cat", "unseen words here", "the cat sat."]:
        p = lm.next_probs(lm.context_ids(context))
        assert math.isclose(p.sum(), 1.0, rel_tol=1e-9) and p[tok.bos_id] == 0


@pytest.fixture(scope="module")
def words():
    text = "The cat sat on the mat. The dog sat on the log. A cat ran to the dog.\n" * 3
    tok = WordTokenizer.fit(text)
    return text, tok, NGramLM.fit(text, tok, order=3)


def test_text_interface(words):
    lm = words[2]
    assert lm.context_used("the dog sat on") == ["sat", "on"]
    assert lm.context_used("") == ["<s>"]
    assert lm.context_used("Zebras") == ["<s>", "<unk>"]
    top = lm.next_distribution("the dog sat on", k=3)
    assert top[0][0] == "the" and len(top) == 3 and top[0][1] > top[1][1]
    assert math.isclose(lm.prob("the", "the dog sat on"), top[0][1])
    assert "NGramLM(order=3" in repr(lm)


def test_only_the_last_n_minus_1_words_matter(words):
    _, _, lm = words
    np.testing.assert_array_equal(lm.next_probs(lm.context_ids("a cat sat on")),
                                  lm.next_probs(lm.context_ids("the dog sat on")))


def test_evaluate_scores_words_and_characters(words):
    text, _, lm = words
    score = lm.evaluate("the cat sat on the log.")
    assert isinstance(score, Score) and score.n_tokens == 8 and score.unknown == 0
    assert score.bits_per_byte is None  # words do not pay for every byte
    assert 1 < score.perplexity < 10
    assert lm.evaluate("zebras sat.").unknown == 1
    chars = CharTokenizer.fit(text)
    clm = NGramLM.fit(text, chars, order=4, smoothing="kn")
    cs = clm.evaluate("the cat sat")
    assert cs.n_tokens == 11 and cs.n_bytes == 11
    assert math.isclose(cs.bits_per_byte, cs.nats / math.log(2))
    assert NGramLM.fit(text, chars, 2, "mle").evaluate("tt").zero_probability == 1


def test_unseen_fraction_grows_with_order(words):
    _, tok, lm = words
    ids = encode("the cat sat on the log. the mat ran.", tok)
    fractions = [lm.counts.unseen_fraction(ids, n) for n in (1, 2, 3)]
    assert fractions[0] == 0 and fractions == sorted(fractions) and fractions[2] > 0
    # 2-grams of "<s> the mat </s>" that exist: <s> the, the mat, mat </s>
    assert lm.counts.unseen_fraction(encode("the mat", tok), 2) == pytest.approx(1 / 3)


def test_generate_is_repeatable_and_continues(words):
    lm = words[2]
    a = lm.generate("the cat", n_tokens=12, seed=1)
    assert a == lm.generate("the cat", n_tokens=12, seed=1)
    assert "<s>" not in a and 6 <= len(a.split()) <= 12
    chars = CharTokenizer.fit("abcabcabd")
    sample = NGramLM.fit("abcabcabd", chars, 3).generate("ab", 20, seed=0)
    assert len(sample) == 20 and set(sample) <= set("abcd")


def test_variant_shares_counts(words):
    _, _, lm = words
    low = lm.variant(order=1, smoothing="addk", k=0.5)
    assert low.counts is lm.counts and low.order == 1 and low.smoothing == "addk"
    assert low.num_ngrams < lm.num_ngrams


@pytest.mark.parametrize("bad, message", [
    (lambda lm: lm.variant(order=0), "order must be a whole number >= 1"),
    (lambda lm: lm.variant(order=4), "count_ngrams"),
    (lambda lm: lm.variant(smoothing="witten-bell"), "choose one of"),
    (lambda lm: lm.variant(smoothing="addk", k=0), "smoothing='mle'"),
    (lambda lm: lm.variant(discount=1.5), "discounts must lie in"),
    (lambda lm: lm.evaluate(""), "empty"),
    (lambda lm: lm.prob("zebra", "the"), "prob\\('<unk>'"),
    (lambda lm: lm.next_distribution("the", k=0), "k must be"),
    (lambda lm: lm.next_probs([99]), "token ids must lie"),
    (lambda lm: lm.counts.unseen_fraction([0], 3), "no 3-grams"),
])
def test_bad_input_says_what_to_do(words, bad, message):
    with pytest.raises(ValueError, match=message):
        bad(words[2])


def test_bad_counts_input():
    with pytest.raises(ValueError, match="empty"):
        count_ngrams([], 3, 2)
    with pytest.raises(ValueError, match="0..2"):
        count_ngrams([0, 5], 3, 2)
    with pytest.raises(ValueError, match="order"):
        count_ngrams([0, 1], 3, 0)
    with pytest.raises(ValueError, match="no tokenizer"):
        NGramLM(count_ngrams([0, 1], 3, 1), 1).next_distribution("a")
    with pytest.raises(ValueError, match="not in this CharTokenizer"):
        NGramLM.fit("abc", CharTokenizer.fit("abc"), 2).evaluate("xyz")
