"""Checks for exercise 03's build task: an LSTM cell module and truncated BPTT.

- ``check_lstm_cell(LSTMCell)``: the learner's class, built as ``LSTMCell(I, H)`` with the
  parameters of ``torch.nn.LSTMCell`` (``weight_ih`` (4H, I), ``weight_hh`` (4H, H),
  ``bias_ih`` and ``bias_hh`` (4H,), gates in torch's order i, f, g, o), gets a copy of a torch
  cell's weights by ``load_state_dict`` for several shapes; its ``(h, c)`` and the gradients of
  both must equal torch's. A wrong gate order, a sigmoid candidate or a missing forget gate
  is named.
- ``check_tbptt(train_tbptt, LSTMCell)``: the learner's loop trains a recording model; the check
  compares every window it reads with ``minigpt.models.rnn.TBPTT``'s (consecutive windows of
  ``batch_size`` streams, starting over with a zero state at the streams' end), checks that
  each window starts from the state the previous one ended in, detached from its graph, and
  that the returned losses are the windows' cross-entropies. Then the learner's cell, inside
  a small language model, learns a periodic stream with the learner's loop to a loss that
  only a carried state reaches (margins measured over seeds: tests/test_checks_rnn_build.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.course.checks.rnn import _close, _first, _lstm_tips
from minigpt.models.rnn import TBPTT

__all__ = ["check_lstm_cell", "check_tbptt"]

_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, AttributeError)
_CELL_TASK = "Task 4a (LSTM cell)"
_CELL_HINT = ("keep torch's parameters (weight_ih (4H, I), weight_hh (4H, H), bias_ih, bias_hh "
              "(4H,)); z = x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh, split into "
              "i, f, g, o with z.chunk(4, dim=1); c_next = sigmoid(f) * c + sigmoid(i) * tanh(g); "
              "h_next = sigmoid(o) * tanh(c_next); return (h_next, c_next).")


def _build(task: str, hint: str, cls: Callable, *args) -> nn.Module:
    """``cls(*args)`` with the caller's global random state untouched."""
    with torch.random.fork_rng():
        try:
            cell = _call(task, hint, cls, *args)
        except _ERRORS as error:
            raise AssertionError(f"{task}: LSTMCell{args} raised {error!r}. Hint: {hint}") from error
    if not isinstance(cell, nn.Module):
        raise AssertionError(  # noqa: TRY004 (a check reports every mistake as an AssertionError)
            f"{task}: LSTMCell(input_size, hidden_size) should build an nn.Module, got "
            f"{type(cell).__name__}. Hint: {hint}")
    return cell


def _pair(task: str, got, hint: str) -> tuple[Tensor, Tensor]:
    if not (isinstance(got, (tuple, list)) and len(got) == 2):
        raise AssertionError(f"{task}: return the pair (h_next, c_next), got {type(got).__name__}"
                             f"{f' of length {len(got)}' if isinstance(got, (tuple, list)) else ''}."
                             f" Hint: {hint}")
    return got[0], got[1]


def check_lstm_cell(cell_class: Callable) -> None:
    """Task: ``LSTMCell(input_size, hidden_size)``, an ``nn.Module`` with torch.nn.LSTMCell's
    parameters; ``cell(x, (h, c)) -> (h_next, c_next)``, x (B, I), h and c (B, H)."""
    task, hint = _CELL_TASK, _CELL_HINT
    g = torch.Generator().manual_seed(6)
    for B, I, H in [(3, 4, 5), (1, 6, 2), (5, 3, 8)]:
        ref = nn.LSTMCell(I, H)
        with torch.no_grad():
            for p in ref.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        cell = _build(task, hint, cell_class, I, H)
        try:
            cell.load_state_dict(ref.state_dict())
        except RuntimeError as error:
            have = {name: tuple(p.shape) for name, p in cell.state_dict().items()}
            raise AssertionError(
                f"{task}: a torch.nn.LSTMCell({I}, {H})'s weights do not load into your cell "
                f"(load_state_dict). Yours: {have}; torch's: weight_ih ({4 * H}, {I}), weight_hh "
                f"({4 * H}, {H}), bias_ih ({4 * H},), bias_hh ({4 * H},), registered as "
                f"nn.Parameter. Hint: {hint}") from error
        x, h, c = (torch.randn(B, n, generator=g, requires_grad=True) for n in (I, H, H))
        shapes = f"Shapes here: x ({B}, {I}), h and c ({B}, {H}); z is ({B}, {4 * H})."
        try:
            got_h, got_c = _pair(task, _call(task, hint, cell, x, (h, c)), hint)
        except _ERRORS as error:
            raise AssertionError(f"{task}: your cell raised {error!r}. {shapes} Hint: {hint}") from error
        want_h, want_c = ref(x, (h, c))
        if _close(got_h, want_c.detach()) and _close(got_c, want_h.detach()):
            raise AssertionError(f"{task}: you returned (c_next, h_next); return (h_next, c_next).")
        with torch.no_grad():
            z = x @ ref.weight_ih.T + ref.bias_ih + h @ ref.weight_hh.T + ref.bias_hh
            c_tips, h_tips = _lstm_tips(z, c, want_c)
        if not _close(got_c, want_c.detach()):
            raise AssertionError(f"{task}: c_next differs from torch.nn.LSTMCell's ({shapes})"
                                 f"{_first(got_c, c_tips)} Hint: {hint}")
        if not _close(got_h, want_h.detach()):
            raise AssertionError(f"{task}: h_next differs from torch.nn.LSTMCell's (c_next is "
                                 f"right).{_first(got_h, h_tips)} Hint: {hint}")
        # Gradients: a weighted sum of both outputs, back to the weights and the inputs.
        wh, wc = torch.randn(B, H, generator=g), torch.randn(B, H, generator=g)
        grads = []
        for outputs, params in (((got_h, got_c), dict(cell.named_parameters())),
                                ((want_h, want_c), dict(ref.named_parameters()))):
            names = sorted(params)
            loss = (outputs[0] * wh).sum() + (outputs[1] * wc).sum()
            if not loss.requires_grad:
                raise AssertionError(f"{task}: your outputs carry no gradient: compute them from "
                                     "the parameters and inputs with torch operations (no "
                                     f".detach(), .data or torch.no_grad()). Hint: {hint}")
            grads.append(torch.autograd.grad(loss, [params[n] for n in names] + [x, h, c],
                                             allow_unused=True))
        for name, mine, theirs in zip([*sorted(dict(ref.named_parameters())), "x", "h", "c"], *grads):
            if mine is None or not _close(mine, theirs):
                raise AssertionError(f"{task}: the outputs are right but the gradient with respect "
                                     f"to {name} differs from torch's: keep every step in the "
                                     "graph (no .detach(), .data, in-place edits of the inputs, or "
                                     f"hand-made constants). Hint: {hint}")
    _passed(task, "your cell equals torch.nn.LSTMCell, outputs and gradients, on copied weights")


# ---- truncated BPTT ------------------------------------------------------------------------

_TB_TASK = "Task 4b (truncated BPTT)"
_TB_HINT = ("cut ids into batch_size streams: streams = ids[:L * batch_size].view(batch_size, L), "
            "L = len(ids) // batch_size; step k reads x = streams[:, s:s + T], y = "
            "streams[:, s + 1:s + T + 1], s = k' * T, where k' counts windows since the last "
            "start and the streams start over (state None) after (L - 1) // T windows; run "
            "logits, state = model(x, state); loss = cross_entropy over all positions; zero the "
            "gradients, backward, optimizer.step(); then state = detached copy of the state.")


class _CellLM(nn.Module):
    """Embedding -> a cell run over time -> linear head; ``forward(x, state)`` returns the logits
    (B, T, V) and the final (h, c). State None means zeros."""

    def __init__(self, cell: nn.Module, vocab_size: int, n_embd: int, n_hidden: int):
        super().__init__()
        self.emb, self.cell = nn.Embedding(vocab_size, n_embd), cell
        self.head, self.n_hidden = nn.Linear(n_hidden, vocab_size), n_hidden

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None):
        if state is None:
            zeros = torch.zeros(x.size(0), self.n_hidden)
            state = (zeros, zeros)
        e, hs = self.emb(x), []  # (B, T, C)
        for t in range(x.size(1)):  # any cell that returns a pair (h, c)
            state = tuple(self.cell(e[:, t], tuple(state)))
            hs.append(state[0])
        return self.head(torch.stack(hs, dim=1)), state  # (B, T, V)


class _Recorder(nn.Module):
    """Wraps a model; records what each call received and returned."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x: Tensor, state=None):
        record = {"x": x.detach().clone(), "state": None, "graph": False}
        if state is not None:
            record["state"] = [s.detach().clone() for s in state]
            record["graph"] = any(s.requires_grad for s in state)
        logits, new = self.model(x, state)
        record.update(logits=logits.detach().clone(), out=[s.detach().clone() for s in new])
        self.calls.append(record)
        return logits, new


def _zero(state) -> bool:
    return state is None or all(not s.any() for s in state)


def _expected(ids: Tensor, batch_size: int, block_size: int, steps: int) -> list[tuple]:
    """(x, y, starts_over) of each step, as the package's TBPTT serves them."""
    ref, out = TBPTT({"train": ids.numpy()}, batch_size, block_size), []
    for _ in range(steps):
        starts_over = ref.cursor in (0, ref.windows)
        x, y, _ = ref.get_batch("train")
        out.append((x, y, starts_over))
    return out


def _structure(train_tbptt: Callable) -> None:
    """Run the learner's loop on a recording model; compare each call with rnn.TBPTT's."""
    from minigpt.models.rnn import LSTMCell  # the package's cell: this part tests the loop only
    B, T, V, steps = 4, 5, 7, 8
    ids = torch.arange(4 * 16 + 3) * 5 % V  # 4 streams of 16: 3 windows a pass, then over
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = _Recorder(_CellLM(LSTMCell(6, 8), V, 6, 8))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    failure = None
    try:
        losses = _call(_TB_TASK, _TB_HINT, train_tbptt, model, ids.clone(), B, T, steps, optimizer)
    except _ERRORS as error:
        failure, losses = error, None
    want = _expected(ids, B, T, steps)
    calls = model.calls
    for k, (x, y, starts_over) in enumerate(want[:len(calls)]):
        call = calls[k]
        if not torch.equal(call["x"], x):
            raise AssertionError(
                f"{_TB_TASK}: step {k} read the wrong window: x was {tuple(call['x'].shape)} "
                f"{call['x'][0].tolist()}... , expected {tuple(x.shape)} {x[0].tolist()}... (row 0). "
                "Row b is its own stream, ids[b * L:(b + 1) * L]; consecutive steps read "
                "consecutive windows of it, and after (L - 1) // T windows the streams start "
                f"over. Hint: {_TB_HINT}")
        if starts_over and not _zero(call["state"]):
            raise AssertionError(
                f"{_TB_TASK}: step {k} {'starts' if k == 0 else 'starts the streams over'} with a "
                "non-zero state. When the streams start over, the state must too (None), as "
                f"rnn.TBPTT does: the old state belongs to the end of the text. Hint: {_TB_HINT}")
        if not starts_over:
            if _zero(call["state"]):
                raise AssertionError(
                    f"{_TB_TASK}: step {k} started from a zero state: the state is reset every "
                    "window, so no window sees the text before it. Pass the state the previous "
                    f"window ended in. Hint: {_TB_HINT}")
            if call["graph"]:
                raise AssertionError(
                    f"{_TB_TASK}: the state entering step {k} is still attached to the previous "
                    "window's graph, so the backward pass would cross the window boundary (and "
                    "the graph grows with every step). Carry state = tuple(s.detach() for s in "
                    f"state). Hint: {_TB_HINT}")
            if not all(torch.allclose(a, b) for a, b in zip(call["state"], calls[k - 1]["out"])):
                raise AssertionError(
                    f"{_TB_TASK}: the state entering step {k} is not the one step {k - 1} ended "
                    f"in: carry the model's returned state, detached. Hint: {_TB_HINT}")
    if failure is not None:
        raise AssertionError(f"{_TB_TASK}: your loop raised {failure!r} at step {len(calls)}. "
                             f"Hint: {_TB_HINT}") from failure
    if len(calls) != steps:
        raise AssertionError(f"{_TB_TASK}: the model was called {len(calls)} times for steps="
                             f"{steps}: call it once per step. Hint: {_TB_HINT}")
    if not (isinstance(losses, (list, tuple)) and len(losses) == steps):
        raise AssertionError(f"{_TB_TASK}: return the list of the {steps} losses (floats), got "
                             f"{type(losses).__name__}. Hint: {_TB_HINT}")
    for k, ((x, y, _), call, got) in enumerate(zip(want, calls, losses)):
        loss = F.cross_entropy(call["logits"].flatten(0, 1), y.reshape(-1)).item()
        value = float(got) if isinstance(got, (float, int, Tensor)) else float("nan")
        if not abs(value - loss) <= 1e-4 * max(1.0, loss):
            same_x = F.cross_entropy(call["logits"].flatten(0, 1), x.reshape(-1)).item()
            tip = (" These are the losses of predicting x itself: the targets are x shifted by "
                   "one, y = streams[:, s + 1:s + T + 1]." if abs(value - same_x) < 1e-4 else "")
            raise AssertionError(f"{_TB_TASK}: loss {k} is {value:.4f}; the mean cross-entropy of "
                                 f"the window's predictions is {loss:.4f}.{tip} Hint: {_TB_HINT}")


def _periodic_stream(seed: int, period: int = 19, vocab: int = 3, length: int = 2400) -> Tensor:
    """A random sequence of ``period`` symbols repeated: knowing the position in the period
    makes every next symbol certain, and only a state carried across windows tells it at a
    window's first positions."""
    g = np.random.default_rng(seed)
    return torch.from_numpy(np.resize(g.integers(0, vocab, period), length)).long()


# The mean loss of the last 20 steps must be below TRAIN_TARGET. Measured on seeds 0-9 (see
# tests/test_checks_rnn_build.py): right loops and cells reach at most about 0.1; a loop that
# resets the state every window stays above 0.39 (19 > 5: a window alone cannot place itself
# in the period).
TRAIN_TARGET = 0.2
TRAIN = {"batch_size": 8, "block_size": 5, "steps": 150, "n_hidden": 24, "lr": 0.03}


def train_on_stream(train_tbptt: Callable, cell_class: Callable, seed: int) -> float:
    """The mean of the last 20 losses of the learner's loop and cell on a periodic stream."""
    ids = _periodic_stream(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _CellLM(_build(_CELL_TASK, _CELL_HINT, cell_class, 8, TRAIN["n_hidden"]),
                        3, 8, TRAIN["n_hidden"])  # 3 symbols
        optimizer = torch.optim.Adam(model.parameters(), lr=TRAIN["lr"])
        losses = _call(_TB_TASK, _TB_HINT, train_tbptt, model, ids, TRAIN["batch_size"],
                       TRAIN["block_size"], TRAIN["steps"], optimizer)
    return float(np.mean([float(v) for v in losses[-20:]]))


def check_tbptt(train_tbptt: Callable, cell_class: Callable) -> None:
    """Task: ``train_tbptt(model, ids, batch_size, block_size, steps, optimizer) -> losses``,
    ``model(x, state) -> (logits, state)``, state None at the start; trained with your
    ``LSTMCell`` (Task 4a) on a periodic stream."""
    _structure(train_tbptt)
    loss = train_on_stream(train_tbptt, cell_class, seed=0)
    if not loss < TRAIN_TARGET:
        raise AssertionError(
            f"{_TB_TASK}: your loop reads the windows right, but with your LSTMCell it reached a "
            f"loss of {loss:.3f} on a periodic stream (target below {TRAIN_TARGET}). Does Task 4a "
            "pass? Does each step call optimizer.zero_grad(), loss.backward() and "
            f"optimizer.step()? Hint: {_TB_HINT}")
    _passed(_TB_TASK, f"your loop reads windows as rnn.TBPTT does, carries the state detached, "
                      f"and trains your cell to a loss of {loss:.3f} (target < {TRAIN_TARGET})")
