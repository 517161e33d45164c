"""Benchmark minigpt's word2vec beside gensim's: quality on the embedding benchmarks and speed.

    python benchmarks/word2vec.py                  # skip-gram, wiki corpus, 5 passes
    python benchmarks/word2vec.py --epochs 20 --cbow

Both train on the same sentences (``word2vec.corpus_sentences``) with the same dimension,
window, negatives, min_count, subsampling and number of passes; gensim with 2 worker threads,
ours with the course's ``minigpt.train.trainer.Trainer`` (Adam, 4,096 pairs a step). The target: WordSim353
Spearman within 0.05 of gensim's (or better). Speed is printed as corpus words per second and
as a ratio to gensim's, measured in the same process one after the other. On a shared machine
set ``OMP_WAIT_POLICY=PASSIVE``: torch's busy-waiting threads slow down several-fold when
another process holds a core.
"""

from __future__ import annotations

import argparse
import time

import torch

from minigpt.data import benchmarks, corpora
from minigpt.models import word2vec as w2v
from minigpt.models import word_vectors
from minigpt.train.config import TrainConfig
from minigpt.train.trainer import Trainer


def train_ours(sents: list[list[str]], config: w2v.Word2VecConfig) -> w2v.Word2VecRun:
    """minigpt's run, timed like ``train_gensim`` (training only, vocabulary excluded)."""
    batches = w2v.Word2VecBatches.from_sentences(sents, config)
    torch.manual_seed(config.seed)
    model = w2v.Word2Vec(batches.vocab.vocab_size, config.dim)
    settings = TrainConfig(**w2v.train_config_kwargs(config, batches.steps()), progress=False)
    trainer = Trainer(model, batches, settings, loss_fn=w2v.batch_loss)
    start = time.perf_counter()
    trainer.fit()
    return w2v.Word2VecRun(word_vectors.WordVectors.from_model(model, batches.vocab),
                           time.perf_counter() - start, w2v.corpus_words(sents), config.epochs,
                           model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="wiki")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--cbow", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="gensim's threads")
    args = parser.parse_args()

    sents = w2v.corpus_sentences(corpora.load_corpus(args.corpus))
    config = w2v.Word2VecConfig(dim=args.dim, epochs=args.epochs, cbow=args.cbow)
    bench = {name: benchmarks.load_benchmark(name)
             for name in ["wordsim353", "simlex999", "questions-words"]}
    print(f"corpus {args.corpus}: {w2v.corpus_words(sents):,} words; {config}")
    rows = {}
    for name, train in [("gensim", lambda: w2v.train_gensim(sents, config, args.workers)),
                        ("minigpt", lambda: train_ours(sents, config))]:
        run = train()
        ws = word_vectors.evaluate_similarity(run.vectors, bench["wordsim353"])
        sl = word_vectors.evaluate_similarity(run.vectors, bench["simlex999"])
        an = word_vectors.evaluate_analogies(run.vectors, bench["questions-words"])
        rows[name] = (run, ws)
        print(f"{name:<8} WordSim353 {ws.spearman:.3f} ({ws.pairs} pairs)  SimLex-999 "
              f"{sl.spearman:.3f} ({sl.pairs} pairs)  analogies {an.accuracy:.2%} of "
              f"{an.questions:,} questions  {run.seconds:6.1f} s  {run.words_per_second:,.0f} words/s")
    (ours, ours_ws), (peer, peer_ws) = rows["minigpt"], rows["gensim"]
    gap = ours_ws.spearman - peer_ws.spearman
    verdict = "met" if gap >= -0.05 else "NOT met"
    print(f"WordSim353 minigpt - gensim = {gap:+.3f} (target: >= -0.05, {verdict})")
    print(f"throughput: minigpt / gensim = {ours.words_per_second / peer.words_per_second:.2f}")


if __name__ == "__main__":
    main()
