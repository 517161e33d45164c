import pytest
import torch

from minigpt.gpt import GPT, GPTConfig

CFG = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32)


def expected_params(c: GPTConfig) -> int:
    """Counted by hand: what each layer holds."""
    C, V, T, L = c.n_embd, c.vocab_size, c.block_size, c.n_layer
    ln = 2 * C  # weight and bias
    attn = C * 3 * C + 3 * C + C * C + C  # qkv and output projection, with biases
    mlp = C * 4 * C + 4 * C + 4 * C * C + C
    block = 2 * ln + attn + mlp
    return V * C + T * C + L * block + ln  # head shares the token embedding


def test_parameter_count_matches_the_hand_count():
    model = GPT(CFG)
    assert model.num_params() == expected_params(CFG)
    assert model.num_params(non_embedding=True) == expected_params(CFG) - CFG.block_size * CFG.n_embd


def test_head_is_tied_to_the_token_embedding():
    model = GPT(CFG)
    assert model.head.weight.data_ptr() == model.tok_emb.weight.data_ptr()


def test_forward_shapes_and_initial_loss_near_uniform():
    torch.manual_seed(0)
    model = GPT(CFG)
    x = torch.randint(0, CFG.vocab_size, (3, 10))
    y = torch.randint(0, CFG.vocab_size, (3, 10))
    logits, loss = model(x, y)
    assert logits.shape == (3, 10, CFG.vocab_size)
    # small init: the untrained model is close to a uniform guess, loss ~ ln(V)
    assert abs(loss.item() - torch.log(torch.tensor(50.0)).item()) < 0.2


def test_attention_is_causal():
    """Changing a later token must not change the logits at earlier positions."""
    torch.manual_seed(0)
    model = GPT(CFG).eval()
    x = torch.randint(0, CFG.vocab_size, (1, 12))
    y = x.clone()
    y[0, 8] = (x[0, 8] + 1) % CFG.vocab_size
    a, _ = model(x)
    b, _ = model(y)
    assert torch.allclose(a[0, :8], b[0, :8], atol=1e-6)
    assert not torch.allclose(a[0, 8:], b[0, 8:], atol=1e-6)


def test_too_long_input_is_a_clear_error():
    with pytest.raises(ValueError, match="longer than block_size=16"):
        GPT(CFG)(torch.zeros(1, 17, dtype=torch.long))


def test_generate_extends_and_respects_top_k():
    torch.manual_seed(0)
    model = GPT(CFG)
    start = torch.zeros(2, 3, dtype=torch.long)
    out = model.generate(start, max_new_tokens=20, top_k=1)
    assert out.shape == (2, 23)
    assert torch.equal(out[:, :3], start)
    # top_k=1 is greedy: both rows began the same, so they continue the same
    assert torch.equal(out[0], out[1])
    with pytest.raises(ValueError, match="temperature"):
        model.generate(start, 1, temperature=0)
