import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.data.tokenizers import CharTokenizer
from minigpt.models.gpt import (
    GPT,
    PRESETS,
    GPTConfig,
    KVCache,
    check_positions,
    filter_logits,
    sample,
    sample_next,
)
from minigpt.models.rnn import RNNLM

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
    with pytest.raises(ValueError, match=r"17 tokens do not fit in the context of 16 \(block_size\)"):
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
        model.generate(start, 1, temperature=-1)


# ---- presets ----------------------------------------------------------------------------------


def test_presets_build_models_whose_size_matches_the_hand_count():
    for name in PRESETS:
        cfg = GPTConfig.preset(name, vocab_size=65)
        assert cfg.vocab_size == 65
        if name != "gpt2":  # 85 M parameters: counted, not built
            assert GPT(cfg).num_params() == expected_params(cfg)
    # GPT-2 small's published size: 124 M parameters with its 50,257-token vocabulary
    gpt2 = GPTConfig.preset("gpt2", vocab_size=50257)
    assert round(expected_params(gpt2) / 1e6) == 124


def test_preset_overrides_and_unknown_names():
    cfg = GPTConfig.preset("micro", 10, dropout=0.2, block_size=32)
    assert (cfg.dropout, cfg.block_size, cfg.n_layer) == (0.2, 32, 4)
    assert PRESETS["micro"].block_size == 128  # the table itself is not changed
    with pytest.raises(ValueError, match="unknown preset 'huge'; known presets: nano, micro"):
        GPTConfig.preset("huge", 10)


def test_bad_configs_are_clear_errors():
    with pytest.raises(ValueError, match="n_embd must be a positive multiple of n_head"):
        GPTConfig(vocab_size=10, n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="dropout must be in"):
        GPTConfig(vocab_size=10, dropout=1.5)


# ---- sampling ---------------------------------------------------------------------------------


def draws(logits: torch.Tensor, n: int = 4000, **knobs) -> torch.Tensor:
    """Counts of each token in n draws from one row of logits."""
    gen = torch.Generator().manual_seed(0)
    rows = logits.expand(n, -1)
    return torch.bincount(sample_next(rows, generator=gen, **knobs)[:, 0], minlength=logits.size(-1))


def test_temperature_zero_is_greedy():
    logits = torch.tensor([[0.1, 2.0, 1.9, -1.0]])
    assert draws(logits, 50, temperature=0).tolist() == [0, 50, 0, 0]


@given(probs=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=12), top_p=st.floats(0.05, 1.0))
@settings(max_examples=60, deadline=None)
def test_top_p_keeps_the_smallest_likeliest_set_reaching_p(probs, top_p):
    p = torch.tensor(probs) / sum(probs)
    logits = p.log()[None]
    seen = draws(logits, 600, top_p=top_p) > 0
    # by hand: sort descending, keep tokens until the kept mass reaches top_p
    kept, mass = set(), 0.0
    for i in sorted(range(len(probs)), key=lambda i: -p[i].item()):
        if mass >= top_p:
            break
        kept.add(i)
        mass += p[i].item()
    assert set(torch.nonzero(seen)[:, 0].tolist()) <= kept  # nothing outside the nucleus
    assert seen[max(kept, key=lambda i: p[i].item())]  # the likeliest token is always kept


def test_top_p_drops_a_token_once_the_likelier_ones_reach_p_exactly():
    """The nucleus is the smallest set reaching top_p: a token is kept only while the tokens
    before it add up to *less* than top_p. Powers of 2 make the sums exact in float32, so the
    boundary is hit exactly (the hypothesis test above almost never hits it)."""
    probs = torch.tensor([[0.125, 0.5, 0.0625, 0.25, 0.0625]])  # sorted: tokens 1, 3, 0, ...
    logits = probs.log()
    assert torch.equal(torch.softmax(logits, dim=-1), probs)  # no rounding on the way
    for top_p, kept in [(0.5, [1]), (0.6, [1, 3]), (0.75, [1, 3]), (0.875, [0, 1, 3])]:
        survivors = torch.isfinite(filter_logits(logits, top_p=top_p))[0]
        assert torch.nonzero(survivors)[:, 0].tolist() == kept, top_p


def test_top_p_one_changes_nothing_and_tiny_top_p_is_greedy():
    logits = torch.tensor([[1.0, 0.5, 0.0, -0.5]])
    assert torch.equal(draws(logits, top_p=1.0), draws(logits))
    assert draws(logits, 100, top_p=1e-6).tolist() == [100, 0, 0, 0]


def test_top_p_distribution_is_renormalised():
    # probabilities 0.5, 0.3, 0.2 -> top_p=0.7 keeps the first two, renormalised to 0.625, 0.375
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()
    counts = draws(logits, 20000, top_p=0.7).float() / 20000
    assert counts[2] == 0
    assert abs(counts[0].item() - 0.625) < 0.02


def test_bad_sampling_settings_are_clear_errors():
    logits = torch.zeros(1, 5)
    for knobs, message in [({"temperature": -0.5}, "temperature must be >= 0"),
                           ({"top_k": 0}, "top_k must be >= 1"),
                           ({"top_p": 0.0}, "top_p must be in"),
                           ({"top_p": 1.5}, "top_p must be in")]:
        with pytest.raises(ValueError, match=message):
            sample_next(logits, **knobs)


def test_non_integer_top_k_is_a_clear_error():
    for top_k in [2.5, 2.0]:
        with pytest.raises(TypeError, match=r"top_k must be an integer >= 1 \(or None"):
            sample_next(torch.zeros(1, 5), top_k=top_k)


def test_generate_rejects_bad_lengths_and_prompts_with_clear_errors():
    model = GPT(CFG)
    prompt = torch.zeros(1, 3, dtype=torch.long)
    for call, error, message in [
        (lambda: model.generate(prompt, -1), ValueError, "max_new_tokens must be >= 0"),
        (lambda: model.generate(prompt, 2.5), TypeError, "max_new_tokens must be an integer"),
        (lambda: model.generate(prompt.float(), 2), TypeError,
         r"token ids must be integers \(torch.long\), got dtype torch.float32: pass idx.long"),
        (lambda: model.generate(prompt + 50, 2), ValueError,
         r"token ids must be in 0 \.\. 49 \(vocab_size 50\), got 50 \.\. 50.*tokenizer"),
        (lambda: model.generate(prompt - 1, 2), ValueError, r"got -1 \.\. -1"),
        (lambda: model.generate([[1, 2]], 2), TypeError, r"shape \(B, T\), got a list"),
        (lambda: model.generate(prompt[0], 2), ValueError, r"got shape \(3,\).*idx\[None\]"),
        (lambda: model.generate(prompt, 2, top_k=2.5), TypeError, "top_k must be an integer"),
    ]:
        with pytest.raises(error, match=message):
            call()
    assert torch.equal(model.generate(prompt, 0), prompt)  # zero new tokens is fine


def test_sample_rejects_a_negative_length_for_any_model():
    tok = CharTokenizer.fit("abcdefghij")
    for model in [GPT(CFG), RNNLM(tok.vocab_size, "gru", n_embd=4, n_hidden=4)]:
        with pytest.raises(ValueError, match="max_new_tokens must be >= 0"):
            sample(model, tok, "abc", max_new_tokens=-1)  # used to return the prompt


# ---- KV cache ---------------------------------------------------------------------------------


def test_kv_cache_logits_equal_a_full_forward_pass():
    torch.manual_seed(0)
    model = GPT(CFG).eval()
    x = torch.randint(0, CFG.vocab_size, (2, 12))
    full, _ = model(x)
    cache = KVCache(CFG.n_layer)
    parts = [model(x[:, :5], cache=cache)[0]]  # a prompt of 5, then 3 tokens, then 1 at a time
    parts.append(model(x[:, 5:8], cache=cache)[0])
    parts += [model(x[:, t:t + 1], cache=cache)[0] for t in range(8, 12)]
    assert len(cache) == 12
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)


@given(prompt_len=st.integers(1, 16), new=st.integers(1, 30), seed=st.integers(0, 1000))
@settings(max_examples=25, deadline=None)
def test_greedy_generation_with_cache_equals_without_token_for_token(prompt_len, new, seed):
    """Also past block_size (16), where the window slides and the cache must step aside."""
    torch.manual_seed(seed)
    model = GPT(CFG)
    prompt = torch.randint(0, CFG.vocab_size, (2, prompt_len))
    cached = model.generate(prompt, new, temperature=0, use_cache=True)
    plain = model.generate(prompt, new, temperature=0, use_cache=False)
    assert torch.equal(cached, plain)


def test_sampled_generation_with_cache_equals_without_for_the_same_seed():
    torch.manual_seed(0)
    model = GPT(CFG)
    prompt = torch.randint(0, CFG.vocab_size, (3, 4))
    runs = [model.generate(prompt, 20, temperature=1.0, top_p=0.9, use_cache=use,
                           generator=torch.Generator().manual_seed(7)) for use in (True, False)]
    assert torch.equal(*runs)


def test_prompt_longer_than_the_context_is_a_clear_error():
    model = GPT(CFG)
    with pytest.raises(ValueError, match=r"the prompt has 17 tokens but the model reads at most 16"):
        model.generate(torch.zeros(1, 17, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="the prompt is empty"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), 1)
    cache = KVCache(CFG.n_layer)
    model(torch.zeros(1, 10, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="17 tokens do not fit in the context of 16"):
        model(torch.zeros(1, 7, dtype=torch.long), cache=cache)


def test_check_positions_allows_the_whole_context_and_no_more():
    check_positions(8, 8)
    with pytest.raises(ValueError, match=r"9 tokens do not fit in the context of 8 \(block_size\)"):
        check_positions(9, 8)
