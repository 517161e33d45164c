"""The chapter 11 exercise checks pass right answers and catch the usual mistakes."""

import pytest
import torch
import torch.nn.functional as F

from minigpt.course import checks

# ---- right answers ------------------------------------------------------------------------


def quantize_int8(w):
    amax = w.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def distillation_loss(student_logits, teacher_logits, temperature):
    V = student_logits.size(-1)
    log_ps = F.log_softmax(student_logits.reshape(-1, V) / temperature, dim=-1)
    log_pt = F.log_softmax(teacher_logits.reshape(-1, V) / temperature, dim=-1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(-1).mean() * temperature**2


def magnitude_mask(w, sparsity):
    k = round(sparsity * w.numel())
    keep = torch.ones(w.numel(), dtype=torch.bool)
    keep[w.abs().flatten().argsort()[:k]] = False
    return keep.view(w.shape)


def stub(*_args):
    raise NotImplementedError


def test_right_answers_pass(capsys):
    checks.check_quantize_int8(quantize_int8)
    checks.check_distillation_loss(distillation_loss)
    checks.check_magnitude_mask(magnitude_mask)
    out = capsys.readouterr().out
    assert out.count("passed") == 3
    assert "[50, -127, 30]" in out and "= 0.5232 nats" in out


def test_other_right_answers_pass_too():
    """F.kl_div with batchmean, a threshold-based mask, a loop over rows."""
    def kd(s, t, T):
        V = s.size(-1)
        return F.kl_div(F.log_softmax(s.reshape(-1, V) / T, -1), F.softmax(t.reshape(-1, V) / T, -1),
                        reduction="batchmean") * T * T

    def by_rows(w):
        qs, scales = [], []
        for row in w:
            m = row.abs().max()
            s = m / 127 if m > 0 else torch.tensor(1.0)
            qs.append(torch.round(row / s).to(torch.int8))
            scales.append(s)
        return torch.stack(qs), torch.stack(scales)

    checks.check_quantize_int8(by_rows)
    checks.check_distillation_loss(kd)
    checks.check_distillation_loss(lambda s, t, T: kd(s, t.detach(), T))


ALL = [checks.check_quantize_int8, checks.check_distillation_loss, checks.check_magnitude_mask]


@pytest.mark.parametrize("check", ALL, ids=lambda c: c.__name__)
def test_stubs_are_not_done_yet_with_a_hint(check):
    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        check(stub)


# ---- task 1 -------------------------------------------------------------------------------


def _one_scale(w):
    scale = w.abs().max() / 127
    return torch.round(w / scale).to(torch.int8), scale.reshape(1)


def _no_zero_guard(w):
    scale = w.abs().amax(1) / 127
    return torch.round(w / scale[:, None]).nan_to_num().to(torch.int8), scale


def _steps(n):
    def quantize(w):
        amax = w.abs().amax(1)
        scale = torch.where(amax > 0, amax / n, torch.ones_like(amax))
        return torch.round(w / scale[:, None]).clamp(-128, 127).to(torch.int8), scale
    return quantize


def _truncate(w):
    _q, scale = quantize_int8(w)
    return (w / scale[:, None]).to(torch.int8), scale


@pytest.mark.parametrize("wrong, tip", [
    (_one_scale, "one scale for the whole matrix"),
    (_no_zero_guard, "row of zeros"),
    (_steps(128), "128 or 255"),
    (_steps(255), "128 or 255"),
    (_truncate, "truncated"),
    (lambda w: (quantize_int8(w)[0].float(), quantize_int8(w)[1]), "torch.int8"),
    (lambda w: (quantize_int8(w)[0].flatten(), quantize_int8(w)[1]), "shape"),
    (lambda w: quantize_int8(w)[0], "tuple"),
    (lambda w: (quantize_int8(w)[0], quantize_int8(w)[1] * 1.01), "should be"),
])
def test_quantize_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_quantize_int8(wrong)


# ---- task 2 -------------------------------------------------------------------------------


def _reverse(s, t, T):
    return distillation_loss(t, s, T)


@pytest.mark.parametrize("wrong, tip", [
    (lambda s, t, T: distillation_loss(s, t, T) / T**2, "left out the factor T\\^2"),
    (lambda s, t, T: distillation_loss(s, t, T) / T**4, "divided by T\\^2"),
    (_reverse, "KL\\(student \\|\\| teacher\\)"),
    (lambda s, t, T: distillation_loss(s, t, T) * s.reshape(-1, s.size(-1)).size(0), "summed"),
    (lambda s, t, T: distillation_loss(s * T, t, T), "only the teacher"),
    (lambda s, t, T: distillation_loss(s, t * T, T), "only the student"),
    (lambda s, t, T: torch.tensor(distillation_loss(s, t, T).item()), "no gradient"),
    (lambda s, t, T: distillation_loss(s, t, T).item(), "scalar tensor"),
    (lambda s, t, T: F.cross_entropy(s.reshape(-1, s.size(-1)), t.reshape(-1, t.size(-1)).argmax(-1)),
     "expected"),
])
def test_distillation_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_distillation_loss(wrong)


# ---- task 3 -------------------------------------------------------------------------------


def _signed(w, sparsity):
    k = round(sparsity * w.numel())
    keep = torch.ones(w.numel(), dtype=torch.bool)
    keep[w.flatten().argsort()[:k]] = False
    return keep.view(w.shape)


def _per_row(w, sparsity):
    return torch.stack([magnitude_mask(row[None], sparsity)[0] for row in w])


@pytest.mark.parametrize("wrong, tip", [
    (_signed, "most negative"),
    (_per_row, "not row by row"),
    (lambda w, s: ~magnitude_mask(w, s), "wrong way round"),
    (lambda w, s: magnitude_mask(w, s).float(), "torch.bool"),
    (lambda w, s: magnitude_mask(w, s).flatten(), "shape"),
    (lambda w, s: magnitude_mask(w, min(s + 0.1, 0.95)), "weights are False"),
])
def test_mask_mistakes_are_explained(wrong, tip):
    with pytest.raises(AssertionError, match=tip):
        checks.check_magnitude_mask(wrong)
