"""Widgets: knobs to turn in a notebook, as thin wrappers over tested functions.

Each widget only wires controls to a plain function of the package (which the tests check on
their own), so it works the same in JupyterLab (ipywidgets 8) and Colab (ipywidgets 7.7).

    >>> from minigpt.course import widgets
    >>> widgets.sampler(model, tokenizer, prompt="The history of ")     # doctest: +SKIP
"""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from minigpt.models.gpt import GPT, sample
from minigpt.models.ngram import SMOOTHINGS, NGramLM
from minigpt.models.word_vectors import WordVectors, parse_analogy


def sampler(model: GPT, tokenizer, prompt: str = "The ", max_new_tokens: int = 200) -> W.VBox:
    """Sample text from ``model`` with knobs for temperature, top-k and top-p.

    Changing any control samples again (the seed keeps a draw repeatable, so only the knob
    you moved changes the text). Temperature 0 is greedy; top-k 0 and top-p 1 switch those
    filters off. Returns the widget; its controls are ``children[0].children`` (prompt,
    temperature, top-k, top-p, seed, length) and the text is ``children[1].value``."""
    style = {"description_width": "90px"}
    controls = [
        W.Text(value=prompt, description="prompt", style=style, continuous_update=False),
        W.FloatSlider(value=0.8, min=0.0, max=2.0, step=0.05, description="temperature",
                      style=style, continuous_update=False),
        W.IntSlider(value=0, min=0, max=min(tokenizer.vocab_size, 100), description="top-k (0: off)",
                    style=style, continuous_update=False),
        W.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top-p (1: off)",
                      style=style, continuous_update=False),
        W.IntText(value=0, description="seed", style=style),
        W.IntSlider(value=max_new_tokens, min=10, max=1000, step=10, description="length",
                    style=style, continuous_update=False),
    ]
    out = W.HTML()

    def refresh(_change=None) -> None:
        text_prompt, temperature, top_k, top_p, seed, length = (c.value for c in controls)
        try:
            text = sample(model, tokenizer, text_prompt, length, temperature, top_k or None, seed,
                          top_p if top_p < 1 else None)
            body = f"<b>{html.escape(text_prompt)}</b>{html.escape(text[len(text_prompt):])}"
        except ValueError as err:  # e.g. an empty prompt, or a character the tokenizer lacks
            body = f"<span style='color:#b00'>{html.escape(str(err))}</span>"
        out.value = f"<pre style='white-space:pre-wrap'>{body}</pre>"

    for control in controls:
        control.observe(refresh, names="value")
    refresh()
    return W.VBox([W.VBox(controls), out])


def ngram_explorer(model: NGramLM, context: str = "the history of", k: int = 10) -> W.VBox:
    """The next-token distribution of an n-gram model, with knobs for order and smoothing.

    ``model`` holds the counts (up to ``model.counts.max_order``); each order and smoothing is
    a ``model.variant``. Shows the context as the model sees it (its last n-1 tokens) and the
    ``k`` likeliest next tokens from ``NGramLM.next_distribution``. Controls are
    ``children[0].children`` (context, order, smoothing, k); the table is ``children[1].value``."""
    style = {"description_width": "90px"}
    controls = [
        W.Text(value=context, description="context", style=style, continuous_update=False),
        W.Dropdown(options=list(range(1, model.counts.max_order + 1)), value=model.order,
                   description="order n", style=style),
        W.Dropdown(options=list(SMOOTHINGS), value=model.smoothing, description="smoothing",
                   style=style),
        W.IntSlider(value=k, min=1, max=30, description="top k", style=style,
                    continuous_update=False),
    ]
    out = W.HTML()
    variants: dict[tuple[int, str], NGramLM] = {}

    def refresh(_change=None) -> None:
        text, order, smoothing, top_k = (c.value for c in controls)
        lm = variants.setdefault((order, smoothing), model.variant(order=order, smoothing=smoothing))
        try:
            seen = " ".join(lm.context_used(text)) or "(nothing: a unigram model ignores context)"
            rows = "".join(
                f"<tr><td>{html.escape(repr(token))}</td><td>{p:.4f}</td><td><div style='background:"
                f"#4c72b0;height:10px;width:{max(1, round(300 * p))}px'></div></td></tr>"
                for token, p in lm.next_distribution(text, top_k))
            out.value = (f"<p>the model sees: <b>{html.escape(seen)}</b></p>"
                         f"<table><tr><th>next</th><th>p</th><th></th></tr>{rows}</table>")
        except ValueError as err:  # e.g. a character the tokenizer has never seen
            out.value = f"<span style='color:#b00'>{html.escape(str(err))}</span>"

    for control in controls:
        control.observe(refresh, names="value")
    refresh()
    return W.VBox([W.VBox(controls), out])


def _ranked(rows: list[tuple[str, float]]) -> str:
    """Words and cosine similarities as a small HTML table."""
    body = "".join(f"<tr><td>{html.escape(w)}</td><td style='text-align:right'>{s:.3f}</td></tr>"
                   for w, s in rows)
    return f"<table><tr><th>word</th><th>cosine</th></tr>{body}</table>"


def word_explorer(vectors: WordVectors, word: str = "king", query: str = "man:king::woman",
                  k: int = 10) -> W.VBox:
    """Type a word to see its ``k`` nearest neighbours; type ``a:b::c`` to see the answers to
    "a is to b as c is to ?" (``WordVectors.neighbours`` and ``WordVectors.analogy``).

    Returns the widget: ``children[0]`` holds the word box and its table, ``children[1]`` the
    analogy box and its table (``.children[0].value`` to type, ``.children[1].value`` the HTML).
    Unknown words and malformed analogies show the error message instead of a table."""
    style = {"description_width": "70px"}
    word_box = W.Text(value=word, description="word", style=style, continuous_update=False)
    analogy_box = W.Text(value=query, description="a:b::c", style=style, continuous_update=False)
    neighbours_out, analogy_out = W.HTML(), W.HTML()

    def show(out: W.HTML, compute) -> None:
        try:
            out.value = _ranked(compute())
        except (KeyError, ValueError) as err:  # an unknown word, or not three words
            message = err.args[0] if err.args else str(err)
            out.value = f"<span style='color:#b00'>{html.escape(str(message))}</span>"

    def refresh_word(_change=None) -> None:
        show(neighbours_out, lambda: vectors.neighbours(word_box.value.strip().lower(), k))

    def refresh_analogy(_change=None) -> None:
        show(analogy_out, lambda: vectors.analogy(*parse_analogy(analogy_box.value), k=k))

    word_box.observe(refresh_word, names="value")
    analogy_box.observe(refresh_analogy, names="value")
    refresh_word()
    refresh_analogy()
    return W.VBox([W.VBox([word_box, neighbours_out]), W.VBox([analogy_box, analogy_out])])


def _heatmap_html(weights, labels: list[str]) -> str:
    """A (T, T) attention matrix as an HTML table: row = the position that looks, column =
    the position looked at, darker = more weight (hover a cell for the number)."""
    def head(label: str) -> str:
        return f"<th style='font-family:monospace;padding:0 2px'>{html.escape(label)}</th>"

    rows = ["<tr><th></th>" + "".join(head(c) for c in labels) + "</tr>"]
    for i, (label, row) in enumerate(zip(labels, weights.tolist())):
        cells = "".join(
            f"<td title=\"{html.escape(f'{labels[i]!r} -> {labels[j]!r}: {w:.3f}', quote=True)}\" "
            f"style='width:14px;height:14px;background:rgba(76,114,176,{w:.3f})'></td>"
            for j, w in enumerate(row))
        rows.append(f"<tr>{head(label)}{cells}</tr>")
    return f"<table style='border-collapse:collapse'>{''.join(rows)}</table>"


def attention_heatmaps(model, tokenizer, text: str = "The capital of France is Paris.",
                       layer: int = 0, head: int = 0) -> W.VBox:
    """Type a sentence and see where each position of ``model`` looks, per layer and head.

    ``model`` is a ``minigpt.models.transformer.Transformer`` (or ``MaskedLM``); the weights come
    from ``transformer.attention_maps``. Controls are ``children[0].children`` (text, layer,
    head); the heat map is ``children[1].value``. Text the tokenizer cannot read, or longer
    than the model's context, shows the error instead."""
    from minigpt.models.transformer import attention_maps

    style = {"description_width": "50px"}
    controls = [
        W.Text(value=text, description="text", style=style, continuous_update=False,
               layout=W.Layout(width="500px")),
        W.Dropdown(options=list(range(model.cfg.n_layer)), value=layer, description="layer", style=style),
        W.Dropdown(options=list(range(model.cfg.n_head)), value=head, description="head", style=style),
    ]
    out = W.HTML()

    def refresh(_change=None) -> None:
        sentence, n, h = (c.value for c in controls)
        try:
            weights = attention_maps(model, tokenizer, sentence)[n, h]
            labels = [tokenizer.decode([i]).replace(" ", "\u2423").replace("\n", "\u23ce")
                      for i in tokenizer.encode(sentence)]
            out.value = (f"<p>layer {n}, head {h}: each row is a position, its cells where it looks "
                         f"(darker = more weight)</p>{_heatmap_html(weights, labels)}")
        except ValueError as err:  # a character the tokenizer lacks, a text too long, empty text
            out.value = f"<span style='color:#b00'>{html.escape(str(err))}</span>"

    for control in controls:
        control.observe(refresh, names="value")
    refresh()
    return W.VBox([W.HBox(controls), out])


def _count(x: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.3g}"


def scaling_explorer(surface, flops: float = 1e15, n_params: float = 1e5,
                     fitted_flops: tuple[float, float] | None = None) -> W.VBox:
    """Pick a compute budget and a model size; see what a fitted scaling law predicts.

    ``surface`` is a ``scaling.LossSurface``; the numbers come from ``scaling.budget_plan``:
    the compute-optimal size and tokens for the budget, and the loss of the size you picked
    when it spends the same budget. ``fitted_flops`` (low, high): the budgets the fit saw; the
    widget warns when you extrapolate beyond them. Controls are ``children[0].children``
    (budget exponent, size exponent); the table is ``children[1].value``."""
    from minigpt.methods.counting import pf_days
    from minigpt.methods.scaling import budget_plan

    # Room for the label "your size: 10^x params", and the whole slider wide enough that its
    # track is not squeezed to nothing (ipywidgets' default width is 300px, label included).
    style, wide = {"description_width": "180px"}, W.Layout(width="480px")
    controls = [
        W.FloatSlider(value=float(np.log10(flops)), min=9, max=25, step=0.25,
                      description="budget: 10^x FLOPs", style=style, continuous_update=False,
                      layout=wide),
        W.FloatSlider(value=float(np.log10(n_params)), min=3, max=12, step=0.25,
                      description="your size: 10^x params", style=style, continuous_update=False,
                      layout=wide),
    ]
    out = W.HTML()

    def refresh(_change=None) -> None:
        C, N = 10 ** controls[0].value, 10 ** controls[1].value
        plan = budget_plan(surface, C, N)
        worse = plan["loss"] / plan["loss_opt"] - 1
        rows = [("budget", f"{C:.2e} FLOPs = {pf_days(C):.3g} PF-days"),
                ("compute-optimal size", f"{_count(plan['n_opt'])} parameters"),
                ("... trained on", (f"{_count(plan['d_opt'])} tokens "
                                    f"({plan['tokens_per_param']:.1f} tokens per parameter)")),
                ("... predicted loss", f"{plan['loss_opt']:.3f} nats per token"),
                ("your size", f"{_count(N)} parameters on {_count(plan['d'])} tokens"),
                ("... predicted loss", f"{plan['loss']:.3f} ({worse:+.1%} against the optimum)")]
        table = "".join(f"<tr><td style='padding-right:12px'>{html.escape(k)}</td>"
                        f"<td>{html.escape(v)}</td></tr>" for k, v in rows)
        note = ""
        if fitted_flops is not None and not fitted_flops[0] <= C <= fitted_flops[1]:
            note = (f"<p style='color:#b00'>Extrapolated: the fit saw budgets from "
                    f"{fitted_flops[0]:.1e} to {fitted_flops[1]:.1e} FLOPs.</p>")
        out.value = f"<table>{table}</table>{note}"

    for control in controls:
        control.observe(refresh, names="value")
    refresh()
    return W.VBox([W.VBox(controls), out])


def chat(models: dict[str, GPT], world, prompt: str = "What is the capital of Zorvia?",
         max_new_tokens: int = 80) -> W.VBox:
    """Ask several assistants one question and read their answers side by side (chapter 10:
    SFT, PPO, DPO). ``world`` is the ``minigpt.world.recipes.AssistantWorld`` they were trained in.

    Each answer goes through ``minigpt.world.chat.generate``: the chat template, then sampling at the
    chosen temperature (0: greedy) with a repeatable seed. Questions of the assistant world get
    the annotator's score beside each answer. Returns the widget; its controls are
    ``children[0].children`` (question, temperature, seed) and the answers ``children[1].value``."""
    from minigpt.world.annotator import Annotator  # the world's layer: imported when a chat opens
    from minigpt.world.chat import find_question, generate

    style = {"description_width": "90px"}
    controls = [
        W.Text(value=prompt, description="you", style=style, continuous_update=False,
               layout=W.Layout(width="60%")),
        W.FloatSlider(value=0.0, min=0.0, max=1.5, step=0.1, description="temperature",
                      style=style, continuous_update=False),
        W.IntText(value=0, description="seed", style=style),
    ]
    out = W.HTML()
    judge = Annotator(noise=0.0)

    def refresh(_change=None) -> None:
        text, temperature, seed = (c.value for c in controls)
        if not text.strip():
            out.value = "<i>Type a question.</i>"
            return
        known = find_question(text)
        rows = []
        for name, model in models.items():
            try:
                reply = generate(model, world, [known or text], temperature, max_new_tokens,
                                 seed=seed)[0]
                answer = html.escape(reply.text) + ("" if reply.finished else " <i>(cut off)</i>")
                score = f"{judge.score(known, reply.text):.1f}" if known else "n/a"
            except ValueError as err:  # e.g. a question too long for the context
                answer, score = f"<span style='color:#b00'>{html.escape(str(err))}</span>", ""
            rows.append(f"<tr><td style='padding-right:12px'><b>{html.escape(name)}</b></td>"
                        f"<td style='padding-right:12px'>{answer}</td><td>{score}</td></tr>")
        out.value = ("<table><tr><th>model</th><th style='text-align:left'>answer</th>"
                     "<th>annotator</th></tr>" + "".join(rows) + "</table>")

    for control in controls:
        control.observe(refresh, names="value")
    refresh()
    return W.VBox([W.VBox(controls), out])
