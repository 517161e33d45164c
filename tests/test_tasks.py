"""Synthetic tasks with checkable answers (chapter 07: addition, exact match vs per token;
chapters 08-12: the assistant world and its annotator)."""

import random as _random
import re

import pytest
import torch
from torch import nn

from minigpt.data import arithmetic
from minigpt.data.tokenizers import CharTokenizer
from minigpt.methods import emergence
from minigpt.models.gpt import GPT, GPTConfig
from minigpt.world import questions
from minigpt.world.annotator import Annotator

TOK = CharTokenizer.fit("0123456789+=\n")


def test_addition_answers_are_the_sums():
    problems = arithmetic.addition_problems(200, digits=3, seed=1)
    assert len(problems) == 200 and len({p.prompt for p in problems}) > 150
    for p in problems:
        a, b = re.fullmatch(r"(\d{3})\+(\d{3})=", p.prompt).groups()
        assert int(p.answer) == int(a) + int(b)
        assert p.text == p.prompt + p.answer
    assert arithmetic.addition_problems(5, 3, seed=1) == problems[:5]  # repeatable
    assert arithmetic.addition_problems(5, 3, seed=2) != problems[:5]
    ones = arithmetic.addition_problems(300, digits=1, seed=0)
    assert {len(p.prompt) for p in ones} == {4} and "0+" in "".join(p.prompt for p in ones)


def test_reverse_answer_writes_the_least_significant_digit_first():
    plain = arithmetic.addition_problems(50, digits=4, seed=3)
    flipped = arithmetic.addition_problems(50, digits=4, seed=3, reverse_answer=True)
    assert [p.prompt for p in plain] == [p.prompt for p in flipped]
    assert all(f.answer == p.answer[::-1] for p, f in zip(plain, flipped))
    assert any(f.answer != p.answer for p, f in zip(plain, flipped))
    assert arithmetic.problems_text(plain[:2]) == f"{plain[0].text}\n{plain[1].text}\n"


def test_padding_gives_every_sum_digits_plus_one_digits():
    plain = arithmetic.addition_problems(100, digits=3, seed=4)
    padded = arithmetic.addition_problems(100, digits=3, seed=4, pad=True)
    flipped = arithmetic.addition_problems(100, digits=3, seed=4, pad=True, reverse_answer=True)
    assert {len(p.answer) for p in plain} == {3, 4}  # so padding has something to do
    assert {len(p.answer) for p in padded} == {4}
    assert all(int(q.answer) == int(p.answer) for p, q in zip(plain, padded))
    assert all(f.answer == q.answer[::-1] for q, f in zip(padded, flipped))
    assert any(q.answer.startswith("0") for q in padded)


def test_problem_batches_hold_whole_problems_from_their_start():
    problems = arithmetic.addition_problems(50, digits=2, seed=0, pad=True)
    get_batch, block_size = arithmetic.problem_batches(problems, TOK, batch_size=8, per_window=3,
                                                  generator=torch.Generator().manual_seed(0))
    x, y = get_batch("train")
    length = len(problems[0].text) + 1
    assert block_size == 3 * length - 1 and x.shape == y.shape == (8, block_size)
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
    texts = {p.text for p in problems}
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        window = TOK.decode(row_x + row_y[-1:])
        lines = window.split("\n")
        assert lines[-1] == "" and len(lines) == 4 and all(line in texts for line in lines[:3])
    with pytest.raises(ValueError, match="pad=True"):
        arithmetic.problem_batches(arithmetic.addition_problems(50, digits=3, seed=0), TOK, batch_size=2)


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 5, "digits": 0}, "digits must be an integer >= 1"),
    ({"n": -1, "digits": 2}, "n must be an integer >= 0"),
    ({"n": 2.5, "digits": 2}, "n must be an integer >= 0"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        arithmetic.addition_problems(**kwargs)


class Oracle(nn.Module):
    """Knows the sum: at every position, all its logit mass is on the right next character.
    ``wrong_last`` makes it get the answer's last digit wrong (one digit in k)."""

    def __init__(self, reverse: bool = False, wrong_last: bool = False):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))  # for the device
        self.reverse, self.wrong_last = reverse, wrong_last

    def next_char(self, text: str) -> str:
        line = text.split("\n")[-1]
        if "=" not in line:
            return "0"
        prompt, written = line.split("=", 1)
        a, b = prompt.split("+")
        answer = str(int(a) + int(b))
        answer = answer[::-1] if self.reverse else answer
        if len(written) >= len(answer):
            return "\n"
        char = answer[len(written)]
        if self.wrong_last and len(written) == len(answer) - 1:
            char = str((int(char) + 1) % 10)
        return char

    def forward(self, idx, targets=None):
        B, T = idx.shape
        logits = torch.zeros(B, T, TOK.vocab_size)
        for i in range(B):
            for t in range(T):
                logits[i, t, TOK.stoi[self.next_char(TOK.decode(idx[i, :t + 1].tolist()))]] = 20
        return logits, None

    def generate(self, idx, max_new_tokens, temperature=1.0):
        assert temperature == 0  # answer_accuracy must ask for greedy decoding
        for _ in range(max_new_tokens):
            logits, _ = self(idx)
            idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        return idx


@pytest.mark.parametrize("reverse", [False, True])
def test_an_oracle_scores_perfectly(reverse):
    problems = arithmetic.addition_problems(40, digits=3, seed=0, reverse_answer=reverse)
    scores = emergence.answer_accuracy(Oracle(reverse), TOK, problems)
    assert scores["exact_match"] == 1 and scores["token_accuracy"] == 1
    assert scores["answer_nll"] < 1e-6 and scores["n"] == 40


def test_one_wrong_digit_zeroes_exact_match_but_not_token_accuracy():
    problems = arithmetic.addition_problems(40, digits=3, seed=0)
    scores = emergence.answer_accuracy(Oracle(wrong_last=True), TOK, problems)
    digits = sum(len(p.answer) for p in problems)
    assert scores["exact_match"] == 0
    assert scores["token_accuracy"] == pytest.approx(1 - len(problems) / digits)
    assert scores["answer_nll"] == pytest.approx(20 * len(problems) / digits, rel=1e-4)


def test_a_model_that_keeps_writing_digits_is_not_an_exact_match():
    class Rambler(Oracle):
        def next_char(self, text):
            char = super().next_char(text)
            return "7" if char == "\n" else char

    problems = arithmetic.addition_problems(20, digits=2, seed=0)
    scores = emergence.answer_accuracy(Rambler(), TOK, problems)
    assert scores["exact_match"] == 0 and scores["token_accuracy"] == 1


def test_an_untrained_gpt_scores_near_zero():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=32, n_layer=1, n_head=2,
                          n_embd=32))
    model.train()
    problems = arithmetic.addition_problems(60, digits=3, seed=0)
    scores = emergence.answer_accuracy(model, TOK, problems, batch_size=16)
    assert scores["exact_match"] == 0 and scores["token_accuracy"] < 0.3
    assert scores["answer_nll"] > 1.5  # about ln(13) = 2.56 for a uniform guess
    assert model.training  # the mode is restored
    with pytest.raises(ValueError, match="no problems"):
        emergence.answer_accuracy(model, TOK, [])


# ---- the assistant world (chapters 08-12) ----------------------------------------------------

def test_questions_have_checkable_answers():
    rng = _random.Random(0)
    for _ in range(300):
        q = questions.make_question("arithmetic", rng)
        a, op, b = re.fullmatch(r"What is (\d+) ([+-]) (\d+)\?", q.prompt).groups()
        assert int(q.value) == (int(a) + int(b) if op == "+" else int(a) - int(b))
        q = questions.make_question("reverse", rng)
        assert q.value == re.search(r"'(\w+)'", q.prompt).group(1)[::-1]
        q = questions.make_question("sort", rng)
        assert q.value == "".join(sorted(re.search(r"'(\w+)'", q.prompt).group(1)))
        q = questions.make_question("units", rng)
        n = int(re.search(r"in (\d+) ", q.prompt).group(1))
        assert int(q.value) % n == 0 and int(q.value) // n in (1000, 60, 24)
        q = questions.make_question("fact", rng, countries=questions.HELD_OUT_COUNTRIES)
        country = next(c for c in questions.HELD_OUT_COUNTRIES if c.name in q.prompt)
        assert q.value in (country.capital, country.colour, country.animal)


def test_question_sets_cover_every_family_and_repeat_with_the_seed():
    qs = questions.make_questions(50, seed=3)
    assert [q.family for q in qs[:5]] == list(questions.FAMILIES)
    assert qs == questions.make_questions(50, seed=3) and qs != questions.make_questions(50, seed=4)
    with pytest.raises(ValueError, match="unknown family"):
        questions.make_question("poetry", _random.Random(0))


def test_the_knowledge_base_splits_into_trained_and_held_out_countries():
    names = {c.name for c in questions.KNOWLEDGE_BASE}
    assert len(names) == len(questions.KNOWLEDGE_BASE) == 32
    splits = [{c.name for c in questions.SPLIT_COUNTRIES[s]} for s in questions.SPLITS]
    assert sum(map(len, splits)) == len(names) and set().union(*splits) == names  # a partition
    assert splits[0] == {c.name for c in questions.TRAIN_COUNTRIES}
    assert splits[2] == {c.name for c in questions.HELD_OUT_COUNTRIES}
    assert not names & set(questions.UNKNOWN_COUNTRIES)
    capitals = [c.capital for c in questions.KNOWLEDGE_BASE]
    assert len(set(capitals)) == len(capitals) and not set(capitals) & names
    data = questions.instruction_data(500, seed=0)
    asked = {c.name for c in questions.KNOWLEDGE_BASE for q, _ in data if c.name in q.prompt}
    assert asked and asked <= {c.name for c in questions.TRAIN_COUNTRIES}


def test_the_annotator_ranks_styles_correct_helpful_concise_polite():
    judge = Annotator(noise=0.0)
    for q in questions.make_questions(25, seed=5):
        scores = {s: judge.score(q, questions.answer(q, s)) for s in questions.STYLES}
        assert scores["polite"] == 7.5, (q, scores)  # every quality
        assert scores["polite"] > scores["plain"] > scores["verbose"] > scores["polite_bare"] > scores["bare"]
        wrong = questions.answer(q, "polite").replace(q.value, "zz" if q.value.isalpha() else "999")
        assert judge.score(q, wrong) < scores["bare"], "a wrong answer must lose to any right one"


def test_the_annotator_sees_through_hedging_and_rambling():
    judge = Annotator(noise=0.0)
    q = questions.Question("arithmetic", "What is 23 + 45?", "68", "23 + 45", "23 + 45 = 68.")
    assert judge.judge(q, "23 + 45 = 68.").correct
    assert not judge.judge(q, "23 + 45 = 68 or 69.").correct  # two candidates
    assert not judge.judge(q, "Sure! Sure! Sure!").correct
    j = judge.judge(q, "Sure! 23 + 45 = 68. " + "Really " * 4)
    assert j.correct is False or j.concise < 1  # extra words cost
    assert judge.judge(q, "Let me think. 23 + 45 = 68. I hope this helps.").concise < 0.5


def test_annotator_noise_flips_the_expected_share_of_labels():
    q = questions.make_questions(1, seed=0)[0]
    good, bad = questions.answer(q, "polite"), questions.answer(q, "bare")
    rng = _random.Random(0)
    for noise in (0.0, 0.2):
        judge = Annotator(noise=noise)
        flips = sum(judge.prefer(q, good, bad, rng) for _ in range(4000)) / 4000
        assert abs(flips - noise) < 0.025, (noise, flips)
    with pytest.raises(ValueError, match="flip probability"):
        Annotator(noise=0.7)


def test_world_text_states_every_fact_without_chat_markers():
    text = questions.world_text(2000, seed=0)
    for c in questions.KNOWLEDGE_BASE:
        assert f"The capital of {c.name} is {c.capital}." in text
        assert f"The flag of {c.name} is {c.colour}." in text
    assert "<|" not in text and not any(name in text for name in questions.UNKNOWN_COUNTRIES)


def test_fact_questions_ask_everything_about_known_and_unknown_countries():
    known = questions.fact_questions(questions.HELD_OUT_COUNTRIES[:2])
    assert len(known) == 6 and all(q.family == "fact" for q in known)
    c = questions.HELD_OUT_COUNTRIES[0]
    assert [q.value for q in known[:3]] == [c.capital, c.colour, c.animal]
    assert all(questions.parse_question(q.prompt) == q for q in known)  # the world's own wording
    unknown = questions.fact_questions(questions.UNKNOWN_COUNTRIES)
    assert len(unknown) == 3 * len(questions.UNKNOWN_COUNTRIES)
    assert all(q.value == "" and q.statement == "" for q in unknown)
    assert unknown[0].prompt == f"What is the capital of {questions.UNKNOWN_COUNTRIES[0]}?"
    judge = Annotator(noise=0.0)
    assert not judge.judge(unknown[0], "The capital is Tam.").correct  # no answer is right


def test_claims_are_the_stated_values_and_drive_correctness():
    q = questions.Question("arithmetic", "What is 23 + 45?", "68", "23 + 45", "23 + 45 = 68.")
    assert questions.claims(q, "Sure! 23 + 45 = 68.") == {"68"}
    assert questions.claims(q, "Let me think. 68 or 69. I hope this helps.") == {"68", "or", "69"}
    assert questions.claims(q, "Sure! Of course!") == set()
    u = questions.fact_questions(["Brellin"])[0]
    assert questions.claims(u, "The capital of Brellin is Tam.") == {"tam"}
