"""Tests for minigpt.train.cache: cached_model trains once per recipe and then loads, and
load_or_build rebuilds a file that is damaged, of another format or of another shape, saying
why, and still loads files written before checksums.
"""

import pytest
import torch
from tiny_training import spoil
from torch import nn

from minigpt.core.io import recipe_key
from minigpt.train.cache import MODEL_CACHE_FORMAT, cached_model, load_or_build, save_model_file

# ---- cached_model ---------------------------------------------------------------------------


def test_cached_model_builds_once_then_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path))
    builds = []

    def build():
        builds.append(1)
        torch.manual_seed(len(builds))
        return nn.Linear(3, 2)

    first = cached_model("lin", {"steps": 1}, build, lambda: nn.Linear(3, 2))
    again = cached_model("lin", {"steps": 1}, build, lambda: nn.Linear(3, 2))
    assert len(builds) == 1 and not again.training
    assert torch.equal(first.weight, again.weight)
    other = cached_model("lin", {"steps": 2}, build, lambda: nn.Linear(3, 2))  # another recipe
    assert len(builds) == 2 and not torch.equal(first.weight, other.weight)
    assert recipe_key({"a": 1, "b": 2}) == recipe_key({"b": 2, "a": 1}) != recipe_key({"a": 2, "b": 2})
    # A corrupt file is rebuilt, saying why.
    path = tmp_path / "models" / f"lin-{recipe_key({'steps': 1})}.pt"
    path.write_bytes(b"not a checkpoint")
    cached_model("lin", {"steps": 1}, build, lambda: nn.Linear(3, 2))
    assert len(builds) == 3 and "Ignoring the cached lin model" in capsys.readouterr().out
    # A file that does not fit the model is rebuilt too.
    cached_model("lin", {"steps": 1}, build, lambda: nn.Linear(4, 2))
    assert len(builds) == 4


def test_load_or_build_rebuilds_a_file_of_another_format(tmp_path, capsys):
    path = save_model_file(tmp_path / "m.pt", nn.Linear(3, 2), fmt="someone.else/1")
    assert torch.load(path, weights_only=True)["format"] == "someone.else/1"
    built = []
    model = load_or_build(path, lambda: built.append(1) or nn.Linear(3, 2), lambda: nn.Linear(3, 2),
                          label="lin", fmt="minigpt.model_cache/1", note="kept")
    assert built == [1] and not model.training
    assert "not a minigpt.model_cache/1 file" in capsys.readouterr().out
    saved = torch.load(path, weights_only=True)  # rewritten in the asked format, with the extra fields
    assert saved["format"] == "minigpt.model_cache/1" and saved["note"] == "kept"
    again = load_or_build(path, lambda: built.append(2) or nn.Linear(3, 2), lambda: nn.Linear(3, 2),
                          label="lin", fmt="minigpt.model_cache/1")
    assert built == [1] and torch.equal(again.weight, model.weight)


# ---- load_or_build and damaged cache files --------------------------------------------------


@pytest.mark.parametrize("how", ["truncated", "cut in half", "64 bytes zeroed", "empty"])
def test_load_or_build_rebuilds_a_damaged_file_saying_why(tmp_path, capsys, how):
    path = save_model_file(tmp_path / "m.pt", nn.Linear(64, 64))
    spoil(path, how)
    built = []
    model = load_or_build(path, lambda: built.append(1) or nn.Linear(64, 64),
                          lambda: nn.Linear(64, 64), label="lin")
    assert built == [1] and not model.training
    said = capsys.readouterr().out
    assert "Ignoring the cached lin model (UnreadableCheckpointError: m.pt " in said
    assert "training it again" in said
    again = load_or_build(path, lambda: built.append(2) or nn.Linear(64, 64),
                          lambda: nn.Linear(64, 64), label="lin")
    assert built == [1] and torch.equal(again.weight, model.weight)  # the rebuilt file is good


def test_load_or_build_loads_a_cache_file_written_before_checksums(tmp_path, capsys):
    path = tmp_path / "m.pt"
    saved = nn.Linear(3, 2)
    torch.save({"format": MODEL_CACHE_FORMAT, "recipe": {"steps": 1}, "model": saved.state_dict()},
               path)  # what save_model_file wrote before it stored a checksum
    model = load_or_build(path, lambda: pytest.fail("rebuilt an old file"), lambda: nn.Linear(3, 2),
                          label="lin")
    assert torch.equal(model.weight, saved.weight) and capsys.readouterr().out == ""
