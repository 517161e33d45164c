"""The synthetic in-context learning task of chapter 06."""

import random

import pytest
import torch

from minigpt.data.tokenizers import CharTokenizer
from minigpt.methods import incontext as ic
from minigpt.models.gpt import GPT, GPTConfig


def test_rules_by_hand():
    s = list("dag")
    assert ic.apply_rule("first", s) == ["d"]
    assert ic.apply_rule("last", s) == ["g"]
    assert ic.apply_rule("min", s) == ["a"]
    assert ic.apply_rule("max", s) == ["g"]
    with pytest.raises(ValueError, match="unknown rule 'upper'; known rules: first, last, min, max"):
        ic.apply_rule("upper", s)
    with pytest.raises(ValueError, match="letters must come from"):
        ic.apply_rule("min", list("xyz"))


def test_episode_lines_follow_one_rule_and_the_answer_solves_the_query():
    rng = random.Random(0)
    for _ in range(50):
        ep = ic.make_episode(rng, n_examples=rng.randint(0, 5), named=rng.random() < 0.5)
        lines = ep.prompt.split("\n")
        if lines[0].endswith(":"):
            assert lines[0] == f"{ep.rule}:"
            lines = lines[1:]
        for solved in lines[:-1]:
            left, right = solved.split(" -> ")
            assert ic.apply_rule(ep.rule, left.split()) == right.split()
        query = lines[-1]
        assert query.endswith(" ->")
        assert ic.apply_rule(ep.rule, query[:-3].split()) == ep.answer.split()


def test_letters_are_distinct():
    rng = random.Random(1)
    for _ in range(200):
        assert len(set(ic.random_letters(rng, 3))) == 3


def test_zero_shot_episode_is_only_the_query_and_bad_arguments_fail():
    ep = ic.make_episode(random.Random(0), 0, rule="max", named=True)
    assert ep.prompt.count("\n") == 1 and ep.prompt.startswith("max:\n")
    with pytest.raises(ValueError, match="n_examples must be >= 0"):
        ic.make_episode(random.Random(0), -1)


def test_mix_keeps_both_texts_in_order_at_about_the_share_asked():
    text = "".join(f"wiki line {i}\n" for i in range(2000))
    extra = ic.episodes_text(500, seed=3)
    mixed = ic.mix(text, extra, share=0.2)
    kept_text = [ln for ln in mixed.splitlines() if ln.startswith("wiki line")]
    assert kept_text == text.splitlines()  # every line, in order
    added = len(mixed) - len(text)
    assert 0.18 < added / len(mixed) < 0.23
    episodes = [p for p in mixed.split("\n\n") if "->" in p]
    assert all(p.strip() in extra for p in episodes)
    with pytest.raises(ValueError, match="share must be in"):
        ic.mix(text, extra, 1.0)


class Oracle(torch.nn.Module):
    """A 'model' that answers every episode right: it reads the rule from the prompt's first
    line (named episodes only) and emits the answer's characters, one per generate step."""

    def __init__(self, tok: CharTokenizer):
        super().__init__()
        self.tok = tok
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def generate(self, idx, max_new_tokens, temperature=1.0, **_):
        assert temperature == 0  # complete() decodes greedily
        prompt = self.tok.decode(idx[0].tolist())
        lines = prompt.split("\n")
        answer = " " + " ".join(ic.apply_rule(lines[0][:-1], lines[-1][:-3].split())) + "\nxx"
        return torch.cat([idx, torch.tensor([self.tok.encode(answer)])], 1)


def test_accuracy_counts_exact_matches():
    tok = CharTokenizer(sorted(set(ic.LETTERS + " ->:\nx" + "".join(ic.RULES))))
    acc = ic.few_shot_accuracy(Oracle(tok), tok, shots=[0, 2], n=12, named=True)
    assert acc == {0: 1.0, 2: 1.0}
    untrained = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=1,
                              n_embd=8))
    low = ic.few_shot_accuracy(untrained, tok, shots=[1], n=8)
    assert low[1] < 0.5
    with pytest.raises(ValueError, match="no episodes"):
        ic.accuracy(untrained, tok, [])
