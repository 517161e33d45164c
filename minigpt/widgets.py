"""Widgets: knobs to turn in a notebook, as thin wrappers over tested functions.

Each widget only wires controls to a plain function of the package (which the tests check on
their own), so it works the same in JupyterLab (ipywidgets 8) and Colab (ipywidgets 7.7).

    >>> from minigpt import widgets
    >>> widgets.sampler(model, tokenizer, prompt="The history of ")     # doctest: +SKIP
"""

from __future__ import annotations

import html

import ipywidgets as W

from minigpt.gpt import GPT, sample


def sampler(model: GPT, tokenizer, prompt: str = "The ", max_new_tokens: int = 200) -> W.VBox:
    """Sample text from ``model`` with sliders for temperature and top-k.

    Changing any control samples again (the seed keeps a draw repeatable, so only the knob
    you moved changes the text). Returns the widget; its controls are ``children[0].children``
    (prompt, temperature, top-k, seed, length) and the text is ``children[1].value``."""
    style = {"description_width": "90px"}
    controls = [
        W.Text(value=prompt, description="prompt", style=style, continuous_update=False),
        W.FloatSlider(value=0.8, min=0.05, max=2.0, step=0.05, description="temperature",
                      style=style, continuous_update=False),
        W.IntSlider(value=0, min=0, max=min(tokenizer.vocab_size, 100), description="top-k (0: off)",
                    style=style, continuous_update=False),
        W.IntText(value=0, description="seed", style=style),
        W.IntSlider(value=max_new_tokens, min=10, max=1000, step=10, description="length",
                    style=style, continuous_update=False),
    ]
    out = W.HTML()

    def refresh(_change=None) -> None:
        text_prompt, temperature, top_k, seed, length = (c.value for c in controls)
        try:
            text = sample(model, tokenizer, text_prompt, length, temperature, top_k or None, seed)
            body = f"<b>{html.escape(text_prompt)}</b>{html.escape(text[len(text_prompt):])}"
        except ValueError as err:  # e.g. an empty prompt, or a character the tokenizer lacks
            body = f"<span style='color:#b00'>{html.escape(str(err))}</span>"
        out.value = f"<pre style='white-space:pre-wrap'>{body}</pre>"

    for control in controls:
        control.observe(refresh, names="value")
    refresh()
    return W.VBox([W.VBox(controls), out])
