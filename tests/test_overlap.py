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


# ---- held out by construction: the world's three splits share nothing ----------------------------

def test_each_split_draws_only_its_own_questions_and_the_splits_share_nothing():
    sets = {s: questions.make_questions(1500, seed=5, split=s) for s in questions.SPLITS}
    for split, qs in sets.items():
        assert {questions.split_of(q) for q in qs} == {split}
        assert {q.family for q in qs} == set(questions.FAMILIES)
    for a in questions.SPLITS:
        for b in questions.SPLITS:
            if a != b:
                result, = overlap.measure(sets[a], other=sets[b])
                assert result.verbatim == result.near == 0.0, (a, b)
    # drawn with the same seed, any split's set is still another set of questions
    assert questions.make_questions(20, seed=5, split="test") == sets["test"][:20]


def test_near_duplicates_always_share_a_split():
    for a in range(2, 20):
        for b in range(2, 10):
            for op in "+-":
                q = questions.parse_question(f"What is {a} {op} {b}?")
                swapped = questions.parse_question(f"What is {b} {op} {a}?")
                assert questions.split_of(q) == questions.split_of(swapped)
    word = questions.parse_question("Reverse the word 'kemp'.")
    assert questions.split_of(word) == questions.split_of(questions.parse_question("Sort the letters of 'pmek'."))


def test_splits_have_the_intended_sizes():
    sums = {q.prompt: questions.split_of(q)
            for q in questions.make_questions(6000, seed=0, families=["arithmetic"])}
    shares = {s: list(sums.values()).count(s) / len(sums) for s in questions.SPLITS}
    assert len(sums) == 280  # every sum of the world's space
    assert 0.5 < shares["train"] < 0.7 and 0.12 < shares["validation"] < 0.28 and 0.12 < shares["test"] < 0.28


def test_training_data_comes_from_the_train_split_only():
    sft = [q for q, _ in questions.instruction_data(2000, seed=0)]
    pretraining = questions.worked_examples(2000, seed=0)
    assert {questions.split_of(q) for q in sft + pretraining} == {"train"}
    test = questions.make_questions(500, seed=400, split="test")
    for result in overlap.measure(test, sft=sft, pretraining=pretraining):
        assert result.verbatim == result.near == 0.0
    assert "'" in questions.world_text(50, seed=0)  # the worked examples are in the text


def test_split_arguments_are_checked():
    with pytest.raises(ValueError, match="unknown split"):
        questions.make_questions(3, split="dev")
    with pytest.raises(ValueError, match="not in the test split"):
        questions.make_questions(5, families=["fact"], countries=questions.TRAIN_COUNTRIES, split="test")
    with pytest.raises(ValueError, match="asks about no country"):
        questions.split_of(questions.Question("fact", "What is the capital of Atlantis?", "", "capital", ""))
