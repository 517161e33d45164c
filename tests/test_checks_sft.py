"""The chapter 08 exercise checks pass right answers and catch the usual mistakes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minigpt.course import checks
from minigpt.models.gpt import GPT

# ---- right answers ------------------------------------------------------------------------


def answer_mask(ids, assistant_id, end_id):
    mask, inside = [], False
    for token in ids:
        if inside:
            mask.append(True)
            inside = token != end_id
        else:
            mask.append(False)
            inside = token == assistant_id
    return mask


def masked_loss(logits, targets, mask):
    return F.cross_entropy(logits[mask], targets[mask])


def lora_forward(x, W, b, A, B, alpha, r):
    return x @ W.T + b + (alpha / r) * (x @ A.T @ B.T)


def lora_param_count(d_in, d_out, r):
    return r * (d_in + d_out)


def lora_share(cfg, r):
    C = cfg.n_embd
    adapters = cfg.n_layer * (lora_param_count(C, 3 * C, r) + lora_param_count(C, C, r)
                              + lora_param_count(C, 4 * C, r) + lora_param_count(4 * C, C, r))
    with torch.device("meta"):
        base = GPT(cfg).num_params()
    return adapters / (base + adapters)


def stub(*_args):
    raise NotImplementedError


def test_right_answers_pass(capsys):
    checks.check_answer_mask(answer_mask)
    checks.check_masked_loss(masked_loss)
    checks.check_lora_forward(lora_forward)
    checks.check_lora_param_count(lora_param_count)
    checks.check_lora_share(lora_share)
    out = capsys.readouterr().out
    assert out.count("passed") == 5
    assert "32,768 of 855,296 parameters (3.8%)" in out


def test_other_right_answers_pass_too():
    """A NumPy array or a tensor of bools, per-token losses averaged by hand, F.linear."""
    checks.check_answer_mask(lambda ids, a, e: np.array(answer_mask(ids, a, e), dtype=bool))
    checks.check_answer_mask(lambda ids, a, e: torch.tensor(answer_mask(ids, a, e), dtype=torch.bool))

    def by_hand(logits, targets, mask):
        per_token = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        return (per_token * mask).sum() / mask.sum()

    checks.check_masked_loss(by_hand)
    checks.check_lora_forward(
        lambda x, W, b, A, B, alpha, r: F.linear(x, W, b) + F.linear(x, B @ A) * alpha / r)


ALL = [checks.check_answer_mask, checks.check_masked_loss, checks.check_lora_forward,
       checks.check_lora_param_count, checks.check_lora_share]


@pytest.mark.parametrize("check", ALL, ids=lambda c: c.__name__)
def test_stubs_are_not_done_yet_with_a_hint(check):
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        check(stub)


# ---- task 1: the mask ---------------------------------------------------------------------


def _without_end(ids, a, e):
    return [m and t != e for m, t in zip(answer_mask(ids, a, e), ids)]


def _with_marker(ids, a, e):
    return [m or t == a for m, t in zip(answer_mask(ids, a, e), ids)]


def _first_answer_only(ids, a, e):
    mask, seen_end = answer_mask(ids, a, e), False
    for i, t in enumerate(ids):
        if seen_end:
            mask[i] = False
        if mask[i] and t == e:
            seen_end = True
    return mask


def _every_end(ids, a, e):
    return [m or t == e for m, t in zip(answer_mask(ids, a, e), ids)]


def _needs_an_end(ids, a, e):
    """Marks an answer only once its end token is found: cut-off answers stay False."""
    mask = [False] * len(ids)
    for i, t in enumerate(ids):
        if t == a and e in ids[i + 1:]:
            j = ids.index(e, i + 1)
            mask[i + 1 : j + 1] = [True] * (j - i)
    return mask


def _never_stops(ids, a, e):
    mask, inside = [], False
    for t in ids:
        mask.append(inside)
        inside = inside or t == a
    return mask


@pytest.mark.parametrize("wrong, tip", [
    (_without_end, "how the model learns to stop"),
    (_with_marker, "marker itself is not part of the answer"),
    (_first_answer_only, "several assistant turns"),
    (_every_end, "closes user and system turns too"),
    (_needs_an_end, "cut off before its end token"),
    (_never_stops, "Outside the answers"),
    (lambda ids, a, e: answer_mask(ids, 3, 4), "assistant_id=0, end_id=9"),  # hard-coded ids
    (lambda ids, a, e: answer_mask(ids, a, e) + [False], "one bool per token"),
    (lambda ids, a, e: "yes", "list of bools"),
])
def test_answer_mask_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_answer_mask(wrong)


def test_answer_mask_message_points_at_the_first_wrong_position():
    with pytest.raises(AssertionError) as error:
        checks.check_answer_mask(_without_end)
    message = str(error.value)
    assert "one question, one answer" in message
    assert "[<|user|> 21 22 <|end|> <|assistant|> 23 24 <|end|>]" in message
    assert "[0 0 0 0 0 1 1 1]" in message and "[0 0 0 0 0 1 1 0]" in message
    assert "position 7 (token <|end|>): expected True, got False" in message


def test_the_cases_masks_are_what_the_solution_computes():
    """The written-out masks agree with an independent solution (and so with each other)."""
    from minigpt.course.checks.sft import MASK_CASES

    for _what, ids, a, e, want, _names in MASK_CASES:
        assert answer_mask(ids, a, e) == want


# ---- task 2: the masked loss --------------------------------------------------------------


def _per_token(logits, targets):
    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")


@pytest.mark.parametrize("wrong, tip", [
    (lambda lg, tg, m: F.cross_entropy(lg.flatten(0, 1), tg.flatten()), "every position"),
    (lambda lg, tg, m: (_per_token(lg, tg) * m).sum(), "summed the masked losses"),
    (lambda lg, tg, m: (_per_token(lg, tg) * m).sum() / m.numel(), "divided by every position"),
    (lambda lg, tg, m: masked_loss(lg, tg, ~m), "wrong way round"),
    (lambda lg, tg, m: ((_per_token(lg, tg) * m).sum(1) / m.sum(1)).mean(), "each row"),
    (lambda lg, tg, m: torch.tensor(masked_loss(lg, tg, m).item()), "no gradient"),
    (lambda lg, tg, m: masked_loss(lg, tg, m).item(), "scalar tensor"),
    (lambda lg, tg, m: _per_token(lg, tg) * m, "scalar tensor"),
])
def test_masked_loss_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_masked_loss(wrong)


def test_masked_loss_hand_values():
    logits = torch.tensor([[[np.log(3.0), 0.0], [0.0, 0.0]]])
    targets = torch.tensor([[0, 1]])
    assert masked_loss(logits, targets, torch.tensor([[True, False]])).item() == pytest.approx(0.287682, abs=1e-6)
    assert masked_loss(logits, targets, torch.tensor([[False, True]])).item() == pytest.approx(0.693147, abs=1e-6)


# ---- task 3: the LoRA layer ---------------------------------------------------------------


@pytest.mark.parametrize("wrong, tip", [
    (lambda x, W, b, A, B, alpha, r: x @ W.T + b + x @ A.T @ B.T, "not scaled"),
    (lambda x, W, b, A, B, alpha, r: x @ W.T + b + (r / alpha) * (x @ A.T @ B.T), "Upside down"),
    (lambda x, W, b, A, B, alpha, r: x @ W.T + b + alpha * (x @ A.T @ B.T), "alpha alone"),
    (lambda x, W, b, A, B, alpha, r: x @ W.T + b + (x @ A.T @ B.T) / r, "left out alpha"),
    (lambda x, W, b, A, B, alpha, r: x @ W.T + (alpha / r) * (x @ A.T @ B.T), "bias b"),
    (lambda x, W, b, A, B, alpha, r: x @ W + b + (alpha / r) * (x @ A @ B), "raised"),
    (lambda x, W, b, A, B, alpha, r: x @ W.T + b + 1.0, "plain linear layer"),
    (lambda x, W, b, A, B, alpha, r: (x @ W.T + b)[..., :3], "shape \\(2, 4, 10\\)"),
])
def test_lora_forward_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_lora_forward(wrong)


# ---- task 4: counting ---------------------------------------------------------------------


@pytest.mark.parametrize("wrong, tip", [
    (lambda d_in, d_out, r: d_in * d_out, "frozen matrix W"),
    (lambda d_in, d_out, r: r * d_in * d_out, "do not multiply"),
    (lambda d_in, d_out, r: r * d_in, "A alone"),
    (lambda d_in, d_out, r: r * d_out, "B alone"),
    (lambda d_in, d_out, r: r * (d_in + d_out) + d_out, "no bias"),
])
def test_lora_param_count_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_lora_param_count(wrong)


def _share_parts(cfg, r):
    """(adapters, base parameters) of GPT(cfg) with adapters on attention and MLP: a block's
    four layers have r (4C + 2C + 5C + 5C) adapter weights."""
    with torch.device("meta"):
        base = GPT(cfg).num_params()
    return cfg.n_layer * r * 16 * cfg.n_embd, base


def _head_counted_twice(cfg, r):
    adapters, base = _share_parts(cfg, r)
    return adapters / (base + cfg.vocab_size * cfg.n_embd + adapters)


@pytest.mark.parametrize("wrong, tip", [
    (lambda cfg, r: _share_parts(cfg, r)[0] / _share_parts(cfg, r)[1], "adapters included"),
    (lambda cfg, r: 100 * lora_share(cfg, r), "not a percentage"),
    (lambda cfg, r: _share_parts(cfg, r)[0], "number of adapter parameters"),
    (lambda cfg, r: (a := cfg.n_layer * r * 6 * cfg.n_embd) / (_share_parts(cfg, r)[1] + a),
     "MLP's two linear layers"),
    (_head_counted_twice, "tied to the token embedding"),
])
def test_lora_share_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_lora_share(wrong)
