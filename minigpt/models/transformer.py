"""Transformer models built from ``minigpt.models.attention``: a stack, BERT's masked LM, a seq2seq model.

The Transformer of Vaswani et al. (2017) had two halves, and its descendants kept one or both:

- ``Block``: the pre-norm layer (self-attention, optional cross-attention, GPT's ``MLP``), built
  on ``attention.MultiHeadAttention``.
- ``Transformer``: a stack of ``Block`` over token and position embeddings, with an
  output layer tied to the token embedding (``tie_head=False``: a matrix of its own).
  ``causal=True`` makes it a decoder-only language model (GPT; chapter 04 also uses
  ``minigpt.models.gpt.GPT``), ``causal=False`` an encoder that reads the whole text at once.
  Positions are ``"learned"``, ``"sinusoidal"``, ``"rotary"`` or ``"none"``; ``mlp=False``
  leaves the MLPs out (the attention-only models of chapter 06's induction heads).
- ``MaskedLM`` and ``mask_tokens``: an encoder trained BERT-style (Devlin et al. 2019). A
  masked-token "cloze": 15% of positions are chosen; of those 80% become ``[MASK]``, 10% a
  random token and 10% stay as they are; the loss counts only the chosen positions.
- ``Seq2Seq``: an encoder-decoder (T5-style, Raffel et al. 2020): the encoder reads the source,
  the causal decoder writes the target and reads the encoder's output through cross-attention.
  ``minigpt.data.strings.StringTask`` is a toy task for it (reverse or sort a string), with
  held-out strings and ``exact_match``.
- ``attention_maps``: every layer's and head's attention weights for a text, for heat maps.

    >>> from minigpt.models.transformer import MaskedLM, TransformerConfig           # doctest: +SKIP
    >>> mlm = MaskedLM(TransformerConfig(vocab_size=400, block_size=64))    # doctest: +SKIP
    >>> Trainer(mlm, mlm.batches(get_batch), config).fit()                  # doctest: +SKIP

Every model follows the Trainer's contract, ``forward(x, y) -> (logits, loss)``.

Deliberately left out: BERT's next-sentence objective and segment embeddings, T5's relative
position buckets and span corruption, beam search, dropout and KV caching.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.core.runtime import evaluating
from minigpt.models.attention import MultiHeadAttention, padding_mask, sinusoidal_encoding
from minigpt.models.gpt import MLP, check_positions

__all__ = [
    "IGNORE", "POSITIONS", "MaskedLM", "Seq2Seq", "Transformer", "TransformerConfig",
    "attention_maps", "mask_tokens",
]

POSITIONS = ("learned", "sinusoidal", "rotary", "none")
IGNORE = -100  # a target that the loss skips (F.cross_entropy's default ignore_index)


@dataclass
class TransformerConfig:
    vocab_size: int
    block_size: int = 64  # the longest sequence the model reads
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64  # must be divisible by n_head
    causal: bool = True  # True: decoder-only (no look ahead); False: an encoder
    positions: str = "learned"  # one of POSITIONS
    bias: bool = True
    mlp: bool = True  # False: attention-only blocks (the circuits of Olsson et al. 2022, chapter 06)
    tie_head: bool = True  # False: the output layer is a matrix of its own, not the token embedding
    embed_std: float = 0.02  # the embeddings' initial scale (GPT-2's); 1.0 is PyTorch's default

    def __post_init__(self) -> None:
        rules = [  # the same checks, and the same message, as GPTConfig's
            (self.vocab_size >= 1, "vocab_size must be >= 1"),
            (self.block_size >= 1, "block_size must be >= 1"),
            (self.n_layer >= 1, "n_layer must be >= 1"),
            (self.n_head >= 1 and self.n_embd % self.n_head == 0,
             "n_embd must be a positive multiple of n_head"),
            (self.positions in POSITIONS, f"positions must be one of {POSITIONS}"),
            (self.embed_std > 0, "embed_std must be > 0"),
            (self.positions not in ("sinusoidal", "rotary") or self.n_head < 1
             or (self.n_embd // self.n_head) % 2 == 0,
             "sinusoidal and rotary positions need an even width per head (n_embd / n_head)"),
        ]
        broken = [message for ok, message in rules if not ok]
        if broken:
            raise ValueError("Invalid TransformerConfig: " + "; ".join(broken) + f". Got {self}.")


def _init_weights(model: nn.Module, n_layer: int, embed_std: float = 0.02) -> None:
    """Linear layers: N(0, 1/fan_in), i.e. unit-scale outputs, with the layers marked
    ``residual`` (they add into the residual stream) scaled down by 1/sqrt(2 n_layer) as in
    GPT-2; embeddings (and so a tied output layer): N(0, embed_std), GPT-2's 0.02 by default;
    biases zero.

    GPT-2's flat 0.02 suits widths near 768 (1/sqrt(768) = 0.036); at the course's widths of
    32 to 128 it makes queries and keys so small that attention starts uniform and its
    gradient (a product of the two) tiny: the recall probe of chapter 04 then sits on a
    plateau for thousands of steps instead of a few hundred."""
    embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    for module in embeddings:
        nn.init.normal_(module.weight, 0.0, embed_std)
    tied = {id(m.weight) for m in embeddings}  # an output layer that shares them stays so
    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module.weight) not in tied:
            std = 1 / math.sqrt(module.in_features)
            if getattr(module, "residual", False):
                std /= math.sqrt(2 * n_layer)
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class Block(nn.Module):
    """A pre-norm Transformer layer (as in GPT-2; Vaswani et al. normalised after the sum):

        x = x + self_attention(norm(x))
        x = x + cross_attention(norm(x), memory)     # only with cross=True (a decoder)
        x = x + mlp(norm(x))                          # left out with mlp=False (attention only)

    The residual sums give every layer a direct path to the input (and the gradient a direct
    path back); normalising each branch's input keeps the stream's scale in check as layers
    pile up. ``forward(x, mask=None, memory=None, memory_mask=None, return_weights=False)``
    returns ``x``, or ``(x, weights)`` with ``weights["self"]`` (B, H, T, T) and, in a block
    with cross-attention, ``weights["cross"]`` (B, H, T, T_memory)."""

    def __init__(self, n_embd: int, n_head: int, causal: bool = False, rotary: bool = False,
                 cross: bool = False, bias: bool = True, mlp: bool = True):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = MultiHeadAttention(n_embd, n_head, causal=causal, rotary=rotary, bias=bias)
        self.cross = None
        if cross:
            self.ln_cross = nn.LayerNorm(n_embd, bias=bias)
            self.cross = MultiHeadAttention(n_embd, n_head, bias=bias)
        self.ln2 = nn.LayerNorm(n_embd, bias=bias) if mlp else None
        self.mlp = MLP(n_embd, bias=bias) if mlp else None

    def forward(self, x: Tensor, mask: Tensor | None = None, memory: Tensor | None = None,
                memory_mask: Tensor | None = None,
                return_weights: bool = False) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        weights = {}
        if return_weights:
            a, weights["self"] = self.attn(self.ln1(x), mask=mask, return_weights=True)
        else:
            a = self.attn(self.ln1(x), mask=mask)
        x = x + a
        if self.cross is not None:
            if memory is None:
                raise ValueError("this block has cross-attention: pass the encoder's output as memory")
            if return_weights:
                a, weights["cross"] = self.cross(self.ln_cross(x), memory=memory, mask=memory_mask,
                                                 return_weights=True)
            else:
                a = self.cross(self.ln_cross(x), memory=memory, mask=memory_mask)
            x = x + a
        if self.mlp is not None:
            x = x + self.mlp(self.ln2(x))
        return (x, weights) if return_weights else x


class Embedding(nn.Module):
    """Token embedding plus absolute positions (learned or sinusoidal), or none for rotary
    (rotary positions act inside attention) and "none"."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.block_size = cfg.block_size
        self.tok = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.positions == "learned" else None
        if cfg.positions == "sinusoidal":
            self.register_buffer("table", sinusoidal_encoding(cfg.block_size, cfg.n_embd), persistent=False)
        else:
            self.table = None

    def forward(self, idx: Tensor) -> Tensor:
        T = idx.size(1)
        check_positions(T, self.block_size)
        x = self.tok(idx)  # (B, T, C)
        if self.pos is not None:
            x = x + self.pos(torch.arange(T, device=idx.device))
        elif self.table is not None:
            x = x + self.table[:T]
        return x


class Transformer(nn.Module):
    """Token ids -> logits through ``n_layer`` pre-norm blocks; ``forward(idx, targets=None,
    pad_id=None) -> (logits, loss)``. Targets equal to ``IGNORE`` don't count in the loss;
    ``pad_id`` hides padding tokens from attention."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = Embedding(cfg)
        rotary = cfg.positions == "rotary"
        self.blocks = nn.ModuleList(Block(cfg.n_embd, cfg.n_head, causal=cfg.causal, rotary=rotary,
                                          bias=cfg.bias, mlp=cfg.mlp) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_head:
            self.head.weight = self.embed.tok.weight  # weight tying
        _init_weights(self, cfg.n_layer, cfg.embed_std)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: Tensor, targets: Tensor | None = None, pad_id: int | None = None,
                return_weights: bool = False):
        mask = padding_mask(idx, pad_id) if pad_id is not None else None
        x = self.embed(idx)
        weights = []
        for block in self.blocks:
            if return_weights:
                x, w = block(x, mask=mask, return_weights=True)
                weights.append(w["self"])
            else:
                x = block(x, mask=mask)
        logits = self.head(self.ln_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        if return_weights:
            return logits, loss, torch.stack(weights, dim=1)  # (B, n_layer, H, T, T)
        return logits, loss


# ---- BERT: the masked-token cloze --------------------------------------------------------------


def mask_tokens(ids: Tensor, mask_id: int, vocab_size: int, p: float = 0.15,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT's corruption of token ids (B, T): ``(inputs, targets)``.

    Each position is chosen with probability ``p``. A chosen position becomes ``mask_id`` with
    probability 0.8, a random token from ``0 .. vocab_size - 1`` with 0.1, and stays as it is
    with 0.1 (so the model cannot learn that only ``[MASK]`` needs predicting). ``targets``
    holds the original token at chosen positions and ``IGNORE`` elsewhere."""
    if not 0 < p < 1:
        raise ValueError(f"p must be between 0 and 1, got {p}")
    if 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id={mask_id} must be a token of its own, outside the vocabulary "
                         f"0 .. {vocab_size - 1} that random replacements are drawn from")
    chosen = torch.rand(ids.shape, generator=generator) < p
    roll = torch.rand(ids.shape, generator=generator)
    random_tokens = torch.randint(0, vocab_size, ids.shape, generator=generator)
    chosen, roll, random_tokens = chosen.to(ids.device), roll.to(ids.device), random_tokens.to(ids.device)
    inputs = torch.where(chosen & (roll < 0.8), torch.full_like(ids, mask_id), ids)
    inputs = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_tokens, inputs)
    targets = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    return inputs, targets


class MaskedLM(Transformer):
    """A BERT-style encoder: a bidirectional ``Transformer`` with one extra token, ``[MASK]``
    (id ``mask_id = vocab_size`` of the text's vocabulary). ``cfg.vocab_size`` is the text's
    vocabulary; ``cfg.causal`` must be False."""

    def __init__(self, cfg: TransformerConfig):
        if cfg.causal:
            raise ValueError("a masked LM reads both sides of a blank: build it with causal=False")
        self.text_vocab_size = cfg.vocab_size
        super().__init__(TransformerConfig(**{**cfg.__dict__, "vocab_size": cfg.vocab_size + 1}))

    @property
    def mask_id(self) -> int:
        return self.text_vocab_size

    def batches(self, get_batch: Callable[[str], tuple[Tensor, ...]], p: float = 0.15,
                generator: torch.Generator | None = None) -> Callable[[str], tuple[Tensor, Tensor]]:
        """Wrap a ``get_batch(split) -> (x, y)`` of text windows into one that returns
        ``mask_tokens(x)``, ready for the Trainer (the next-token ``y`` is not used)."""
        def masked_batch(split: str) -> tuple[Tensor, Tensor]:
            x = get_batch(split)[0]
            return mask_tokens(x, self.mask_id, self.text_vocab_size, p, generator)

        return masked_batch

    @torch.no_grad()
    def fill(self, ids: Tensor, blanks: Tensor) -> Tensor:
        """Replace the positions where ``blanks`` (bool, like ``ids`` (B, T)) is True by
        ``[MASK]`` and return the model's likeliest token for every position (B, T)."""
        if blanks.shape != ids.shape:
            raise ValueError(f"blanks {tuple(blanks.shape)} must have the shape of ids {tuple(ids.shape)}")
        with evaluating(self):
            logits, _ = self(ids.masked_fill(blanks, self.mask_id))
        return logits[..., : self.text_vocab_size].argmax(-1)


# ---- attention maps ----------------------------------------------------------------------------


@torch.no_grad()
def attention_maps(model: Transformer, tokenizer, text: str) -> Tensor:
    """The attention weights of every layer and head of ``model`` reading ``text``:
    (n_layer, n_head, T, T), row = the position that looks, column = the position looked at."""
    if not text:
        raise ValueError("give a text of at least one token")
    ids = tokenizer.encode(text)
    check_positions(len(ids), model.cfg.block_size)
    idx = torch.tensor([ids], device=next(model.parameters()).device)
    with evaluating(model):
        _, _, weights = model(idx, return_weights=True)
    return weights[0].cpu()


# ---- encoder-decoder ---------------------------------------------------------------------------


class Seq2Seq(nn.Module):
    """Encoder-decoder Transformer: ``forward(src, tgt) -> (logits, loss)``.

    ``src`` (B, S) and ``tgt`` (B, T) are padded with ``pad_id``; ``tgt`` starts with
    ``bos_id`` and ends with ``eos_id``. The decoder reads ``tgt[:, :-1]`` and predicts
    ``tgt[:, 1:]`` (teacher forcing); padding counts neither in attention nor in the loss.
    ``cfg.n_layer`` layers each for the encoder and the decoder; ``cfg.causal`` is ignored."""

    def __init__(self, cfg: TransformerConfig, pad_id: int, bos_id: int, eos_id: int):
        super().__init__()
        self.cfg, self.pad_id, self.bos_id, self.eos_id = cfg, pad_id, bos_id, eos_id
        rotary = cfg.positions == "rotary"
        self.embed = Embedding(cfg)  # shared by encoder and decoder (one vocabulary)
        self.encoder = nn.ModuleList(Block(cfg.n_embd, cfg.n_head, rotary=rotary, bias=cfg.bias)
                                     for _ in range(cfg.n_layer))
        self.decoder = nn.ModuleList(Block(cfg.n_embd, cfg.n_head, causal=True, rotary=rotary,
                                           cross=True, bias=cfg.bias) for _ in range(cfg.n_layer))
        self.ln_enc = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.ln_dec = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_head:
            self.head.weight = self.embed.tok.weight
        _init_weights(self, 2 * cfg.n_layer, cfg.embed_std)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """The encoder's output (B, S, C) and the source's padding mask (B, 1, 1, S)."""
        mask = padding_mask(src, self.pad_id)
        x = self.embed(src)
        for block in self.encoder:
            x = block(x, mask=mask)
        return self.ln_enc(x), mask

    def decode(self, tgt_in: Tensor, memory: Tensor, memory_mask: Tensor,
               return_weights: bool = False):
        x = self.embed(tgt_in)
        mask, cross = padding_mask(tgt_in, self.pad_id), []
        for block in self.decoder:
            if return_weights:
                x, w = block(x, mask=mask, memory=memory, memory_mask=memory_mask, return_weights=True)
                cross.append(w["cross"])
            else:
                x = block(x, mask=mask, memory=memory, memory_mask=memory_mask)
        logits = self.head(self.ln_dec(x))
        return (logits, torch.stack(cross, dim=1)) if return_weights else logits

    def forward(self, src: Tensor, tgt: Tensor) -> tuple[Tensor, Tensor]:
        memory, memory_mask = self.encode(src)
        logits = self.decode(tgt[:, :-1], memory, memory_mask)
        targets = tgt[:, 1:].masked_fill(tgt[:, 1:] == self.pad_id, IGNORE)
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)

    @torch.no_grad()
    def generate(self, src: Tensor, max_new_tokens: int | None = None) -> Tensor:
        """Greedy decoding: (B, T) target ids after ``bos_id``, each row cut at its ``eos_id``
        and padded with ``pad_id``."""
        max_new_tokens = max_new_tokens or self.cfg.block_size - 1
        check_positions(max_new_tokens + 1, self.cfg.block_size)
        with evaluating(self):
            memory, memory_mask = self.encode(src)
            out = torch.full((src.size(0), 1), self.bos_id, device=src.device)
            done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
            for _ in range(max_new_tokens):
                nxt = self.decode(out, memory, memory_mask)[:, -1].argmax(-1)
                nxt = nxt.masked_fill(done, self.pad_id)
                out = torch.cat([out, nxt[:, None]], dim=1)
                done |= nxt == self.eos_id
                if done.all():
                    break
        out = out[:, 1:]
        return out.masked_fill(out == self.eos_id, self.pad_id)
