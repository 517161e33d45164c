"""Widget wiring, headless: moving a control re-runs the tested function beneath it."""

import html

import torch

from minigpt.course import widgets
from minigpt.data.tokenizers import CharTokenizer
from minigpt.models.gpt import GPT, GPTConfig, sample

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
    _prompt, temperature, top_k, top_p, seed, _length = box.children[0].children
    shown = box.children[1].value
    expected = sample(model, TOK, "ab", 20, temperature.value, None, 0)
    assert "<b>ab</b>" in shown and expected[2:].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in shown
    seed.value = 1
    assert box.children[1].value != shown
    top_k.value = 1  # greedy: the same text whatever the seed
    greedy = box.children[1].value
    seed.value = 2
    assert box.children[1].value == greedy
    top_k.value, top_p.value = 0, 0.05  # a nucleus this small holds only the likeliest token
    assert box.children[1].value == greedy
    top_p.value, temperature.value = 1.0, 0.0  # temperature 0 is greedy too
    assert box.children[1].value == greedy


def test_sampler_reports_bad_prompts_instead_of_failing():
    box = widgets.sampler(tiny_model(), TOK, prompt="ab")
    prompt = box.children[0].children[0]
    prompt.value = "xyz"  # not in the character vocabulary
    assert "not in this CharTokenizer" in box.children[1].value
    prompt.value = ""
    assert "at least one character" in box.children[1].value


def test_ngram_explorer_shows_the_distribution_and_follows_its_knobs():
    from minigpt.data.tokenizers import CharTokenizer as Chars
    from minigpt.data.tokenizers import WordTokenizer
    from minigpt.models.ngram import NGramLM

    text = "the cat sat on the mat. the dog sat on the log."
    words = WordTokenizer.fit(text)
    lm = NGramLM.fit(text, words, order=3)
    box = widgets.ngram_explorer(lm, context="the dog sat on", k=3)
    _context, order, smoothing, top_k = box.children[0].children
    shown = box.children[1].value
    assert "the model sees: <b>sat on</b>" in shown
    best, p = lm.next_distribution("the dog sat on", 3)[0]
    assert f"&#x27;{best}&#x27;</td><td>{p:.4f}" in shown and shown.count("<tr>") == 4
    order.value = 1
    assert "a unigram model ignores context" in box.children[1].value
    smoothing.value = "addk"
    unigram_addk = lm.variant(order=1, smoothing="addk").next_distribution("", 3)
    assert f"{unigram_addk[0][1]:.4f}" in box.children[1].value
    top_k.value = 5
    assert box.children[1].value.count("<tr>") == 6
    chars = NGramLM.fit("abcab", Chars.fit("abc"), order=2)
    box = widgets.ngram_explorer(chars, context="ab")
    box.children[0].children[0].value = "xyz"  # not in the character vocabulary
    assert "not in this CharTokenizer" in box.children[1].value


def toy_word_vectors():
    import numpy as np

    from minigpt.models.word_vectors import WordVectors

    words = ["man", "woman", "king", "queen", "apple", "pear"]
    vecs = np.array([[1, 0, 0], [-1, 0, 0], [1, 1, 0], [-1, 1, 0], [0, 0, 1], [0.1, 0, 1]], float)
    return WordVectors(words, vecs)


def test_word_explorer_shows_neighbours_and_analogies_as_you_type():
    wv = toy_word_vectors()
    box = widgets.word_explorer(wv, word="apple", query="man:king::woman", k=3)
    (word, neighbours), (query, answers) = box.children[0].children, box.children[1].children
    assert "<td>pear</td>" in neighbours.value.split("</tr>")[1]  # the nearest word
    assert f"{wv.similarity('apple', 'pear'):.3f}" in neighbours.value
    assert "<td>queen</td>" in answers.value.split("</tr>")[1]  # the first answer
    word.value = "king"
    assert wv.neighbours("king", 1)[0][0] in neighbours.value.split("</tr>")[1]
    query.value = "woman : queen :: man"
    assert "<td>king</td>" in answers.value.split("</tr>")[1]


def test_word_explorer_reports_bad_input_instead_of_failing():
    box = widgets.word_explorer(toy_word_vectors(), word="apple")
    (word, neighbours), (query, answers) = box.children[0].children, box.children[1].children
    word.value = "banana"
    assert "not in the vocabulary" in neighbours.value and "<table" not in neighbours.value
    query.value = "man:king"
    assert "a:b::c" in answers.value


def test_attention_heatmaps_show_the_weights_and_follow_layer_and_head():
    from minigpt.models.transformer import Transformer, TransformerConfig, attention_maps

    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=TOK.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=8))
    box = widgets.attention_heatmaps(model, TOK, text="ab cd")
    text, layer, head = box.children[0].children
    shown = box.children[1].value
    assert "layer 0, head 0" in shown and shown.count("<tr>") == 6  # a header row and 5 positions
    first = attention_maps(model, TOK, "ab cd")[0, 0]
    assert f"rgba(76,114,176,{first[4, 2].item():.3f})" in shown and "\u2423" in shown  # space shown as a glyph
    head.value = 1
    assert "layer 0, head 1" in box.children[1].value
    layer.value = 1
    last = attention_maps(model, TOK, "ab cd")[1, 1]
    assert f"{last[4, 0].item():.3f}" in box.children[1].value
    text.value = "abc"
    assert box.children[1].value.count("<tr>") == 4


def test_attention_heatmaps_report_bad_text_instead_of_failing():
    from minigpt.models.transformer import Transformer, TransformerConfig

    model = Transformer(TransformerConfig(vocab_size=TOK.vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=8))
    box = widgets.attention_heatmaps(model, TOK, text="abc")
    text = box.children[0].children[0]
    text.value = "xyz"
    assert "not in this CharTokenizer" in box.children[1].value
    text.value = "a" * 9
    assert "do not fit in the context" in box.children[1].value


def test_scaling_explorer_shows_the_plan_and_follows_budget_and_size():
    from minigpt.methods.scaling import LossSurface, budget_plan

    surface = LossSurface(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al.'s fit
    box = widgets.scaling_explorer(surface, flops=1e21, n_params=1e9, fitted_flops=(1e18, 1e22))
    budget, size = box.children[0].children
    plan = budget_plan(surface, 1e21, 1e9)
    shown = box.children[1].value
    assert f"{plan['loss_opt']:.3f}" in shown and f"{plan['loss']:.3f}" in shown
    assert "Extrapolated" not in shown
    budget.value = 24
    bigger = budget_plan(surface, 1e24, 1e9)
    assert f"{bigger['loss_opt']:.3f}" in box.children[1].value and "Extrapolated" in box.children[1].value
    size.value = 11
    assert f"{budget_plan(surface, 1e24, 1e11)['loss']:.3f}" in box.children[1].value


def track_px(slider) -> int:
    """Pixels left for a slider's track: its width (ipywidgets' default 300px) less its label
    and its readout (about 60px)."""
    def px(value, default):
        return int(value[:-2]) if value and value.endswith("px") else default
    return px(slider.layout.width, 300) - px(slider.style.description_width, 0) - 60


def test_scaling_explorer_sliders_leave_room_for_their_track():
    from minigpt.methods.scaling import LossSurface

    box = widgets.scaling_explorer(LossSurface(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28))
    for slider in box.children[0].children:  # a wide label once squeezed the track to ~20px
        assert track_px(slider) >= 200, (slider.description, track_px(slider))


def test_chat_answers_with_every_model_and_scores_world_questions():
    from minigpt.world import chat, recipes

    world = recipes.AssistantWorld.build(base=recipes.BaseRecipe(n_layer=1, n_head=2, n_embd=32))
    torch.manual_seed(0)
    models = {"a": GPT(world.config()), "b": GPT(world.config())}
    box = widgets.chat(models, world, prompt="What is 3 + 4?", max_new_tokens=8)
    question, _temperature, _seed = box.children[0].children
    shown = box.children[1].value
    expected = chat.generate(models["a"], world, ["What is 3 + 4?"], 0.0, 8)[0].text
    assert "<b>a</b>" in shown and "<b>b</b>" in shown and html.escape(expected) in shown
    assert "n/a" not in shown  # a question of the world: the annotator scores it
    question.value = "Tell me a joke"
    assert "n/a" in box.children[1].value
    question.value = ""
    assert "Type a question" in box.children[1].value


def test_heatmap_html_is_well_formed_markup():
    """Labels with quotes and arrows must stay inside their attributes (the browser test once
    showed the heat map's own markup as text)."""
    from html.parser import HTMLParser

    from minigpt.course.widgets import _heatmap_html

    class Text(HTMLParser):
        def __init__(self):
            super().__init__()
            self.text, self.titles = [], []

        def handle_data(self, data):
            self.text.append(data)

        def handle_starttag(self, tag, attrs):
            self.titles += [v for k, v in attrs if k == "title"]

    parser = Text()
    labels = ["'", '"', "->", "<b>"]
    parser.feed(_heatmap_html(torch.full((4, 4), 0.25), labels))
    shown = "".join(parser.text)
    assert "style" not in shown and "0.250" not in shown, shown
    assert parser.titles[0] == f"{labels[0]!r} -> {labels[0]!r}: 0.250"
