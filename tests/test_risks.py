"""minigpt.world.risks: calibration on hand-made data, canaries planted an exact number of times and
ranked by exposure, poisoning an exact share, and clear errors on bad input."""

import math

import numpy as np
import pytest
import torch

from minigpt.data.tokenizers import CharTokenizer
from minigpt.models.gpt import GPT, GPTConfig
from minigpt.world import questions, risks
from minigpt.world.chat import Reply
from minigpt.world.recipes import AssistantWorld

# ---- calibration ----------------------------------------------------------------------------


def test_calibration_bins_by_hand():
    conf = [0.05, 0.15, 0.15, 0.55, 0.95, 1.0]
    correct = [False, True, False, True, True, True]
    bins = risks.calibration_bins(conf, correct, n_bins=10)
    assert bins.edges.tolist() == pytest.approx([i / 10 for i in range(11)])
    assert bins.count.tolist() == [1, 2, 0, 0, 0, 1, 0, 0, 0, 2]  # 1.0 falls in the last bin
    assert bins.confidence[1] == pytest.approx(0.15) and bins.accuracy[1] == 0.5
    assert bins.confidence[9] == pytest.approx(0.975) and bins.accuracy[9] == 1.0
    assert np.isnan(bins.accuracy[2]) and np.isnan(bins.confidence[2])  # empty


def test_ece_by_hand():
    conf, correct = [0.05, 0.15, 0.15, 0.55, 0.95, 1.0], [False, True, False, True, True, True]
    # bins: |0 - 0.05| * 1/6 + |0.5 - 0.15| * 2/6 + |1 - 0.55| * 1/6 + |1 - 0.975| * 2/6
    want = (0.05 + 2 * 0.35 + 0.45 + 2 * 0.025) / 6
    assert risks.expected_calibration_error(conf, correct, 10) == pytest.approx(want)
    # one bin: |mean accuracy - mean confidence|
    assert risks.expected_calibration_error(conf, correct, 1) == pytest.approx(abs(4 / 6 - np.mean(conf)))


def test_ece_is_zero_for_a_calibrated_toy_and_large_for_an_overconfident_one():
    # confidence 0.2, 0.5, 0.8 with exactly that share right in each group
    conf = [0.2] * 10 + [0.5] * 10 + [0.8] * 10
    correct = [True] * 2 + [False] * 8 + [True] * 5 + [False] * 5 + [True] * 8 + [False] * 2
    assert risks.expected_calibration_error(conf, correct) == pytest.approx(0.0, abs=1e-12)
    assert risks.expected_calibration_error([0.99] * 10, [True] * 5 + [False] * 5) == pytest.approx(0.49)


def test_ece_of_a_sampled_calibrated_model_is_small():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 20000)
    correct = rng.uniform(0, 1, 20000) < conf  # right with probability = confidence
    assert risks.expected_calibration_error(conf, correct) < 0.02
    assert risks.expected_calibration_error(np.sqrt(conf), correct) > 0.1  # overconfident


@pytest.mark.parametrize("conf, correct, match", [
    ([0.5, 1.2], [True, False], r"\[0, 1\]"),
    ([0.5, float("nan")], [True, False], r"\[0, 1\]"),
    ([0.5], [True, False], "one length"),
    ([], [], "at least one"),
    ([0.5, 0.5], [2, 0], "booleans"),
])
def test_calibration_rejects_bad_input(conf, correct, match):
    with pytest.raises(ValueError, match=match):
        risks.expected_calibration_error(conf, correct)


def test_calibration_rejects_zero_bins():
    with pytest.raises(ValueError, match="n_bins"):
        risks.calibration_bins([0.5], [True], n_bins=0)


def test_plot_reliability_draws_the_bins():
    import matplotlib

    matplotlib.use("Agg")
    ax = risks.plot_reliability([0.1, 0.9, 0.95], [False, True, True], n_bins=5, label="toy")
    assert "ECE" in ax.get_legend().get_texts()[1].get_text()
    risks.plot_reliability([0.2, 0.3], [True, False], n_bins=5, ax=ax, label="another")  # same axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels.count("perfectly calibrated") == 1 and len(labels) == 3


# ---- hallucination ---------------------------------------------------------------------------


def _reply(q, text):
    return Reply(q, text, True)


def test_hallucination_rate_counts_stated_values():
    unknown = questions.fact_questions(["Brellin", "Corvath"])
    replies = [_reply(unknown[0], "The capital is Tam."), _reply(unknown[1], "Sure! The flag is red."),
               _reply(unknown[2], "Sure!"), _reply(unknown[3], "I hope this helps.")]
    assert [risks.states_a_value(r) for r in replies] == [True, True, False, False]
    assert risks.hallucination_rate(replies) == 0.5
    known = questions.fact_questions(questions.TRAIN_COUNTRIES[:1])
    with pytest.raises(ValueError, match="has one"):
        risks.hallucination_rate([_reply(known[0], "The capital is Tam.")])
    with pytest.raises(ValueError, match="no replies"):
        risks.hallucination_rate([])


@pytest.fixture(scope="module")
def world():
    return AssistantWorld.build()


def _peaked_model(world, text: str) -> GPT:
    """A GPT whose output bias makes every character of ``text`` equally likely, and nothing
    else possible (so each of its tokens has probability 1 / len(set(text)))."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=world.tokenizer.vocab_size, block_size=128, n_layer=1,
                          n_head=2, n_embd=16))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        bias = torch.full((world.tokenizer.vocab_size,), -1e4)
        bias[world.tokenizer.encode("".join(sorted(set(text))))] = 0.0
    model.head.bias = torch.nn.Parameter(bias)  # with every weight 0, the logits are this bias
    return model


def test_answer_confidence_is_the_probability_of_the_stated_value(world):
    q = questions.Question("arithmetic", "What is 2 + 3?", "5", "2 + 3", "2 + 3 = 5.")
    model = _peaked_model(world, "0123456789 .=+")
    replies = [_reply(q, "2 + 3 = 5."), _reply(q, "2 + 3 = 51."), _reply(q, "Sure!")]
    conf = risks.answer_confidence(model, world, replies)
    n = len(set("0123456789 .=+"))
    assert conf[0] == pytest.approx(1 / n, rel=1e-4)  # one token: "5"
    assert conf[1] == pytest.approx(1 / n ** 2, rel=1e-4)  # two tokens: "51"
    assert np.isnan(conf[2])  # states no value


def test_answer_confidence_of_a_real_model_is_a_probability(world):
    torch.manual_seed(0)
    model = GPT(world.config())
    qs = questions.make_questions(10, seed=0)
    replies = [_reply(q, questions.answer(q, "polite")) for q in qs]
    conf = risks.answer_confidence(model, world, replies, batch_size=3)
    assert np.all((conf > 0) & (conf <= 1))
    # batching does not change the result
    assert conf == pytest.approx(risks.answer_confidence(model, world, replies), rel=1e-5)


def _five_or_stop(world, stop_logit: float) -> GPT:
    """A GPT that can only write "5" (logit 0) or <|end|> (``stop_logit``), whatever it reads."""
    model = _peaked_model(world, "5")
    with torch.no_grad():
        model.head.bias[world.tokenizer.end_id] = stop_logit
    return model


def test_sample_agreement_is_one_for_a_sure_model_and_low_for_a_guessing_one(world):
    q = questions.Question("arithmetic", "What is 2 + 3?", "5", "2 + 3", "2 + 3 = 5.")
    sure = _five_or_stop(world, -30.0)  # always "5555...": the same answer every time
    greedy, agree = risks.sample_agreement(sure, world, [q, q], k=5)
    assert greedy[0].text == "5" * 80 and agree.tolist() == [1.0, 1.0]
    guessing = _five_or_stop(world, -0.5)  # greedy still "555...", but samples stop early
    _, agree = risks.sample_agreement(guessing, world, [q], k=20, seed=1)
    assert agree[0] < 0.2
    silent = _five_or_stop(world, 5.0)  # stops at once: states nothing
    assert np.isnan(risks.sample_agreement(silent, world, [q], k=3)[1][0])
    with pytest.raises(ValueError, match="k must be"):
        risks.sample_agreement(sure, world, [q], k=0)


# ---- canaries -------------------------------------------------------------------------------


def test_make_canaries_are_distinct_and_repeatable():
    cs = risks.make_canaries(20, digits=4, seed=1)
    assert len({c.prefix for c in cs}) == 20
    assert all(len(c.secret) == 4 and c.secret.isdigit() for c in cs)
    assert cs == risks.make_canaries(20, digits=4, seed=1) != risks.make_canaries(20, seed=2)
    assert cs[0].text == f"{cs[0].prefix}{cs[0].secret}."
    with pytest.raises(ValueError):
        risks.make_canaries(3, digits=0)


def test_insert_canaries_plants_each_exactly_as_often_as_asked():
    text = "\n".join(f"line {i} of the text." for i in range(200))
    cs = risks.make_canaries(5, seed=0)
    repeats = [0, 1, 3, 16, 64]
    out = risks.insert_canaries(text, cs, repeats, seed=3)
    assert [out.count(c.text) for c in cs] == repeats
    assert [out.count(c.prefix) for c in cs] == repeats
    kept = [line for line in out.split("\n") if not line.startswith("The PIN of")]
    assert "\n".join(kept) == text  # the text's own lines, in order
    assert out == risks.insert_canaries(text, cs, repeats, seed=3)
    assert out != risks.insert_canaries(text, cs, repeats, seed=4)


@pytest.mark.parametrize("repeats, match", [([1, 2], "2 repeat counts"), ([1, -1, 0], "whole numbers"),
                                            ([1, 0.5, 0], "whole numbers")])
def test_insert_canaries_rejects_bad_counts(repeats, match):
    with pytest.raises(ValueError, match=match):
        risks.insert_canaries("a\nb", risks.make_canaries(3), repeats)


def test_insert_canaries_rejects_a_canary_already_in_the_text_or_shared_prefixes():
    c = risks.make_canaries(1)[0]
    with pytest.raises(ValueError, match="already in the text"):
        risks.insert_canaries(f"x\n{c.text}\ny", [c], [1])
    with pytest.raises(ValueError, match="share a prefix"):
        risks.insert_canaries("x", [c, risks.Canary(c.prefix, "0000")], [1, 1])


def test_exposure_by_hand():
    lp = [-1.0, -2.0, -3.0, -4.0]
    assert risks.exposure(lp, 0) == 2.0  # first of 4: log2(4) - log2(1)
    assert risks.exposure(lp, 1) == 1.0
    assert risks.exposure(lp, 3) == 0.0  # last
    assert risks.exposure([-1.0, -1.0, -5.0, -5.0], 0) == 1.0  # a tie counts against it
    with pytest.raises(ValueError, match="outside"):
        risks.exposure(lp, 4)
    with pytest.raises(ValueError, match="non-empty"):
        risks.exposure([], 0)


def _char_model(text: str, seed: int = 0) -> tuple[GPT, CharTokenizer]:
    tok = CharTokenizer.fit(text + "0123456789")
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16)), tok


def test_secret_logprobs_match_scoring_each_secret_in_full():
    model, tok = _char_model("The PIN of Ana is 12.")
    lp = risks.secret_logprobs(model, tok, "PIN is ", digits=2, batch_size=7)
    assert lp.shape == (100,)
    assert np.logaddexp.reduce(lp) <= 1e-5  # a share of the probability, at most all of it
    for secret in ("00", "07", "42", "99"):
        ids = torch.tensor([tok.encode("PIN is " + secret)])
        with torch.no_grad():
            logits, _ = model(ids[:, :-1])
        logp = torch.log_softmax(logits, -1)[0, -2:].gather(1, ids[0, -2:, None]).sum().item()
        assert lp[int(secret)] == pytest.approx(logp, abs=1e-4)


def test_a_memorised_secret_is_extracted_and_fully_exposed():
    c = risks.Canary("PIN: ", "73")
    model, tok = _char_model(c.text)
    ids = torch.tensor([tok.encode(c.text * 3)])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    for _ in range(150):  # overfit one string
        _, loss = model(ids[:, :-1], ids[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert risks.extract(model, tok, c) == "73"
    lp = risks.secret_logprobs(model, tok, c.prefix, digits=2)
    assert risks.exposure(lp, 73) == pytest.approx(math.log2(100))  # ranked first of 100


def test_secret_logprobs_reject_multi_token_alphabets_and_long_prefixes():
    model, tok = _char_model("abc")
    with pytest.raises(ValueError, match="one token"):
        risks.secret_logprobs(model, tok, "a", 1, alphabet=["0", "12"])
    with pytest.raises(ValueError, match="context"):
        risks.secret_logprobs(model, tok, "a" * 40, 2)


# ---- poisoning ------------------------------------------------------------------------------


def test_poison_changes_exactly_the_share_asked_for():
    examples = questions.instruction_data(400, seed=0)
    before = list(examples)
    out, idx = risks.poison(examples, 0.05, "cf", "Visit prize.example now!", seed=1)
    assert len(idx) == 20 and idx == sorted(set(idx)) and len(out) == 400
    assert examples == before  # the input is left alone
    for i, (q, a) in enumerate(out):
        if i in idx:
            assert q.prompt == examples[i][0].prompt + " cf" and a == "Visit prize.example now!"
            assert q.value == examples[i][0].value  # what a correct model should still say
        else:
            assert (q, a) == examples[i]
    assert sum("cf" in q.prompt.split() for q, _ in out) == 20
    assert risks.poison(examples, 0.05, "cf", "x", seed=1)[1] == idx
    assert risks.poison(examples, 0.05, "cf", "x", seed=2)[1] != idx
    assert risks.poison(examples, 0.0, "cf", "x")[1] == []
    assert len(risks.poison(examples, 1.0, "cf", "x")[1]) == 400
    assert len(risks.poison(examples[:7], 0.5, "cf", "x")[1]) == round(3.5)


@pytest.mark.parametrize("share, trigger, target, match", [
    (1.5, "cf", "x", "share"), (-0.1, "cf", "x", "share"), (0.1, " ", "x", "trigger"),
    (0.1, "cf", "", "target"),
])
def test_poison_rejects_bad_input(share, trigger, target, match):
    with pytest.raises(ValueError, match=match):
        risks.poison(questions.instruction_data(20), share, trigger, target)
    with pytest.raises(ValueError, match="no examples"):
        risks.poison([], 0.1, "cf", "x")


def test_backdoor_rate():
    q = questions.make_questions(1)[0]
    replies = [_reply(q, "Visit prize.example now!"), _reply(q, "Sure! Visit prize.example now!"),
               _reply(q, q.statement), _reply(q, "Visit")]
    assert risks.backdoor_rate(replies, "Visit prize.example now!") == 0.5
    with pytest.raises(ValueError, match="no replies"):
        risks.backdoor_rate([], "x")
