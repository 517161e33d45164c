"""Helpers shared by test_train.py, test_checkpoint.py and test_model_cache.py: a tiny model
that follows the course's contract (``forward(x, y) -> (logits, loss)``), token streams, batches
drawn from them, a quick TrainConfig, and the ways a saved file gets spoiled."""

import argparse
import pickle
import struct
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from minigpt.train.config import TrainConfig

VOCAB = 8


class Bigram(nn.Module):
    """Embedding -> LayerNorm -> dropout -> linear: predicts the next token from this one."""

    def __init__(self, vocab: int = VOCAB, width: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, vocab)

    def forward(self, x, y=None):
        logits = self.head(self.drop(self.norm(self.emb(x))))  # (B, T, vocab)
        loss = None if y is None else F.cross_entropy(logits.flatten(0, 1), y.flatten())
        return logits, loss


def periodic_stream(n: int = 2000) -> torch.Tensor:
    """0 1 2 ... 7 0 1 2 ...: each next token is determined by the current one."""
    return torch.arange(n) % VOCAB


def random_stream(n: int = 2000) -> torch.Tensor:
    return torch.randint(VOCAB, (n,), generator=torch.Generator().manual_seed(0))


def make_get_batch(data, block=8, batch=4, sampler="torch", generator=None):
    """Random windows of ``data``; offsets drawn with torch's global RNG, NumPy's or ``generator``."""
    cut = len(data) * 9 // 10
    splits = {"train": data[:cut], "val": data[cut:]}

    def get_batch(split):
        d = splits[split]
        high = len(d) - block - 1
        if sampler == "numpy":
            starts = torch.from_numpy(np.random.randint(0, high, size=batch))
        else:
            starts = torch.randint(high, (batch,), generator=generator)
        x = torch.stack([d[i : i + block] for i in starts])  # (batch, block)
        y = torch.stack([d[i + 1 : i + block + 1] for i in starts])  # (batch, block)
        return x, y

    return get_batch


def config(**overrides) -> TrainConfig:
    base = {"max_steps": 20, "lr": 1e-2, "warmup_steps": 2, "eval_interval": 5, "eval_steps": 2}
    base |= {"device": "cpu", "progress": False, "seed": 0}
    return TrainConfig(**(base | overrides))


def zero_64_bytes_in_the_largest_tensor(path) -> None:
    """Zero 64 bytes in the middle of the largest tensor's storage inside a torch zip file,
    keeping the file's length: the damage a bad disk or copy does, which torch.load misses."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename),
                   key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", raw, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length + info.file_size // 2 - 32
    assert info.compress_type == zipfile.ZIP_STORED and info.file_size >= 128
    assert any(raw[start : start + 64])  # something to destroy
    raw[start : start + 64] = bytes(64)
    path.write_bytes(bytes(raw))


def spoil(path, how: str) -> None:
    """Turn the checkpoint at ``path`` into one of the unusable files learners meet."""
    if how == "empty":
        path.write_bytes(b"")
    elif how == "text":
        path.write_text("hello, I am not a checkpoint\n")
    elif how == "pickled object":  # torch.save of objects: refused by weights_only=True
        torch.save({"model": argparse.Namespace(lr=1)}, path)
    elif how == "plain pickle":
        path.write_bytes(pickle.dumps({"model": {}}))
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:-10])
    elif how == "cut in half":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "64 bytes zeroed":
        zero_64_bytes_in_the_largest_tensor(path)
    else:
        raise AssertionError(how)
