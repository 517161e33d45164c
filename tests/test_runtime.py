import random

import numpy as np
import pytest
import torch

import minigpt
from minigpt.core.runtime import evaluating


@pytest.mark.parametrize("name", ["ci", "cpu", "gpu", " CPU "])
def test_profile_reads_the_environment(monkeypatch, name):
    monkeypatch.setenv("MINIGPT_PROFILE", name)
    assert minigpt.profile() == name.strip().lower()


def test_profile_unset_follows_cuda(monkeypatch):
    monkeypatch.delenv("MINIGPT_PROFILE", raising=False)
    assert minigpt.profile() == ("gpu" if torch.cuda.is_available() else "cpu")


def test_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MINIGPT_PROFILE", "laptop")
    with pytest.raises(ValueError, match=r"'laptop' is not a profile.*ci, cpu, gpu"):
        minigpt.profile()


def test_by_profile_picks_the_active_value(monkeypatch):
    monkeypatch.setenv("MINIGPT_PROFILE", "cpu")
    assert minigpt.by_profile(ci=1, cpu=2, gpu=3) == 2


def test_device_prefers_cuda():
    expected = "cuda" if torch.cuda.is_available() else None
    dev = minigpt.device()
    assert isinstance(dev, torch.device)
    if expected:
        assert dev.type == expected
    else:
        assert dev.type in ("mps", "cpu")


def test_seed_everything_makes_all_generators_repeat():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    minigpt.seed_everything(123)
    first = draw()
    minigpt.seed_everything(123)
    assert draw() == first
    minigpt.seed_everything(124)
    assert draw() != first


def test_cache_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "c"))
    assert minigpt.cache_dir() == tmp_path / "c"
    assert (tmp_path / "c").is_dir()


# ---- evaluating -----------------------------------------------------------------------------


def test_evaluating_restores_train_mode_even_after_an_exception():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    with evaluating(model):
        assert not model.training and not model[1].training
    assert model.training and model[1].training
    with pytest.raises(RuntimeError, match="boom"), evaluating(model):
        assert not model.training
        raise RuntimeError("boom")
    assert model.training and model[1].training


def test_evaluating_leaves_an_eval_model_in_eval_mode_and_grad_mode_alone():
    model = torch.nn.Linear(2, 2).eval()
    with evaluating(model):
        assert not model.training and torch.is_grad_enabled()
        with torch.no_grad(), evaluating(model):  # nested: still eval after
            assert not torch.is_grad_enabled()
        assert not model.training
    assert not model.training and torch.is_grad_enabled()


def test_evaluating_handles_several_models():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).eval()
    with pytest.raises(KeyError), evaluating(a, b):
        assert not a.training and not b.training
        raise KeyError("x")
    assert a.training and not b.training
