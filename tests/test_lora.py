"""Tests for minigpt.methods.lora on tiny GPTs (CPU, well under a second each)."""

import pytest
import torch
from torch import nn

from minigpt.methods import lora
from minigpt.models.gpt import GPT, GPTConfig
from minigpt.train.config import TrainConfig
from minigpt.train.trainer import Trainer

CFG = GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16)
BLOCK_LINEARS = ["attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"]


def tiny_gpt(seed: int = 0, cfg: GPTConfig = CFG) -> GPT:
    torch.manual_seed(seed)
    return GPT(cfg)


def tokens(seed: int = 1, batch: int = 3, length: int = 12) -> torch.Tensor:
    return torch.randint(CFG.vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))


def lora_model(rank: int = 4, alpha: float = 8.0, targets=("attn", "mlp")) -> tuple[GPT, GPT]:
    """A base model and a LoRA copy of it (the same weights)."""
    base = tiny_gpt()
    model = tiny_gpt()
    lora.apply_lora(model, rank=rank, alpha=alpha, targets=targets)
    return base, model


def randomise_adapters(model: nn.Module, seed: int = 2) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lora.lora_parameters(model):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


def test_at_init_the_lora_model_equals_the_base_model_exactly():
    base, model = lora_model()
    x = tokens()
    assert torch.equal(model(x)[0], base(x)[0])
    # ... because B starts at zero while A does not (else no gradient would reach B)
    layer = model.blocks[0].attn.qkv
    assert isinstance(layer, lora.LoRALinear)
    assert torch.count_nonzero(layer.lora_B) == 0 and torch.count_nonzero(layer.lora_A) > 0


def test_wrapped_names_shapes_and_scaling():
    _, model = lora_model(rank=4, alpha=8.0)
    names = [f"blocks.{i}.{n}" for i in range(CFG.n_layer) for n in BLOCK_LINEARS]
    assert sorted(lora.lora_layers(model)) == sorted(names)
    qkv = model.blocks[1].attn.qkv
    assert qkv.lora_A.shape == (4, 16) and qkv.lora_B.shape == (48, 4)
    assert qkv.scaling == 2.0
    assert type(model.head) is nn.Linear and model.head.weight is model.tok_emb.weight
    _, only_qkv = lora_model(targets=("qkv",))
    assert sorted(lora.lora_layers(only_qkv)) == ["blocks.0.attn.qkv", "blocks.1.attn.qkv"]


def test_forward_is_the_formula_and_delta_weight_is_scaled_b_times_a():
    torch.manual_seed(0)
    layer = lora.LoRALinear(nn.Linear(5, 7), rank=3, alpha=6.0)
    randomise_adapters(layer)
    x = torch.randn(2, 4, 5)
    W, b, A, B = layer.base.weight, layer.base.bias, layer.lora_A, layer.lora_B
    want = x @ W.T + b + (6.0 / 3) * (x @ A.T @ B.T)
    torch.testing.assert_close(layer(x), want)
    torch.testing.assert_close(layer.delta_weight(), 2.0 * B @ A)


def test_merge_preserves_outputs_and_unmerge_restores_the_weights():
    _, model = lora_model()
    randomise_adapters(model)
    x = tokens()
    before = model(x)[0]
    weight_before = model.blocks[0].mlp.fc.base.weight.clone()
    lora.merge_lora(model)
    assert all(layer.merged for layer in lora.lora_layers(model).values())
    assert not torch.allclose(model.blocks[0].mlp.fc.base.weight, weight_before)  # it moved
    torch.testing.assert_close(model(x)[0], before, atol=1e-5, rtol=0)
    lora.unmerge_lora(model)
    torch.testing.assert_close(model.blocks[0].mlp.fc.base.weight, weight_before, atol=1e-6, rtol=0)
    torch.testing.assert_close(model(x)[0], before, atol=1e-5, rtol=0)


def test_merging_twice_adds_the_update_once():
    _, model = lora_model()
    randomise_adapters(model)
    x = tokens()
    lora.merge_lora(model)
    once = model(x)[0]
    weight_once = model.blocks[1].attn.proj.base.weight.clone()
    lora.merge_lora(model)
    model.blocks[1].attn.proj.merge()
    assert torch.equal(model.blocks[1].attn.proj.base.weight, weight_once)
    assert torch.equal(model(x)[0], once)
    lora.unmerge_lora(model)
    lora.unmerge_lora(model)  # likewise: one subtraction
    _, fresh = lora_model()
    randomise_adapters(fresh)
    torch.testing.assert_close(model(x)[0], fresh(x)[0], atol=1e-5, rtol=0)


def test_only_adapters_train_and_the_share_is_the_hand_count():
    base, model = lora_model(rank=4)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.endswith((".lora_A", ".lora_B")) for name in trainable)
    assert len(trainable) == 2 * 4 * CFG.n_layer
    C, r = CFG.n_embd, 4
    per_block = r * (C + 3 * C) + r * (C + C) + r * (C + 4 * C) + r * (4 * C + C)  # qkv proj fc proj
    adapters = CFG.n_layer * per_block
    assert adapters == 2 * 4 * (4 + 2 + 5 + 5) * 16
    assert sum(p.numel() for p in lora.lora_parameters(model)) == adapters
    assert lora.trainable_share(model) == adapters / (base.num_params() + adapters)
    assert lora.trainable_share(base) == 1.0


def test_share_for_the_micro_preset_counts_the_tied_head_once():
    with torch.device("meta"):  # no memory, no init cost
        model = GPT(GPTConfig.preset("micro", 100))
    lora.apply_lora(model, rank=4)
    # 4 blocks x 4 (128 + 384 + 128 + 128 + 128 + 512 + 512 + 128) = 32,768 adapter weights;
    # the model: 100 x 128 tokens + 128 x 128 positions + 4 x 198,272 + 256 = 822,528
    assert lora.trainable_share(model) == 32_768 / (822_528 + 32_768)


def get_batch_for(data: torch.Tensor):
    gen = torch.Generator().manual_seed(0)

    def get_batch(split):
        i = torch.randint(len(data) - 9, (4,), generator=gen)
        x = torch.stack([data[j : j + 8] for j in i])
        y = torch.stack([data[j + 1 : j + 9] for j in i])
        return x, y

    return get_batch


def test_trainer_moves_the_adapters_and_leaves_base_weights_bit_identical():
    _, model = lora_model()
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "lora_" not in k}
    adapters = {k: v.clone() for k, v in lora.lora_state_dict(model).items()}
    data = torch.arange(400) % CFG.vocab_size
    config = TrainConfig(max_steps=5, lr=1e-2, warmup_steps=0, weight_decay=0.1,
                         eval_interval=0, device="cpu", progress=False)
    trainer = Trainer(model, get_batch_for(data), config)
    n_optimised = sum(p.numel() for g in trainer.optimizer.param_groups for p in g["params"])
    assert n_optimised == sum(p.numel() for p in lora.lora_parameters(model))
    history = trainer.fit()
    assert history.loss[-1] < history.loss[0]
    after = model.state_dict()
    for key, value in frozen.items():
        assert torch.equal(after[key], value), f"{key} moved"
    for key, value in adapters.items():
        assert not torch.equal(after[key], value), f"{key} did not train"


def test_remove_lora_gives_a_plain_gpt_with_the_same_outputs():
    _, model = lora_model()
    randomise_adapters(model)
    x = tokens()
    want = model(x)[0]
    assert lora.remove_lora(model) is model
    assert not lora.lora_layers(model)
    assert all(p.requires_grad for p in model.parameters())
    fresh = tiny_gpt(seed=5)
    fresh.load_state_dict(model.state_dict())  # strict: the plain keys, nothing else
    assert fresh.head.weight is fresh.tok_emb.weight
    torch.testing.assert_close(fresh(x)[0], want, atol=1e-5, rtol=0)


def test_lora_state_dict_holds_only_the_adapters_and_loads_back():
    _, model = lora_model()
    randomise_adapters(model)
    state = lora.lora_state_dict(model)
    assert len(state) == 2 * 4 * CFG.n_layer
    assert all(k.endswith((".lora_A", ".lora_B")) for k in state)
    _, other = lora_model()
    x = tokens()
    assert not torch.equal(other(x)[0], model(x)[0])
    lora.load_lora_state_dict(other, state)
    assert torch.equal(other(x)[0], model(x)[0])
    _, only_qkv = lora_model(targets=("qkv",))
    with pytest.raises(ValueError, match="do not fit"):
        lora.load_lora_state_dict(only_qkv, state)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="rank must be"):
        lora.apply_lora(tiny_gpt(), rank=0)
    with pytest.raises(ValueError, match="rank must be"):
        lora.LoRALinear(nn.Linear(3, 3), rank=0)
    with pytest.raises(ValueError, match=r"blocks\.0\.attn\.qkv.*blocks\.1\.mlp\.proj"):
        lora.apply_lora(tiny_gpt(), targets=("attention",))
    with pytest.raises(ValueError, match="never wrapped"):
        lora.apply_lora(tiny_gpt(), targets=("head",))  # the tied output layer
    _, model = lora_model()
    with pytest.raises(ValueError, match="remove_lora"):
        lora.apply_lora(model)
    with pytest.raises(TypeError, match="nn.Linear"):
        lora.LoRALinear(nn.Embedding(3, 3))


def test_rank_above_the_layer_size_and_bad_alphas_are_clear_errors():
    with pytest.raises(ValueError, match=r"rank=4 is more than the layer can use.*= 3 \(3 -> 5\)"):
        lora.LoRALinear(nn.Linear(3, 5), rank=4)
    assert lora.LoRALinear(nn.Linear(3, 5), rank=3).rank == 3  # min(in, out) itself is fine
    for alpha in [float("nan"), 0.0, -8.0, float("inf"), "8"]:
        with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
            lora.LoRALinear(nn.Linear(8, 8), rank=4, alpha=alpha)
    # apply_lora checks every layer before wrapping any: no half-adapted model is left behind
    model = tiny_gpt()  # n_embd 16: attn.qkv is 16 -> 48, so rank 17 cannot fit
    with pytest.raises(ValueError, match=r"rank=17 is more than blocks\.0\.attn\.qkv.*rank <= 16"):
        lora.apply_lora(model, rank=17)
    with pytest.raises(ValueError, match="alpha must be"):
        lora.apply_lora(model, rank=4, alpha=float("nan"))
    assert lora.lora_layers(model) == {} and all(p.requires_grad for p in model.parameters())
