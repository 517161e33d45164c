"""Scaling laws (chapter 07): counting, fits on synthetic data with known answers, the sweep."""

import json
import math
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from minigpt.methods import counting, scaling, sweep
from minigpt.models.gpt import GPT, GPTConfig

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parent.parent

# Chinchilla's fitted surface (Hoffmann et al. 2022, approach 3): a = 0.45, b = 0.55
CHINCHILLA = scaling.LossSurface(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


# ---- counting -------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [
    GPTConfig(vocab_size=65, block_size=64, n_layer=1, n_head=1, n_embd=16),
    GPTConfig(vocab_size=100, block_size=32, n_layer=3, n_head=4, n_embd=64),
    GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32, bias=False),
])
def test_non_embedding_params_by_hand_equal_the_model_minus_its_embeddings(cfg):
    embeddings = (cfg.vocab_size + cfg.block_size) * cfg.n_embd
    assert counting.non_embedding_params(cfg) == GPT(cfg).num_params() - embeddings
    # Kaplan's approximation N ~ 12 n_layer C^2 is close once C is not tiny
    assert counting.non_embedding_params(cfg) == pytest.approx(12 * cfg.n_layer * cfg.n_embd**2,
                                                              rel=0.3)


def test_flops_by_hand_agree_with_flop_counter():
    cfg = GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=32)
    torch.manual_seed(0)
    model = GPT(cfg)
    x = torch.randint(0, cfg.vocab_size, (3, cfg.block_size))
    y = torch.randint(0, cfg.vocab_size, (3, cfg.block_size))
    by_hand = counting.flops_per_token(cfg) * x.numel()
    # Attention as plain matmuls: every matmul is counted, attention over the full T x T, and
    # backward = 2 x forward exactly, so only integer arithmetic separates the two counts.
    measured = counting.measured_step_flops(model, (x, y), math_attention=True)
    assert measured == pytest.approx(by_hand, rel=1e-9)
    # The default kernel: on the CPU torch's fused attention has no FLOP formula (counts 0),
    # on a GPU it is counted over the full square; either way the matmuls agree.
    attention = 3 * 2 * 2 * cfg.n_layer * cfg.block_size * cfg.n_embd * x.numel()
    fused = counting.measured_step_flops(model, (x, y), math_attention=False)
    assert by_hand - attention - 1 <= fused <= by_hand + 1
    # 6N (N with the output layer) leaves attention out: it undercounts at this width
    n_matmul = counting.non_embedding_params(cfg) + cfg.vocab_size * cfg.n_embd
    assert counting.approx_flops(n_matmul, x.numel()) < by_hand


def test_gpt3_compute_in_pf_days_and_utilisation():
    flops = counting.approx_flops(175e9, 300e9)
    assert flops == pytest.approx(3.15e23)
    assert counting.pf_days(flops) == pytest.approx(3646, abs=1)  # the paper says ~3,640
    assert counting.utilisation(flops, 10_000, 125e12, 14.8) == pytest.approx(0.197, abs=0.002)


# ---- fits -----------------------------------------------------------------------------------

def test_fit_power_law_recovers_a_noisy_law_with_offset():
    rng = np.random.default_rng(0)
    x = np.geomspace(1e3, 1e7, 14)
    y = (1.5 + 40 * x**-0.3) * np.exp(rng.normal(0, 0.003, x.size))
    fit = scaling.fit_power_law(x, y)
    assert fit.E == pytest.approx(1.5, abs=0.05)
    assert fit.alpha == pytest.approx(0.3, abs=0.03)
    assert fit.A == pytest.approx(40, rel=0.3)
    assert np.max(np.abs(np.log(fit.predict(x) / y))) < 0.02
    assert str(scaling.PowerLaw(1.23, 4.5, 0.076)) == "L = 1.23 + 4.5 x^-0.076"
    assert scaling.PowerLaw(1.23, 4.5, 0.076).format("N") == "L = 1.23 + 4.5 N^-0.076"


def test_fit_power_law_without_offset_and_on_a_pure_law():
    rng = np.random.default_rng(1)
    x = np.geomspace(1e18, 1e22, 8)
    n = 0.1 * x**0.5 * np.exp(rng.normal(0, 0.01, x.size))  # grows: alpha = -0.5
    fit = scaling.fit_power_law(x, n, offset=False)
    assert fit.E == 0 and fit.alpha == pytest.approx(-0.5, abs=0.01)
    assert fit.A == pytest.approx(0.1, rel=0.3)
    assert scaling.PowerLaw(0, 0.1, -0.5).format("C", "N") == "N = 0.1 C^0.5"
    pure = scaling.fit_power_law(np.geomspace(10, 1e5, 10), 7 * np.geomspace(10, 1e5, 10)**-0.2)
    assert pure.E < 0.05 and pure.alpha == pytest.approx(0.2, abs=0.01)
    with pytest.raises(ValueError, match="> 0"):
        scaling.fit_power_law([1, 2, 3], [1, 0, 2])
    with pytest.raises(ValueError, match="at least 3"):
        scaling.fit_power_law([1, 2], [3, 2])


def test_fit_loss_surface_recovers_chinchilla_from_a_grid():
    rng = np.random.default_rng(0)
    N, D = (a.ravel() for a in np.meshgrid(np.geomspace(1e7, 1e10, 7), np.geomspace(1e9, 1e12, 7)))
    L = CHINCHILLA.predict(N, D) * np.exp(rng.normal(0, 0.002, N.size))
    fit = scaling.fit_loss_surface(N, D, L)
    assert fit.alpha == pytest.approx(0.34, abs=0.03)
    assert fit.beta == pytest.approx(0.28, abs=0.03)
    assert fit.E == pytest.approx(1.69, abs=0.1)
    assert fit.a == pytest.approx(0.45, abs=0.04)


def test_compute_optimal_minimises_the_loss_on_the_budget():
    C = 5.76e23  # Chinchilla's budget
    n_opt, d_opt = CHINCHILLA.compute_optimal(C)
    assert 6 * n_opt * d_opt == pytest.approx(C)
    ns = np.geomspace(n_opt / 30, n_opt * 30, 2001)
    brute = ns[np.argmin(CHINCHILLA.predict(ns, C / (6 * ns)))]
    assert brute == pytest.approx(n_opt, rel=0.01)
    assert 2e10 < n_opt < 1e11  # tens of billions of parameters, as Chinchilla's 70B


def synthetic_runs(surface, sizes, tokens):
    """Training curves read off a known loss surface: loss at D tokens is L(N, D)."""
    return [scaling.RunResult(name=f"N{n:.0e}", n_params=int(n), steps=list(range(len(tokens))),
                              tokens=[int(t) for t in tokens], flops=[6 * n * t for t in tokens],
                              loss=[float(v) for v in surface.predict(n, tokens)])
            for n in sizes]


def test_isoflop_recovers_the_optimal_exponents_of_a_known_surface():
    runs = synthetic_runs(CHINCHILLA, np.geomspace(1e7, 1e11, 13), np.geomspace(1e8, 1e13, 60))
    points = scaling.isoflop(runs, np.geomspace(1e19, 1e22, 6))
    assert len(points) == 6 and all(p.inside for p in points)
    fit_n, fit_d = scaling.optimal_scaling(points)
    assert -fit_n.alpha == pytest.approx(CHINCHILLA.a, abs=0.04)  # N_opt ~ C^a
    assert -fit_d.alpha == pytest.approx(CHINCHILLA.b, abs=0.04)
    for p in points:  # the parabola's minimum sits near the surface's own optimum
        assert p.n_opt == pytest.approx(CHINCHILLA.compute_optimal(p.flops)[0], rel=0.2)
        assert 6 * p.n_opt * p.d_opt == pytest.approx(p.flops)


def test_isoflop_skips_budgets_too_few_runs_reach():
    runs = synthetic_runs(CHINCHILLA, [1e7, 1e8], np.geomspace(1e8, 1e12, 20))
    assert scaling.isoflop(runs, [1e18]) == []
    with pytest.raises(ValueError, match="need 2 or more"):
        scaling.optimal_scaling([])


# ---- the sweep ------------------------------------------------------------------------------

def test_sweeps_share_sizes_that_span_thirty_times():
    sizes = {tuple(s["sizes"]) for s in sweep.SWEEPS.values()}
    assert len(sizes) == 1 and set(sweep.SWEEPS) == {"ci", "cpu", "gpu"}
    configs, held_out = sweep.sweep_configs(vocab_size=100, profile="cpu")
    ns = [counting.non_embedding_params(c) for c in configs]
    assert len(ns) >= 6 and ns == sorted(ns) and ns[-1] / ns[0] >= 30
    assert counting.non_embedding_params(held_out) > ns[-1]
    assert sweep.SWEEPS["ci"]["tokens"] < sweep.SWEEPS["cpu"]["tokens"]


def test_eval_steps_are_log_spaced_and_end_at_the_last_step():
    steps = sweep.eval_steps(1000, 8, first=10)
    assert steps[0] == 10 and steps[-1] == 1000 and steps == sorted(set(steps))
    ratios = np.diff(np.log(steps))
    assert np.allclose(ratios, ratios.mean(), atol=0.05)
    assert sweep.eval_steps(3, 10, first=50) == [3]


def check_results_file(path):
    data = json.loads(Path(path).read_text())
    assert data["format"] == sweep.FORMAT and set(data) == {"format", "meta", "runs"}
    meta = data["meta"]
    for key in ("command", "profile", "settings", "code_version", "hardware", "date"):
        assert key in meta, key
    assert meta["command"].startswith("python scripts/scaling_sweep.py")
    assert isinstance(meta["hardware"]["cpu_count"], int)
    assert len(meta["code_version"]["source_sha256"]) == 64
    runs, _ = sweep.load_results(path)
    settings = meta["settings"]
    assert len(runs) == len(settings["sizes"]) + 1 and [r.held_out for r in runs][-1]
    assert [[r.config["n_layer"], r.config["n_embd"]] for r in runs] == \
        [*settings["sizes"], settings["held_out"]]
    for run in runs:
        assert isinstance(run.n_params, int) and isinstance(run.wall_s, float)
        assert run.n_params == counting.non_embedding_params(GPTConfig(**run.config))
        assert len(run.steps) == len(run.tokens) == len(run.flops) == len(run.loss) >= 1
        assert all(np.diff(run.flops) > 0) and all(np.diff(run.tokens) > 0)
        assert run.tokens[-1] <= settings["tokens"]
        assert all(math.isfinite(v) and v > 0 for v in run.loss)
    return runs


def test_script_runs_the_ci_sweep_and_writes_the_results_format(tmp_path):
    out = tmp_path / "scaling_ci.json"
    subprocess.run([sys.executable, str(ROOT / "scripts/scaling_sweep.py"), "--profile", "ci",
                    "--out", str(out), "--device", "cpu", "--quiet"], check=True, cwd=ROOT)
    runs = check_results_file(out)
    vocab = runs[0].config["vocab_size"]
    assert all(r.final_loss < math.log(vocab) for r in runs)  # learnt something, even in ci
    assert runs[0].n_params < runs[-2].n_params
    ax = scaling.plot_curves(runs)
    assert len(ax.get_lines()) == len(runs) + 1
    fit = scaling.fit_power_law([r.n_params for r in runs], [r.final_loss for r in runs])
    assert len(scaling.plot_loss_vs_params(runs, fit).get_lines()) == len(runs) + 1
    last = runs[-1]
    assert len(scaling.plot_loss_vs_tokens(last, fit).get_lines()) == 2  # points and the fit
    # loss_at reads the curve: exact at an evaluation, in between between two
    assert last.loss_at(last.flops[1]) == pytest.approx(last.loss[1])
    middle = (last.flops[1] * last.flops[2]) ** 0.5
    assert min(last.loss[1:3]) <= last.loss_at(middle) <= max(last.loss[1:3])


@pytest.mark.skipif(not (ROOT / "minigpt/methods/scaling_gpu.json").exists(),
                    reason="no stored gpu sweep in the repository")
def test_stored_gpu_sweep_has_the_same_format():
    runs = check_results_file(ROOT / "minigpt/methods/scaling_gpu.json")
    assert json.loads((ROOT / "minigpt/methods/scaling_gpu.json").read_text())["meta"]["profile"] == "gpu"
    assert len(runs) == len(sweep.SWEEPS["gpu"]["sizes"]) + 1


def test_results_round_trip_and_reject_other_files(tmp_path):
    runs = synthetic_runs(CHINCHILLA, [1e7, 1e8], [1e8, 1e9])
    sweep.save_results(tmp_path / "r.json", runs, {"command": "by hand"})
    loaded, meta = sweep.load_results(tmp_path / "r.json")
    assert loaded == runs and meta["command"] == "by hand" and "source_sha256" in str(meta)
    (tmp_path / "bad.json").write_text('{"runs": []}')
    with pytest.raises(ValueError, match="not a scaling results file"):
        sweep.load_results(tmp_path / "bad.json")


def test_isoflop_plot_draws_each_budget():
    runs = synthetic_runs(CHINCHILLA, np.geomspace(1e7, 1e11, 9), np.geomspace(1e8, 1e13, 30))
    points = scaling.isoflop(runs, [1e19, 1e20, 1e21])
    ax = scaling.plot_isoflop(points)
    assert len(ax.get_lines()) == 3 * len(points)


def test_budget_plan_puts_the_optimum_below_every_other_size():
    from minigpt.methods.scaling import LossSurface, budget_plan

    surface = LossSurface(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    plan = budget_plan(surface, 5.76e23)  # Chinchilla's budget: ~70B parameters, ~1.4T tokens
    assert 2e10 < plan["n_opt"] < 2e11 and 5e11 < plan["d_opt"] < 5e12
    for n in np.geomspace(plan["n_opt"] / 30, plan["n_opt"] * 30, 13):
        assert budget_plan(surface, 5.76e23, n)["loss"] >= plan["loss_opt"] - 1e-9
    with pytest.raises(ValueError, match="flops must be > 0"):
        budget_plan(surface, 0)
