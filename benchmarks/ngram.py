"""Benchmark minigpt's interpolated Kneser-Ney beside NLTK's ``KneserNeyInterpolated``.

    python benchmarks/ngram.py                       # word trigrams, 300 scored test tokens
    python benchmarks/ngram.py --order 2 --score-tokens 1000

Both models count the same training text: ``wiki``'s train split, words from
``minigpt.data.tokenizers.WordTokenizer`` (seen at least twice, else ``<unk>``), one sentence at a
time. Both then score the same tokens: the words and ``</s>`` of the first sentences of the test
split. Install the peer with ``pip install -e ".[bench]"``.

NLTK scores one word at a time in pure Python, and its Kneser-Ney recomputes every
continuation count by scanning all the n-grams of the order above, so scoring the whole test
split (29,000 tokens) would take hours: it scores the first ``--score-tokens`` only, and minigpt
is timed on the same tokens (and on the whole split, for scale). Known differences, which is why
perplexities differ a little even with the same discount:

- NLTK uses one discount for every order (default 0.1; we pass 0.75 to both models here), where
  minigpt estimates one (``kn``) or three (``mkn``) per order from counts of counts.
- NLTK's lowest order is the continuation unigram alone, with no uniform floor: a word with no
  continuation count gets probability 0. minigpt mixes in a uniform distribution.
- NLTK pads each sentence with n-1 ``<s>`` and n-1 ``</s>`` and counts the padding n-grams
  too (``</s> </s>``); minigpt uses one ``<s>`` and one ``</s>`` and never reaches past ``<s>``.
- So a sentence-opening n-gram such as ``<s> w`` has NLTK continuation count 1 (its only left
  neighbour is another ``<s>``), while minigpt uses its raw count, as KenLM does.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from minigpt.data import batching, corpora
from minigpt.data.tokenizers import WordTokenizer
from minigpt.models.ngram import NGramLM, encode
from minigpt.models.ngram_counts import count_ngrams


def sentences_in_vocab(text: str, tok: WordTokenizer) -> list[list[str]]:
    """The sentences of ``text``, each word outside the vocabulary replaced by ``<unk>``."""
    return [[w if w in tok.stoi else tok.UNK for w in s] for s in tok.sentences(text)]


def nltk_model(train: list[list[str]], order: int, discount: float):
    from nltk.lm import KneserNeyInterpolated
    from nltk.lm.preprocessing import padded_everygram_pipeline

    ngrams, vocab = padded_everygram_pipeline(order, train)
    model = KneserNeyInterpolated(order, discount=discount)
    model.fit(ngrams, vocab)
    return model


def nltk_log_probs(model, sentences: list[list[str]], order: int, limit: int) -> np.ndarray:
    """ln p of the words and ``</s>`` of ``sentences``, in order, ``limit`` of them at most."""
    out: list[float] = []
    for sentence in sentences:
        padded = ["<s>"] * (order - 1) + sentence + ["</s>"]
        for i in range(order - 1, len(padded)):
            if len(out) == limit:
                return np.array(out)
            p = model.score(padded[i], padded[i - order + 1:i])
            out.append(math.log(p) if p > 0 else -math.inf)
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--order", type=int, default=3)
    parser.add_argument("--score-tokens", type=int, default=300, help="test tokens NLTK scores")
    parser.add_argument("--discount", type=float, default=0.75)
    args = parser.parse_args()

    splits = batching.split_text(corpora.load_corpus("wiki"))
    tok = WordTokenizer.fit(splits["train"], min_count=2)
    train_sents = sentences_in_vocab(splits["train"], tok)
    test_ids = np.array(encode(splits["test"], tok))
    n = args.score_tokens
    print(f"wiki train: {sum(map(len, train_sents)):,} words in {len(train_sents):,} sentences; "
          f"vocabulary {tok.vocab_size:,}; order {args.order}")

    start = time.perf_counter()
    train_ids = encode(splits["train"], tok)
    counts = count_ngrams(train_ids, tok.vocab_size, args.order, tok.bos_id)
    ours = NGramLM(counts, args.order, "kn", discount=args.discount, tokenizer=tok)
    our_fit = time.perf_counter() - start
    start = time.perf_counter()
    ours_all = ours.log_probs(test_ids)
    our_score_all = time.perf_counter() - start
    start = time.perf_counter()
    ours_n = ours.log_probs(test_ids[: n + 200])[:n]  # a little more, then the same n targets
    our_score = time.perf_counter() - start
    estimated = NGramLM(counts, args.order, "mkn", tokenizer=tok).log_probs(test_ids)

    start = time.perf_counter()
    peer = nltk_model(train_sents, args.order, args.discount)
    peer_fit = time.perf_counter() - start
    start = time.perf_counter()
    peer_n = nltk_log_probs(peer, sentences_in_vocab(splits["test"], tok), args.order, n)
    peer_score = time.perf_counter() - start

    def ppl(logp: np.ndarray) -> float:
        return float(np.exp(-logp.mean()))

    print(f"\nperplexity on the first {n} test tokens (words and </s>), discount {args.discount}:")
    print(f"  minigpt kn  {ppl(ours_n):9.1f}")
    print(f"  NLTK        {ppl(peer_n):9.1f}   (mean |difference| in ln p per token: "
          f"{np.mean(np.abs(ours_n - peer_n)):.3f})")
    print(f"whole test split ({len(ours_all):,} tokens), minigpt only: kn (D={args.discount}) "
          f"{ppl(ours_all):.1f}, mkn with estimated discounts {ppl(estimated):.1f}")
    print("\ntimes (s)             minigpt      NLTK     ratio")
    print(f"  fit (counting)   {our_fit:10.2f} {peer_fit:9.2f} {peer_fit / our_fit:8.0f}x")
    print(f"  score {n} tokens {our_score:10.4f} {peer_score:9.2f} {peer_score / our_score:8.0f}x")
    print(f"  minigpt scores all {len(ours_all):,} test tokens in {our_score_all:.3f} s "
          f"({len(ours_all) / our_score_all:,.0f} tokens/s; NLTK: {n / peer_score:,.1f} tokens/s)")


if __name__ == "__main__":
    main()
