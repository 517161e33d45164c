"""Named corpora, offline first: every chapter starts from text, and this module gives it a name.

    >>> from minigpt.data import corpora
    >>> print(corpora.list_corpora())          # a table: name, description, size, offline, source
    >>> text = corpora.load_corpus("wiki")     # ~2.8 M characters, offline

Offline corpora are built from files that ship inside gensim's wheel, so the course runs
with no network at all: ``wiki`` (106 English Wikipedia articles, markup removed by
``minigpt.data.wiki``) and ``news`` (Australian news, one document a line). Downloads such as
``shakespeare`` and ``text8`` are opt-in: they are fetched once into ``cache_dir()/"downloads"``
and their sha256 is checked on every load; offline, they fail with a message that names the
offline corpora. Built corpora are cached with a sha256 sidecar and rebuilt if it does not match.

Splits and batches of token windows: ``minigpt.data.batching``. Word-embedding benchmarks:
``minigpt.data.benchmarks``. Deliberately left out: streaming corpora bigger than memory (every
corpus here is a few MB and comes back as one ``str``) and any tokenization
(``minigpt.data.tokenizers`` does that).
"""

from __future__ import annotations

import bz2
import difflib
import functools
import json
import os
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple

from minigpt.core.io import (
    atomic_path,
    sha256_bytes,
    sha256_file,
    sha256_stream,
    write_bytes_atomic,
)
from minigpt.core.runtime import cache_dir
from minigpt.data.wiki import clean_wiki_markup

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


def unknown_name(kind: str, name: object, known: Sequence[str]) -> UnknownNameError:
    if not isinstance(name, str):
        return UnknownNameError(f"A {kind} is named by a string, got {name!r} "
                                f"({type(name).__name__}). Choose one of: {', '.join(known)}.")
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownNameError(f"Unknown {kind} {name!r}.{hint} Choose one of: {', '.join(known)}.")


def gensim_file(filename: str) -> Path:
    from gensim.test.utils import datapath  # imported late: gensim takes a second to import

    return Path(datapath(filename))


# ---------------------------------------------------------------------------------------------
# wiki: gensim's Wikipedia sample, with the markup filter_wiki leaves behind cleaned up
# ---------------------------------------------------------------------------------------------


def _build_wiki() -> str:
    """Every article of gensim's sample (no redirects, no other namespaces), each as its title,
    a blank line and its paragraphs; articles separated by a blank line."""
    from gensim.corpora.wikicorpus import extract_pages

    articles = []
    with bz2.open(gensim_file(WIKI_FILE), "rt", encoding="utf-8") as f:
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
    lines = gensim_file("lee_background.cor").read_text(encoding="utf-8").splitlines()
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
        raise unknown_name("corpus", name, list(CORPORA))
    corpus = CORPORA[name]
    return corpus.loader() if corpus.loader is not None else _load_download(corpus)


# ---------------------------------------------------------------------------------------------
# Word-embedding benchmarks (files gensim ships), lowercased like the course's vocabularies
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Splits and batches for language modelling
# ---------------------------------------------------------------------------------------------


