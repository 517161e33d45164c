"""A small GPT: a decoder-only Transformer language model, and sampling from it.

    >>> from minigpt.models.gpt import GPT, GPTConfig
    >>> model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=2, n_embd=64))
    >>> logits, loss = model(x, y)            # x, y: (B, T) token ids; loss is mean cross-entropy
    >>> out = model.generate(prompt_ids, max_new_tokens=100, temperature=0.8, top_p=0.9)
    >>> model = GPT(GPTConfig.preset("micro", vocab_size=65))    # named sizes: see PRESETS

The model is the GPT-2 recipe at toy scale: token and learned position embeddings, a stack of
pre-norm blocks (LayerNorm -> causal self-attention -> residual, LayerNorm -> MLP -> residual),
a final LayerNorm, and an output layer that shares its weights with the token embedding
(weight tying). Attention uses ``torch.nn.functional.scaled_dot_product_attention``, which
picks a fused kernel where one exists.

Generation (chapter 06): ``sample_next`` draws one token with temperature (0 means greedy),
top-k and top-p (nucleus) filtering; ``generate`` keeps a ``KVCache`` of every layer's keys and
values, so each new token costs one position's work instead of re-reading the whole window.

This file reads alone, like nanoGPT's ``model.py``: the configuration, the attention layer,
the MLP, the block, the model and its sampling; it imports two small checks from ``core`` and
nothing else of the course. Attention written out by hand and other position encodings live in
``minigpt.models.attention``; the encoder-only and encoder-decoder variants in
``minigpt.models.transformer`` (chapter 04).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from minigpt.core.metrics import is_integer
from minigpt.core.runtime import evaluating


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 128  # the longest context the model can see
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128  # must be divisible by n_head
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms

    def __post_init__(self) -> None:
        rules = [
            (self.vocab_size >= 1, "vocab_size must be >= 1"),
            (self.block_size >= 1, "block_size must be >= 1"),
            (self.n_layer >= 1, "n_layer must be >= 1"),
            (self.n_head >= 1 and self.n_embd % self.n_head == 0,
             "n_embd must be a positive multiple of n_head"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
        ]
        broken = [message for ok, message in rules if not ok]
        if broken:
            raise ValueError("Invalid GPTConfig: " + "; ".join(broken) + f". Got {self}.")

    @classmethod
    def preset(cls, name: str, vocab_size: int, **overrides) -> GPTConfig:
        """The named size ``name`` (a key of ``PRESETS``) for ``vocab_size`` tokens; any field can
        be overridden, e.g. ``GPTConfig.preset("mini", 65, dropout=0.1)``."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)} "
                             "(or build GPTConfig(...) with your own sizes)")
        return replace(PRESETS[name], vocab_size=vocab_size, **overrides)


# Named sizes, smallest first. vocab_size=1 is a placeholder that GPTConfig.preset replaces.
# "gpt2" is GPT-2 small's shape (Radford et al. 2019: 12 layers, 768 wide, 1,024 context):
# 124 M parameters with its 50,257-token vocabulary, far too big for a laptop; it is here to
# show where the family ends.
PRESETS: dict[str, GPTConfig] = {
    "nano": GPTConfig(vocab_size=1, block_size=64, n_layer=2, n_head=2, n_embd=64),
    "micro": GPTConfig(vocab_size=1, block_size=128, n_layer=4, n_head=4, n_embd=128),
    "mini": GPTConfig(vocab_size=1, block_size=256, n_layer=6, n_head=6, n_embd=192),
    "small": GPTConfig(vocab_size=1, block_size=256, n_layer=8, n_head=8, n_embd=384, dropout=0.1),
    "gpt2": GPTConfig(vocab_size=1, block_size=1024, n_layer=12, n_head=12, n_embd=768, dropout=0.1),
}


class KVCache:
    """The keys and values every attention layer has computed so far, for ``GPT.generate``.

    A new token's query must meet the keys and values of all earlier tokens. Without a cache,
    each generation step recomputes them for the whole window; with it, a step computes one
    position and appends it. ``layers[i]`` is ``(k, v)`` of shape (B, n_head, T, head_size).
    """

    def __init__(self, n_layer: int):
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layer

    def __len__(self) -> int:
        """How many positions are cached."""
        first = self.layers[0]
        return 0 if first is None else first[0].size(2)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new positions' ``k``, ``v`` to ``layer``'s; return all of them."""
        past = self.layers[layer]
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        self.layers[layer] = (k, v)
        return k, v


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int = 0):
        super().__init__()
        self.layer = layer  # which slot of a KVCache is this layer's
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.proj.residual = True  # marks a layer that writes into the residual stream
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # each (B, T, C)
        # (B, T, C) -> (B, n_head, T, head_size): each head attends on its own slice
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, n_head, past + T, head_size)
        past = k.size(2) - T  # positions before these T
        drop = self.dropout if self.training else 0.0
        if past == 0:  # the usual case: T queries over the same T keys, causal
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        else:  # new query i (position past + i) may see keys 0 .. past + i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward layer: C -> 4C -> GELU -> C, the same at every position
    (then dropout, if any). The encoder and decoder blocks of ``minigpt.models.transformer``
    use it too."""

    def __init__(self, n_embd: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.proj.residual = True  # marks a layer that writes into the residual stream
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


def check_positions(T: int, block_size: int) -> None:
    """Raise if ``T`` tokens (a cache's and the new ones together) do not fit a context of
    ``block_size``. Every Transformer of the course checks its input with it."""
    if T > block_size:
        raise ValueError(f"{T} tokens do not fit in the context of {block_size} (block_size): "
                         "pass at most block_size tokens, e.g. idx[:, -block_size:], or build "
                         "a model with a larger block_size")


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig, layer: int = 0):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg.n_embd, cfg.bias, cfg.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


def check_sampling(temperature: float, top_k: int | None, top_p: float | None,
                   max_new_tokens: int | None = None) -> None:
    """Raise ValueError (TypeError for a non-integer count), saying what is allowed, for
    sampling settings that make no sense. ``max_new_tokens`` is checked when given."""
    if not temperature >= 0:  # also catches NaN
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and not is_integer(top_k):
        raise TypeError(f"top_k must be an integer >= 1 (or None for no limit), got {top_k!r}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 (or None for no limit), got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (or None for no limit), got {top_p}")
    if max_new_tokens is not None and not is_integer(max_new_tokens):
        raise TypeError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if max_new_tokens is not None and max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0 (how many tokens to add to the prompt), "
                         f"got {max_new_tokens}")


def check_token_ids(idx: torch.Tensor, vocab_size: int) -> None:
    """Raise, saying what to pass, unless ``idx`` is a (B, T) integer tensor of token ids in
    0 .. vocab_size - 1 (what ``nn.Embedding`` can look up)."""
    if not isinstance(idx, torch.Tensor):
        raise TypeError(f"token ids must be a tensor of shape (B, T), got a "
                        f"{type(idx).__name__}: e.g. torch.tensor([tokenizer.encode(text)])")
    if idx.dim() != 2:
        raise ValueError(f"token ids must be a tensor of shape (B, T), got shape "
                         f"{tuple(idx.shape)}; one sequence (T,) becomes (1, T) with idx[None]")
    if idx.numel() and idx.dtype not in (torch.long, torch.int):  # torch.tensor([[]]) is float
        raise TypeError(f"token ids must be integers (torch.long), got dtype {idx.dtype}: "
                        "pass idx.long(), or build it with torch.tensor(ids, dtype=torch.long)")
    if idx.numel() and (idx.min() < 0 or idx.max() >= vocab_size):
        raise ValueError(f"token ids must be in 0 .. {vocab_size - 1} (vocab_size {vocab_size}), "
                         f"got {int(idx.min())} .. {int(idx.max())}: encode with the tokenizer "
                         "the model was built for, or build the model with the tokenizer's "
                         "vocab_size")


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    *,
    top_p: float | None = None,
) -> torch.Tensor:
    """One token per row, drawn from next-token ``logits`` (B, vocab_size) -> (B, 1).

    Every language model of the course samples with this:
    - ``temperature`` divides the logits: < 1 sharpens the distribution, > 1 flattens it, and
      0 is greedy decoding (always the likeliest token; the other knobs then do nothing);
    - ``top_k`` keeps only the k likeliest tokens;
    - ``top_p`` (nucleus sampling, Holtzman et al. 2020) keeps the smallest set of likeliest
      tokens whose probabilities add up to at least ``top_p``: few tokens where the model is
      sure, many where it is not.
    What survives is renormalised (softmax) and one token is drawn from it."""
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = filter_logits(logits / temperature, top_k, top_p)
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator)


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None
                  ) -> torch.Tensor:
    """``logits`` (..., vocab_size) with the tokens that top-k and then top-p leave out set to
    -inf, so that a softmax gives them probability 0 and renormalises the rest."""
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[..., [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        probs, order = F.softmax(logits, dim=-1).sort(dim=-1, descending=True)
        before = probs.cumsum(dim=-1) - probs  # probability of the likelier tokens
        drop_sorted = before >= top_p  # the set had reached top_p before this token
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


class GPT(nn.Module):
    """Decoder-only Transformer. ``forward(idx, targets=None) -> (logits, loss)``."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, layer) for layer in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # weight tying: one matrix reads and writes tokens
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # GPT-2's init: N(0, 0.02); layers that add into the residual stream are scaled down
        # by 1/sqrt(2 * n_layer) so the stream's variance does not grow with depth.
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "residual", False):
                std /= math.sqrt(2 * self.cfg.n_layer)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, counted once (the tied head is the token embedding). With
        ``non_embedding=True`` the position embedding is left out, as in scaling-law counts."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.pos_emb.weight.numel() if non_embedding else n

    def features(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """The last block's output after the final LayerNorm, (B, T, n_embd): what the output
        layer reads. Heads other than the next-token one (a reward model's score, PPO's value)
        read it too (chapters 09-10)."""
        _, T = idx.shape
        past = 0 if cache is None else len(cache)
        check_positions(past + T, self.cfg.block_size)
        pos = torch.arange(past, past + T, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x, cache)
        return self.ln_f(x)  # (B, T, C)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab_size) for token ids ``idx`` (B, T), and the mean cross-entropy
        against ``targets`` (B, T) if given. With a ``cache``, ``idx`` holds only the new tokens:
        they sit at positions ``len(cache)`` onwards and attend to the cached ones too."""
        B, T = idx.shape
        logits = self.head(self.features(idx, cache))  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T))
        return logits, loss

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        *,
        top_p: float | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Extend ``idx`` (B, T) by ``max_new_tokens`` tokens, one at a time; (B, T + new).

        Sampling knobs as in ``sample_next`` (``temperature=0``: greedy). With ``use_cache``
        the prompt is read once and every later step feeds only the newest token, reusing the
        cached keys and values. Once the text outgrows ``block_size`` the model can only see
        the last ``block_size`` tokens, whose positions shift at every step, so from then on
        each step re-reads that window (exactly what ``use_cache=False`` does throughout)."""
        check_sampling(temperature, top_k, top_p, max_new_tokens)
        check_token_ids(idx, self.cfg.vocab_size)
        if idx.size(1) > self.cfg.block_size:
            raise ValueError(
                f"the prompt has {idx.size(1)} tokens but the model reads at most "
                f"{self.cfg.block_size} (block_size): shorten it, e.g. keep idx[:, -block_size:]"
            )
        if idx.size(1) == 0:
            raise ValueError("the prompt is empty: give at least one token to continue")
        with evaluating(self):
            cache = KVCache(self.cfg.n_layer) if use_cache else None
            for _ in range(max_new_tokens):
                if cache is not None and idx.size(1) <= self.cfg.block_size:
                    new = idx[:, len(cache):]  # the whole prompt first, then one token a step
                    logits, _ = self(new, cache=cache)
                else:
                    logits, _ = self(idx[:, -self.cfg.block_size :])
                nxt = sample_next(logits[:, -1, :], temperature, top_k, generator, top_p=top_p)
                idx = torch.cat([idx, nxt], dim=1)
        return idx


def sample(
    model: nn.Module,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = 0,
    top_p: float | None = None,
) -> str:
    """Text from ``model``: ``prompt`` followed by ``max_new_tokens`` sampled tokens.

    ``model`` is any of the course's language models with a ``generate`` method (GPT, the
    RNNs); ``tokenizer`` any of its tokenizers (it needs ``encode`` and ``decode``).
    ``seed`` makes the draw repeatable (None: use torch's global generator)."""
    check_sampling(temperature, top_k, top_p, max_new_tokens)  # before any work, for any model
    dev = next(model.parameters()).device
    if not prompt:
        raise ValueError("give a prompt of at least one character: the model continues it")
    idx = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=dev)
    gen = torch.Generator(dev).manual_seed(seed) if seed is not None else None
    out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k,
                         generator=gen, top_p=top_p)
    return tokenizer.decode(out[0].tolist())
