"""A chapter's asserted claims: the profile picks the threshold, a miss raises with what was
measured and needed, every check is logged for scripts/claim_margins.py, and the seed offset
that script uses really moves the seeds."""

import json
import math

import pytest
import torch

import minigpt
from minigpt.core import runtime
from minigpt.course import claims


@pytest.mark.parametrize("profile, passes", [("ci", True), ("cpu", False), ("gpu", False)])
def test_the_profile_picks_the_threshold(monkeypatch, profile, passes):
    monkeypatch.setenv("MINIGPT_PROFILE", profile)
    shown = claims.Claims("04")
    check = lambda: shown.at_least("recall accuracy", 0.5, cpu=0.9, ci=0.2, fmt="{:.0%}")  # noqa: E731
    if passes:
        check()
        assert shown.checked[0].threshold == 0.2 and shown.checked[0].measured == 0.5
    else:
        with pytest.raises(AssertionError, match=r"recall accuracy\. Measured 50%.*needs >= 90%"):
            check()


def test_gpu_threshold_can_differ(monkeypatch):
    monkeypatch.setenv("MINIGPT_PROFILE", "gpu")
    shown = claims.Claims("06")
    shown.at_most("bpb", 1.9, cpu=2.1, ci=4.0, gpu=1.95)
    assert shown.checked[0].threshold == 1.95


@pytest.mark.parametrize("measured", [2.2, math.nan])
def test_at_most_refuses_a_miss_and_nan(monkeypatch, measured):
    monkeypatch.setenv("MINIGPT_PROFILE", "cpu")
    with pytest.raises(AssertionError, match="not shown: GPT beats the n-gram"):
        claims.Claims("06").at_most("GPT beats the n-gram", measured, cpu=2.0, ci=4.0)


def test_every_check_is_logged_and_record_only_does_not_raise(monkeypatch, tmp_path):
    out = tmp_path / "claims.jsonl"
    monkeypatch.setenv("MINIGPT_PROFILE", "cpu")
    monkeypatch.setenv(claims.OUT_ENV, str(out))
    shown = claims.Claims("03")
    shown.at_least("a", 1.0, cpu=0.5, ci=0.0)
    with pytest.raises(AssertionError):
        shown.at_least("b", 0.1, cpu=0.5, ci=0.0)
    monkeypatch.setenv(claims.RECORD_ONLY_ENV, "1")
    shown.at_least("c", 0.2, cpu=0.5, ci=0.0)
    logged = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(c["text"], c["measured"], c["threshold"]) for c in logged] == [("a", 1.0, 0.5), ("b", 0.1, 0.5), ("c", 0.2, 0.5)]


def test_the_table_lists_what_was_checked(monkeypatch):
    monkeypatch.setenv("MINIGPT_PROFILE", "cpu")
    shown = claims.Claims("07")
    shown.at_least("fit exponent", 0.0712, cpu=0.05, ci=0.0, fmt="{:.3f}")
    shown.at_least("fit exponent", 0.0713, cpu=0.05, ci=0.0, fmt="{:.3f}")  # a re-run cell replaces its row
    table = shown._repr_markdown_()
    assert "| fit exponent | 0.071 | >= 0.050 |" in table and table.count("fit exponent") == 1
    assert "cpu profile" in table and "fit exponent" in repr(shown)


def test_seed_offset_moves_every_seed(monkeypatch):
    assert minigpt.seed_everything(3) == 3
    plain = torch.rand(3)
    monkeypatch.setenv(runtime.SEED_OFFSET_ENV, "2")
    assert minigpt.seed_everything(1) == 3
    assert torch.equal(torch.rand(3), plain)
    monkeypatch.setenv(runtime.SEED_OFFSET_ENV, "two")
    with pytest.raises(ValueError, match="MINIGPT_SEED_OFFSET='two': must be a whole number"):
        minigpt.seed_everything(0)
