"""Benchmark minigpt's byte-level BPE: training time beside HuggingFace ``tokenizers``, and
encoding speed of the trained tokenizer through tiktoken and in pure Python.

    python benchmarks/bpe.py                      # the wiki corpus, vocabulary of 4,096
    python benchmarks/bpe.py --vocab-size 8192 --repeat 3

The peer is HuggingFace ``tokenizers`` (Rust, multi-threaded) with its ByteLevel BPE trainer,
which pre-tokenizes with GPT-2's regex; minigpt is timed with both GPT-4's (its default) and
GPT-2's. Install the peer with ``pip install -e ".[bench]"``. Bytes per token are measured on
the training text itself, so they flatter a little.
"""

from __future__ import annotations

import argparse
import bz2
import time
from collections import Counter
from collections.abc import Callable

import regex

from minigpt.data.bpe import GPT2_PATTERN, GPT4_PATTERN, BPETokenizer, train_bpe

WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def load_text(name: str) -> str:
    """The corpus from ``minigpt.data.corpora``, or (wiki only) straight from gensim's test data."""
    try:
        from minigpt.data.corpora import load_corpus
    except ImportError:
        if name != "wiki":
            raise
        from gensim.corpora.wikicorpus import extract_pages, filter_wiki
        from gensim.test.utils import datapath

        with bz2.open(datapath(WIKI_DUMP)) as f:
            pages = (filter_wiki(text) for _, text, _ in extract_pages(f))
            return "\n\n".join(p for p in pages if p.strip() and "#redirect" not in p[:20].lower())
    return load_corpus(name)


def best_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """The fastest of ``repeat`` runs of ``fn``, and what its last run returned."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def train_huggingface(text: str, vocab_size: int):
    """HuggingFace tokenizers' ByteLevel BPE, trained on the text's lines."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(text.splitlines(keepends=True), trainer)
    return tok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="wiki", help="a minigpt.data.corpora corpus name")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument(
        "--repeat", type=int, default=1, help="time each training N times, keep the best"
    )
    args = parser.parse_args()

    text = load_text(args.corpus)
    n_bytes = len(text.encode("utf-8"))
    print(f"corpus {args.corpus}: {len(text):,} characters, {n_bytes / 1e6:.2f} MB UTF-8")
    print(f"\ntraining a vocabulary of {args.vocab_size:,} (best of {args.repeat})")

    pre, _ = best_time(lambda: Counter(regex.findall(GPT4_PATTERN, text)), args.repeat)
    t4, tok = best_time(lambda: train_bpe(text, args.vocab_size), args.repeat)
    t2, _ = best_time(lambda: train_bpe(text, args.vocab_size, GPT2_PATTERN), args.repeat)
    print(f"  minigpt, GPT-4 pattern  {t4:6.2f} s   (pre-tokenizing alone: {pre:.2f} s)")
    print(f"  minigpt, GPT-2 pattern  {t2:6.2f} s")
    try:
        import tokenizers
    except ImportError:
        print('  HuggingFace tokenizers: not installed; pip install -e ".[bench]"')
    else:
        th, _ = best_time(lambda: train_huggingface(text, args.vocab_size), args.repeat)
        print(f"  HF tokenizers {tokenizers.__version__:9} {th:6.2f} s   (GPT-2 pattern, Rust)")
        print(f"  ratio minigpt / HF      {t2 / th:6.1f} x   (same pattern)")

    print("\nencoding the corpus with the trained tokenizer (GPT-4 pattern)")
    enc = tok.to_tiktoken()
    tt, ids = best_time(lambda: enc.encode_ordinary(text), 3)
    fresh = BPETokenizer(tok.merges, tok.pattern)  # an empty cache: a fair first pass
    tp, ids_py = best_time(lambda: fresh.encode_python(text, allow_special=False), 1)
    assert ids_py == ids, "pure-Python and tiktoken encodings differ"
    for label, seconds in [("tiktoken", tt), ("pure Python", tp)]:
        print(
            f"  {label:12} {n_bytes / seconds / 1e6:7.2f} MB/s  {len(ids) / seconds / 1e6:6.2f} M tokens/s"
        )
    print(f"  {len(ids):,} tokens: {n_bytes / len(ids):.2f} bytes per token")


if __name__ == "__main__":
    main()
