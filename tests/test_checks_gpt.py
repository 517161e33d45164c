"""The chapter 06 exercise checks pass right answers and catch the usual mistakes."""

import pytest
import torch

from minigpt.course import checks
from minigpt.course.checks import gpt as gpt_checks

# --- Task 1: count_params --------------------------------------------------------------------


def count_params(V, T, L, C, r):
    return 2 * V * C + T * C + L * (4 * C * C + 2 * r * C * C + 2 * C) + C


def count_params_by_parts(vocab_size, block_size, n_layer, n_embd, mlp_ratio):
    """Right, written differently: matrices and gains per layer, summed; a float on the way."""
    def linear(n_in, n_out):
        return n_in * n_out  # no bias

    def layer_norm(n):
        return n  # a gain, no shift

    block = (layer_norm(n_embd) + linear(n_embd, 3 * n_embd) + linear(n_embd, n_embd)
             + layer_norm(n_embd) + linear(n_embd, mlp_ratio * n_embd)
             + linear(mlp_ratio * n_embd, n_embd))
    embeddings = (vocab_size + block_size) * n_embd
    total = embeddings + n_layer * block + layer_norm(n_embd) + linear(n_embd, vocab_size)
    return int(float(total))


def count_params_from_modules(vocab_size, block_size, n_layer, n_embd, mlp_ratio):
    """Right, written differently: build the variant from torch modules and count."""
    C = n_embd
    with torch.device("meta"):
        block = torch.nn.ModuleList([
            torch.nn.LayerNorm(C, bias=False), torch.nn.Linear(C, 3 * C, bias=False),
            torch.nn.Linear(C, C, bias=False), torch.nn.LayerNorm(C, bias=False),
            torch.nn.Linear(C, mlp_ratio * C, bias=False),
            torch.nn.Linear(mlp_ratio * C, C, bias=False)])
        rest = torch.nn.ModuleList([
            torch.nn.Embedding(vocab_size, C), torch.nn.Embedding(block_size, C),
            torch.nn.LayerNorm(C, bias=False), torch.nn.Linear(C, vocab_size, bias=False)])
    return n_layer * sum(p.numel() for p in block.parameters()) + sum(
        p.numel() for p in rest.parameters())


COUNT_RIGHT = [count_params, count_params_by_parts, count_params_from_modules]

# (wrong count_params, the words its message must hold)
COUNT_WRONG = {
    "head counted as tied": (lambda V, T, L, C, r: count_params(V, T, L, C, r) - V * C,
                             "untied"),
    "head with a bias": (lambda V, T, L, C, r: count_params(V, T, L, C, r) + V,
                         "output layer has no bias"),
    "no position embedding": (lambda V, T, L, C, r: count_params(V, T, L, C, r) - T * C,
                              "position embedding"),
    "LayerNorm biases counted": (lambda V, T, L, C, r: count_params(V, T, L, C, r)
                                 + (2 * L + 1) * C, "LayerNorm biases"),
    "Linear biases counted": (lambda V, T, L, C, r: count_params(V, T, L, C, r)
                              + L * (5 + r) * C, "Linear layers' biases"),
    "notebook's formula, untied": (lambda V, T, L, C, r: V * C + T * C + L * (12 * C * C + 13 * C)
                                   + 2 * C + V * C, "Hint:"),
    "MLP kept at 4x": (lambda V, T, L, C, r: count_params(V, T, L, C, 4), "kept the MLP at 4"),
    "no LayerNorms": (lambda V, T, L, C, r: count_params(V, T, L, C, r) - (2 * L + 1) * C,
                      "left out the LayerNorms"),
    "no final LayerNorm": (lambda V, T, L, C, r: count_params(V, T, L, C, r) - C,
                           "final LayerNorm"),
    "one MLP matrix": (lambda V, T, L, C, r: count_params(V, T, L, C, r) - L * r * C * C,
                       "one MLP matrix"),
    "hard-coded GPT-2 small": (lambda V, T, L, C, r: count_params(50257, 1024, 12, 768, 4),
                               "compute it from the arguments"),
    "one block only": (lambda V, T, L, C, r: count_params(V, T, 1, C, r),
                       "count_params\\(50, 32, 2"),
}


@pytest.mark.parametrize("right", COUNT_RIGHT)
def test_right_counts_pass(right, capsys):
    checks.check_count_params(right)
    assert "Task 1 (count_params) passed: GPT-2 small's shape" in capsys.readouterr().out


@pytest.mark.parametrize("name", COUNT_WRONG)
def test_wrong_counts_fail_with_the_mistake_named(name):
    wrong, words = COUNT_WRONG[name]
    with pytest.raises(AssertionError, match=words):
        checks.check_count_params(wrong)


def test_count_sizes_tell_the_slips_apart():
    """In the first (failing) size, every slip gives a different total, none of them right."""
    first = gpt_checks._COUNT_SIZES[0]
    diffs = [diff for diff, _ in gpt_checks._count_slips(*first)]
    assert len(set(diffs)) == len(diffs) and 0 not in diffs
    assert len({sizes[2] for sizes in gpt_checks._COUNT_SIZES}) >= 3  # n_layer varies
    assert len({sizes[4] for sizes in gpt_checks._COUNT_SIZES}) >= 3  # so does the MLP ratio
    assert all(V != T for V, T, *_ in gpt_checks._COUNT_SIZES)  # head vs positions


def test_the_reference_is_the_package_model_changed_as_asked():
    model = gpt_checks.variant(65, 64, 1, 16, 2)
    assert model.head.weight is not model.tok_emb.weight
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    assert model.blocks[0].mlp.fc.out_features == 32


def test_a_count_that_is_not_a_number_fails():
    with pytest.raises(AssertionError, match="whole number"):
        checks.check_count_params(lambda V, T, L, C, r: str(count_params(V, T, L, C, r)))


# --- Task 2: apply_temperature ---------------------------------------------------------------


def apply_temperature(logits, t):
    if t == 0:
        return torch.nn.functional.one_hot(logits.argmax(), logits.numel()).float()
    return torch.softmax(logits / t, dim=-1)


def apply_temperature_by_hand(logits, t):
    """Right, written differently: exp and normalise by hand; greedy as a comparison."""
    if t <= 0:
        return (logits == logits.max()).to(logits.dtype)
    z = torch.exp((logits - logits.max()) / t)
    return z / z.sum()


def apply_temperature_power(logits, t):
    """Right, written differently: softmax(x / t) = softmax(x) ** (1 / t), renormalised."""
    probs = torch.softmax(logits.double(), dim=-1)
    if t == 0:
        out = torch.zeros_like(probs)
        out[probs.argmax()] = 1
        return out
    probs = probs ** (1 / t)
    return probs / probs.sum()


TEMPERATURE_RIGHT = [apply_temperature, apply_temperature_by_hand, apply_temperature_power]

TEMPERATURE_WRONG = {
    "multiplies by t": (lambda x, t: apply_temperature(x, t) if t == 0
                        else torch.softmax(x * t, dim=-1), "multiplied the logits by t"),
    "t after softmax (divides)": (lambda x, t: apply_temperature(x, t) if t == 0
                                  else torch.softmax(x, dim=-1) / t, "after the softmax"),
    "t after softmax (ignored)": (lambda x, t: apply_temperature(x, t) if t == 0
                                  else torch.softmax(x, dim=-1), "after the softmax"),
    "no greedy case": (lambda x, t: torch.softmax(x / t, dim=-1), "t = 0 means greedy"),
    "greedy returns the index": (lambda x, t: x.argmax() if t == 0
                                 else torch.softmax(x / t, dim=-1), "not the argmax's index"),
    "greedy one-hot at 0": (lambda x, t: torch.eye(x.numel())[0] if t == 0
                            else torch.softmax(x / t, dim=-1), "t = 0 means greedy"),
    "no softmax": (lambda x, t: apply_temperature(x, t) if t == 0 else x / t,
                   "Return probabilities"),
    "wrong shape": (lambda x, t: torch.softmax(x / max(t, 1e-9), dim=-1)[..., :2],
                    "one probability per logit"),
}


@pytest.mark.parametrize("right", TEMPERATURE_RIGHT)
def test_right_temperatures_pass(right, capsys):
    checks.check_apply_temperature(right)
    assert "Task 2 (apply_temperature) passed: t < 1 sharpens" in capsys.readouterr().out


@pytest.mark.parametrize("name", TEMPERATURE_WRONG)
def test_wrong_temperatures_fail_with_the_mistake_named(name):
    wrong, words = TEMPERATURE_WRONG[name]
    with pytest.raises(AssertionError, match=words):
        checks.check_apply_temperature(wrong)


# --- Task 3: top_p_keep ----------------------------------------------------------------------


def top_p_keep(probs, p):
    keep, total = torch.zeros_like(probs, dtype=torch.bool), 0.0
    for i in probs.argsort(descending=True).tolist():
        if total >= p:
            break
        keep[i], total = True, total + probs[i].item()
    return keep


def top_p_keep_vectorised(probs, p):
    """Right, written differently: exclusive cumulative sum, then back to vocabulary order."""
    sorted_probs, order = probs.sort(descending=True)
    keep_sorted = sorted_probs.cumsum(-1) - sorted_probs < p
    keep = torch.empty_like(keep_sorted)
    keep[order] = keep_sorted
    return keep


def top_p_keep_threshold(probs, p):
    """Right, written differently: count the tokens needed, keep those at or above the last."""
    sorted_probs = probs.sort(descending=True).values
    n = int((sorted_probs.cumsum(-1) < p).sum()) + 1  # the crossing token is the n-th
    n = min(n, probs.numel())
    return probs >= sorted_probs[n - 1]


TOP_P_RIGHT = [top_p_keep, top_p_keep_vectorised, top_p_keep_threshold]


def _strict(probs, p):  # keeps only the tokens whose running total stays within p
    keep, total = torch.zeros_like(probs, dtype=torch.bool), 0.0
    for i in probs.argsort(descending=True).tolist():
        total += probs[i].item()
        if total > p:
            break
        keep[i] = True
    return keep


def _ascending(probs, p):
    keep, total = torch.zeros_like(probs, dtype=torch.bool), 0.0
    for i in probs.argsort().tolist():
        if total >= p:
            break
        keep[i], total = True, total + probs[i].item()
    return keep


def _sorted_order(probs, p):
    sorted_probs, _ = probs.sort(descending=True)
    return sorted_probs.cumsum(-1) - sorted_probs < p


def _one_too_many(probs, p):
    sorted_probs, order = probs.sort(descending=True)
    n = min(int((sorted_probs.cumsum(-1) < p).sum()) + 2, probs.numel())
    keep = torch.zeros_like(probs, dtype=torch.bool)
    keep[order[:n]] = True
    return keep


def _strict_keeping_the_top(probs, p):  # excludes the crossing token, but always keeps the top
    keep = _strict(probs, p)
    keep[probs.argmax()] = True
    return keep


TOP_P_WRONG = {
    "cumsum including current (< p)": (lambda x, p: _mask_incl(x, p), "including the current"),
    "running total within p (strict)": (_strict, "including the current token"),
    "excludes crossing, keeps top": (_strict_keeping_the_top, "One token short"),
    "sorted ascending": (_ascending, "sorted ascending"),
    "mask in sorted order": (_sorted_order, "in sorted order"),
    "one token too many": (_one_too_many, "One token too many"),
    "returns renormalised probs": (lambda x, p: x * top_p_keep(x, p) / (x * top_p_keep(x, p)).sum(),
                                   "boolean tensor"),
    "returns 0/1 ints": (lambda x, p: top_p_keep(x, p).long(), "boolean tensor"),
    "returns kept indices": (lambda x, p: top_p_keep(x, p).nonzero().flatten(),
                             "one boolean per token"),
}


def _mask_incl(probs, p):
    sorted_probs, order = probs.sort(descending=True)
    keep_sorted = sorted_probs.cumsum(-1) < p
    return keep_sorted.scatter(-1, order, keep_sorted)


@pytest.mark.parametrize("right", TOP_P_RIGHT)
def test_right_nuclei_pass(right, capsys):
    checks.check_top_p_keep(right)
    assert "Task 3 (top_p_keep) passed: the nucleus of [0.5, 0.3, 0.2]" in capsys.readouterr().out


@pytest.mark.parametrize("name", TOP_P_WRONG)
def test_wrong_nuclei_fail_with_the_mistake_named(name):
    wrong, words = TOP_P_WRONG[name]
    with pytest.raises(AssertionError, match=words):
        checks.check_top_p_keep(wrong)


def test_top_p_cases_have_no_ties_and_no_boundary_totals():
    """Neither rounding nor the order of equal probabilities can decide the check."""
    for probs, p in gpt_checks._TOP_P_CASES:
        assert len(set(probs)) == len(probs) and abs(sum(probs) - 1) < 1e-9
        total = 0.0
        for q in sorted(probs, reverse=True)[:-1]:
            total += q
            assert abs(total - p) >= 0.01, (probs, p)
    # some case has its top token alone above top_p, some is unsorted, some drops a token
    cases = gpt_checks._TOP_P_CASES
    assert any(max(probs) > p for probs, p in cases)
    assert any(probs != sorted(probs, reverse=True) for probs, _ in cases)
    assert any(not bool(top_p_keep(torch.tensor(probs), p).all()) for probs, p in cases)


# --- all tasks -------------------------------------------------------------------------------


def stub(*_args):
    raise NotImplementedError


@pytest.mark.parametrize("check", [checks.check_count_params, checks.check_apply_temperature,
                                   checks.check_top_p_keep])
def test_stubs_are_not_done_yet_with_a_hint(check):
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        check(stub)
