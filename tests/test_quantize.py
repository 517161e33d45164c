"""Quantisation, distillation, pruning and shared layers (minigpt.methods.quantize, minigpt.methods.compress)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minigpt.methods import compress, quantize
from minigpt.models.gpt import GPT, GPTConfig
from minigpt.train.config import TrainConfig
from minigpt.train.trainer import Trainer

CFG = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)


def make_gpt(seed: int = 0, cfg: GPTConfig = CFG) -> GPT:
    torch.manual_seed(seed)
    return GPT(cfg).eval()


def tokens(n: int = 2, t: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randint(CFG.vocab_size, (n, t), generator=torch.Generator().manual_seed(seed))


# ---- int8 weights -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_quantise_dequantise_error_is_at_most_half_a_step(seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(7, 33, generator=gen) * torch.rand(7, 1, generator=gen) * 10
    q, scale = quantize.quantize_int8(w)
    assert q.dtype == torch.int8 and q.shape == w.shape and scale.shape == (7,)
    err = (quantize.dequantize(q, scale) - w).abs()
    assert (err <= scale[:, None] / 2 + 1e-6).all()
    # the largest weight of each row maps to +-127 exactly, and comes back exactly
    assert (q.abs().amax(dim=1) == 127).all()
    assert torch.allclose(scale, w.abs().amax(dim=1) / 127)


def test_quantise_zero_row_and_hand_values():
    w = torch.tensor([[0.0, 0.0, 0.0], [1.27, -0.635, 0.001]])
    q, scale = quantize.quantize_int8(w)
    assert scale.tolist() == pytest.approx([1.0, 0.01])
    assert q.tolist() == [[0, 0, 0], [127, -64, 0]]  # -63.5 rounds half to even: -64
    assert torch.equal(quantize.dequantize(q, scale)[0], torch.zeros(3))


@pytest.mark.parametrize("bad", [torch.ones(3), torch.ones(2, 2, 2), torch.ones(2, 2, dtype=torch.long),
                                 torch.tensor([[1.0, float("nan")]]), [[1.0]]])
def test_quantise_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="2-D float|NaN"):
        quantize.quantize_int8(bad)


def test_int8_model_logits_close_to_float32_and_tying_survives():
    model = make_gpt()
    small = quantize.quantize_model(model)
    x = tokens()
    with torch.no_grad():
        full, _ = model(x)
        low, _ = small(x)
    assert (low - full).abs().max() < 0.05 * full.abs().max()
    assert not torch.equal(low, full)  # it did quantise
    assert isinstance(small.tok_emb, quantize.Int8Embedding)
    assert small.head.q is small.tok_emb.q  # one int8 matrix reads and writes tokens
    assert isinstance(model.tok_emb, nn.Embedding)  # the original is untouched
    # every block matrix is int8 now
    assert not [m for m in small.blocks.modules() if isinstance(m, nn.Linear)]
    # the matrices take a quarter of the bytes (the file's own overhead weighs more in a toy)
    assert quantize.saved_size(small) < 0.45 * quantize.saved_size(model)
    # it generates like any GPT (greedy: nearly always the same tokens on an untrained model)
    out = small.generate(x[:1, :4], 5, temperature=0)
    assert out.shape == (1, 9)


def test_int8_linear_matches_dequantised_weights():
    torch.manual_seed(0)
    lin = nn.Linear(8, 5)
    q8 = quantize.Int8Linear.from_linear(lin)
    x = torch.randn(3, 8)
    want = F.linear(x, quantize.dequantize(*quantize.quantize_int8(lin.weight)), lin.bias)
    assert torch.allclose(q8(x), want, atol=1e-6)


def test_quantize_model_rejects_what_is_not_a_float_gpt():
    with pytest.raises(TypeError, match="minigpt.models.gpt.GPT"):
        quantize.quantize_model(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="already quantised"):
        quantize.quantize_model(quantize.quantize_model(make_gpt()))


def test_dynamic_quantisation_is_close_and_smaller():
    model = make_gpt()
    dyn = quantize.dynamic_quantize(model)
    x = tokens()
    with torch.no_grad():
        full, _ = model(x)
        low, _ = dyn(x)
    assert (low - full).abs().max() < 0.1 * full.abs().max()
    assert quantize.saved_size(dyn) < quantize.saved_size(model)
    with pytest.raises(TypeError):
        quantize.dynamic_quantize("a model")


def test_saved_size_counts_shared_storage_once():
    a = nn.Linear(100, 100, bias=False)
    b = nn.Sequential(a, a)  # the same layer twice
    assert abs(quantize.saved_size(b) - quantize.saved_size(a)) < 500
    assert quantize.saved_size(a) > 100 * 100 * 4


def test_tokens_per_second_counts_new_tokens():
    rate = quantize.tokens_per_second(make_gpt(), tokens(1, 4), new_tokens=5, repeat=1)
    assert math.isfinite(rate) and rate > 0
    with pytest.raises(ValueError):
        quantize.tokens_per_second(make_gpt(), tokens(1, 4), new_tokens=0)


# ---- distillation -----------------------------------------------------------------------------


def test_distillation_loss_hand_value_and_zero_when_equal():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0) * 2, 0.0]])  # at T = 2: softmax (3/4, 1/4)
    p = torch.tensor([0.75, 0.25])
    kl = float((p * (p / 0.5).log()).sum())  # against the uniform student
    got = compress.distillation_loss(student, teacher, temperature=2.0)
    assert got.item() == pytest.approx(4 * kl, rel=1e-5)
    logits = torch.randn(2, 3, 11)
    assert compress.distillation_loss(logits, logits.clone(), 3.0).item() == pytest.approx(0, abs=1e-6)
    # the mean over positions, not a sum: repeating positions leaves it unchanged
    s, t = torch.randn(1, 4, 7), torch.randn(1, 4, 7)
    assert compress.distillation_loss(s.repeat(3, 1, 1), t.repeat(3, 1, 1)).item() == pytest.approx(
        compress.distillation_loss(s, t).item(), rel=1e-5)


def test_distillation_loss_gradient_flows_to_the_student_only():
    s = torch.randn(2, 5, requires_grad=True)
    t = torch.randn(2, 5, requires_grad=True)
    compress.distillation_loss(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


@pytest.mark.parametrize("student, teacher, temperature, match", [
    (torch.zeros(2, 3), torch.zeros(2, 4), 2.0, "shape"),
    (torch.zeros(2, 3), torch.zeros(2, 3), 0.0, "temperature"),
    (torch.zeros(2, 3), torch.zeros(2, 3), -1.0, "temperature"),
])
def test_distillation_loss_bad_input(student, teacher, temperature, match):
    with pytest.raises(ValueError, match=match):
        compress.distillation_loss(student, teacher, temperature)


@pytest.mark.learned
def test_distill_loss_fn_mixes_and_trains_a_student(learn_seed, figure):
    teacher = make_gpt(learn_seed)
    student = make_gpt(learn_seed + 1,
                       GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16))
    x, y = tokens(4, 16, 2), tokens(4, 16, 3)
    for alpha in (0.0, 1.0, 0.3):
        got = compress.distill_loss_fn(teacher, 2.0, alpha)(student, (x, y))
        logits, ce = student(x, y)
        kd = compress.distillation_loss(logits, teacher(x)[0], 2.0)
        assert got.item() == pytest.approx((alpha * kd + (1 - alpha) * ce).item(), rel=1e-5)
    with pytest.raises(ValueError, match="alpha"):
        compress.distill_loss_fn(teacher, alpha=1.5)

    def get_batch(split):
        return tokens(8, 16, 7 + learn_seed), tokens(8, 16, 7 + learn_seed)  # any fixed batch

    loss_fn = compress.distill_loss_fn(teacher, 1.0, alpha=1.0)
    before = loss_fn(student, get_batch("train")).item()
    Trainer(student, get_batch, TrainConfig(max_steps=40, lr=1e-2, warmup_steps=0, eval_interval=0,
                                            progress=False, device="cpu", seed=learn_seed),
            loss_fn=loss_fn).fit()
    after = loss_fn(student, get_batch("train")).item()
    # Measured over seeds 0-4 and 1-2 threads (scripts/test_margins.py): 0.087-0.108
    assert figure("loss_after_over_before", after / before) < 0.5  # the student copies the teacher


# ---- pruning ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [0.0, 0.3, 0.5, 0.9])
def test_pruning_reaches_the_asked_sparsity_and_removes_the_smallest(target):
    model = make_gpt()
    before = {n: w.detach().clone() for n, w in compress.prunable_weights(model).items()}
    masks = compress.magnitude_prune(model, target)
    assert compress.sparsity(model) == pytest.approx(target, abs=1e-3)
    for name, w in compress.prunable_weights(model).items():
        mask, old = masks[name], before[name]
        assert (1 - mask.float().mean()).item() == pytest.approx(target, abs=1e-3)
        if 0 < target:
            assert old[~mask].abs().max() <= old[mask].abs().min()  # the smallest went
        assert torch.equal(w, old * mask)  # the others are untouched


def test_pruning_leaves_embeddings_and_tied_head_alone():
    model = make_gpt()
    names = set(compress.prunable_weights(model))
    assert "head.weight" not in names and len(names) == 4 * CFG.n_layer
    emb = model.tok_emb.weight.detach().clone()
    compress.magnitude_prune(model, 0.5)
    assert torch.equal(model.tok_emb.weight, emb)


def test_random_pruning_is_worse_than_magnitude():
    model = make_gpt()
    x = tokens()
    full = model(x)[0]
    errs = {}
    for method in ("magnitude", "random"):
        pruned = make_gpt()
        compress.magnitude_prune(pruned, 0.5, method=method)
        errs[method] = (pruned(x)[0] - full).pow(2).mean().item()
    assert errs["magnitude"] < errs["random"]


def test_pruned_weights_stay_zero_while_fine_tuning():
    model = make_gpt().train()
    masks = compress.magnitude_prune(model, 0.6)
    handles = compress.keep_pruned(model, masks)
    kept_before = {n: w.detach().clone() for n, w in compress.prunable_weights(model).items()}

    def get_batch(split):
        return tokens(4, 16, 5), tokens(4, 16, 6)

    Trainer(model, get_batch, TrainConfig(max_steps=15, lr=1e-2, warmup_steps=0, eval_interval=0,
                                          weight_decay=0.1, progress=False, device="cpu")).fit()
    for name, w in compress.prunable_weights(model).items():
        assert (w[~masks[name]] == 0).all()
        assert not torch.equal(w[masks[name]], kept_before[name][masks[name]])  # the rest trained
    assert compress.sparsity(model) == pytest.approx(0.6, abs=1e-3)
    for h in handles:
        h.remove()


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_pruning_rejects_sparsity_outside_0_1(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        compress.magnitude_prune(make_gpt(), bad)


def test_pruning_bad_input():
    with pytest.raises(ValueError, match="method"):
        compress.magnitude_prune(make_gpt(), 0.5, method="smallest")
    with pytest.raises(ValueError, match="no nn.Linear"):
        compress.magnitude_prune(nn.LayerNorm(4), 0.5)
    with pytest.raises(KeyError, match="lacks"):
        compress.keep_pruned(make_gpt(), {"nope.weight": torch.ones(1, dtype=torch.bool)})


# ---- shared layers ----------------------------------------------------------------------------


def test_share_layers_shares_storage_and_the_counts_drop():
    model = make_gpt()
    shared = compress.share_layers(model)
    a, b = shared.blocks
    assert a.attn.qkv.weight is b.attn.qkv.weight
    assert a.mlp.state_dict().keys() == b.mlp.state_dict().keys()
    assert all(pa.data_ptr() == pb.data_ptr() for pa, pb in zip(a.parameters(), b.parameters()))
    per_block = sum(p.numel() for p in model.blocks[0].parameters())
    assert shared.num_params() == model.num_params() - per_block
    assert quantize.saved_size(model) - quantize.saved_size(shared) == pytest.approx(per_block * 4, rel=0.05)
    assert compress.shared_fraction(shared) > compress.shared_fraction(model) > 0  # tied head
    # the first block's weights, and the model was not changed
    assert torch.equal(shared.blocks[1].attn.qkv.weight, model.blocks[0].attn.qkv.weight)
    assert model.blocks[0].attn.qkv.weight is not model.blocks[1].attn.qkv.weight


def test_shared_model_trains_as_one_block_and_caches_per_layer():
    model = make_gpt()
    shared = compress.share_layers(model, init="mean").train()
    mean = (model.blocks[0].mlp.fc.weight + model.blocks[1].mlp.fc.weight) / 2
    assert torch.allclose(shared.blocks[1].mlp.fc.weight, mean)

    def get_batch(split):
        return tokens(4, 16, 5), tokens(4, 16, 6)

    Trainer(shared, get_batch, TrainConfig(max_steps=3, lr=1e-2, warmup_steps=0, eval_interval=0,
                                           progress=False, device="cpu")).fit()
    assert shared.blocks[0].attn.proj.weight is shared.blocks[1].attn.proj.weight
    x = tokens(1, 6)
    cached = shared.generate(x, 6, temperature=0, use_cache=True)
    plain = shared.generate(x, 6, temperature=0, use_cache=False)
    assert torch.equal(cached, plain)  # each block keeps its own KV-cache slot


def test_share_layers_bad_input():
    with pytest.raises(TypeError, match="minigpt.models.gpt.GPT"):
        compress.share_layers(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="init"):
        compress.share_layers(make_gpt(), init="last")


# ---- the cached teacher -----------------------------------------------------------------------


def test_pretrained_gpt_trains_once_per_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path))
    ids = {"train": np.arange(400) % 50, "val": np.arange(100) % 50}
    config = TrainConfig(max_steps=3, warmup_steps=0, eval_interval=0, progress=False, device="cpu")
    first = compress.pretrained_gpt(CFG, ids, config, batch_size=2)
    again = compress.pretrained_gpt(CFG, ids, config, batch_size=2)
    assert torch.equal(first.tok_emb.weight, again.tok_emb.weight)
    assert len(list((tmp_path / "models").glob("gpt-*.pt"))) == 1
    other = {"train": (np.arange(400) * 7) % 50, "val": ids["val"]}  # other data: trained again
    compress.pretrained_gpt(CFG, other, config, batch_size=2)
    assert len(list((tmp_path / "models").glob("gpt-*.pt"))) == 2
