"""Scaling laws: fit power laws to a family of runs, and read the compute-optimal size.

Kaplan et al. (2020) found that a language model's loss falls as a power law in its size N,
its data D and its compute C, over many orders of magnitude; Hoffmann et al. (2022,
"Chinchilla") refitted the laws and concluded that N and D should grow about equally with C.
This module holds the fits; counting is ``minigpt.methods.counting``, and training the family of
sizes is ``minigpt.methods.sweep``:

    >>> from minigpt.methods import scaling, sweep
    >>> runs = sweep.run_profile("cpu")              # train SWEEPS["cpu"]   # doctest: +SKIP
    >>> law = scaling.fit_power_law([r.n_params for r in runs[:-1]],        # doctest: +SKIP
    ...                             [r.final_loss for r in runs[:-1]])
    >>> print(law.format("N"))                      # L = 2.11 + 3.41 N^-0.268  # doctest: +SKIP
    >>> points = scaling.isoflop(runs, budgets)     # Chinchilla's IsoFLOP  # doctest: +SKIP

``fit_power_law`` fits L = E + A x^-alpha (E: the loss no size removes); ``fit_loss_surface``
fits Chinchilla's L(N, D) = E + A / N^alpha + B / D^beta, whose ``compute_optimal(C)`` splits a
budget into N and D, and ``budget_plan`` says what a fitted surface predicts for a budget.
``isoflop`` reads, from the runs' training curves, which size reaches the lowest loss at each
fixed budget (Chinchilla's approach 2). That reading needs curves in which every point is a
fair "run stopped here": the sweep therefore keeps the learning rate constant after warmup (a
cosine schedule would make each curve's end special). ``RunResult`` is one run's record; the
``plot_*`` functions draw runs, fits and IsoFLOP curves.

Deliberately left out: fitting learning rates or batch sizes per size, embedding-free
"effective" compute, multiple seeds per size (error bars), and anything over a few million
parameters. N here is the non-embedding count of Kaplan et al.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from matplotlib.axes import Axes


# ---- fits -----------------------------------------------------------------------------------


def _lbfgs(params: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor],
           steps: int = 200) -> float:
    """Minimise ``objective(params)`` in place with LBFGS; return the final value."""
    params.requires_grad_(True)
    opt = torch.optim.LBFGS([params], lr=1, max_iter=steps, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-12, tolerance_change=1e-15)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = objective(params)
        value.backward()
        return value

    opt.step(closure)
    params.requires_grad_(False)
    return float(objective(params))


@dataclass(frozen=True)
class PowerLaw:
    """y = E + A x^-alpha. For a quantity that grows with x (N_opt vs C) alpha is negative."""

    E: float
    A: float
    alpha: float

    def predict(self, x: float | np.ndarray) -> np.ndarray:
        return self.E + self.A * np.asarray(x, dtype=float) ** -self.alpha

    def format(self, x: str = "x", y: str = "L") -> str:
        """The law as text, e.g. ``L = 1.23 + 4.5 N^-0.076``."""
        offset = f"{self.E:.3g} + " if self.E else ""
        return f"{y} = {offset}{self.A:.3g} {x}^{-self.alpha:.3g}"

    def __str__(self) -> str:
        return self.format()


def _checked(arrays: Sequence[Any], names: str, at_least: int) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=float).reshape(-1) for a in arrays]
    if len({len(a) for a in out}) != 1:
        raise ValueError(f"{names} must have the same length, got {[len(a) for a in out]}")
    if len(out[0]) < at_least:
        raise ValueError(f"need at least {at_least} points to fit, got {len(out[0])}")
    if not all(np.all(np.isfinite(a) & (a > 0)) for a in out):
        raise ValueError(f"{names} must be finite and > 0 (the fits work on their logarithms)")
    return out


def fit_power_law(x: Sequence[float], y: Sequence[float], offset: bool = True) -> PowerLaw:
    """Least-squares fit of log y = log(E + A x^-alpha); ``offset=False`` fixes E = 0.

    Without an offset it is a straight line in log-log. With one, E is searched on a grid in
    [0, min y): for each E, log(y - E) vs log x is a straight line giving A and alpha; the E
    whose law fits log y best is polished, with A and alpha, by LBFGS."""
    x, y = _checked([x, y], "x and y", 3 if offset else 2)
    lx, ly = np.log(x), np.log(y)
    if not offset:
        slope, intercept = np.polyfit(lx, ly, 1)
        return PowerLaw(0.0, float(np.exp(intercept)), float(-slope))

    def line_at(E: float) -> tuple[float, float, float]:  # (log error, log A, alpha) for this E
        slope, intercept = np.polyfit(lx, np.log(y - E), 1)
        pred = np.log(E + np.exp(intercept + slope * lx))
        return float(np.sum((ly - pred) ** 2)), float(intercept), float(-slope)

    # dense near min(y), where a flattening curve puts E
    shares = np.unique(np.concatenate([np.linspace(0, 0.9, 91), 1 - np.geomspace(0.1, 1e-6, 120)]))
    E_best = min(shares * y.min(), key=lambda E: line_at(E)[0])
    _, log_a, alpha = line_at(E_best)
    top = y.min()
    t = torch.tensor([E_best / top, log_a, alpha], dtype=torch.float64)
    t[0] = torch.logit(t[0].clamp(1e-9, 1 - 1e-9))  # E = min(y) sigmoid(t0) stays in (0, min y)
    lx_t, ly_t = torch.from_numpy(lx), torch.from_numpy(ly)

    def objective(p: torch.Tensor) -> torch.Tensor:
        E = top * torch.sigmoid(p[0])
        return ((ly_t - torch.log(E + torch.exp(p[1] - p[2] * lx_t))) ** 2).sum()

    before = float(objective(t))
    polished = t.clone()
    if _lbfgs(polished, objective) < before and torch.isfinite(polished).all():
        t = polished
    return PowerLaw(float(top * torch.sigmoid(t[0])), float(t[1].exp()), float(t[2]))


@dataclass(frozen=True)
class LossSurface:
    """Chinchilla's L(N, D) = E + A / N^alpha + B / D^beta."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def predict(self, N: float | np.ndarray, D: float | np.ndarray) -> np.ndarray:
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return self.E + self.A * N ** -self.alpha + self.B * D ** -self.beta

    @property
    def a(self) -> float:
        """N_opt grows as C^a with a = beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """D_opt grows as C^b with b = alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    def compute_optimal(self, C: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt): the split of C = 6 N D FLOPs with the lowest predicted loss.

        Setting dL/dN = 0 along D = C / 6N gives N_opt = G (C/6)^a and D_opt = (C/6)^b / G,
        with G = (alpha A / (beta B))^(1 / (alpha + beta))."""
        C6 = np.asarray(C, dtype=float) / 6
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))
        return G * C6 ** self.a, C6 ** self.b / G

    def __str__(self) -> str:
        return (f"L = {self.E:.3g} + {self.A:.3g} / N^{self.alpha:.3g} "
                f"+ {self.B:.3g} / D^{self.beta:.3g}")


def budget_plan(surface: LossSurface, flops: float, n_params: float | None = None
                ) -> dict[str, float]:
    """What ``surface`` predicts for a budget of ``flops`` = 6 N D: the compute-optimal size
    and tokens (``n_opt``, ``d_opt``, ``loss_opt``, ``tokens_per_param``) and, for a model of
    ``n_params`` trained on the tokens the budget leaves it (D = C / 6N), ``n``, ``d`` and
    ``loss``. The scaling explorer widget shows this."""
    if not flops > 0:
        raise ValueError(f"flops must be > 0, got {flops}")
    n_opt, d_opt = (float(v) for v in surface.compute_optimal(flops))
    plan = {"flops": float(flops), "n_opt": n_opt, "d_opt": d_opt,
            "loss_opt": float(surface.predict(n_opt, d_opt)), "tokens_per_param": d_opt / n_opt}
    if n_params is not None:
        if not n_params > 0:
            raise ValueError(f"n_params must be > 0, got {n_params}")
        d = flops / (6 * n_params)
        plan.update(n=float(n_params), d=d, loss=float(surface.predict(n_params, d)))
    return plan


def fit_loss_surface(N: Sequence[float], D: Sequence[float], L: Sequence[float],
                     delta: float = 1e-3, n_starts: int = 8) -> LossSurface:
    """Fit ``LossSurface`` to runs of N parameters, D tokens and loss L (Chinchilla approach 3).

    As in Hoffmann et al.: with a = log A, b = log B, e = log E, minimise the Huber loss
    (``delta``) between logsumexp(a - alpha log N, b - beta log D, e) and log L; the Huber loss
    keeps outliers from pulling the fit. Their grid of starting points (alpha, beta in 0..2,
    e in -1..1, a, b in 0..25) is scored at once; the ``n_starts`` best are run by LBFGS in
    float64 and the best end wins."""
    N, D, L = (torch.from_numpy(a) for a in _checked([N, D, L], "N, D and L", 5))
    lN, lD, lL = N.log(), D.log(), L.log()

    def errors(p: torch.Tensor) -> torch.Tensor:  # p (K, 5) -> Huber error per start (K,)
        a, b, e, alpha, beta = p.unbind(-1)
        terms = torch.stack([a[:, None] - alpha[:, None] * lN, b[:, None] - beta[:, None] * lD,
                             e[:, None].expand(-1, len(lL))])  # (3, K, n)
        pred = torch.logsumexp(terms, dim=0)
        return F.huber_loss(pred, lL.expand_as(pred), delta=delta, reduction="none").sum(-1)

    ab, e, ex = torch.arange(0, 26, 5.0), torch.arange(-1, 1.01, 0.5), torch.arange(0, 2.01, 0.5)
    grid = torch.cartesian_prod(ab, ab, e, ex, ex).double()  # (4500, 5): a, b, e, alpha, beta
    starts = grid[errors(grid).argsort()[:n_starts]]
    best, best_value = None, float("inf")
    for start in starts:
        p = start.clone()[None]
        value = _lbfgs(p, lambda q: errors(q).sum(), steps=500)
        if value < best_value and torch.isfinite(p).all():
            best, best_value = p[0], value
    a, b, e, alpha, beta = (float(v) for v in best)
    return LossSurface(float(np.exp(e)), float(np.exp(a)), float(np.exp(b)), alpha, beta)


# ---- runs and IsoFLOP -----------------------------------------------------------------------


@dataclass
class RunResult:
    """One model of a sweep: its size and its validation loss along training.

    ``steps``, ``tokens``, ``flops`` and ``loss`` are parallel lists, one entry per evaluation
    (log-spaced steps); ``flops = tokens x flops_per_token``."""

    name: str
    n_params: int  # non-embedding (Kaplan's N)
    steps: list[int]
    tokens: list[int]
    flops: list[float]
    loss: list[float]  # validation loss, nats per token
    n_params_total: int = 0
    flops_per_token: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)  # the GPTConfig's fields
    wall_s: float = 0.0  # training and evaluations
    held_out: bool = False  # trained to check a prediction, not used in the fits

    @property
    def final_loss(self) -> float:
        return self.loss[-1]

    def loss_at(self, flops: float) -> float:
        """Validation loss after ``flops`` training FLOPs, interpolated in log FLOPs between
        evaluations; ``flops`` must lie within the curve (``flops[0] <= flops <= flops[-1]``)."""
        return float(np.interp(np.log(flops), np.log(self.flops), self.loss))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class IsoFlopPoint:
    """The best size for one compute budget, from a parabola through the runs' losses there."""

    flops: float
    n_opt: float
    d_opt: float  # tokens the best size sees within the budget
    loss_opt: float
    n: list[float]  # the runs on this IsoFLOP curve: their N and their loss at the budget
    loss: list[float]
    parabola: tuple[float, float, float]  # loss = p0 (ln N)^2 + p1 ln N + p2
    inside: bool  # the minimum lies within the runs' N (not extrapolated)


def isoflop(runs: Sequence[RunResult], budgets: Sequence[float], min_runs: int = 3
            ) -> list[IsoFlopPoint]:
    """For each budget C, the loss of every run whose curve reaches C (interpolated in log
    FLOPs), a parabola in ln N through those losses, and its minimum: N_opt(C), L_opt(C).

    D_opt = C / (FLOPs per token at N_opt), the FLOPs per token interpolated in log N between
    the runs (6 N_opt at large scale). Budgets met by fewer than ``min_runs`` runs, or whose
    parabola opens downwards, are skipped. Fit the results with ``optimal_scaling``."""
    points = []
    for C in budgets:
        ns, losses, fpts = [], [], []
        for run in runs:
            if run.flops[0] <= C <= run.flops[-1]:
                ns.append(run.n_params)
                losses.append(run.loss_at(C))
                fpts.append(run.flops[-1] / run.tokens[-1])
        if len(ns) < min_runs:
            continue
        order = np.argsort(ns)
        ln_n = np.log(np.asarray(ns, dtype=float)[order])
        p0, p1, p2 = np.polyfit(ln_n, np.asarray(losses)[order], 2)
        if p0 <= 0:
            continue
        ln_opt = -p1 / (2 * p0)
        fpt = np.exp(np.interp(ln_opt, ln_n, np.log(np.asarray(fpts)[order])))
        points.append(IsoFlopPoint(
            flops=float(C), n_opt=float(np.exp(ln_opt)), d_opt=float(C / fpt),
            loss_opt=float(p2 - p1 ** 2 / (4 * p0)), n=[float(v) for v in ns], loss=losses,
            parabola=(float(p0), float(p1), float(p2)), inside=bool(ln_n[0] <= ln_opt <= ln_n[-1])))
    return points


def optimal_scaling(points: Sequence[IsoFlopPoint]) -> tuple[PowerLaw, PowerLaw]:
    """Pure power laws N_opt = A C^a and D_opt = A' C^b through the IsoFLOP minima that lie
    inside the runs' range (a = -fit.alpha). Chinchilla: a ~ b ~ 0.5; Kaplan: a ~ 0.73."""
    inside = [p for p in points if p.inside]
    if len(inside) < 2:
        raise ValueError(f"{len(inside)} IsoFLOP minima lie inside the runs' sizes; need 2 or "
                         "more: choose budgets that several runs reach, or train longer")
    C = [p.flops for p in inside]
    return (fit_power_law(C, [p.n_opt for p in inside], offset=False),
            fit_power_law(C, [p.d_opt for p in inside], offset=False))


# ---- plots ----------------------------------------------------------------------------------


def _axes(ax: Axes | None) -> Axes:
    if ax is None:
        import matplotlib.pyplot as plt

        _figure, ax = plt.subplots(figsize=(6, 4))
    return ax


def _plain_y(ax: Axes, fmt: str) -> Axes:
    """Plain tick labels on a log y axis whose range spans far less than 10x (matplotlib
    would otherwise write 2.2 as 2.2 x 10^0)."""
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(fmt)
    return ax


def _colours(runs: Sequence[RunResult]) -> list:
    import matplotlib.pyplot as plt

    logs = np.log([r.n_params for r in runs])
    span = max(logs.max() - logs.min(), 1e-9)
    return [plt.cm.viridis(0.9 * (v - logs.min()) / span) for v in logs]


def plot_loss_vs_params(runs: Sequence[RunResult], fit: PowerLaw | None = None,
                        ax: Axes | None = None) -> Axes:
    """Final validation loss against N (log-log); held-out runs hollow; the fit as a line."""
    ax = _axes(ax)
    for run in runs:
        ax.plot(run.n_params, run.final_loss, "o", ms=7, mfc="none" if run.held_out else None,
                color="tab:red" if run.held_out else "tab:blue")
    if fit is not None:
        ns = np.geomspace(min(r.n_params for r in runs) / 2, max(r.n_params for r in runs) * 2)
        ax.plot(ns, fit.predict(ns), "k--", lw=1, label=fit.format("N"))
        ax.legend()
    ax.set(xscale="log", yscale="log", xlabel="non-embedding parameters N",
           ylabel="validation loss (nats per token)")
    return _plain_y(ax, "{x:.2f}")


def plot_loss_vs_tokens(run: RunResult, fit: PowerLaw | None = None, fit_from: float | None = None,
                        ax: Axes | None = None) -> Axes:
    """One run's validation loss against the tokens it has read (log-log), and a fit L(D)
    drawn from ``fit_from`` tokens (default: the first point) to 3x the run's last."""
    ax = _axes(ax)
    ax.plot(run.tokens, run.loss, "o", label="validation loss along training")
    if fit is not None:
        d = np.geomspace(fit_from or run.tokens[0], run.tokens[-1] * 3)
        ax.plot(d, fit.predict(d), "k--", lw=1, label=f"fit: {fit.format('D')}")
    ax.set(xscale="log", yscale="log", xlabel="training tokens D",
           ylabel="validation loss (nats per token)")
    ax.legend(fontsize=8)
    return _plain_y(ax, "{x:.1f}")


def plot_curves(runs: Sequence[RunResult], ax: Axes | None = None) -> Axes:
    """Each run's validation loss against training FLOPs, and their lower envelope."""
    ax = _axes(ax)
    for run, colour in zip(runs, _colours(runs)):
        ax.plot(run.flops, run.loss, "-", color=colour, label=f"N = {run.n_params:,}")
    grid = np.geomspace(min(r.flops[0] for r in runs), max(r.flops[-1] for r in runs), 200)
    best = [min((r.loss_at(c) for r in runs
                 if r.flops[0] <= c <= r.flops[-1]), default=np.nan) for c in grid]
    ax.plot(grid, best, "k:", lw=2, label="envelope (best at each budget)")
    ax.set(xscale="log", yscale="log", xlabel="training FLOPs",
           ylabel="validation loss (nats per token)")
    ax.legend(fontsize=8)
    return _plain_y(ax, "{x:.1f}")


def plot_isoflop(points: Sequence[IsoFlopPoint], ax: Axes | None = None) -> Axes:
    """Each budget's losses against N, its parabola, and its minimum (a star)."""
    import matplotlib.pyplot as plt

    ax = _axes(ax)
    for i, p in enumerate(points):
        colour = plt.cm.plasma(0.85 * i / max(1, len(points) - 1))
        ax.plot(p.n, p.loss, "o", color=colour, label=f"C = {p.flops:.1e}")
        ln_n = np.linspace(np.log(min(p.n)), np.log(max(p.n)), 100)
        ax.plot(np.exp(ln_n), np.polyval(p.parabola, ln_n), "-", color=colour, lw=1)
        ax.plot(p.n_opt, p.loss_opt, "*", ms=12, color=colour, mec="k")
    ax.set(xscale="log", xlabel="non-embedding parameters N",
           ylabel="validation loss at the budget")
    ax.legend(fontsize=8)
    return ax
