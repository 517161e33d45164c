"""Benchmark minigpt's GPT on the CPU: quality, training speed and KV-cache generation.

    python benchmarks/gpt_cpu.py                      # TinyShakespeare (a download, cached)
    python benchmarks/gpt_cpu.py --corpus wiki        # offline stand-in: the 1.88 target is
                                                      # for TinyShakespeare and does not apply

1. Quality: the nanoGPT "shakespeare_char" recipe at CPU size (4 layers, 4 heads, 128 wide,
   context 64, batch 12, 2,000 steps, lr 1e-3 with cosine decay to 1e-4, no dropout), trained
   with the course's Trainer on the first 90% of the characters; target: at most 1.88 nats per
   character on the last 10%, measured over the whole split.
2. Training speed: tokens per second of ``minigpt.models.gpt.GPT`` beside a plain reference, the same
   model written the straightforward way (attention by hand: matmul, mask, softmax, matmul),
   timed in turns in this process on the same batches.
3. Generation: 256 new tokens with and without the KV cache (target: at least 3x faster), with
   the same model shape given a 512-token context so that all 256 fit in it.

Run it on an otherwise idle machine: with two cores, any other process halves the figures.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from minigpt.data import batching, corpora
from minigpt.data.tokenizers import CharTokenizer
from minigpt.models.gpt import GPT, GPTConfig
from minigpt.train.config import TrainConfig
from minigpt.train.evaluation import heldout_loss
from minigpt.train.trainer import Trainer

TARGET_NATS = 1.88


class ReferenceGPT(nn.Module):
    """The same architecture as minigpt.models.gpt.GPT, written plainly: one Linear per projection
    per head-group, attention as explicit matrix products with a causal mask."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        C = cfg.n_embd
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, C)
        self.pos = nn.Embedding(cfg.block_size, C)
        self.layers = nn.ModuleList()
        for _ in range(cfg.n_layer):
            self.layers.append(nn.ModuleDict({
                "ln1": nn.LayerNorm(C), "q": nn.Linear(C, C), "k": nn.Linear(C, C),
                "v": nn.Linear(C, C), "o": nn.Linear(C, C), "ln2": nn.LayerNorm(C),
                "fc": nn.Linear(C, 4 * C), "proj": nn.Linear(4 * C, C)}))
        self.ln_f = nn.LayerNorm(C)
        self.head = nn.Linear(C, cfg.vocab_size, bias=False)
        self.head.weight = self.tok.weight
        mask = torch.tril(torch.ones(cfg.block_size, cfg.block_size, dtype=torch.bool))
        self.register_buffer("mask", mask)

    def attention(self, layer: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        H = self.cfg.n_head
        q, k, v = (layer[n](x).view(B, T, H, C // H).transpose(1, 2) for n in "qkv")
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // H)
        scores = scores.masked_fill(~self.mask[:T, :T], float("-inf"))
        y = F.softmax(scores, dim=-1) @ v
        return layer["o"](y.transpose(1, 2).reshape(B, T, C))

    def forward(self, idx, targets=None):
        x = self.tok(idx) + self.pos(torch.arange(idx.size(1)))
        for layer in self.layers:
            x = x + self.attention(layer, layer["ln1"](x))
            x = x + layer["proj"](F.gelu(layer["fc"](layer["ln2"](x))))
        logits = self.head(self.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


def load(name: str) -> tuple[CharTokenizer, dict[str, np.ndarray]]:
    """Characters of the corpus, split 90/10 as nanoGPT's shakespeare_char does."""
    text = corpora.load_corpus(name)
    tok = CharTokenizer.fit(text)
    ids = batching.to_ids_array(tok.encode(text), tok.vocab_size)
    cut = int(len(ids) * 0.9)
    return tok, {"train": ids[:cut], "val": ids[cut:]}


def tokens_per_second(models: dict[str, nn.Module], get_batch, steps: int, rounds: int) -> dict:
    """Training throughput of each model, timed in alternating rounds on the same batches."""
    opts = {n: torch.optim.AdamW(m.parameters(), lr=1e-3) for n, m in models.items()}
    best = {n: 0.0 for n in models}
    for _ in range(rounds):
        batches = [get_batch("train") for _ in range(steps)]
        for name, model in models.items():
            start = time.perf_counter()
            for x, y in batches:
                _, loss = model(x, y)
                opts[name].zero_grad(set_to_none=True)
                loss.backward()
                opts[name].step()
            rate = steps * batches[0][0].numel() / (time.perf_counter() - start)
            best[name] = max(best[name], rate)
    return best


def generation_speed(model: GPT, new_tokens: int, repeat: int) -> dict[str, float]:
    """Seconds to generate ``new_tokens`` greedily from a one-token prompt, best of ``repeat``,
    without and with the KV cache; checks that both give the same tokens."""
    prompt = torch.zeros(1, 1, dtype=torch.long)
    times, outputs = {}, {}
    for use_cache in (False, True):
        times[use_cache] = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            outputs[use_cache] = model.generate(prompt, new_tokens, temperature=0,
                                                use_cache=use_cache)
            times[use_cache] = min(times[use_cache], time.perf_counter() - start)
    assert torch.equal(outputs[False], outputs[True]), "the cache changed the output"
    return {"no cache": times[False], "cache": times[True]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="shakespeare")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        tok, ids = load(args.corpus)
    except corpora.CorpusUnavailableError as err:
        raise SystemExit(f"{err}\n\nOffline, run `python benchmarks/gpt_cpu.py --corpus wiki`: "
                         "speed figures hold, the 1.88 quality target is TinyShakespeare's.")
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=128,
                    dropout=0.0)
    get_batch = batching.make_get_batch(ids, batch_size=12, block_size=cfg.block_size)
    print(f"corpus {args.corpus}: {len(ids['train']):,} training and {len(ids['val']):,} "
          f"validation characters, {tok.vocab_size} distinct; torch {torch.__version__}, "
          f"{args.threads} threads")

    torch.manual_seed(0)
    ours, ref = GPT(cfg), ReferenceGPT(cfg)
    speed = tokens_per_second({"minigpt": ours, "reference": ref}, get_batch, steps=50, rounds=3)
    print(f"\ntraining tokens/s   minigpt {speed['minigpt']:8,.0f}   reference "
          f"{speed['reference']:8,.0f}   ratio {speed['minigpt'] / speed['reference']:.2f}x")

    torch.manual_seed(1337)
    model = GPT(cfg)
    config = TrainConfig(max_steps=args.steps, lr=1e-3, min_lr_ratio=0.1, warmup_steps=100,
                         weight_decay=0.1, eval_interval=0, device="cpu")
    start = time.perf_counter()
    Trainer(model, get_batch, config).fit()
    seconds = time.perf_counter() - start
    loss, n = heldout_loss(model, ids["val"], cfg.block_size, batch_size=64)
    verdict = ("target met" if loss <= TARGET_NATS else "target missed") if \
        args.corpus == "shakespeare" else "target is for shakespeare"
    print(f"\nvalidation loss after {args.steps:,} steps ({seconds:.0f} s): {loss:.3f} nats per "
          f"character over {n:,} characters (target <= {TARGET_NATS}: {verdict})")

    # A cache only helps while the text fits the context: past block_size the window slides,
    # every position shifts and each step must re-read it. So generation is timed with the
    # same model shape but a 512-token context (speed does not depend on the weights).
    torch.manual_seed(0)
    long_model = GPT(GPTConfig(**{**cfg.__dict__, "block_size": 512}))
    times = generation_speed(long_model, new_tokens=256, repeat=3)
    print(f"\n256 new tokens (greedy, identical output; context 512): no cache "
          f"{times['no cache']:.3f} s, cache {times['cache']:.3f} s, speed-up "
          f"{times['no cache'] / times['cache']:.1f}x (target >= 3x)")


if __name__ == "__main__":
    main()
