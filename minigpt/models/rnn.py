"""Recurrent language models: the networks before the Transformer.

Chapter 03 walks from counting (chapter 01) to recurrence: first a fixed window of embeddings
(``minigpt.models.nplm``), then state carried through time:

- ``RNNCell``, ``LSTMCell``, ``GRUCell``: one time step of Elman's (1990) recurrent network,
  of Hochreiter & Schmidhuber's (1997) LSTM and of Cho et al.'s (2014) GRU, written out by
  hand with the same parameters as ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (``from_torch`` copies
  them), and ``unroll`` to run a cell over a sequence.
- ``RNNLM``: a language model around torch's fused recurrent layers (the same equations, run
  faster): embedding -> RNN / LSTM / GRU -> linear head. Its ``generate`` has the signature of
  ``GPT.generate``, so ``gpt.sample`` and ``widgets.sampler`` work with it unchanged.

Training uses the course's one ``minigpt.train.trainer.Trainer``. Truncated backpropagation through time with
the hidden state carried from one window to the next is a data-and-loss pair, ``TBPTT``,
that plugs into the Trainer's ``get_batch`` and ``loss_fn``:

    >>> from minigpt.models import rnn
    >>> model = rnn.RNNLM(vocab_size=400, kind="lstm", n_embd=64, n_hidden=256)  # doctest: +SKIP
    >>> tbptt = rnn.TBPTT(ids, batch_size=32, block_size=64)                      # doctest: +SKIP
    >>> Trainer(model, tbptt.get_batch, config, loss_fn=tbptt.loss_fn).fit()      # doctest: +SKIP
    >>> loss, n = rnn.heldout_loss_carry(model, test_ids)   # state carried across windows  # doctest: +SKIP

``grad_norm_through_time`` measures how much the loss at the last position depends on each
earlier hidden state: the vanishing gradients of Pascanu et al. (2013), as a curve.

Shapes: ``B`` batch, ``T`` time steps, ``C`` embedding width, ``H`` hidden width, ``V``
vocabulary size. A *state* is ``h`` of shape (n_layers, B, H) for RNN and GRU, the pair
``(h, c)`` for the LSTM (the layout torch's layers use).

Deliberately left out: bidirectional layers (a language model reads left to right), packed
variable-length sequences, Bengio's direct input-to-output connections, weight tying and
dropout between time steps. Each is a small change; none is needed to see what recurrence buys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.core.runtime import evaluating
from minigpt.data.batching import get_batch as random_windows
from minigpt.models.gpt import check_sampling, check_token_ids, sample_next

__all__ = [
    "KINDS", "RNNLM", "TBPTT", "GRUCell", "LSTMCell", "RNNCell", "State", "detach_state",
    "grad_norm_through_time", "heldout_loss_carry", "unroll",
]

State = Tensor | tuple[Tensor, Tensor]
KINDS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def detach_state(state: State | None) -> State | None:
    """The same state cut off from the graph that made it: the next window's backward pass
    stops here (the "truncated" in truncated backpropagation through time)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def _check_stateful(model: nn.Module, what: str) -> None:
    if not callable(getattr(model, "forward_with_state", None)):
        raise TypeError(f"{what} needs a model with forward_with_state(x, state) -> (logits, "
                        f"state), such as RNNLM; {type(model).__name__} has none. For a model "
                        "without a state (NPLM, GPT) use train.heldout_loss and random windows "
                        "(data.make_get_batch) instead.")


# ---------------------------------------------------------------------------------------------
# Recurrent cells by hand, with torch's parameter layout
# ---------------------------------------------------------------------------------------------


class _Cell(nn.Module):
    """Parameters as torch lays them out: ``weight_ih`` (gates * H, I), ``weight_hh``
    (gates * H, H), ``bias_ih`` and ``bias_hh`` (gates * H), initialised U(-1/sqrt(H), 1/sqrt(H))."""

    gates = 1
    torch_class: type[nn.Module] = nn.RNN

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        g = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g, input_size))
        self.weight_hh = nn.Parameter(torch.empty(g, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(g))
        self.bias_hh = nn.Parameter(torch.empty(g))
        bound = 1 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    @classmethod
    def from_torch(cls, module: nn.Module) -> _Cell:
        """A hand-written cell holding a copy of the weights of a one-layer torch layer
        (``nn.RNN``/``LSTM``/``GRU``) or cell (``nn.RNNCell``/``LSTMCell``/``GRUCell``)."""
        name = cls.torch_class.__name__
        if not isinstance(module, (cls.torch_class, getattr(nn, name + "Cell"))):
            raise TypeError(f"{cls.__name__}.from_torch needs an nn.{name} or nn.{name}Cell, "
                            f"got {type(module).__name__}")
        if isinstance(module, nn.RNNBase):
            if module.num_layers != 1 or module.bidirectional or not module.bias:
                raise ValueError("copy a one-layer, one-direction layer with biases")
            if getattr(module, "proj_size", 0):
                raise ValueError("LSTMs with proj_size have no hand-written twin here")
            suffix = "_l0"
        else:
            suffix = ""
        if getattr(module, "nonlinearity", "tanh") != "tanh":
            raise ValueError("only tanh RNNs have a hand-written twin here")
        cell = cls(module.input_size, module.hidden_size)
        with torch.no_grad():
            for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, p).copy_(getattr(module, p + suffix))
        return cell

    def init_state(self, batch_size: int) -> State:
        return torch.zeros(batch_size, self.hidden_size, device=self.weight_ih.device)


class RNNCell(_Cell):
    """Elman's recurrent step: ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``."""

    def forward(self, x: Tensor, h: Tensor) -> Tensor:  # x (B, I), h (B, H) -> (B, H)
        return torch.tanh(x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh)


class LSTMCell(_Cell):
    """The LSTM step. Four gates from ``x`` and ``h`` (torch's order: input, forget, cell,
    output); the cell state ``c`` is updated by addition, ``c' = f * c + i * g``, which is
    what lets gradients flow over many steps when the forget gate stays near 1."""

    gates = 4
    torch_class = nn.LSTM

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state  # (B, H) each
        z = x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh  # (B, 4H)
        i, f, g, o = z.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def init_state(self, batch_size: int) -> tuple[Tensor, Tensor]:
        h = super().init_state(batch_size)
        return h, torch.zeros_like(h)


class GRUCell(_Cell):
    """The GRU step: a reset gate ``r`` and an update gate ``z`` (torch's order: r, z, n);
    ``h' = (1 - z) * n + z * h`` mixes the old state with a candidate ``n``."""

    gates = 3
    torch_class = nn.GRU

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        xr, xz, xn = (x @ self.weight_ih.T + self.bias_ih).chunk(3, dim=1)  # (B, H) each
        hr, hz, hn = (h @ self.weight_hh.T + self.bias_hh).chunk(3, dim=1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)  # the reset gate scales the old state's part of n
        return (1 - z) * n + z * h


def unroll(cell: _Cell, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
    """Run ``cell`` over ``x`` (B, T, I), one step at a time, from ``state`` (zeros if None).

    Returns the hidden states ``h`` of every step, (B, T, H), and the final state, like a
    one-layer ``torch.nn.RNN``/``LSTM``/``GRU`` with ``batch_first=True`` (without its leading
    layer axis)."""
    if x.dim() != 3 or x.size(-1) != cell.input_size:
        raise ValueError(f"x must have shape (B, T, {cell.input_size}), got {tuple(x.shape)}")
    state = cell.init_state(x.size(0)) if state is None else state
    outputs = []
    for t in range(x.size(1)):
        state = cell(x[:, t], state)
        outputs.append(state[0] if isinstance(state, tuple) else state)
    return torch.stack(outputs, dim=1), state


# ---------------------------------------------------------------------------------------------
# The recurrent language model
# ---------------------------------------------------------------------------------------------


class RNNLM(nn.Module):
    """Embedding -> ``n_layers`` of RNN / LSTM / GRU -> linear head over the vocabulary.

    ``forward(x, y=None, state=None) -> (logits, loss)`` follows the course's contract (the
    state starts at zeros unless given); ``forward_with_state(x, state) -> (logits, state)``
    is the same pass that also hands back the final state, for carrying it on.

    The LSTM's forget-gate bias starts at 1 instead of near 0 (Gers et al. 2000; Jozefowicz
    et al. 2015): the cell then remembers by default and learns what to forget.
    """

    def __init__(self, vocab_size: int, kind: str = "lstm", n_embd: int = 64,
                 n_hidden: int = 256, n_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if min(vocab_size, n_embd, n_hidden, n_layers) < 1:
            raise ValueError("vocab_size, n_embd, n_hidden and n_layers must all be >= 1")
        self.vocab_size, self.kind = vocab_size, kind
        self.emb = nn.Embedding(vocab_size, n_embd)
        self.rnn = KINDS[kind](n_embd, n_hidden, n_layers, batch_first=True,
                               dropout=dropout if n_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(n_hidden, vocab_size)
        if kind == "lstm":
            with torch.no_grad():
                for layer in range(n_layers):  # gates are (i, f, g, o): slice 1 is f
                    getattr(self.rnn, f"bias_ih_l{layer}")[n_hidden:2 * n_hidden].fill_(1.0)
                    getattr(self.rnn, f"bias_hh_l{layer}")[n_hidden:2 * n_hidden].fill_(0.0)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward_with_state(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Logits (B, T, V) for every position of ``x`` (B, T), and the state after it."""
        check_token_ids(x, self.vocab_size)
        out, state = self.rnn(self.emb(x), state)  # (B, T, H); state as torch lays it out
        return self.head(self.drop(out)), state

    def forward(self, x: Tensor, y: Tensor | None = None,
                state: State | None = None) -> tuple[Tensor, Tensor | None]:
        logits, _ = self.forward_with_state(x, state)
        loss = None if y is None else F.cross_entropy(logits.flatten(0, 1), y.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None, *,
                 top_p: float | None = None) -> Tensor:
        """Extend ``idx`` (B, T) by ``max_new_tokens`` sampled tokens (as ``GPT.generate``).

        The prompt is read once; each new token then costs one step, since the state holds
        everything the model keeps of the past (a Transformer re-reads its whole window)."""
        check_sampling(temperature, top_k, top_p, max_new_tokens)
        with evaluating(self):
            logits, state = self.forward_with_state(idx)
            for _ in range(max_new_tokens):
                nxt = sample_next(logits[:, -1], temperature, top_k, generator,
                                  top_p=top_p)  # (B, 1)
                idx = torch.cat([idx, nxt], dim=1)
                logits, state = self.forward_with_state(nxt, state)
        return idx


# ---------------------------------------------------------------------------------------------
# Truncated backpropagation through time, for the course's Trainer
# ---------------------------------------------------------------------------------------------


class TBPTT:
    """Consecutive windows with the hidden state carried over, as a ``get_batch`` and a
    ``loss_fn`` for ``train.Trainer``.

    The training split is cut into ``batch_size`` equal streams, one per batch row (row b
    reads its own stretch of the text from start to end). Each training draw is the next
    ``block_size`` tokens of every stream, and ``loss_fn`` starts it from the state the
    previous window ended in, detached: the forward pass sees all the text before it, the
    backward pass stops at the window's start. At the end of the streams they start over from
    a zero state.

    Evaluation draws (``Trainer.evaluate`` runs under ``torch.no_grad()``, which is how
    ``get_batch`` tells them apart) are random windows from a zero state, as
    ``data.make_get_batch`` gives, so evaluating never moves the training streams.

    The model needs ``forward_with_state(x, state) -> (logits, state)`` (``RNNLM`` has it).
    The streams' position is not saved in checkpoints: a resumed run starts them over.
    """

    def __init__(self, splits: Mapping[str, np.ndarray], batch_size: int, block_size: int,
                 device: torch.device | str | None = None,
                 generator: torch.Generator | None = None):
        if batch_size < 1 or block_size < 1:
            raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size}, {block_size}")
        if "train" not in splits:
            raise ValueError(f"splits needs a 'train' entry, got {sorted(splits)}")
        self.batch_size, self.block_size, self.device = batch_size, block_size, device
        self.generator = generator
        self.arrays = {name: np.asarray(ids) for name, ids in splits.items()}
        train = torch.from_numpy(self.arrays["train"].astype(np.int64))
        length = len(train) // batch_size  # tokens per stream
        if length < block_size + 1:
            raise ValueError(
                f"the train split has {len(train)} tokens: {batch_size} streams of {length} are "
                f"too short for block_size={block_size} (each needs {block_size + 1}). Use a "
                "smaller batch_size or block_size, or more text.")
        self.streams = train[: length * batch_size].view(batch_size, length)  # (B, L)
        self.windows = (length - 1) // block_size  # windows per pass over the streams
        self.reset()

    def reset(self) -> None:
        """Back to the start of the streams, with a zero state."""
        self.cursor, self.state = 0, None

    def get_batch(self, split: str) -> tuple[Tensor, ...]:
        """Training: ``(x, y, "carry")``, the next window of every stream. Evaluation (under
        ``torch.no_grad()``) or another split: ``(x, y)``, random windows."""
        if split not in self.arrays:
            raise ValueError(f"unknown split {split!r}: choose one of {', '.join(self.arrays)}")
        if split != "train" or not torch.is_grad_enabled():
            return random_windows(self.arrays[split], self.batch_size, self.block_size,
                                  self.device, self.generator)
        if self.cursor == self.windows:  # the end of the streams: start over, forgetting
            self.reset()
        start = self.cursor * self.block_size
        chunk = self.streams[:, start:start + self.block_size + 1]  # (B, T + 1)
        self.cursor += 1
        return chunk[:, :-1].to(self.device), chunk[:, 1:].to(self.device), "carry"

    def loss_fn(self, model: nn.Module, batch: tuple) -> Tensor:
        """The mean cross-entropy of a batch; training windows start from the carried state
        and leave their final state, detached, for the next one."""
        _check_stateful(model, "TBPTT.loss_fn")
        x, y = batch[0], batch[1]
        carry = len(batch) > 2
        logits, state = model.forward_with_state(x, self.state if carry else None)
        if carry:
            self.state = detach_state(state)
        return F.cross_entropy(logits.flatten(0, 1), y.reshape(-1))


def _select(state: State, rows: slice) -> State:
    """The state of some batch rows (the batch is axis 1 of torch's layout), contiguous as
    cuDNN wants it."""
    if isinstance(state, tuple):
        return tuple(s[:, rows].contiguous() for s in state)
    return state[:, rows].contiguous()


@torch.no_grad()
def heldout_loss_carry(model: nn.Module, ids: np.ndarray, block_size: int = 256,
                       n_streams: int = 16) -> tuple[float, int]:
    """The exact mean loss (nats per token) over a held-out split, the state carried over.

    Like ``train.heldout_loss``, every token but the first is predicted exactly once, and it
    returns ``(mean_loss, n_targets)`` for ``metrics.bits_per_byte``. Unlike it, the state is
    carried from each window to the next, as in training, so predictions see all the text
    before them in their stream. The split is read as ``n_streams`` consecutive stretches side
    by side (one batch row each, for speed; the first token of each stretch starts from a zero
    state); the few tokens left over continue the last stretch. ``n_streams=1`` reads the
    whole split as one stream. ``block_size`` only sets the chunk size.
    """
    _check_stateful(model, "heldout_loss_carry")
    ids = np.asarray(ids)
    n_targets = len(ids) - 1
    if n_targets < 1:
        raise ValueError(f"{len(ids)} tokens hold no prediction: use a longer split")
    if n_streams < 1 or block_size < 1:
        raise ValueError(f"n_streams and block_size must be >= 1, got {n_streams}, {block_size}")
    n_streams = min(n_streams, n_targets)
    device = next(model.parameters()).device
    data = torch.from_numpy(ids.astype(np.int64)).to(device)
    per = n_targets // n_streams  # targets per stretch; the rest go to the tail
    # Stretch s holds inputs data[s*per : (s+1)*per] and targets one position later.
    rows = torch.stack([data[s * per:(s + 1) * per + 1] for s in range(n_streams)])  # (S, per+1)
    tail = data[n_streams * per:]  # (n_targets - S*per + 1,): continues the last stretch

    def read(stream: Tensor, state: State | None) -> tuple[float, State | None]:
        total = 0.0
        for start in range(0, stream.size(1) - 1, block_size):
            x = stream[:, start:start + block_size + 1]
            logits, state = model.forward_with_state(x[:, :-1], state)
            total += F.cross_entropy(logits.flatten(0, 1), x[:, 1:].reshape(-1),
                                     reduction="sum").item()
        return total, state

    with evaluating(model):
        total, state = read(rows, None)
        if len(tail) > 1:
            more, _ = read(tail[None], _select(state, slice(-1, None)))
            total += more
    return total / n_targets, n_targets


def grad_norm_through_time(model: RNNLM, x: Tensor) -> Tensor:
    """How strongly the loss at the last position of ``x`` (B, T) depends on each earlier
    hidden state: ``|| d loss / d h_t ||`` for t = 0 .. T-2, averaged over the batch.

    The loss is the cross-entropy of predicting ``x[:, -1]`` from ``x[:, :-1]``, so there are
    T-1 hidden states and the result has shape (T-1,): entry t is the state after reading
    ``x[:, t]``, and the last entry is the state that makes the prediction. The layers run one
    step at a time so that each step's top-layer output is the state the next step reads: a
    gradient that reaches ``h_t`` has travelled ``T-1-t`` steps back. A vanilla RNN's curve
    falls off exponentially with distance (vanishing gradients). Returned in float64, since
    the values get far smaller than float32 can square.
    """
    if not isinstance(model, RNNLM):
        raise TypeError(f"grad_norm_through_time needs an RNNLM, got {type(model).__name__}")
    check_token_ids(x, model.vocab_size)
    if x.size(1) < 2:
        raise ValueError("x needs at least 2 time steps: the inputs and the token to predict")
    x = x.to(next(model.parameters()).device)
    with evaluating(model):
        inputs = model.emb(x[:, :-1])  # (B, T-1, C)
        state, hs = None, []
        with torch.enable_grad():
            for t in range(inputs.size(1)):
                out, state = model.rnn(inputs[:, t:t + 1], state)  # out (B, 1, H)
                hs.append(out)
                top = out.transpose(0, 1)  # (1, B, H): the top layer's new h, as a graph node
                if isinstance(state, tuple):  # LSTM: (h, c)
                    state = (torch.cat([state[0][:-1], top]), state[1])
                else:
                    state = torch.cat([state[:-1], top])
            loss = F.cross_entropy(model.head(hs[-1][:, 0]), x[:, -1])
            grads = torch.autograd.grad(loss, hs)
    # float64 for the norms: squaring gradients of 1e-20 would underflow float32 to exactly 0
    return torch.stack([g[:, 0].double().norm(dim=-1).mean() for g in grads])  # (T-1,)
