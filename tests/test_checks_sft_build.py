"""The chapter 08 build task's check (the SFT loss of a batch of chats) passes right answers
written three ways and catches the usual mistakes, naming each one."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from minigpt.course import checks
from minigpt.course.checks import sft_build
from minigpt.methods.sft import answer_mask, sft_loss

# ---- right answers written differently --------------------------------------------------------


def sft_batch_loss(model, rows, pad_id, *, slip=None):
    """The solution's way: a padded tensor filled row by row, the mean over the kept targets.
    ``slip`` plants one of the mistakes a learner makes (for the wrong answers below)."""
    T = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.bool)
    for r, (row_ids, row_mask) in enumerate(rows):
        n = len(row_ids)
        at = slice(T - n, T) if slip == "left pad" else slice(0, n)
        ids[r, at] = torch.tensor(row_ids)
        mask[r, at] = torch.tensor(row_mask)
        if slip == "mask padded with True":
            mask[r, n:] = True
        if slip == "every real target":
            mask[r, :n] = True
    if slip == "mask from padded ids":
        mask = torch.tensor([answer_mask(row, sft_build.ASSISTANT, sft_build.END)
                             for row in ids.tolist()])
    if slip == "no mask":
        mask[:] = True
    x, y = ids[:, :-1], ids[:, 1:]
    mask = mask[:, :-1] if slip == "mask on the inputs" else mask[:, 1:]
    logits, _ = model(x)
    if slip == "ignore_index=pad_id":
        return F.cross_entropy(logits.flatten(0, 1), y.masked_fill(~mask, pad_id).flatten(),
                               ignore_index=pad_id)
    per_token = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    per_token = per_token.view(y.shape)
    if slip == "row means":
        return torch.stack([per_token[r][mask[r]].mean() for r in range(len(rows))]).mean()
    if slip == ".item()":
        return torch.tensor(per_token[mask].mean().item())
    return per_token[mask].mean()


def sft_batch_loss_vectorised(model, rows, pad_id):
    """Right, written differently: pad_sequence, and targets outside the answers set to -100."""
    ids = pad_sequence([torch.tensor(i) for i, _ in rows], batch_first=True, padding_value=pad_id)
    mask = pad_sequence([torch.tensor(m) for _, m in rows], batch_first=True, padding_value=False)
    targets = ids[:, 1:].masked_fill(~mask[:, 1:], -100)
    logits = model(ids[:, :-1])[0]
    return F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100)


def sft_batch_loss_row_by_row(model, rows, pad_id):
    """Right, written differently: no padding at all, each chat through the model alone, the
    losses summed and divided by the number of answer tokens of the whole batch."""
    total, count = 0.0, 0
    for ids, mask in rows:
        logits, _ = model(torch.tensor([ids[:-1]]))
        keep = torch.tensor(mask[1:])
        total = total + F.cross_entropy(logits[0][keep], torch.tensor(ids[1:])[keep],
                                        reduction="sum")
        count += int(keep.sum())
    return total / count


@pytest.mark.parametrize("right", [sft_batch_loss, sft_batch_loss_vectorised,
                                   sft_batch_loss_row_by_row])
def test_right_answers_written_differently_pass(right, capsys):
    checks.check_sft_batch_loss(right)
    assert "Task 5 (sft_batch_loss) passed" in capsys.readouterr().out


def test_stub_is_not_done_yet_with_a_hint():
    def stub(model, rows, pad_id):
        raise NotImplementedError

    with pytest.raises(checks.NotDoneYet, match="Hint:"):
        checks.check_sft_batch_loss(stub)


def test_the_reference_is_the_package_and_right_answers_agree_far_inside_the_tolerance():
    """Each case's batch from sft_batches holds each row once, and the right answers agree with
    sft_loss on it to 1e-12 (the check allows 1e-6)."""
    model = sft_build.make_model(sft_build._SIZES, seed=8)
    for _what, rows, pad_id in sft_build.sft_build_cases():
        x, y, mask = sft_build._package_batch(rows, pad_id, model.cfg.block_size)
        assert x.size(0) == len(rows) and int(mask.sum()) == sum(sum(m[1:]) for _, m in rows)
        want = sft_loss(model, (x, y, mask)).item()
        for right in (sft_batch_loss, sft_batch_loss_vectorised, sft_batch_loss_row_by_row):
            assert math.isclose(right(model, rows, pad_id).item(), want, rel_tol=1e-12)


def test_every_slip_is_far_outside_the_tolerance_on_some_case():
    """Each slip the check names moves the loss by more than 0.1% (1000 times the check's
    tolerance) on at least one batch, so no slip passes by luck; the pad-is-end case is the
    last."""
    model = sft_build.make_model(sft_build._SIZES, seed=8)
    cases = sft_build.sft_build_cases()
    for slip in sft_build._SLIPS:
        gaps = []
        for _what, rows, pad_id in cases:
            right = sft_build.slipped_loss(model, rows, pad_id).item()
            gaps.append(abs(sft_build.slipped_loss(model, rows, pad_id, slip).item() / right - 1))
        assert max(gaps) > 1e-3, (slip, gaps)
    assert cases[-1][2] == sft_build.END and cases[1][2] != sft_build.END


# ---- wrong answers ------------------------------------------------------------------------------


def _slipped(slip):
    return lambda model, rows, pad_id: sft_batch_loss(model, rows, pad_id, slip=slip)


WRONG = {
    "mask not moved to the targets": (_slipped("mask on the inputs"), "mask stayed on the inputs"),
    "padding counted": (_slipped("mask padded with True"), "padding counts in your loss"),
    "prompt counted": (_slipped("every real target"), "prompt counts in your loss"),
    "no mask at all": (_slipped("no mask"), "averaged over every position"),
    "mean of per-row means": (_slipped("row means"), "averaged each row, then the rows"),
    "pad id ignored, so end tokens dropped": (_slipped("ignore_index=pad_id"),
                                              "drops the <\\|end\\|> that closes each answer"),
    "mask recomputed on the padded ids": (_slipped("mask from padded ids"),
                                          "computed the mask again from the padded ids"),
    "left padding": (_slipped("left pad"), "padded on the left"),
    "a float without gradient": (_slipped(".item()"), "carries no gradient"),
    "a per-token tensor": (lambda m, r, p: F.cross_entropy(
        m(torch.tensor([r[0][0][:-1]]))[0][0], torch.tensor(r[0][0][1:]), reduction="none"),
        "scalar tensor"),
    "nothing returned": (lambda m, r, p: None, "scalar tensor"),
    "rows of different lengths in one tensor": (
        lambda m, r, p: m(torch.tensor([ids for ids, _ in r]))[0].mean(), "raised ValueError"),
}


@pytest.mark.parametrize("name", WRONG)
def test_mistakes_are_caught_with_their_tip(name):
    wrong, words = WRONG[name]
    with pytest.raises(AssertionError, match=words) as info:
        checks.check_sft_batch_loss(wrong)
    assert "Hint:" in str(info.value)
