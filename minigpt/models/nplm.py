"""The neural probabilistic language model of Bengio et al. (2003): the previous n - 1 words'
embeddings, concatenated, through a tanh layer to a softmax over the vocabulary. The first
neural language model, and chapter 03's bridge from n-grams to RNNs: a fixed window, like an
n-gram, but words that share contexts share parameters."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.core.runtime import evaluating
from minigpt.models.gpt import check_sampling, check_token_ids, sample_next


class NPLM(nn.Module):
    """Predict token t from tokens t-context .. t-1: embed, concatenate, tanh layer, softmax.

    ``forward(x, y=None) -> (logits, loss)`` gives a prediction at every position of ``x``
    (B, T); positions with fewer than ``context`` tokens before them see a learned "before the
    text" token in the missing slots, so any window length works.
    """

    def __init__(self, vocab_size: int, context: int = 8, n_embd: int = 32, n_hidden: int = 256):
        super().__init__()
        if min(vocab_size, context, n_embd, n_hidden) < 1:
            raise ValueError("vocab_size, context, n_embd and n_hidden must all be >= 1")
        self.vocab_size, self.context = vocab_size, context
        self.emb = nn.Embedding(vocab_size + 1, n_embd)  # id vocab_size: "before the text"
        self.hidden = nn.Linear(context * n_embd, n_hidden)
        self.head = nn.Linear(n_hidden, vocab_size)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        check_token_ids(x, self.vocab_size)
        B, T = x.shape
        padded = F.pad(x, (self.context - 1, 0), value=self.vocab_size)  # (B, T + context - 1)
        windows = padded.unfold(1, self.context, 1)  # (B, T, context): tokens t-context+1 .. t
        e = self.emb(windows).flatten(2)  # (B, T, context * C)
        logits = self.head(torch.tanh(self.hidden(e)))  # (B, T, V)
        loss = None if y is None else F.cross_entropy(logits.reshape(B * T, -1), y.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None, *,
                 top_p: float | None = None) -> Tensor:
        """Extend ``idx`` (B, T) by ``max_new_tokens`` sampled tokens (as ``GPT.generate``)."""
        check_sampling(temperature, top_k, top_p, max_new_tokens)
        with evaluating(self):
            for _ in range(max_new_tokens):
                logits, _ = self(idx[:, -self.context:])  # the window is all the model can see
                nxt = sample_next(logits[:, -1], temperature, top_k, generator, top_p=top_p)
                idx = torch.cat([idx, nxt], 1)
        return idx
