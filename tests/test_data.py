"""Tests for minigpt.data.corpora: corpora (offline, no network needed), benchmarks, splits, batches."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.core.runtime import cache_dir
from minigpt.data import batching, benchmarks, corpora

# ------------------------------------------------------------------------------------ corpora


@pytest.fixture(scope="session")
def wiki() -> str:
    return corpora.load_corpus("wiki")  # ~3 s the first time, then read from the cache


def test_wiki_is_long_and_clean(wiki):
    assert len(wiki) > 2_500_000
    for junk in ["'''", "''", "==", "[[", "]]", "{{", "}}", "thumb|", "alt=", "__TOC__", "()"]:
        assert junk not in wiki, junk
    assert "\n\n\n" not in wiki
    assert not re.search(r"^[^\w\n]+$", wiki, flags=re.MULTILINE)  # bare punctuation
    assert wiki.startswith("Anarchism\n\nAnarchism is a political philosophy")
    assert "\nAlbert Einstein\n\n" in wiki  # an article title, then its text


def test_wiki_is_cached_with_its_sha256(wiki):
    folder = cache_dir() / "corpora"
    meta = json.loads((folder / "wiki.json").read_text())
    assert meta["sha256"] == hashlib.sha256((folder / "wiki.txt").read_bytes()).hexdigest()
    assert meta["characters"] == len(wiki) and meta["version"] == corpora.WIKI_VERSION
    assert corpora.load_corpus("wiki") is wiki  # memoised in-process


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINIGPT_OFFLINE", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def fake_wiki_build(tmp_cache, monkeypatch):
    """Replace the 3 s wiki build with a counted, instant one."""
    calls = []

    def build() -> str:
        calls.append(1)
        return "Title\n\nSome text, with ünïcode.\n"

    monkeypatch.setattr(corpora, "_build_wiki", build)
    return calls


def test_wiki_cache_round_trip(fake_wiki_build, tmp_cache):
    text = corpora.load_corpus("wiki")
    assert corpora.load_corpus("wiki") == text and len(fake_wiki_build) == 1  # memoised
    corpora._wiki_in.cache_clear()
    assert corpora.load_corpus("wiki") == text and len(fake_wiki_build) == 1  # read from disk
    assert (tmp_cache / "corpora" / "wiki.txt").read_bytes() == text.encode("utf-8")


def test_corrupt_wiki_cache_is_rebuilt_not_used(fake_wiki_build, tmp_cache):
    text = corpora.load_corpus("wiki")
    cached = tmp_cache / "corpora" / "wiki.txt"
    cached.write_text("corrupted!")
    corpora._wiki_in.cache_clear()
    with pytest.warns(UserWarning, match="sha256"):
        assert corpora.load_corpus("wiki") == text
    assert len(fake_wiki_build) == 2 and cached.read_text(encoding="utf-8") == text


def test_wiki_cache_from_another_version_is_rebuilt(fake_wiki_build, tmp_cache):
    corpora.load_corpus("wiki")
    sidecar = tmp_cache / "corpora" / "wiki.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "version": -1}))
    corpora._wiki_in.cache_clear()
    corpora.load_corpus("wiki")
    assert len(fake_wiki_build) == 2


def test_news():
    news = corpora.load_corpus("news")
    assert len(news) > 300_000 and len(news.splitlines()) == 300
    assert news.startswith("Hundreds of people have been forced to vacate their homes")


def test_unknown_corpus_lists_the_names():
    with pytest.raises(KeyError, match="Did you mean 'wiki'.*: wiki, news, shakespeare"):
        corpora.load_corpus("wikki")
    with pytest.raises(ValueError, match="Choose one of: wiki, news"):
        corpora.load_corpus("nope")


def test_corpus_name_that_is_not_a_string_lists_the_names():
    for bad in [None, 3, ["wiki"]]:
        with pytest.raises(ValueError, match=r"named by a string, got .*Choose one of: wiki, news"):
            corpora.load_corpus(bad)
    with pytest.raises(KeyError, match=r"got None \(NoneType\)\. Choose one of: wordsim353"):
        benchmarks.load_benchmark(None)


def test_list_corpora():
    rows = {row.name: row for row in corpora.list_corpora()}
    assert rows["wiki"].offline and rows["news"].offline and not rows["shakespeare"].offline
    table = str(corpora.list_corpora())
    assert "offline" in table.splitlines()[0] and "shakespeare" in table


def test_corpus_row_needs_a_loader_or_a_download():
    with pytest.raises(ValueError):
        corpora.Corpus("x", "x", "1", "x")
    with pytest.raises(ValueError):
        corpora.Corpus("x", "x", "1", "x", loader=str, url="u", sha256="s", filename="f")


def test_shakespeare_row_is_pinned():
    row = corpora.CORPORA["shakespeare"]
    assert row.url.endswith("karpathy/char-rnn/master/data/tinyshakespeare/input.txt")
    assert row.sha256 == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


# ------------------------------------------------------------ downloads, through file:// URLs

CONTENT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


@pytest.fixture
def local_shakespeare(tmp_path, tmp_cache, monkeypatch):
    """Point the shakespeare row at a local file; return where the download is cached."""
    source = tmp_path / "input.txt"
    source.write_text(CONTENT)
    row = dataclasses.replace(corpora.CORPORA["shakespeare"], url=source.as_uri(),
                              sha256=hashlib.sha256(CONTENT.encode()).hexdigest())
    monkeypatch.setitem(corpora.CORPORA, "shakespeare", row)
    return tmp_cache / "downloads" / row.filename


def no_network(monkeypatch):
    def urlopen(*args, **kwargs):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


def test_download_then_load_from_cache(local_shakespeare, monkeypatch):
    assert corpora.load_corpus("shakespeare") == CONTENT
    assert local_shakespeare.read_text() == CONTENT
    no_network(monkeypatch)
    assert corpora.load_corpus("shakespeare") == CONTENT  # verified cache, no download
    assert [p.name for p in local_shakespeare.parent.iterdir()] == [local_shakespeare.name]


def test_download_with_wrong_hash_is_refused(local_shakespeare, monkeypatch):
    row = dataclasses.replace(corpora.CORPORA["shakespeare"], sha256="0" * 64)
    monkeypatch.setitem(corpora.CORPORA, "shakespeare", row)
    with pytest.raises(corpora.CorpusUnavailableError, match="sha256"):
        corpora.load_corpus("shakespeare")
    assert list(local_shakespeare.parent.iterdir()) == []  # nothing kept, no .part left


def test_corrupt_cached_download_is_not_used(local_shakespeare):
    local_shakespeare.parent.mkdir(parents=True)
    local_shakespeare.write_text("tampered")
    with pytest.warns(UserWarning, match="did not match its sha256"):
        assert corpora.load_corpus("shakespeare") == CONTENT  # downloaded again
    assert local_shakespeare.with_name(local_shakespeare.name + ".corrupt").read_text() == (
        "tampered")


def test_offline_download_fails_at_once_with_directions(local_shakespeare, monkeypatch):
    no_network(monkeypatch)
    with pytest.raises(corpora.CorpusUnavailableError) as error:
        corpora.load_corpus("shakespeare")
    message = str(error.value)
    row = corpora.CORPORA["shakespeare"]
    for needed in ["wiki, news", str(local_shakespeare), row.sha256, row.url, "URLError"]:
        assert needed in message


def test_corrupt_cache_offline_says_it_was_moved(local_shakespeare, monkeypatch):
    local_shakespeare.parent.mkdir(parents=True)
    local_shakespeare.write_text("tampered")
    no_network(monkeypatch)
    with pytest.warns(UserWarning), pytest.raises(corpora.CorpusUnavailableError, match="aside"):
        corpora.load_corpus("shakespeare")
    assert not local_shakespeare.exists()


def test_minigpt_offline_never_touches_the_network(local_shakespeare, monkeypatch):
    monkeypatch.setenv("MINIGPT_OFFLINE", "1")
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used"))
    with pytest.raises(corpora.CorpusUnavailableError, match="(?s)MINIGPT_OFFLINE.*wiki, news"):
        corpora.load_corpus("shakespeare")


# --------------------------------------------------------------------------------- benchmarks


def test_similarity_benchmarks():
    wordsim = benchmarks.load_benchmark("wordsim353")
    assert len(wordsim) == 353 and wordsim[0] == ("love", "sex", 6.77)
    simlex = benchmarks.load_benchmark("simlex999")
    assert len(simlex) == 999 and simlex[0] == ("old", "new", 1.58)
    assert all(0 <= score <= 10 for *_, score in wordsim + simlex)


def test_analogy_benchmark():
    sections = benchmarks.load_benchmark("questions-words")
    lines = corpora.gensim_file("questions-words.txt").read_text().splitlines()
    assert len(lines) == 19_558 and sum(line.startswith(":") for line in lines) == 14
    assert len(sections) == 14 and sum(map(len, sections.values())) == 19_558 - 14
    assert sections["capital-common-countries"][0] == ("athens", "greece", "baghdad", "iraq")
    assert len(sections["family"]) == 506


def test_benchmark_listing_and_unknown_name():
    assert [row.name for row in benchmarks.list_benchmarks()] == list(benchmarks.BENCHMARKS)
    with pytest.raises(KeyError, match="Did you mean 'simlex999'"):
        benchmarks.load_benchmark("simlex")


# ---------------------------------------------------------------------------- splits, batches


def test_split_text_is_contiguous_and_cuts_at_newlines():
    text = "".join(f"line {i} {'x' * (i % 17)}\n" for i in range(2000))
    splits = batching.split_text(text, val_fraction=0.1, test_fraction=0.05)
    assert splits == batching.split_text(text, val_fraction=0.1, test_fraction=0.05)
    assert splits["train"] + splits["val"] + splits["test"] == text
    assert splits["train"].endswith("\n") and splits["val"].endswith("\n")
    for name, fraction in [("val", 0.1), ("test", 0.05)]:
        assert abs(len(splits[name]) / len(text) - fraction) < 0.002


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab\n", max_size=300), st.floats(0, 0.45), st.floats(0, 0.45))
def test_split_text_properties(text, val_fraction, test_fraction):
    splits = batching.split_text(text, val_fraction, test_fraction)
    assert "".join(splits.values()) == text
    assert splits == batching.split_text(text, val_fraction, test_fraction)
    if test_fraction == 0:
        assert splits["test"] == ""
    if val_fraction == 0:
        assert splits["val"] == ""
    if test_fraction > 0 and len(text) >= 1 / test_fraction:
        assert splits["test"]  # a test fraction of a long enough text is never empty


def test_split_text_rejects_bad_fractions():
    with pytest.raises(ValueError):
        batching.split_text("abc", 0.5, 0.5)


def test_to_ids_array_dtype():
    assert batching.to_ids_array([0, 65_535], 65_536).dtype == np.uint16
    assert batching.to_ids_array([0, 65_536], 100_277).dtype == np.uint32
    assert batching.to_ids_array([], 10).dtype == np.uint16
    with pytest.raises(ValueError, match="65536 is outside"):
        batching.to_ids_array([1, 65_536], 65_536)
    with pytest.raises(ValueError, match="-1 is outside"):
        batching.to_ids_array([-1], 10)


def test_batches_are_shifted_windows_inside_their_split():
    splits = {"train": batching.to_ids_array(np.arange(1000), 1000),
              "val": batching.to_ids_array(np.arange(2000, 2100), 50_257)}
    get_batch = batching.make_get_batch(splits, batch_size=8, block_size=16)
    for name, ids in splits.items():
        x, y = get_batch(name)
        assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])
        for row_x, row_y in zip(x, y):
            start = int(row_x[0]) - int(ids[0])
            assert 0 <= start and start + 16 < len(ids)
            assert torch.equal(row_x, torch.from_numpy(ids[start:start + 16].astype(np.int64)))
            assert torch.equal(row_y, torch.from_numpy(ids[start + 1:start + 17].astype(np.int64)))


def test_batches_follow_torch_seed_or_generator():
    ids = np.arange(500)
    torch.manual_seed(3)
    first = batching.get_batch(ids, 4, 8)
    torch.manual_seed(3)
    assert torch.equal(first[0], batching.get_batch(ids, 4, 8)[0])  # the global RNG replays
    state = torch.get_rng_state()
    a = batching.get_batch(ids, 4, 8, generator=torch.Generator().manual_seed(1))
    b = batching.get_batch(ids, 4, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(torch.get_rng_state(), state)


def test_too_short_split_says_what_fits():
    with pytest.raises(ValueError, match=r"'val' has 40 tokens.*block_size <= 39 would fit"):
        batching.make_get_batch({"train": np.arange(500), "val": np.arange(40)}, 4, 64)
    get_batch = batching.make_get_batch({"train": np.arange(500)}, 4, 64)
    with pytest.raises(KeyError, match="Choose one of: train"):
        get_batch("validation")


def test_batch_and_block_sizes_must_be_positive_integers():
    splits = {"train": np.arange(500)}
    for batch_size, block_size, message in [(0, 8, "batch_size must be positive, got 0"),
                                            (-2, 8, "batch_size must be positive, got -2"),
                                            (4, 0, "block_size must be positive, got 0")]:
        with pytest.raises(ValueError, match=message):  # used to give empty tensors
            batching.make_get_batch(splits, batch_size, block_size)
    with pytest.raises(TypeError, match="block_size must be an integer, got 8.0"):
        batching.make_get_batch(splits, 4, 8.0)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        batching.get_batch(np.arange(500), 0, 8)
    with pytest.raises(ValueError, match="block_size must be positive"):
        next(batching.iter_eval_windows(np.arange(500), 0, 4))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 200), st.integers(1, 20), st.integers(1, 5))
def test_eval_windows_cover_every_target_once(length, block_size, batch_size):
    ids = np.arange(length)
    batches = list(batching.iter_eval_windows(ids, block_size, batch_size))
    xs = [int(v) for x, _ in batches for v in x.flatten()]
    ys = [int(v) for _, y in batches for v in y.flatten()]
    assert ys == list(range(1, length)) and xs == list(range(max(length - 1, 0)))
    assert all(x.shape[0] <= batch_size and x.shape[1] <= block_size for x, _ in batches)
