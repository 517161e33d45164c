"""Data: named corpora (offline first), word-embedding benchmarks, splits and batches.

Every chapter starts from text. This module gives it a name, so a notebook says

    from minigpt.data import corpora
    print(corpora.list_corpora())              # a table: name, description, size, offline, source
    text = corpora.load_corpus("wiki")         # ~2.8 M characters, offline
    splits = corpora.split_text(text)          # {"train": ..., "val": ..., "test": ...}

and, once the text is tokenized (``tok`` below is any tokenizer), trains on random windows:

    ids = {k: corpora.to_ids_array(tok.encode(v), tok.vocab_size) for k, v in splits.items()}
    get_batch = corpora.make_get_batch(ids, batch_size=32, block_size=128)
    x, y = get_batch("train")               # (32, 128) each; y is x shifted by one token

Offline corpora are built from files that ship inside gensim's wheel, so the course runs
with no network at all: ``wiki`` (106 English Wikipedia articles, markup removed) and ``news``
(Australian news, one document a line). Downloads such as ``shakespeare`` are opt-in: they are
fetched once into ``cache_dir()/"downloads"`` and their sha256 is checked on every load.
``load_benchmark`` reads the word-similarity and analogy sets that gensim also ships.

Deliberately left out: streaming corpora bigger than memory (every corpus here is a few MB and
comes back as one ``str``), shuffling documents before splitting (see ``split_text``), and any
tokenization (``minigpt.data.tokenizers`` does that).
"""

from __future__ import annotations

import bz2
import difflib
import functools
import json
import os
import re
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from minigpt.core.io import (
    atomic_path,
    sha256_bytes,
    sha256_file,
    sha256_stream,
    write_bytes_atomic,
)
from minigpt.core.metrics import check_count
from minigpt.core.runtime import cache_dir

WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
WIKI_VERSION = 1  # bump when the cleanup below changes: cached text is then rebuilt
DOWNLOAD_TIMEOUT_S = 20


class CorpusUnavailableError(RuntimeError):
    """A download-only corpus is neither cached nor downloadable (offline, or a bad file)."""


class UnknownNameError(KeyError, ValueError):
    """No corpus or benchmark has that name. Catchable as ``KeyError`` or ``ValueError``."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


# ---------------------------------------------------------------------------------------------
# The registries
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """One row of the corpus registry: either a local ``loader`` (works offline) or a download
    (``url`` + ``sha256`` + ``filename``, with an optional ``postprocess`` turning the downloaded
    file into text, e.g. unzipping text8.zip). Add a corpus by adding a row to ``CORPORA``."""

    name: str
    description: str
    size: str
    source: str
    loader: Callable[[], str] | None = None
    url: str | None = None
    sha256: str | None = None
    filename: str | None = None
    postprocess: Callable[[Path], str] | None = None

    def __post_init__(self) -> None:
        has_download = None not in (self.url, self.sha256, self.filename)
        if (self.loader is not None) == has_download:
            raise ValueError(f"Corpus {self.name!r}: give a loader, or url + sha256 + filename")

    @property
    def offline(self) -> bool:
        """True when the corpus is built from local files and never needs the network."""
        return self.loader is not None


class CorpusRow(NamedTuple):
    name: str
    description: str
    size: str
    offline: bool
    source: str


class BenchmarkRow(NamedTuple):
    name: str
    description: str
    size: str
    source: str


class Listing(list):
    """A list of rows that prints as a table (``print(rows)``, or just ``rows`` in Jupyter)."""

    def __str__(self) -> str:
        if not self:
            return "(empty)"
        headers = list(self[0]._fields)
        cells = [["yes" if v is True else "no" if v is False else str(v) for v in r] for r in self]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
        lines = [headers, ["-" * w for w in widths], *cells]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(ln, widths)).rstrip() for ln in lines)

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # IPython / Jupyter display
        printer.text(str(self))


def _unknown(kind: str, name: object, known: Sequence[str]) -> UnknownNameError:
    if not isinstance(name, str):
        return UnknownNameError(f"A {kind} is named by a string, got {name!r} "
                                f"({type(name).__name__}). Choose one of: {', '.join(known)}.")
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownNameError(f"Unknown {kind} {name!r}.{hint} Choose one of: {', '.join(known)}.")


def _gensim_file(filename: str) -> Path:
    from gensim.test.utils import datapath  # imported late: gensim takes a second to import

    return Path(datapath(filename))


# ---------------------------------------------------------------------------------------------
# wiki: gensim's Wikipedia sample, with the markup filter_wiki leaves behind cleaned up
# ---------------------------------------------------------------------------------------------

# Sections made of reference lists and links rather than prose.
_BACK_MATTER = {"references", "external links", "see also", "further reading", "notes",
                "bibliography", "footnotes", "sources", "citations", "notes and references"}
_HEADING = re.compile(r"^(={2,6})\s*(.*?)\s*\1$")
_INLINE_FIXES = [  # (pattern, replacement), applied in order to each article
    (re.compile(r"'{2,}"), ""),                               # ''italic'' and '''bold'''
    (re.compile(r"__[A-Z]+__"), ""),                          # __TOC__ and other magic words
    (re.compile(r"\|?\b\d+(?:x\d+)?px"), "\n"),               # image sizes: |220px, 217x217px
    (re.compile(r"\|(?:thumb|upright|left|right|center)\b"), ""),  # image options
    (re.compile(r"\(\s*(?:[;,]\s*)+"), "("),                  # "(; born 1947)" once IPA is gone
    (re.compile(r"[ ,;]+\)"), ")"),                           # "(Akhilleus, )"
    (re.compile(r"\(\s*\)"), ""),                             # "()" left by removed templates
    (re.compile(r"\(\s+"), "("),
    (re.compile(r"[ \t]+"), " "),                             # runs of spaces and tabs
    (re.compile(r" ([,;])"), r"\1"),                          # "the Greek , i.e." -> "Greek,"
]


def _drop_tables_and_galleries(markup: str) -> str:
    """Remove ``{| tables |}`` and ``<gallery>`` blocks from raw markup: filter_wiki would turn
    them into one table cell or file name a line."""
    markup = re.sub(r"<gallery.*?</gallery>", "", markup, flags=re.DOTALL | re.IGNORECASE)
    kept, depth = [], 0
    for line in markup.split("\n"):
        stripped = line.lstrip()
        depth += stripped.startswith("{|")
        if depth == 0:
            kept.append(line)
        if stripped.startswith("|}") and depth > 0:
            depth -= 1
    return "\n".join(kept)


def _clean_line(line: str) -> str | tuple[int, str]:
    """One line of filtered text -> plain text, ``""`` to drop, or ``(level, title)`` for a
    heading."""
    line = line.strip()
    if not re.search(r"\w", line) or re.search(r"\balt=", line):  # punctuation, image alt text
        return ""
    if match := _HEADING.match(line):
        return len(match.group(1)), match.group(2)
    line = re.sub(r"^[:;]+\s*", "", line)  # ":" indents quotations
    return re.sub(r"^[*#]+\s*", "* ", line)  # bullet and numbered lists become "* item"


def _drop_sections(items: list[str | tuple[int, str]]) -> list[str]:
    """Drop back-matter sections and headings with nothing under them; a heading becomes its
    title on a line of its own after a blank line."""
    kept: list[str | tuple[int, str]] = []
    skip_below = 0  # while > 0, we are inside a dropped section of that level
    for item in items:
        if isinstance(item, tuple):
            if skip_below and item[0] > skip_below:
                continue
            skip_below = item[0] if item[1].lower() in _BACK_MATTER else 0
        if not skip_below:
            kept.append(item)
    out: list[str] = []
    after_title = False
    for i, item in enumerate(kept):
        if isinstance(item, tuple):
            following = next((x for x in kept[i + 1:] if x != ""), None)
            if following is None or (isinstance(following, tuple) and following[0] <= item[0]):
                continue  # empty section
            out += ["", item[1]]
            after_title = True
        elif item or not after_title:  # no blank line right under a title
            out.append(item)
            after_title = False
    return out


def clean_wiki_markup(markup: str) -> str:
    """Raw MediaWiki markup of one article -> plain paragraphs (gensim's filter_wiki, then the
    cleanup above)."""
    from gensim.corpora.wikicorpus import filter_wiki

    text = filter_wiki(_drop_tables_and_galleries(markup)).replace("\xa0", " ")
    for pattern, replacement in _INLINE_FIXES:
        text = pattern.sub(replacement, text)
    lines = _drop_sections([_clean_line(line) for line in text.split("\n")])
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _build_wiki() -> str:
    """Every article of gensim's sample (no redirects, no other namespaces), each as its title,
    a blank line and its paragraphs; articles separated by a blank line."""
    from gensim.corpora.wikicorpus import extract_pages

    articles = []
    with bz2.open(_gensim_file(WIKI_FILE), "rt", encoding="utf-8") as f:
        for title, markup, _page_id in extract_pages(f, filter_namespaces=("0",)):
            if not markup or markup.lstrip().lower().startswith("#redirect"):
                continue  # extract_pages gives "" for pages outside namespace 0
            if body := clean_wiki_markup(markup):
                articles.append(f"{title}\n\n{body}")
    return "\n\n".join(articles) + "\n"


def _cached_build(name: str, build: Callable[[], str], meta: dict, root: Path) -> str:
    """Text from ``root/corpora/<name>.txt`` if its JSON sidecar matches ``meta`` and its sha256;
    otherwise build it, cache it and return it. A cache that fails the check is never used."""
    folder = root / "corpora"
    folder.mkdir(parents=True, exist_ok=True)
    text_path, meta_path = folder / f"{name}.txt", folder / f"{name}.json"
    if text_path.exists() and meta_path.exists():
        try:
            saved = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError:
            saved = {}
        if {k: saved.get(k) for k in meta} == meta:  # same processing and gensim versions
            data = text_path.read_bytes()
            if sha256_bytes(data) == saved.get("sha256"):
                return data.decode("utf-8")
            warnings.warn(f"Cached {text_path} failed its sha256 check; rebuilding it.")
    text = build()
    data = text.encode("utf-8")
    write_bytes_atomic(text_path, data)  # the text first, then the sidecar that vouches for it
    sidecar = {**meta, "sha256": sha256_bytes(data), "characters": len(text)}
    write_bytes_atomic(meta_path, json.dumps(sidecar, indent=1).encode("utf-8"))
    return text


@functools.cache  # an lru_cache without a size limit
def _wiki_in(root: str) -> str:
    meta = {"version": WIKI_VERSION, "gensim": version("gensim"), "source": WIKI_FILE}
    return _cached_build("wiki", _build_wiki, meta, Path(root))


def _load_wiki() -> str:
    return _wiki_in(str(cache_dir()))  # memoised per cache folder: the second call is free


def _load_news() -> str:
    lines = _gensim_file("lee_background.cor").read_text(encoding="utf-8").splitlines()
    return "\n".join(line.strip() for line in lines if line.strip()) + "\n"


# ---------------------------------------------------------------------------------------------
# Downloads: cached under cache_dir()/"downloads", sha256 checked on every load
# ---------------------------------------------------------------------------------------------


def _offline_mode() -> bool:
    return os.environ.get("MINIGPT_OFFLINE", "").strip().lower() in {"1", "true", "yes"}


def _download(url: str, path: Path, sha256: str) -> None:
    """Fetch ``url`` into a temporary file, check its sha256, and only then move it to ``path``."""
    with atomic_path(path) as tmp:  # a failed or refused download leaves no file behind
        with open(tmp, "wb") as f, urllib.request.urlopen(
                url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            got = sha256_stream(response, copy_to=f)  # hashed as it is saved
        if got != sha256:
            raise CorpusUnavailableError(
                f"Downloaded {url} but its sha256 is {got}, not the expected "
                f"{sha256}; the file was not kept. The server's copy may have changed.")


def _unavailable(corpus: Corpus, path: Path, reason: str, notes: str) -> CorpusUnavailableError:
    offline = ", ".join(c.name for c in CORPORA.values() if c.offline)
    return CorpusUnavailableError(
        f"{notes}Corpus {corpus.name!r} is not cached and could not be downloaded ({reason}).\n"
        f"Corpora that always work offline: {offline}.\n"
        f"To use {corpus.name!r} without network, download\n    {corpus.url}\n"
        f"on a machine with internet and put it here:\n    {path}\n"
        f"Its sha256 must be {corpus.sha256} (checked on every load).")


def _load_download(corpus: Corpus) -> str:
    assert corpus.url and corpus.sha256 and corpus.filename
    folder = cache_dir() / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / corpus.filename
    notes = ""
    if path.exists() and sha256_file(path) != corpus.sha256:
        corrupt = path.with_name(path.name + ".corrupt")
        os.replace(path, corrupt)
        notes = f"The cached {path} did not match its sha256; moved it aside to {corrupt}.\n"
        warnings.warn(notes.strip())
    if not path.exists():
        if _offline_mode():
            raise _unavailable(corpus, path, "MINIGPT_OFFLINE is set: no network tried", notes)
        try:
            _download(corpus.url, path, corpus.sha256)
        except OSError as error:  # URLError, timeouts and refused connections are all OSErrors
            raise _unavailable(corpus, path, f"{type(error).__name__}: {error}", notes) from error
    if corpus.postprocess is not None:
        return corpus.postprocess(path)
    return path.read_text(encoding="utf-8")


CORPORA: dict[str, Corpus] = {
    c.name: c
    for c in [
        Corpus("wiki", "106 English Wikipedia articles (A...), markup removed", "2.8 M characters",
               f"gensim test data: {WIKI_FILE}", loader=_load_wiki),
        Corpus("news", "Lee corpus: 300 Australian news stories, one a line", "0.36 M characters",
               "gensim test data: lee_background.cor", loader=_load_news),
        Corpus("shakespeare", "TinyShakespeare: ~40,000 lines from Shakespeare's plays",
               "1,115,394 characters", "karpathy/char-rnn (download)",
               url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                   "tinyshakespeare/input.txt",
               sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
               filename="tinyshakespeare.txt"),
    ]
}


# ---- text8 (added for chapter 02, word2vec): an opt-in download, unzipped on load ------------
TEXT8_SHA256 = "6e890197040d37d85beb962ae1f041ff1d9a9ca8d20c7d99c85027eebf51dca7"  # unzipped


def _unzip_text8(path: Path) -> str:
    """text8.zip -> its one member, 100,000,000 characters of lowercase words, sha256 checked."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        raw = archive.read("text8")
    if sha256_bytes(raw) != TEXT8_SHA256:
        raise CorpusUnavailableError(f"{path} unzips to a text8 whose sha256 is not "
                                     f"{TEXT8_SHA256}; delete the file and load it again.")
    return raw.decode("ascii")


CORPORA["text8"] = Corpus(
    "text8", "Matt Mahoney's text8: the first 10^8 bytes of English Wikipedia (2006), cleaned",
    "100 M characters, 17 M words", "mattmahoney.net/dc/textdata.html (download, 31 MB zip)",
    url="http://mattmahoney.net/dc/text8.zip",
    sha256="a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232",
    filename="text8.zip", postprocess=_unzip_text8)


def list_corpora() -> Listing:
    """Every known corpus as (name, description, size, offline, source) rows; prints as a table."""
    return Listing(CorpusRow(c.name, c.description, c.size, c.offline, c.source)
                   for c in CORPORA.values())


def load_corpus(name: str) -> str:
    """The text of the corpus called ``name`` (see ``list_corpora()``).

    Offline corpora are built locally (``wiki`` is cached on disk after its first ~3 s build).
    Downloads are fetched once; without network they raise ``CorpusUnavailableError`` at once,
    saying where to put the file by hand. Set ``MINIGPT_OFFLINE=1`` to never try the network.
    """
    if not isinstance(name, str) or name not in CORPORA:
        raise _unknown("corpus", name, list(CORPORA))
    corpus = CORPORA[name]
    return corpus.loader() if corpus.loader is not None else _load_download(corpus)


# ---------------------------------------------------------------------------------------------
# Word-embedding benchmarks (files gensim ships), lowercased like the course's vocabularies
# ---------------------------------------------------------------------------------------------


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
        raise _unknown("benchmark", name, list(BENCHMARKS))
    benchmark = BENCHMARKS[name]
    return benchmark.parse(_gensim_file(benchmark.filename))


# ---------------------------------------------------------------------------------------------
# Splits and batches for language modelling
# ---------------------------------------------------------------------------------------------


def _cut_at_newline(text: str, cut: int, limit: int) -> int:
    """Move ``cut`` to just after the next newline before ``limit``; keep it if there is none."""
    newline = text.find("\n", cut, limit)
    return cut if newline == -1 else newline + 1


def split_text(text: str, val_fraction: float = 0.05,
               test_fraction: float = 0.05) -> dict[str, str]:
    """Split ``text`` into contiguous train / val / test parts, in that order.

    Contiguous, not shuffled: a model trains on windows of consecutive tokens, and windows
    drawn from shuffled pieces would overlap the held-out text, leaking it into training. The
    end of the text is held out instead. Each cut moves forward to the next line break, so no
    line (a document, in ``news``) is split, when there is one in reach. Deterministic.
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError("need val_fraction >= 0, test_fraction >= 0 and their sum < 1, got "
                         f"{val_fraction} and {test_fraction}")
    n = len(text)
    test_start = round(n * (1 - test_fraction))
    test_start = _cut_at_newline(text, test_start, n - 1) if test_fraction else n
    val_start = round(n * (1 - val_fraction - test_fraction))
    val_start = _cut_at_newline(text, val_start, test_start) if val_fraction else test_start
    return {"train": text[:val_start], "val": text[val_start:test_start], "test": text[test_start:]}


def to_ids_array(ids: Sequence[int] | np.ndarray, vocab_size: int) -> np.ndarray:
    """Token ids as a compact NumPy array: uint16 (2 bytes a token) when every id fits, i.e.
    ``vocab_size <= 65,536`` (GPT-2's 50,257 does), else uint32."""
    if not 0 < vocab_size <= 2**32:
        raise ValueError(f"vocab_size must be between 1 and 2**32, got {vocab_size}")
    array = np.asarray(ids, dtype=np.int64).reshape(-1)
    if array.size and (array.min() < 0 or array.max() >= vocab_size):
        bad = int(array.max()) if array.max() >= vocab_size else int(array.min())
        raise ValueError(f"token id {bad} is outside the vocabulary (0 .. {vocab_size - 1})")
    return array.astype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def _too_short(what: str, length: int, block_size: int) -> str:
    fits = f"block_size <= {length - 1} would fit" if length > 1 else "no block_size fits"
    return (f"{what} has {length} tokens, too few for block_size={block_size} (a window needs "
            f"block_size + 1 = {block_size + 1}); {fits}, or give it more text")


def _check_sizes(batch_size: int, block_size: int) -> None:
    """Raise unless both are positive integers: a batch of 0 windows, or windows of 0 tokens,
    would come back as empty tensors and train nothing."""
    check_count(batch_size, "batch_size")
    check_count(block_size, "block_size")


def _windows(data: np.ndarray, starts: np.ndarray, length: int) -> tuple[torch.Tensor, ...]:
    """Rows ``data[s : s + length + 1]`` for each start, split into inputs and targets."""
    chunk = torch.from_numpy(data[starts[:, None] + np.arange(length + 1)].astype(np.int64))
    return chunk[:, :-1], chunk[:, 1:]


def get_batch(data: np.ndarray, batch_size: int, block_size: int,
              device: torch.device | str | None = None,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of ``data``: ``x`` and ``y`` of shape (B, T), int64,
    ``y[:, t] == x[:, t + 1]`` (the next token). Starts come from torch's global RNG unless a
    ``generator`` is given, so ``torch.manual_seed`` (and a checkpointed RNG state) replays
    them."""
    _check_sizes(batch_size, block_size)
    data = np.asarray(data)
    if len(data) < block_size + 1:
        raise ValueError(_too_short("a split", len(data), block_size))
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator).numpy()
    x, y = _windows(data, starts, block_size)
    return x.to(device), y.to(device)


def make_get_batch(splits: Mapping[str, np.ndarray], batch_size: int, block_size: int,
                   device: torch.device | str | None = None,
                   generator: torch.Generator | None = None
                   ) -> Callable[[str], tuple[torch.Tensor, torch.Tensor]]:
    """``get_batch(split) -> (x, y)`` over named splits (e.g. ``{"train": ..., "val": ...}``),
    checking once, up front, that both sizes are positive and every split is longer than
    ``block_size``."""
    _check_sizes(batch_size, block_size)
    arrays = {name: np.asarray(ids) for name, ids in splits.items()}
    for name, ids in arrays.items():
        if len(ids) < block_size + 1:
            raise ValueError(_too_short(f"split {name!r}", len(ids), block_size))

    def split_batch(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in arrays:
            raise _unknown("split", split, list(arrays))
        return get_batch(arrays[split], batch_size, block_size, device, generator)

    return split_batch


def iter_eval_windows(ids: np.ndarray, block_size: int, batch_size: int,
                      device: torch.device | str | None = None
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Non-overlapping windows covering ``ids``, in order, for an exact held-out loss.

    Every token but the first is a target exactly once. Batches are (batch_size, block_size)
    except the last ones: the final window is shorter when the tokens run out, so average the
    loss weighted by ``y.numel()``. Each window starts with no context, which makes the loss a
    little higher than with a sliding window, but costs one pass.
    """
    _check_sizes(batch_size, block_size)
    ids = np.asarray(ids)
    n_targets = len(ids) - 1
    starts = np.arange(0, n_targets - block_size + 1, block_size)
    for i in range(0, len(starts), batch_size):
        x, y = _windows(ids, starts[i:i + batch_size], block_size)
        yield x.to(device), y.to(device)
    tail = len(starts) * block_size  # first start not covered by a full window
    if tail < n_targets:
        x, y = _windows(ids, np.array([tail]), n_targets - tail)
        yield x.to(device), y.to(device)
