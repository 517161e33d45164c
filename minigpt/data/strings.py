"""String tasks for sequence-to-sequence models (chapter 04): reverse or sort a string of
letters, with a fixed tenth of all strings held out, token ids and batches for the Trainer, and
exact match of a model's answers (any model with ``generate(src, max_new_tokens)``, such as
``minigpt.models.transformer.Seq2Seq``)."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class StringTask:
    """A toy sequence-to-sequence task: map a string of ``min_len .. max_len`` letters from
    ``alphabet`` to its reverse (``op="reverse"``) or its sorted letters (``op="sort"``).

    About one string in ten (chosen by a checksum, so always the same ones) is held out:
    ``batches`` never trains on it and ``sample(split="test")`` draws only those. Token ids:
    0 pad, 1 bos, 2 eos, then the letters."""

    alphabet: str = "abcdefghijklmnopqrstuvwxyz"
    min_len: int = 1
    max_len: int = 16
    op: str = "reverse"

    def __post_init__(self) -> None:
        if self.op not in ("reverse", "sort"):
            raise ValueError(f"op={self.op!r}: choose 'reverse' or 'sort'")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {self.min_len} and {self.max_len}")
        if len(set(self.alphabet)) != len(self.alphabet) or not self.alphabet:
            raise ValueError("alphabet must be distinct characters")

    pad_id, bos_id, eos_id = 0, 1, 2

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet) + 3

    @property
    def block_size(self) -> int:
        """Longest sequence either side: the string with bos and eos."""
        return self.max_len + 2

    def target(self, s: str) -> str:
        return s[::-1] if self.op == "reverse" else "".join(sorted(s, key=self.alphabet.index))

    @staticmethod
    def is_heldout(s: str) -> bool:
        return zlib.crc32(s.encode("utf-8")) % 10 == 0

    def sample(self, n: int, split: str = "train", generator: torch.Generator | None = None) -> list[str]:
        """``n`` random strings of the split ("train" or "test")."""
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}: choose 'train' or 'test'")
        out = []
        while len(out) < n:
            length = int(torch.randint(self.min_len, self.max_len + 1, (1,), generator=generator))
            letters = torch.randint(len(self.alphabet), (length,), generator=generator).tolist()
            s = "".join(self.alphabet[i] for i in letters)
            if self.is_heldout(s) == (split == "test"):
                out.append(s)
        return out

    def encode(self, strings: Iterable[str], bos: bool = False) -> Tensor:
        """Strings as (B, max_len + 1 or + 2) ids: letters, eos, padding (with bos first if asked)."""
        rows = []
        for s in strings:
            bad = [c for c in s if c not in self.alphabet]
            if bad or not self.min_len <= len(s) <= self.max_len:
                raise ValueError(f"{s!r}: need {self.min_len} to {self.max_len} letters from "
                                 f"{self.alphabet!r}" + (f", not {bad[0]!r}" if bad else ""))
            ids = [self.bos_id] * bos + [self.alphabet.index(c) + 3 for c in s] + [self.eos_id]
            rows.append(ids + [self.pad_id] * (self.max_len + 1 + bos - len(ids)))
        return torch.tensor(rows)

    def decode(self, ids: Tensor) -> list[str]:
        """Rows of ids back to strings, stopping at eos or padding."""
        out = []
        for row in ids.tolist():
            letters = []
            for i in row:
                if i in (self.pad_id, self.eos_id):
                    break
                letters.append(self.alphabet[i - 3] if i >= 3 else "?")
            out.append("".join(letters))
        return out

    def batches(self, batch_size: int, generator: torch.Generator | None = None
                ) -> Callable[[str], tuple[Tensor, Tensor]]:
        """``get_batch(split) -> (src, tgt)`` for the Trainer; "train" draws training strings,
        "val" held-out ones."""
        def get_batch(split: str) -> tuple[Tensor, Tensor]:
            if split not in ("train", "val"):
                raise ValueError(f"unknown split {split!r}: choose 'train' or 'val'")
            strings = self.sample(batch_size, "train" if split == "train" else "test", generator)
            return self.encode(strings), self.encode([self.target(s) for s in strings], bos=True)

        return get_batch

    def predict(self, model: nn.Module, strings: list[str]) -> list[str]:
        device = next(model.parameters()).device
        return self.decode(model.generate(self.encode(strings).to(device), self.max_len + 1).cpu())

    def exact_match(self, model: nn.Module, strings: list[str]) -> float:
        """The share of ``strings`` whose whole output is right."""
        if not strings:
            raise ValueError("give at least one string")
        return sum(p == self.target(s) for p, s in zip(self.predict(model, strings), strings)) / len(strings)
