"""Widget wiring, headless: moving a control re-runs the tested function beneath it."""

import torch

from minigpt import widgets
from minigpt.gpt import GPT, GPTConfig, sample
from minigpt.tokenizers import CharTokenizer

TOK = CharTokenizer.fit("abcdefgh <>&")


def tiny_model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=8))


def test_sample_continues_the_prompt_repeatably():
    model = tiny_model()
    a = sample(model, TOK, "abc", max_new_tokens=30, temperature=1.0, seed=3)
    assert a.startswith("abc") and len(a) == 33
    assert sample(model, TOK, "abc", max_new_tokens=30, seed=3) == a
    assert sample(model, TOK, "abc", max_new_tokens=30, seed=4) != a


def test_sampler_shows_the_sample_and_resamples_when_a_knob_moves():
    model = tiny_model()
    box = widgets.sampler(model, TOK, prompt="ab", max_new_tokens=20)
    prompt, temperature, top_k, seed, length = box.children[0].children
    shown = box.children[1].value
    expected = sample(model, TOK, "ab", 20, temperature.value, None, 0)
    assert "<b>ab</b>" in shown and expected[2:].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in shown
    seed.value = 1
    assert box.children[1].value != shown
    top_k.value = 1  # greedy: the same text whatever the seed
    greedy = box.children[1].value
    seed.value = 2
    assert box.children[1].value == greedy


def test_sampler_reports_bad_prompts_instead_of_failing():
    box = widgets.sampler(tiny_model(), TOK, prompt="ab")
    prompt = box.children[0].children[0]
    prompt.value = "xyz"  # not in the character vocabulary
    assert "not in this CharTokenizer" in box.children[1].value
    prompt.value = ""
    assert "at least one character" in box.children[1].value
