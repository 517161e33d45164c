"""Tests for minigpt.train.checkpoint: what a checkpoint holds, atomic saves, the random state it
carries, keys that do not fit, and files that cannot be used (empty, not torch, pickled objects,
truncated, changed since saved). The checkpoints come from Trainers of the tiny models of
tests/tiny_training.py.
"""

import numpy as np
import pytest
import torch
from tiny_training import Bigram, config, make_get_batch, periodic_stream, random_stream, spoil
from torch import nn

from minigpt.train.checkpoint import (
    CheckpointMismatchError,
    UnreadableCheckpointError,
    get_rng_state,
    load_checkpoint,
    set_rng_state,
    tensors_sha256,
)
from minigpt.train.trainer import Trainer

# ---- what a checkpoint holds, keys that do not fit, atomic saves, random state -------------


def test_checkpoint_loads_with_weights_only_and_holds_everything(tmp_path):
    path = tmp_path / "sub" / "run.pt"
    cfg = config(max_steps=4, checkpoint_path=str(path))
    Trainer(Bigram(), make_get_batch(random_stream()), cfg).fit()
    checkpoint = torch.load(path, weights_only=True)
    assert {"model", "optimizer", "scaler", "step", "config", "history", "rng"} <= set(checkpoint)
    assert checkpoint["step"] == 4 and checkpoint["config"]["max_steps"] == 4
    assert checkpoint["history"]["step"] == [0, 1, 2, 3]
    assert not list(path.parent.glob("*.tmp"))


def test_a_checkpoint_of_another_model_names_the_mismatched_keys(tmp_path):
    path = tmp_path / "run.pt"
    Trainer(Bigram(vocab=8), make_get_batch(random_stream()), config()).save(path)

    class Deeper(Bigram):
        def __init__(self):
            super().__init__(vocab=9)
            self.extra = nn.Linear(16, 16)

    with pytest.raises(CheckpointMismatchError) as raised:
        Trainer(Deeper(), make_get_batch(random_stream()), config()).resume(path)
    message = str(raised.value)
    assert str(path) in message
    assert "emb.weight (checkpoint (8, 16), model (9, 16))" in message
    assert "missing from the checkpoint: extra.bias, extra.weight" in message
    assert "from scratch" in message


def test_a_file_that_is_not_a_trainer_checkpoint_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(Bigram().state_dict(), path)
    with pytest.raises(ValueError, match="not a checkpoint written by"):
        load_checkpoint(path)


def test_an_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    trainer = Trainer(Bigram(), make_get_batch(random_stream()), config(max_steps=4))
    trainer.fit(steps=2)
    trainer.save(path)
    trainer.fit()

    def save_half_then_fail(obj, f):
        with open(f, "wb") as file:
            file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        trainer.save(path)
    assert load_checkpoint(path)["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(1)
    np.random.seed(1)
    np.random.normal()  # leaves a cached Gaussian in NumPy's state
    torch.save(get_rng_state(generator), tmp_path / "rng.pt")

    def draw():
        import random

        return (random.random(), np.random.normal(), torch.rand(2).tolist(),
                torch.rand(2, generator=generator).tolist())

    first = draw()
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True), generator)
    assert draw() == first


# ---- unreadable, corrupt and old checkpoint files ------------------------------------------


SPOILED = {
    "empty": r"is empty \(0 bytes\), not a minigpt checkpoint",
    "text": r"is not a torch file \(it starts with b'hell'",
    "pickled object": (r"holds pickled Python objects \(such as argparse.Namespace\).*never "
                       "loads pickled code"),
    "plain pickle": "is a plain pickle file, not a minigpt checkpoint",
    "truncated": "is truncated or corrupt",
    "cut in half": "is truncated or corrupt",
    "64 bytes zeroed": "has changed since it was saved: the checksum of its tensors does not match",
}


@pytest.mark.parametrize("how", SPOILED)
def test_an_unusable_checkpoint_file_is_a_clear_error(tmp_path, how):
    path = tmp_path / "run.pt"
    trainer = Trainer(Bigram(width=32), make_get_batch(random_stream()), config(max_steps=2))
    trainer.fit()
    trainer.save(path)
    spoil(path, how)
    with pytest.raises(UnreadableCheckpointError, match=SPOILED[how]) as raised:
        load_checkpoint(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(UnreadableCheckpointError, match=SPOILED[how]):
        Trainer(Bigram(width=32), make_get_batch(random_stream()), config()).resume(path)


def test_checkpoints_carry_a_checksum_and_old_ones_without_it_still_load(tmp_path):
    path = tmp_path / "run.pt"
    trainer = Trainer(Bigram(), make_get_batch(periodic_stream()), config(max_steps=3))
    trainer.fit()
    trainer.save(path)
    checkpoint = torch.load(path, weights_only=True)
    assert len(checkpoint["tensors_sha256"]) == 64
    # A checkpoint written before the checksum existed: no key, loaded without the check.
    del checkpoint["tensors_sha256"]
    torch.save(checkpoint, path)
    assert "tensors_sha256" not in load_checkpoint(path)
    resumed = Trainer.load(path, Bigram(), make_get_batch(periodic_stream()), max_steps=5)
    assert resumed.step == 3
    resumed.fit()
    assert resumed.step == 5


def test_tensors_sha256_covers_bytes_dtypes_shapes_and_places_in_any_key_order():
    a, b = torch.arange(6.0), torch.ones(2)
    digest = tensors_sha256({"a": a, "b": [b, 1]})
    assert digest == tensors_sha256({"b": [b.clone(), 2], "a": a.clone()})  # plain values: not
    for other in ({"a": a.reshape(2, 3), "b": [b]}, {"a": a.double(), "b": [b]},
                  {"b": a, "a": [b]}, {"a": a.clone().index_fill_(0, torch.tensor([5]), 0),
                                       "b": [b]}):
        assert tensors_sha256(other) != digest
