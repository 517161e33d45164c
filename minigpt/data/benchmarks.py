"""Word-embedding benchmarks that gensim ships (word similarity, the Google analogies),
lowercased like the course's vocabularies: ``list_benchmarks``, ``load_benchmark`` (chapter 02).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from minigpt.data.corpora import Listing, gensim_file, unknown_name


class BenchmarkRow(NamedTuple):
    name: str
    description: str
    size: str
    source: str


Pair = tuple[str, str, float]  # (word1, word2, human score)


Analogy = tuple[str, str, str, str]  # (a, b, c, d): a is to b as c is to d


def _read_pairs(path: Path) -> list[Pair]:
    """Tab-separated ``word1 word2 score`` lines; lines starting with ``#`` are comments."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            w1, w2, score = line.split("\t")[:3]
            pairs.append((w1.lower(), w2.lower(), float(score)))
    return pairs


def _read_analogies(path: Path) -> dict[str, list[Analogy]]:
    """``: section`` header lines, then ``a b c d`` lines meaning a is to b as c is to d."""
    sections: dict[str, list[Analogy]] = {}
    current: list[Analogy] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            current = sections.setdefault(line[1:].strip(), [])
        elif line.strip():
            a, b, c, d = line.lower().split()
            current.append((a, b, c, d))
    return sections


@dataclass(frozen=True)
class Benchmark:
    """One row of the benchmark registry: a file in gensim's test data and its parser."""

    name: str
    description: str
    size: str
    filename: str
    parse: Callable[[Path], object]


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("wordsim353", "WordSim-353: relatedness of word pairs, 0-10",
                  "353 pairs", "wordsim353.tsv", _read_pairs),
        Benchmark("simlex999", "SimLex-999: similarity (not relatedness) of pairs, 0-10",
                  "999 pairs", "simlex999.txt", _read_pairs),
        Benchmark("questions-words", "Google analogies a:b :: c:d, in 14 sections",
                  "19,544 questions", "questions-words.txt", _read_analogies),
    ]
}


def list_benchmarks() -> Listing:
    """Every known benchmark as (name, description, size, source) rows; prints as a table."""
    return Listing(BenchmarkRow(b.name, b.description, b.size, f"gensim test data: {b.filename}")
                   for b in BENCHMARKS.values())


def load_benchmark(name: str) -> list[Pair] | dict[str, list[Analogy]]:
    """``wordsim353`` and ``simlex999``: a list of ``(word1, word2, score)``.
    ``questions-words``: a dict ``section -> [(a, b, c, d), ...]``. All words lowercased."""
    if not isinstance(name, str) or name not in BENCHMARKS:
        raise unknown_name("benchmark", name, list(BENCHMARKS))
    benchmark = BENCHMARKS[name]
    return benchmark.parse(gensim_file(benchmark.filename))
