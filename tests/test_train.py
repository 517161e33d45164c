"""Tests for minigpt.train.trainer, on tiny models and a synthetic token stream (a few seconds, CPU).

The models follow the course's contract: ``forward(x, y) -> (logits, loss)``; they, the streams
and the batches are in tests/tiny_training.py. The checkpoint file is tested in
test_checkpoint.py, the model cache in test_model_cache.py.
"""

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_training import VOCAB, Bigram, config, make_get_batch, periodic_stream, random_stream
from torch import nn

from minigpt.train.checkpoint import load_checkpoint
from minigpt.train.config import History, TrainConfig, autocast_dtype, lr_at, param_groups
from minigpt.train.evaluation import plot_history
from minigpt.train.trainer import NonFiniteLossError, Trainer

# ---- schedule, parameter groups, config -----------------------------------------------------


def test_lr_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    cfg = TrainConfig(max_steps=110, lr=1.0, min_lr_ratio=0.1, warmup_steps=10)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(4, cfg) == pytest.approx(0.5)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)  # the top of the cosine
    assert lr_at(60, cfg) == pytest.approx(0.55)  # halfway down: (1 + 0.1) / 2
    assert lr_at(110, cfg) == pytest.approx(0.1)
    assert lr_at(500, cfg) == pytest.approx(0.1)  # flat after max_steps
    decay = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(decay))


def test_lr_without_warmup_starts_at_the_peak():
    cfg = TrainConfig(max_steps=10, lr=3e-4, warmup_steps=0, min_lr_ratio=0.0)
    assert lr_at(0, cfg) == pytest.approx(3e-4)
    assert lr_at(10, cfg) == 0.0


def test_param_groups_decay_matrices_and_embeddings_only():
    model = Bigram()
    frozen = nn.Parameter(torch.zeros(3, 3), requires_grad=False)
    model.register_parameter("frozen", frozen)
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert ids(decay["params"]) == ids([model.emb.weight, model.head.weight])
    assert ids(no_decay["params"]) == ids([model.head.bias, model.norm.weight, model.norm.bias])


def ids(params) -> set[int]:
    return {id(p) for p in params}


def test_param_groups_count_a_tied_weight_once():
    model = Bigram(width=VOCAB)
    model.head.weight = model.emb.weight  # weight tying, as in GPT-2
    decay, _ = param_groups(model, 0.1)
    assert len(decay["params"]) == 1


@pytest.mark.parametrize(
    "bad", [{"grad_accum": 0}, {"dtype": "fp8"}, {"lr": 0.0}, {"min_lr_ratio": 2.0},
            {"weight_decay": -0.1}]
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="Invalid TrainConfig"):
        TrainConfig(**bad)


def test_a_warmup_longer_than_the_run_warns():
    # A warning, not an error: TrainConfig(max_steps=50) with the default warmup_steps=100 is a
    # common quick run (benchmarks/gpt_cpu.py --steps 50, learners' cells).
    with pytest.warns(UserWarning, match="never reaches its peak lr") as caught:
        TrainConfig(max_steps=10, warmup_steps=20)
    assert caught[0].filename == __file__  # points at the caller, not at TrainConfig
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainConfig(max_steps=10, warmup_steps=10)  # the peak at the last step: fine
        TrainConfig(max_steps=0)  # no training at all (e.g. a Trainer made only to save)


def test_autocast_policy_on_cpu_and_mps():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "auto") is None
    assert autocast_dtype(torch.device("mps"), "auto") is None
    assert autocast_dtype(cpu, "float32") is None
    assert autocast_dtype(cpu, "bfloat16") is torch.bfloat16
    with pytest.raises(ValueError, match="CUDA only"):
        autocast_dtype(cpu, "float16")


# ---- training ------------------------------------------------------------------------------


@pytest.mark.learned
def test_loss_falls_on_an_easily_learnable_sequence(learn_seed, figure):
    torch.manual_seed(learn_seed)
    cfg = config(max_steps=100, eval_interval=25, seed=learn_seed)
    trainer = Trainer(Bigram(), make_get_batch(periodic_stream()), cfg)
    history = trainer.fit()
    # Measured over seeds 0-4 and 1-2 threads (scripts/test_margins.py): first loss 2.09-2.64, the
    # last ten 0.007-0.012, val 0.007-0.011
    assert figure("loss_first", history.loss[0]) > 1.5  # about ln 8 = 2.08 for a fresh model
    assert figure("loss_last_10", np.mean(history.loss[-10:])) < 0.05
    assert figure("val_loss_last", history.val_loss[-1]) < 0.05 < history.val_loss[0]


def test_history_records_every_step_and_every_evaluation():
    cfg = config(max_steps=12, eval_interval=5)
    history = Trainer(Bigram(), make_get_batch(periodic_stream()), cfg).fit()
    assert history.step == list(range(12))
    assert history.lr == [lr_at(s, cfg) for s in range(12)]
    assert len(history.loss) == len(history.grad_norm) == 12
    assert all(g > 0 and math.isfinite(g) for g in history.grad_norm)
    assert history.eval_step == [0, 5, 10, 12]  # every 5 steps, and at the end
    assert len(history.train_loss) == len(history.val_loss) == 4


def test_fit_resumes_where_it_stopped_and_steps_limits_it():
    trainer = Trainer(Bigram(), make_get_batch(periodic_stream()), config(max_steps=10))
    trainer.fit(steps=3)
    assert trainer.step == 3
    trainer.fit()
    assert trainer.step == 10 and trainer.history.step == list(range(10))
    trainer.fit()  # nothing left to do
    assert trainer.step == 10 and trainer.history.eval_step == [0, 3, 5, 10]


def test_grad_norm_is_recorded_before_clipping():
    trainer = Trainer(Bigram(), make_get_batch(random_stream()), config(grad_clip=1e-3))
    trainer.train_step()
    recorded = trainer.history.grad_norm[0]
    grads = [p.grad for p in trainer.model.parameters()]
    clipped = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert recorded > 0.01  # the norm the loss produced ...
    assert clipped.item() == pytest.approx(1e-3, rel=1e-3)  # ... and what the optimizer used


def test_accumulating_k_micro_batches_equals_one_batch_k_times_larger():
    k, b = 4, 3
    x, y = make_get_batch(random_stream(), batch=k * b)("train")

    def micro_batches():
        i = 0

        def get_batch(split):
            nonlocal i
            part = slice((i % k) * b, (i % k + 1) * b)
            i += 1
            return x[part], y[part]

        return get_batch

    grads, losses = {}, {}
    for accum, get_batch in [(1, lambda split: (x, y)), (k, micro_batches())]:
        torch.manual_seed(0)  # the same initial weights for both
        cfg = config(grad_accum=accum, grad_clip=None, eval_interval=0)
        trainer = Trainer(Bigram(), get_batch, cfg)
        trainer.train_step()  # gradients stay in .grad until the next step zeroes them
        grads[accum] = [p.grad.clone() for p in trainer.model.parameters()]
        losses[accum] = trainer.history.loss[0]
    assert losses[k] == pytest.approx(losses[1], rel=1e-6)
    for one, accumulated in zip(grads[1], grads[k]):
        torch.testing.assert_close(accumulated, one, rtol=1e-5, atol=1e-7)


def test_evaluate_runs_in_eval_mode_without_grad_and_restores_train_mode():
    class Recorder(Bigram):
        def forward(self, x, y=None):
            self.seen.append((self.training, torch.is_grad_enabled()))
            return super().forward(x, y)

    model = Recorder(dropout=0.5)
    fixed = make_get_batch(random_stream())("train")
    trainer = Trainer(model, lambda split: fixed, config())
    model.seen = []
    model.train()
    means = trainer.evaluate(steps=3)
    assert model.seen == [(False, False)] * 6  # 3 batches x 2 splits
    assert model.training
    with torch.no_grad():
        model.eval()
        expected = model(*fixed)[1].item()
    assert means == {"train": pytest.approx(expected), "val": pytest.approx(expected)}


def test_evaluating_does_not_change_the_training_run():
    runs = []
    for eval_interval in (0, 1):
        torch.manual_seed(0)
        cfg = config(eval_interval=eval_interval)
        trainer = Trainer(Bigram(dropout=0.2), make_get_batch(random_stream()), cfg)
        runs.append(trainer.fit().loss)
    assert runs[0] == runs[1]


@pytest.mark.learned
def test_loss_fn_trains_models_with_other_shapes(learn_seed, figure):
    # A regression "model" that doesn't follow forward(x, y) -> (logits, loss).
    torch.manual_seed(learn_seed)
    w = torch.randn(5, 1)

    def get_batch(split):
        x = torch.randn(16, 5)
        return x, x @ w

    def mse(model, batch):
        x, y = batch
        return F.mse_loss(model(x), y)

    cfg = config(max_steps=100, lr=0.05, weight_decay=0.0, seed=learn_seed)
    history = Trainer(nn.Linear(5, 1), get_batch, cfg, loss_fn=mse).fit()
    # Measured over seeds 0-4 and 1-2 threads (scripts/test_margins.py): 4e-6 to 2.3e-5
    assert figure("loss_last_over_first", history.loss[-1] / history.loss[0]) < 0.01


def test_a_non_scalar_loss_is_a_clear_error():
    trainer = Trainer(
        Bigram(), make_get_batch(random_stream()), config(),
        loss_fn=lambda model, batch: model(*batch)[0].sum(-1),
    )
    with pytest.raises(TypeError, match="scalar tensor"):
        trainer.fit()


def test_progress_false_prints_nothing(capsys):
    Trainer(Bigram(), make_get_batch(random_stream()), config(max_steps=3)).fit()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# ---- non-finite losses ---------------------------------------------------------------------


class BreaksAtCall(Bigram):
    """Returns a NaN loss from its ``breaking_call``-th training forward on."""

    def __init__(self, breaking_call: int) -> None:
        super().__init__()
        self.breaking_call, self.calls = breaking_call, 0

    def forward(self, x, y=None):
        logits, loss = super().forward(x, y)
        if self.training:
            self.calls += 1
            if self.calls >= self.breaking_call:
                loss = loss * float("nan")
        return logits, loss


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    path = tmp_path / "run.pt"
    cfg = config(checkpoint_path=str(path), checkpoint_interval=2)
    trainer = Trainer(BreaksAtCall(6), make_get_batch(random_stream()), cfg)
    with pytest.raises(NonFiniteLossError, match="loss became nan at step 5") as raised:
        trainer.fit()
    assert isinstance(raised.value, RuntimeError)
    message = str(raised.value)
    assert "learning rate" in message and "grad_clip" in message
    assert trainer.step == 5 and len(trainer.history.loss) == 5
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    saved = load_checkpoint(path)
    assert saved["step"] == 4
    assert all(torch.isfinite(t).all() for t in saved["model"].values())


def test_a_nan_gradient_stops_training():
    def loss_with_nan_gradient(model, batch):
        w = model.head.weight
        # sqrt(|w - w|) is 0, its gradient 0 * inf = nan.
        return model(*batch)[1] + (w - w.detach()).abs().sqrt().sum()

    trainer = Trainer(
        Bigram(), make_get_batch(random_stream()), config(), loss_fn=loss_with_nan_gradient
    )
    with pytest.raises(NonFiniteLossError, match="gradient norm became nan at step 0"):
        trainer.fit()


# ---- resuming from a checkpoint (the file itself: test_checkpoint.py) ----------------------


@pytest.mark.parametrize("sampler", ["torch", "numpy", "generator"])
def test_a_resumed_run_repeats_the_uninterrupted_run_exactly(tmp_path, sampler):
    """Train 20 steps straight; or train 10, save, rebuild everything, resume, train to 20."""
    cfg = config(max_steps=20, grad_accum=2, eval_interval=3)

    def fresh_trainer():
        torch.manual_seed(123)  # the model's initialisation; Trainer(...) then seeds cfg.seed
        generator = torch.Generator().manual_seed(7) if sampler == "generator" else None
        get_batch = make_get_batch(random_stream(), sampler=sampler, generator=generator)
        return Trainer(Bigram(dropout=0.3), get_batch, cfg, generator=generator)

    straight = fresh_trainer()
    straight.fit()

    first_half = fresh_trainer()
    first_half.fit(steps=10)
    first_half.save(tmp_path / "half.pt")
    del first_half

    resumed = fresh_trainer()
    resumed.resume(tmp_path / "half.pt")
    assert resumed.step == 10
    resumed.fit()

    assert resumed.history.loss == straight.history.loss  # exactly, not approximately
    assert resumed.history.grad_norm == straight.history.grad_norm
    for a, b in zip(resumed.model.parameters(), straight.model.parameters()):
        assert torch.equal(a, b)


def test_trainer_load_takes_the_saved_config_with_overrides(tmp_path):
    path = tmp_path / "run.pt"
    get_batch = make_get_batch(periodic_stream())
    trainer = Trainer(Bigram(), get_batch, config(max_steps=6, lr=3e-3))
    trainer.fit()
    trainer.save(path, extra={"note": "hello"})

    loaded = Trainer.load(path, Bigram(), get_batch, max_steps=9)
    assert loaded.config.lr == 3e-3 and loaded.config.max_steps == 9
    assert loaded.step == 6 and loaded.history.step == list(range(6))
    loaded.fit()
    assert loaded.step == 9
    assert load_checkpoint(path)["extra"] == {"note": "hello"}


# ---- plotting ------------------------------------------------------------------------------


def test_plot_history_draws_steps_and_evaluations():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = History(step=[0, 1, 2], lr=[1.0] * 3, loss=[3.0, 2.0, 1.0], grad_norm=[1.0] * 3,
                      eval_step=[0, 2], train_loss=[3.0, 1.0], val_loss=[3.1, 1.2])
    ax = plot_history(history, log_y=True)
    assert len(ax.lines) == 3 and ax.get_yscale() == "log"
    assert list(ax.lines[2].get_ydata()) == [3.1, 1.2]
    assert ax.lines[1].get_linestyle() == ax.lines[2].get_linestyle() == "None"  # evaluations not joined
    _, ax2 = plt.subplots()
    assert plot_history(history.to_dict(), ax=ax2, ylabel="loss per pair") is ax2
    assert ax2.get_ylabel() == "loss per pair" and ax.get_ylabel() == "loss (nats per token)"
    plt.close("all")


# ---- GPU (skipped without CUDA) ------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["auto", "float16", "bfloat16"])
def test_mixed_precision_training_on_cuda(tmp_path, dtype):
    if dtype == "bfloat16" and torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("this GPU only emulates bfloat16")
    cfg = config(device="cuda", dtype=dtype, max_steps=100)
    trainer = Trainer(Bigram(), make_get_batch(periodic_stream()), cfg)
    native_bf16 = torch.cuda.get_device_capability()[0] >= 8
    expected = {"auto": torch.bfloat16 if native_bf16 else torch.float16,
                "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    assert trainer.amp_dtype is expected
    assert trainer.scaler.is_enabled() == (expected is torch.float16)
    with trainer._autocast():
        logits, _ = trainer.model(torch.zeros(1, 4, dtype=torch.long, device="cuda"))
    assert logits.dtype is expected
    history = trainer.fit()
    assert np.mean(history.loss[-5:]) < 0.2 * history.loss[0]
    assert history.val_loss[-1] < history.val_loss[0]
    trainer.save(tmp_path / "run.pt")
    assert torch.load(tmp_path / "run.pt", weights_only=True)["step"] == 100
    resumed = Trainer.load(tmp_path / "run.pt", Bigram(), make_get_batch(periodic_stream()))
    assert resumed.step == 100 and resumed.device.type == "cuda"
    assert resumed.scaler.state_dict() == trainer.scaler.state_dict()
    resumed.fit(steps=5)
    assert resumed.step == 105


def test_heldout_loss_is_the_token_weighted_mean_over_every_target():
    """Windows of unequal length are weighted by their tokens: the result equals the loss of
    predicting every target once, computed here window by window."""
    import numpy as np

    from minigpt.models.gpt import GPT, GPTConfig
    from minigpt.train.evaluation import heldout_loss

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8))
    ids = np.arange(30) % 11  # 29 targets: three windows of 8 and one of 5
    mean, n = heldout_loss(model, ids, block_size=8, batch_size=2)
    assert n == 29
    total = 0.0
    for start in range(0, 29, 8):
        x = torch.as_tensor(ids[start : min(start + 8, 29)][None]).long()
        y = torch.as_tensor(ids[start + 1 : min(start + 9, 30)][None]).long()
        total += model(x, y)[1].item() * y.numel()
    assert abs(mean - total / 29) < 1e-5
    assert model.training  # mode restored


# ---- bad batches ----------------------------------------------------------------------------


def tiny_gpt(vocab: int = VOCAB):
    from minigpt.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, block_size=8, n_layer=1, n_head=1, n_embd=8))


@pytest.mark.parametrize("shape", [(0, 8), (4, 0)])
def test_an_empty_batch_is_a_clear_error(shape):
    empty = torch.zeros(shape, dtype=torch.long)
    for model in (Bigram(), tiny_gpt()):  # torch said: a NaN loss; "cannot reshape"
        trainer = Trainer(model, lambda split: (empty, empty), config())
        with pytest.raises(ValueError, match=r"get_batch\('train'\) returned an empty batch"):
            trainer.train_step()
        with pytest.raises(ValueError, match=r"get_batch\('train'\) returned an empty batch"):
            trainer.evaluate()
    # with a loss_fn too: its batch's first tensor holds the inputs
    trainer = Trainer(nn.Linear(5, 1), lambda split: (torch.zeros(0, 5), torch.zeros(0, 1)),
                      config(), loss_fn=lambda model, batch: F.mse_loss(model(batch[0]), batch[1]))
    with pytest.raises(ValueError, match="empty batch"):
        trainer.train_step()


def test_token_ids_outside_the_vocabulary_are_clear_errors():
    ids = torch.arange(16).reshape(2, 8) % VOCAB
    too_big = ids.clone()
    too_big[1, 3] = VOCAB + 1
    cases = [((too_big, ids), (r"input token ids 0 \.\. 9, but the model's vocabulary holds "
                               r"ids 0 \.\. 7 \(vocab_size=8\)")),
             ((-ids - 1, ids), r"input token ids -8 \.\. -1"),
             ((ids, too_big), r"target token ids up to 9")]
    for batch, message in cases:
        trainer = Trainer(tiny_gpt(), lambda split, batch=batch: batch, config())
        with pytest.raises(ValueError, match=message) as raised:
            trainer.train_step()
        assert "Build the model with the vocab_size of the tokenizer" in str(raised.value)
        with pytest.raises(ValueError, match=message):
            trainer.evaluate()
    # Targets the loss ignores (-100, F.cross_entropy's ignore_index) are fine.
    ignored = ids.clone()
    ignored[0, :4] = -100
    trainer = Trainer(tiny_gpt(), lambda split: (ids, ignored), config())
    assert math.isfinite(trainer.train_step())


def test_the_id_check_changes_nothing_in_a_valid_run():
    def losses(check: bool):
        trainer = Trainer(tiny_gpt(), make_get_batch(periodic_stream()), config(max_steps=4))
        if not check:
            trainer._vocab_size = None
        return trainer.fit().loss

    assert losses(True) == losses(False)


def test_a_device_this_machine_lacks_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available on this machine") as raised:
        Trainer(Bigram(), make_get_batch(random_stream()), config(device="cuda"))
    assert "device='cpu'" in str(raised.value)
