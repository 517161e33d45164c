import json

import matplotlib
import pytest

from minigpt.course import leaderboard

matplotlib.use("Agg")


@pytest.fixture
def stores(tmp_path, monkeypatch):
    """A stored reference file and a local cache, both temporary."""
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps([
        {"chapter": 1, "model": "char 3-gram", "bits_per_byte": 3.1, "params": None, "profile": "cpu"},
        {"chapter": 0, "model": "tiny GPT", "bits_per_byte": 2.7, "params": 456192, "profile": "cpu"},
    ]))
    monkeypatch.setattr(leaderboard, "REFERENCE", reference)
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(leaderboard.WRITE_TO_ENV, raising=False)
    monkeypatch.setenv("MINIGPT_PROFILE", "ci")
    return reference


def test_results_merge_local_runs_over_the_stored_ones(stores):
    assert [r.model for r in leaderboard.results()] == ["tiny GPT", "char 3-gram"]
    leaderboard.record(0, "tiny GPT", 3.84, params=456192)
    leaderboard.record(0, "unigram", 4.6)
    rows = {(r.chapter, r.model): r for r in leaderboard.results()}
    assert rows[(0, "tiny GPT")].bits_per_byte == 3.84 and rows[(0, "tiny GPT")].profile == "ci"
    assert rows[(1, "char 3-gram")].profile == "cpu"  # untouched stored result
    assert json.loads(stores.read_text())[1]["bits_per_byte"] == 2.7  # the stored file is not written


def test_recording_again_replaces_the_same_model(stores):
    leaderboard.record(2, "skip-gram", 5.0)
    leaderboard.record(2, "skip-gram", 4.0)
    assert [r.bits_per_byte for r in leaderboard.results() if r.chapter == 2] == [4.0]


def test_the_run_script_writes_the_stored_file(stores, monkeypatch):
    monkeypatch.setenv(leaderboard.WRITE_TO_ENV, str(stores))
    monkeypatch.setenv("MINIGPT_PROFILE", "cpu")
    leaderboard.record(3, "LSTM", 2.2)
    assert any(row["model"] == "LSTM" for row in json.loads(stores.read_text()))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_only_measured_positive_figures(stores, bad):
    with pytest.raises(ValueError, match="positive measured"):
        leaderboard.record(1, "x", bad)


def test_a_corrupt_local_file_says_what_to_do(stores, tmp_path):
    (tmp_path / "cache").mkdir(exist_ok=True)
    (tmp_path / "cache" / "leaderboard-ci.json").write_text("{not json")
    with pytest.raises(ValueError, match="Delete it"):
        leaderboard.results()


def test_chart_draws_one_bar_per_result(stores):
    leaderboard.record(0, "unigram", 4.6)
    ax = leaderboard.chart()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(ax.patches) == 3 and "00 · unigram (ci)" in labels and "01 · char 3-gram" in labels


def test_chart_upto_shows_the_chapters_met_so_far(stores):
    ax = leaderboard.chart(upto=0)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["00 · tiny GPT"]


def test_every_chapter_has_its_own_colour():
    colours = [matplotlib.colors.to_hex(leaderboard.chapter_colour(c)) for c in range(15)]
    assert len(set(colours)) == 15


def test_stored_key_moves_with_the_chapters_a_chart_shows(stores, monkeypatch):
    before = {upto: leaderboard.stored_key(upto) for upto in (0, 1)}
    rows = json.loads(stores.read_text())
    rows[0]["bits_per_byte"] = 3.0  # chapter 1's figure changes
    stores.write_text(json.dumps(rows))
    assert leaderboard.stored_key(0) == before[0]
    assert leaderboard.stored_key(1) != before[1]
    monkeypatch.setenv("MINIGPT_PROFILE", "cpu")
    leaderboard.record(0, "tiny GPT", 2.5)  # a learner's own run: not the shipped figures
    assert leaderboard.stored_key(0) == before[0]


def test_the_shipped_file_holds_measured_rows():
    for row in json.loads(leaderboard.REFERENCE.read_text()):
        assert row["profile"] == "cpu" and row["bits_per_byte"] > 0
