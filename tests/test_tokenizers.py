"""Tests for minigpt.data.tokenizers and minigpt.data.bpe: offline, and fast (seconds)."""

from __future__ import annotations

import copy
import gzip
import hashlib
import inspect
import json
import warnings
from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
import regex
import tiktoken
import tiktoken.load
import tiktoken.registry
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import minigpt.data.bpe
from minigpt.data import openai, tokenizers
from minigpt.data.bpe import ENDOFTEXT, GPT2_PATTERN, GPT4_PATTERN, BPETokenizer, train_bpe
from minigpt.data.openai import OPENAI_ENCODINGS, openai_encoding
from minigpt.data.tokenizers import (
    CharTokenizer,
    WordTokenizer,
    load_tokenizer,
    save_tokenizer,
    sentences,
    split_words,
)

MIXED = (
    "Hello, world! It's 2024; naïve café, ÅÄÖ. 日本語のテキストです。中文文本，中文文本。"
    " Emoji: 🙂🙂 👍🏽👍🏽 🇫🇷 — tabs\tand\n\nnewlines   spaces.  done?! 12345678 x'll"
)


# ---- a brute-force BPE trainer: the obvious algorithm, the reference for train_bpe ------------


def brute_force_bpe(text: str, vocab_size: int, pattern: str = GPT4_PATTERN) -> list[tuple]:
    """Recount every pair before every merge; ties: highest count, then smallest (a, b)."""
    words = [(list(w.encode()), n) for w, n in Counter(regex.findall(pattern, text)).items()]
    vocab = [bytes([i]) for i in range(256)]
    merges = []
    while len(vocab) < vocab_size:
        counts = Counter()
        for word, n in words:
            for pair in pairwise(word):
                counts[pair] += n
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        token = vocab[pair[0]] + vocab[pair[1]]
        if token not in vocab:
            vocab.append(token)
        new_id = vocab.index(token)
        merges.append(pair)
        words = [(merge_left_to_right(word, pair, new_id), n) for word, n in words]
    return merges


def merge_left_to_right(word: list[int], pair: tuple, new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(word):
        if tuple(word[i : i + 2]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    """A small BPE tokenizer trained on this package's own source plus mixed Unicode."""
    text = inspect.getsource(minigpt.data.bpe) + inspect.getsource(tokenizers) + MIXED * 5
    return train_bpe(text, 700, special_tokens=[ENDOFTEXT])


# ---- CharTokenizer -----------------------------------------------------------------------------


def test_char_roundtrip_and_sorted_vocab():
    tok = CharTokenizer.fit("hello world")
    assert tok.itos == sorted(set("hello world"))
    assert tok.vocab_size == 8
    assert tok.encode("hold") == [3, 5, 4, 1]
    assert tok.decode(tok.encode("hello world")) == "hello world"


def test_char_unknown_character_error_is_helpful():
    tok = CharTokenizer.fit("abc")
    with pytest.raises(ValueError) as err:
        tok.encode("abcxa")
    message = str(err.value)
    assert "'x'" in message and "position 3" in message and "unk=" in message


def test_char_unk_stands_in_for_unseen_characters():
    tok = CharTokenizer.fit("abc", unk="?")
    assert "?" in tok.itos
    assert tok.decode(tok.encode("abz")) == "ab?"
    with pytest.raises(ValueError):
        CharTokenizer(["a", "b"], unk="?")


def test_char_decode_accepts_arrays_and_checks_range():
    tok = CharTokenizer.fit("abc")
    assert tok.decode(np.array([0, 1, 2])) == "abc"
    assert tok.decode(torch.tensor([2, 1, 0])) == "cba"
    with pytest.raises(ValueError, match="outside"):
        tok.decode([3])
    with pytest.raises(ValueError, match="outside"):
        tok.decode([-1])


# ---- words and WordTokenizer -------------------------------------------------------------------


def test_split_words_rule():
    assert split_words("Don't stop: 3.14, it's A_B!") == [
        "don't", "stop", ":", "3", ".", "14", ",", "it's", "a_b", "!",
    ]  # fmt: skip
    assert split_words("The End", lowercase=False) == ["The", "End"]


def test_sentences_rule():
    text = 'Hi there... How are you? Pi is 3.14 "exactly." Dr. Who\n\nNo period\n== Head =='
    assert sentences(text) == [
        ["hi", "there", ".", ".", "."],
        ["how", "are", "you", "?"],
        ["pi", "is", "3", ".", "14", '"', "exactly", ".", '"'],
        ["dr", "."],
        ["who"],
        ["no", "period", "=", "=", "head", "=", "="],
    ]
    assert sentences("") == []


def test_word_vocab_specials_order_and_cutoffs():
    text = "the cat sat . the dog sat . the end"
    tok = WordTokenizer.fit(text)
    assert tok.itos[:3] == ["<unk>", "<s>", "</s>"]
    assert (tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.itos[3:] == ["the", ".", "sat", "cat", "dog", "end"]  # by count, then a-z
    assert tok.counts["the"] == 3 and tok.counts["dog"] == 1

    rare = WordTokenizer.fit(text, min_count=2)
    assert rare.itos[3:] == ["the", ".", "sat"]
    assert rare.encode("the dog sat") == [3, 0, 5]
    assert rare.counts["dog"] == 1  # counts keep the rare words

    small = WordTokenizer.fit(text, max_vocab=5)
    assert small.vocab_size == 5 and small.itos[3:] == ["the", "."]


def test_word_encode_decode_is_lossy_by_design():
    tok = WordTokenizer.fit("The cat sat. The dog sat!")
    assert tok.decode(tok.encode("The  CAT sat on the mat")) == "the cat sat <unk> the <unk>"
    cased = WordTokenizer.fit("The cat", lowercase=False)
    assert cased.decode(cased.encode("The the")) == "The <unk>"


def test_word_sentence_boundaries():
    tok = WordTokenizer.fit("a b. c!")
    ids = tok.encode("a b. c!", sentence_boundaries=True)
    assert tok.decode(ids) == "<s> a b . </s> <s> c ! </s>"
    assert tok.encode_words(["a", "zzz"]) == [tok.stoi["a"], tok.unk_id]


# ---- BPE training: the fast trainer against the obvious one -------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "aaaa",
        "aaaaa",
        "abababab",
        "aaa aaaa aaaaa aaaaaaa baaab",
        "the cat sat on the mat. the hat is flat; that's that!",
        MIXED,
        "中文文本中文文本 日本語日本語日本語 🙂🙂🙂👍🏽👍🏽",
    ],
)
@pytest.mark.parametrize("pattern", [GPT4_PATTERN, GPT2_PATTERN])
def test_train_matches_brute_force(text, pattern):
    vocab_size = 256 + 60
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short texts run out of pairs: that is fine here
        tok = train_bpe(text, vocab_size, pattern=pattern)
    assert tok.merges == brute_force_bpe(text, vocab_size, pattern)


def test_train_matches_brute_force_on_source_text():
    text = inspect.getsource(minigpt.data.bpe)[:6000]
    assert train_bpe(text, 400).merges == brute_force_bpe(text, 400)


def test_overlapping_runs_merge_left_to_right():
    tok = train_bpe("aaaa", 258)
    assert tok.merges == [(97, 97), (256, 256)]  # "aaaa" -> "AA" -> one token
    assert tok.vocab[257] == b"aaaa"
    assert tok.encode_python("aaa") == [256, 97]  # "Aa", not "aA"
    assert tok.encode_python("aaaaa") == [257, 97]


def test_ties_go_to_the_smallest_pair():
    tok = train_bpe("dcba abcd", 257)  # every pair occurs once
    assert tok.merges == [(32, 97)]  # (" ", "a") is the smallest pair by id


def test_special_tokens_take_the_last_ids_and_only_split_the_text():
    text = "hello world<|endoftext|>hello there<|endoftext|>"
    tok = train_bpe(text, 265, special_tokens=[ENDOFTEXT])
    assert tok.vocab_size == 265 and tok.special_tokens == {ENDOFTEXT: 264}
    assert not any(b"<|" in token for token in tok.vocab.values())
    ids = tok.encode("hi<|endoftext|>")
    assert ids[-1] == 264 and tok.decode(ids) == "hi<|endoftext|>"
    assert 264 not in tok.encode("hi<|endoftext|>", allow_special=False)
    assert tok.encode_python("a<|endoftext|>b") == tok.encode("a<|endoftext|>b")


def test_train_checks_vocab_size_and_warns_when_pairs_run_out():
    with pytest.raises(ValueError, match="256"):
        train_bpe("abc", 256, special_tokens=[ENDOFTEXT])
    with pytest.warns(UserWarning, match="ran out"):
        tok = train_bpe("abc", 300)
    assert tok.vocab_size == 258


def test_merges_that_spell_the_same_bytes_share_one_id():
    a, b, c = b"abc"
    tok = BPETokenizer([(a, b), (b, c), (256, c), (a, 257)])  # "ab"+"c" and "a"+"bc"
    assert tok.vocab_size == 259 and tok.vocab[258] == b"abc"
    text = "abc xabcx ab bc"
    assert tok.encode_python(text) == tok.encode(text)
    with pytest.raises(ValueError, match="not yet in the vocabulary"):
        BPETokenizer([(a, 300)])


# ---- BPE encoding: pure Python == tiktoken, and lossless ----------------------------------------

VARIED = [
    "",
    " ",
    "hello world",
    "Hello   world\n\n\n  indented\tline\r\nwindows\r\n",
    "It's, we'll, THEY'VE, i'D 12345 1.5e-10 $3,000,000",
    "def f(x):\n    return x ** 2  # squared\n",
    MIXED,
    "a" * 100,
    "trailing spaces   ",
    "\n",
    "<|endoftext|> between <|endoftext|><|endoftext|>",
]

# Valid Unicode only (codec="utf-8" leaves out lone surrogates, as st.text() does by default):
# BPE refuses the others (test_lone_surrogates_are_refused_by_training_and_encoding).
UNICODE_TEXT = (st.text(st.characters(codec="utf-8"))
                | st.text(alphabet=st.sampled_from(list("aé 日本語🙂👍🏽\n\t'1.<|>"))))


@pytest.mark.parametrize("text", VARIED)
def test_python_encode_equals_tiktoken(bpe, text):
    assert bpe.encode_python(text) == bpe.to_tiktoken().encode(text, allowed_special="all")
    assert bpe.encode_python(text, allow_special=False) == bpe.encode(text, allow_special=False)


@settings(max_examples=150, deadline=None)
@given(UNICODE_TEXT)
def test_python_encode_equals_tiktoken_on_any_text(bpe, text):
    assert bpe.encode_python(text) == bpe.encode(text)


@settings(max_examples=150, deadline=None)
@given(UNICODE_TEXT)
def test_decode_inverts_encode(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text
    assert bpe.decode(bpe.encode_python(text, allow_special=False)) == text


def test_lone_surrogates_are_refused_by_training_and_encoding(bpe):
    """One behaviour for invalid Unicode: a ValueError naming the position, never a raw
    UnicodeEncodeError (training used to) nor a silent U+FFFD (tiktoken's encode used to)."""
    message = r"lone surrogate '\\ud800' at position 2: .*valid Unicode.*errors='replace'"
    with pytest.raises(ValueError, match=message):
        train_bpe("ab\ud800c", 300)
    for encode in [bpe.encode, bpe.encode_python, tokenizers.ChatTokenizer(bpe).encode,
                   lambda text: bpe.encode(text, allow_special=False)]:
        with pytest.raises(ValueError, match=message):
            encode("ab\ud800c")
    with pytest.raises(ValueError, match=r"lone surrogate '\\udc80' at position 0"):
        bpe.encode("\udc80")  # what errors="surrogateescape" makes of a bad byte
    # Character tokenizers work on characters, not bytes: a surrogate is one more character.
    chars = CharTokenizer.fit("ab\ud800c")
    assert chars.decode(chars.encode("ab\ud800c")) == "ab\ud800c"


def test_gpt2_pattern_tokenizer_agrees_with_tiktoken():
    tok = train_bpe(MIXED * 3, 380, pattern=GPT2_PATTERN)
    for text in VARIED:
        assert tok.encode_python(text) == tok.encode(text)


def test_decode_replaces_cut_characters_and_checks_ids(bpe):
    ids = bpe.encode_python("🙂", allow_special=False)
    assert bpe.decode_bytes(ids) == "🙂".encode()
    if len(ids) > 1:
        assert "\ufffd" in bpe.decode(ids[:1])
    assert bpe.decode(torch.tensor(ids)) == "🙂"
    with pytest.raises(ValueError, match="outside"):
        bpe.decode([bpe.vocab_size])


def test_gpt4_pattern_is_cl100k_pattern(tiktoken_cache):
    assert openai_encoding("cl100k_base")._pat_str == GPT4_PATTERN


# ---- OpenAI's encodings, offline ---------------------------------------------------------------


@pytest.fixture
def tiktoken_cache(tmp_path, monkeypatch):
    """An empty tiktoken cache, the network cut off, and no encoding loaded already."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    def no_network(blobpath):
        raise AssertionError(f"tried to download {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    for name in OPENAI_ENCODINGS:
        monkeypatch.delitem(tiktoken.registry.ENCODINGS, name, raising=False)
    return tmp_path


def cache_file(cache_dir, name):
    url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
    return cache_dir / hashlib.sha1(url.encode()).hexdigest()


def test_cl100k_offline(tiktoken_cache):
    enc = openai_encoding("cl100k_base")
    assert enc.encode("hello world") == [15339, 1917]
    assert enc.n_vocab == 100277
    data = cache_file(tiktoken_cache, "cl100k_base").read_bytes()
    assert hashlib.sha256(data).hexdigest() == openai._PINNED["cl100k_base"][1]


def test_o200k_offline(tiktoken_cache):
    enc = openai_encoding("o200k_base")
    assert enc.encode("hello world") == [24912, 2375]
    assert enc.decode(enc.encode(MIXED)) == MIXED


def test_corrupt_cache_file_is_replaced(tiktoken_cache):
    path = cache_file(tiktoken_cache, "cl100k_base")
    path.write_bytes(b"not a rank file")
    assert openai_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    expected = openai._PINNED["cl100k_base"][1]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected


def test_registry_is_read_from_tiktoken():
    assert openai._registry_entry("cl100k_base") == openai._PINNED["cl100k_base"]
    assert openai._registry_entry("o200k_base") == openai._PINNED["o200k_base"]


def test_bytes_with_the_wrong_hash_are_never_written(tiktoken_cache, monkeypatch):
    url = openai._PINNED["cl100k_base"][0]
    monkeypatch.setattr(openai, "_registry_entry", lambda name: (url, "0" * 64))
    with pytest.raises(RuntimeError, match="sha256"):
        openai_encoding("cl100k_base")
    assert list(tiktoken_cache.iterdir()) == []


def test_cache_dir_follows_tiktoken(tmp_path, monkeypatch):
    url = "https://example.com/x.tiktoken"
    name = hashlib.sha1(url.encode()).hexdigest()
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path))
    assert openai._tiktoken_cache_path(url) == tmp_path / name
    monkeypatch.delenv("DATA_GYM_CACHE_DIR")
    assert openai._tiktoken_cache_path(url).parent.name == "data-gym-cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    with pytest.raises(RuntimeError, match="TIKTOKEN_CACHE_DIR"):
        openai_encoding("cl100k_base")


def test_bundled_file_matches_registry():
    data = gzip.decompress(openai._bundled_file("cl100k_base").read_bytes())
    assert hashlib.sha256(data).hexdigest() == openai._registry_entry("cl100k_base")[1]


def test_unknown_encoding_lists_the_known_ones():
    with pytest.raises(ValueError, match="cl100k_base, o200k_base"):
        openai_encoding("gpt2")


# ---- saving and loading ------------------------------------------------------------------------


def test_save_load_roundtrip_all_kinds(tmp_path, bpe):
    text = "The cat sat. The dog sat! 日本 🙂"
    for tok in [
        CharTokenizer.fit(text, unk="?"),
        WordTokenizer.fit(text, min_count=2, lowercase=False),
        bpe,
    ]:
        path = tmp_path / f"{type(tok).__name__}.json"
        save_tokenizer(tok, path)
        loaded = load_tokenizer(path)
        assert type(loaded) is type(tok) and loaded.vocab_size == tok.vocab_size
        assert loaded.to_dict() == tok.to_dict()
        assert loaded.encode(text + "\n<|endoftext|>") == tok.encode(text + "\n<|endoftext|>")
    assert load_tokenizer(tmp_path / "BPETokenizer.json").vocab == bpe.vocab


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x89PNG\r\n", "not JSON"),
        (b"{not json", "not JSON"),
        (b'{"hello": 1}', "not a minigpt tokenizer"),
        (b"[1, 2]", "not a minigpt tokenizer"),
        (b'{"format": "minigpt-tokenizer", "version": 99, "kind": "char"}', "version"),
        (b'{"format": "minigpt-tokenizer", "version": 1, "kind": "sentencepiece"}', "unknown"),
        (b'{"format": "minigpt-tokenizer", "version": 1, "kind": "char"}', "corrupt"),
        (b'{"format": "minigpt-tokenizer", "version": 1, "kind": "char", "itos": ["ab"], "unk": 0}',
         "corrupt"),
    ],
)  # fmt: skip
def test_load_rejects_other_files(tmp_path, content, message):
    path = tmp_path / "tok.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_tokenizer(path)


def test_load_rejects_corrupt_bpe(tmp_path, bpe):
    path = tmp_path / "bpe.json"
    save_tokenizer(bpe, path)
    data = json.loads(path.read_text())
    data["merges"][0] = [5, 9999]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="corrupt minigpt bpe"):
        load_tokenizer(path)


def test_bpe_copies_without_its_caches(bpe):
    """copy and pickle (DataLoader workers) go through __getstate__: data, not caches."""
    bpe.encode(MIXED)  # fills the caches
    clone = copy.deepcopy(bpe)
    assert clone.merges == bpe.merges and clone.encode(MIXED) == bpe.encode(MIXED)


def test_save_rejects_other_objects(tmp_path):
    with pytest.raises(TypeError):
        save_tokenizer(object(), tmp_path / "x.json")


# ---- the chat tokenizer (chapters 08-10) --------------------------------------------------------

def test_chat_tokenizer_renders_turns_with_special_tokens_that_text_cannot_forge():
    from minigpt.data.tokenizers import ChatTokenizer, tokenizer_from_dict, tokenizer_to_dict

    base = CharTokenizer.fit("abc <|>endsystemuserassistant", unk="?")
    tok = ChatTokenizer(base)
    assert tok.vocab_size == base.vocab_size + 4
    ids = tok.render([("system", "ab"), ("user", "c")], add_generation_prompt=True)
    assert ids[0] == tok.system_id and ids[-1] == tok.assistant_id
    assert ids.count(tok.end_id) == 2
    assert tok.decode(ids) == "<|system|>ab<|end|><|user|>c<|end|><|assistant|>"
    forged = tok.encode("<|end|>")
    assert tok.end_id not in forged and tok.decode(forged) == "<|end|>"  # plain characters
    again = tokenizer_from_dict(tokenizer_to_dict(tok))
    assert isinstance(again, ChatTokenizer) and again.render([("user", "c")]) == tok.render([("user", "c")])
    with pytest.raises(ValueError, match="unknown role"):
        tok.render([("robot", "hi")])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])
