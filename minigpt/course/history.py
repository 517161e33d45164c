"""The road from counting to ChatGPT, as data: milestones and the figures the course checks.

Figures are as the course's source articles state them (see COURSE.md "Sources"): Tao Jianhua
et al. (2023) for the four stages, Wang Huan et al. (2023) for the GPT series, Zhu & Wang
(2023) for RLHF. Dates and names of earlier models are the papers' own (cited per row).

    >>> from minigpt.course.history import GPT_MODELS, plot_timeline
    >>> plot_timeline()          # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Model:
    name: str
    year: float
    params: float  # parameters
    data: str  # training data, as the articles describe it
    source: str


GPT_MODELS = (
    Model("GPT-1", 2018.45, 117e6, "~5 GB of text (~7,000 books)", "Radford et al. 2018; Wang et al. 2023"),
    Model("GPT-2", 2019.12, 1.5e9, "40 GB (8M+ Reddit-linked documents)", "Radford et al. 2019; Wang et al. 2023"),
    Model("GPT-3", 2020.4, 175e9, "~300B tokens from 45 TB of raw text", "Brown et al. 2020; Wang et al. 2023"),
    Model("InstructGPT", 2022.2, 1.3e9, "GPT-3 + human demonstrations and rankings", "Ouyang et al. 2022"),
)

# The four stages of language models (Tao et al. 2023), with the year each began to lead.
STAGES = (
    ("statistical LMs\n(n-grams)", 1990, 2003),
    ("neural LMs\n(NPLM, word2vec, RNNs)", 2003, 2018),
    ("pre-trained LMs\n(BERT, GPT-1/2)", 2018, 2020),
    ("large LMs\n(GPT-3, ChatGPT)", 2020, 2027),
)

EVENTS = (
    (2003.0, "neural LM (Bengio et al.)"),
    (2013.1, "word2vec (Mikolov et al.)"),
    (2017.5, "Transformer (Vaswani et al.)"),
    (2018.8, "BERT (Devlin et al.)"),
    (2022.9, "ChatGPT: 1M users in 5 days"),
)

# GPT-3's training compute, as the articles give it, and the numbers needed to check it.
# (A PF-day, 8.64e19 FLOPs, is ``minigpt.methods.counting.PF_DAY``.)
GPT3_TRAINING_TOKENS = 300e9
GPT3_PF_DAYS_REPORTED = 3640
GPT3_GPUS = 10_000  # V100s, for
GPT3_TRAINING_DAYS = 14.8
V100_PEAK_FLOPS = 125e12  # tensor-core peak, FLOP/s


def _short(n: float) -> str:
    """117e6 -> '117M', 1.5e9 -> '1.5B'."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


# Where each model's label sits relative to its point (points), so that none overlap.
_LABEL_OFFSETS = {"GPT-1": (-8, 0), "GPT-2": (-8, 4), "GPT-3": (-8, 4), "InstructGPT": (8, -14)}


def plot_timeline(ax=None, extra: tuple[tuple[str, float, float], ...] = ()):
    """Parameters of the GPT series on a log scale, over the four stages of language models.

    ``extra`` adds points ``(label, year, params)``, e.g. the model you just trained."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4.5))
    shades = ("#ececec", "#dce8f5", "#fbe8c8", "#dcf0dc")
    for (_label, start, end), shade in zip(STAGES, shades):
        ax.axvspan(start, end, color=shade, zorder=0)
    for year, label in EVENTS:
        ax.axvline(year, color="grey", lw=0.7, ls=":", zorder=1)
        ax.text(year - 0.15, 2e3, label, rotation=90, fontsize=7.5, va="bottom", ha="right", color="dimgrey")
    for m in GPT_MODELS:
        ax.scatter(m.year, m.params, color="tab:blue", zorder=3)
        dx, dy = _LABEL_OFFSETS.get(m.name, (-8, 4))
        ax.annotate(f"{m.name}: {_short(m.params)}", (m.year, m.params), textcoords="offset points",
                    xytext=(dx, dy), ha="right" if dx < 0 else "left", va="bottom", fontsize=8.5)
    for label, year, params in extra:
        ax.scatter(year, params, color="tab:red", marker="*", s=140, zorder=3)
        ax.annotate(f"{label}: {_short(params)}", (year, params), textcoords="offset points",
                    xytext=(-8, 4), ha="right", va="bottom", fontsize=8.5, color="tab:red")
    ax.set_yscale("log")
    ax.set_ylim(1e3, 1e13)
    ax.set_xlim(1998, 2027)
    ax.set_xlabel("year")
    ax.set_ylabel("parameters (log scale)")
    ax.set_title("From counting to ChatGPT: the four stages, and the growth of GPT")
    legend = [Patch(color=shade, label=label.replace("\n", " ")) for (label, *_), shade in zip(STAGES, shades)]
    ax.legend(handles=legend, loc="upper left", fontsize=8, title="stage (Tao et al. 2023)", title_fontsize=8)
    return ax
