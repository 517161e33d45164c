"""minigpt.world.overlap: verbatim and near-duplicate overlap between evaluation and training sets."""

import pytest

from minigpt.world import overlap, questions


def test_verbatim_and_near_duplicates_are_counted_against_each_set():
    test = ["What is 7 + 5?", "what is  7 + 5 ?", "What is 5 + 7?", "Reverse the word 'abc'."]
    sft = ["What is 7 + 5?"]
    prefs = ["What is 5 + 7?", "Sort the letters of 'abc'."]
    sft_result, prefs_result = overlap.measure(test, sft=sft, preferences=prefs)
    assert sft_result.training_set == "sft" and sft_result.n_evaluation == 4 and sft_result.n_training == 1
    assert sft_result.verbatim == pytest.approx(1 / 4)  # case and spaces are normalised, "?" spacing is not
    assert sft_result.near == pytest.approx(3 / 4)  # the reordered sum and the spaced-out one are near
    assert prefs_result.verbatim == pytest.approx(1 / 4)
    assert prefs_result.near == pytest.approx(3 / 4)  # 'abc' sorted is another question than reversed


def test_questions_pairs_and_strings_mix():
    q = questions.make_questions(3, seed=1)
    pairs = [(q[0], "an answer")]
    result, = overlap.measure(q, sft=pairs)
    assert result.verbatim == pytest.approx(1 / 3)
    assert overlap.verbatim_key(q[0]) == overlap.verbatim_key(q[0].prompt.upper())
    assert overlap.near_key("What is 12 - 3?") == overlap.near_key("what is 3 - 12?")
    assert overlap.near_key("What is 12 - 3?") != overlap.near_key("What is 1 - 23?")  # numbers stay whole


def test_sets_drawn_from_one_space_overlap_and_disjoint_ones_do_not():
    facts_train = questions.fact_questions(questions.TRAIN_COUNTRIES)
    facts_held_out = questions.fact_questions(questions.HELD_OUT_COUNTRIES)
    result, = overlap.measure(facts_held_out, sft=facts_train)
    assert result.verbatim == result.near == 0.0
    same, = overlap.measure(facts_train, sft=facts_train)
    assert same.verbatim == same.near == 1.0
    sums = questions.make_questions(300, seed=100, families=["arithmetic"])
    other = questions.make_questions(2000, seed=0, families=["arithmetic"])
    drawn, = overlap.measure(sums, sft=other)
    assert drawn.verbatim > 0.5  # ~280 possible sums: two draws share most of them


def test_report_and_bad_input():
    text = overlap.report(["What is 2 + 3?"], sft=["What is 3 + 2?"], rl_prompts=[])
    assert text.splitlines() == [
        "sft: 0.0% verbatim, 100.0% near duplicates (1 evaluation questions against 1)",
        "rl_prompts: 0.0% verbatim, 0.0% near duplicates (1 evaluation questions against 0)",
    ]
    with pytest.raises(ValueError, match="evaluation set is empty"):
        overlap.measure([], sft=["x"])
    with pytest.raises(ValueError, match="at least one training set"):
        overlap.measure(["x"])
    with pytest.raises(TypeError, match="expected a Question"):
        overlap.measure([42], sft=["x"])
