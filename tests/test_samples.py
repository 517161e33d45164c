"""The course's English and Chinese samples say the same thing, in texts of similar size."""

import unicodedata

from minigpt.data import samples


def paragraphs(text):
    return [p for p in text.split("\n\n") if p.strip()]


def test_samples_are_parallel_paragraphs_of_similar_size():
    assert samples.SAMPLES == {"English": samples.ENGLISH, "Chinese": samples.CHINESE}
    assert len(paragraphs(samples.ENGLISH)) == len(paragraphs(samples.CHINESE)) == 3
    n_en, n_zh = (len(t.encode("utf-8")) for t in (samples.ENGLISH, samples.CHINESE))
    assert 1000 < n_en < 2000 and 0.8 < n_zh / n_en < 1.25  # small, and a fair comparison


def test_english_is_ascii_and_chinese_is_mostly_cjk_of_three_bytes():
    assert samples.ENGLISH.isascii()
    cjk = [ch for ch in samples.CHINESE if unicodedata.name(ch, "").startswith("CJK UNIFIED")]
    assert len(cjk) > 0.75 * len(samples.CHINESE)
    assert all(len(ch.encode("utf-8")) == 3 for ch in cjk)


def test_samples_end_with_one_newline_and_no_trailing_spaces():
    for text in samples.SAMPLES.values():
        assert text.endswith("\n") and not text.endswith("\n\n")
        assert all(line == line.rstrip() for line in text.splitlines())
