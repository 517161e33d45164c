"""Exercise 03's build task (an LSTM cell, truncated BPTT): the checks accept right answers
written in different ways and reject the wrong ones a learner would plausibly write, naming the
mistake; the training target's margin holds over seeds."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minigpt.course import checks
from minigpt.course.checks import rnn_build
from minigpt.models.rnn import detach_state


def stub(*args):
    raise NotImplementedError


def test_checks_are_exported():
    assert set(rnn_build.__all__) == {"check_lstm_cell", "check_tbptt"}
    assert all(hasattr(checks, name) for name in rnn_build.__all__)


# --- Task 4a: the cell --------------------------------------------------------------------------

class TorchLayout(nn.Module):
    """torch.nn.LSTMCell's parameters, initialised as torch does; subclasses write forward."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size))
        for p in self.parameters():
            nn.init.uniform_(p, -hidden_size ** -0.5, hidden_size ** -0.5)

    def gates(self, x, h):
        return x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh


class Fused(TorchLayout):  # the solution's form: one (B, 4H) pre-activation, chunked
    def forward(self, x, state):
        h, c = state
        i, f, g, o = self.gates(x, h).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class PerGate(TorchLayout):  # four separate matmuls (F.linear on each gate's rows); a list back
    def forward(self, x, state):
        h, c = state
        H = self.hidden_size
        i, f, g, o = (F.linear(x, self.weight_ih[k * H:(k + 1) * H], self.bias_ih[k * H:(k + 1) * H])
                      + F.linear(h, self.weight_hh[k * H:(k + 1) * H], self.bias_hh[k * H:(k + 1) * H])
                      for k in range(4))
        c_next = f.sigmoid() * c + i.sigmoid() * g.tanh()
        return [o.sigmoid() * c_next.tanh(), c_next]


class Concat(TorchLayout):  # one matmul on [x, h], in float64, gates by view/unbind
    def forward(self, x, state):
        h, c = state
        W = torch.cat([self.weight_ih, self.weight_hh], dim=1).double()
        z = torch.cat([x, h], dim=1).double() @ W.T + (self.bias_ih + self.bias_hh).double()
        i, f, g, o = z.view(len(x), 4, -1).unbind(1)
        c_next = f.sigmoid() * c.double() + i.sigmoid() * g.tanh()
        return (o.sigmoid() * c_next.tanh()).float(), c_next.float()


@pytest.mark.parametrize("right", [Fused, PerGate, Concat])
def test_lstm_cell_check_accepts_right_answers(right, capsys):
    checks.check_lstm_cell(right)
    assert "\u2713 Task 4a (LSTM cell) passed" in capsys.readouterr().out


def _cell(update):
    """A TorchLayout cell whose step is ``update(i, f, g, o, c) -> (h_next, c_next)`` on the
    raw pre-activations."""
    class Cell(TorchLayout):
        def forward(self, x, state):
            h, c = state
            return update(*self.gates(x, h).chunk(4, dim=1), c)
    return Cell


def _standard(i, f, g, o, c, candidate=torch.tanh):
    c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * candidate(g)
    return torch.sigmoid(o) * torch.tanh(c_next), c_next


class FourLinear(nn.Module):  # its own layout: torch's weights cannot be copied in by name
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.gate = nn.ModuleList(nn.Linear(input_size + hidden_size, hidden_size) for _ in range(4))

    def forward(self, x, state):
        h, c = state
        i, f, g, o = (layer(torch.cat([x, h], dim=1)) for layer in self.gate)
        return _standard(i, f, g, o, c)


class Detached(Fused):
    def forward(self, x, state):
        h, c = Fused.forward(self, x, state)
        return h.detach(), c.detach()


CELL_WRONG = {
    "order f, i, g, o": _cell(lambda i, f, g, o, c: _standard(f, i, g, o, c)),  # f and i swapped
    "order i, f, o, g": _cell(lambda i, f, g, o, c: _standard(i, f, o, g, c)),
    "tanh, not sigmoid": _cell(lambda i, f, g, o, c: _standard(i, f, g, o, c, torch.sigmoid)),
    "without the forget gate": _cell(lambda i, f, g, o, c: (
        torch.sigmoid(o) * torch.tanh(c + torch.sigmoid(i) * torch.tanh(g)),
        c + torch.sigmoid(i) * torch.tanh(g))),
    "old cell state is dropped": _cell(lambda i, f, g, o, c: (
        torch.sigmoid(o) * torch.tanh(torch.sigmoid(i) * torch.tanh(g)),
        torch.sigmoid(i) * torch.tanh(g))),
    r"h_next needs tanh\(c_next\)": _cell(lambda i, f, g, o, c: (
        torch.sigmoid(o) * _standard(i, f, g, o, c)[1], _standard(i, f, g, o, c)[1])),
    r"returned \(c_next, h_next\)": _cell(lambda *a: _standard(*a)[::-1]),
    "do not load into your cell": FourLinear,
    "carry no gradient": Detached,
}


@pytest.mark.parametrize("message", list(CELL_WRONG))
def test_lstm_cell_check_names_mistakes(message):
    with pytest.raises(AssertionError, match=message) as error:
        checks.check_lstm_cell(CELL_WRONG[message])
    assert not isinstance(error.value, checks.NotDoneYet)


def test_lstm_cell_stub_is_not_done_yet():
    class Stub(nn.Module):
        def __init__(self, input_size, hidden_size):
            super().__init__()
            raise NotImplementedError
    with pytest.raises(checks.NotDoneYet, match="Task 4a.*not done yet.*Hint:"):
        checks.check_lstm_cell(Stub)


# --- Task 4b: truncated BPTT ----------------------------------------------------------------------

def train_tbptt(model, ids, batch_size, block_size, steps, optimizer):  # the solution's form
    L = len(ids) // batch_size
    streams = ids[: L * batch_size].view(batch_size, L)
    windows = (L - 1) // block_size
    state, cursor, losses = None, 0, []
    for _ in range(steps):
        if cursor == windows:
            state, cursor = None, 0
        s = cursor * block_size
        x, y = streams[:, s:s + block_size], streams[:, s + 1:s + block_size + 1]
        cursor += 1
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.flatten(0, 1), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        state = tuple(s.detach() for s in state)
        losses.append(loss.item())
    return losses


class Windows:
    """A batcher class: all windows of a pass cut up front with unfold, served round and round
    with their index (0: the streams start over)."""

    def __init__(self, ids, batch_size, block_size):
        L = len(ids) // batch_size
        streams = ids[: L * batch_size].reshape(batch_size, L)
        n = (L - 1) // block_size
        chunks = streams[:, : n * block_size + 1].unfold(1, block_size + 1, block_size)  # (B, n, T+1)
        self.pairs = [(chunks[:, k, :-1], chunks[:, k, 1:]) for k in range(n)]

    def __iter__(self):
        while True:
            yield from enumerate(self.pairs)


def train_tbptt_class(model, ids, batch_size, block_size, steps, optimizer):
    batches, losses, state = iter(Windows(ids, batch_size, block_size)), [], None
    for _ in range(steps):
        k, (x, y) = next(batches)
        state = None if k == 0 else state
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        state = detach_state(state)  # the package's helper
        losses.append(loss.detach())  # 0-d tensors
    return losses


@pytest.mark.parametrize("right", [train_tbptt, train_tbptt_class])
@pytest.mark.parametrize("cell", [Fused, PerGate])
def test_tbptt_check_accepts_right_answers(right, cell, capsys):
    checks.check_tbptt(right, cell)
    assert "\u2713 Task 4b (truncated BPTT) passed" in capsys.readouterr().out


def _loop(window=None, carry=lambda state: tuple(s.detach() for s in state), reset=True,
          target=None, backward=lambda loss: loss.backward(), step=True):
    """train_tbptt with one piece changed: which window step k reads (window(streams, k, T)),
    how the state is carried, whether it resets at the streams' end, the targets, the
    backward pass, the optimizer step."""
    def loop(model, ids, batch_size, block_size, steps, optimizer):
        L = len(ids) // batch_size
        streams = ids[: L * batch_size].view(batch_size, L)
        windows = (L - 1) // block_size
        state, cursor, losses = None, 0, []
        for k in range(steps):
            if cursor == windows:
                state, cursor = (None if reset else state), 0
            s = cursor * block_size
            x, y = streams[:, s:s + block_size], streams[:, s + 1:s + block_size + 1]
            if window is not None:
                x, y = window(ids, streams, k, block_size)
            cursor += 1
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.flatten(0, 1), (y if target is None else target(x, y)).reshape(-1))
            optimizer.zero_grad()
            backward(loss)
            if step:
                optimizer.step()
            state = carry(state)
            losses.append(loss.item())
        return losses
    return loop


def _random_windows(ids, streams, k, T):
    starts = torch.randint(len(ids) - T - 1, (streams.size(0),), generator=torch.Generator().manual_seed(k))
    x = torch.stack([ids[s:s + T + 1] for s in starts])
    return x[:, :-1], x[:, 1:]


def _interleaved(ids, streams, k, T):  # streams read across: ids.view(L, B).T
    B = streams.size(0)
    rows = ids[: streams.numel()].view(-1, B).T
    return rows[:, k * T:(k + 1) * T], rows[:, k * T + 1:(k + 1) * T + 1]


def _stride_t_plus_1(ids, streams, k, T):  # each window starts after the last one's target
    s = (k % ((streams.size(1) - 1) // (T + 1))) * (T + 1)
    return streams[:, s:s + T], streams[:, s + 1:s + T + 1]


TBPTT_WRONG = {
    "still attached": _loop(carry=lambda state: state),  # backward raises on the second step
    "still attached.*graph grows": _loop(carry=lambda state: state,
                                         backward=lambda loss: loss.backward(retain_graph=True)),
    "reset every window": _loop(carry=lambda state: None),
    "starts the streams over with a non-zero state": _loop(reset=False),
    "read the wrong window": _loop(window=_random_windows),
    "read the wrong window.*Row b is its own stream": _loop(window=_interleaved),
    "step 1 read the wrong window": _loop(window=_stride_t_plus_1),
    "predicting x itself": _loop(target=lambda x, y: x),
    "reads the windows right, but": _loop(step=False),  # never updates the weights
}


@pytest.mark.parametrize("message", list(TBPTT_WRONG))
def test_tbptt_check_names_mistakes(message):
    with pytest.raises(AssertionError, match=message) as error:
        checks.check_tbptt(TBPTT_WRONG[message], Fused)
    assert not isinstance(error.value, checks.NotDoneYet)
    assert "Hint:" in str(error.value)


def test_tbptt_stubs_are_not_done_yet():
    with pytest.raises(checks.NotDoneYet, match="Task 4b.*not done yet.*Hint:"):
        checks.check_tbptt(stub, Fused)
    class Stub(nn.Module):
        def __init__(self, input_size, hidden_size):
            super().__init__()
            raise NotImplementedError
    with pytest.raises(checks.NotDoneYet, match="Task 4a.*not done yet"):
        checks.check_tbptt(train_tbptt, Stub)


@pytest.mark.parametrize("seed", range(5))
def test_training_target_has_a_margin_over_seeds(seed):
    """Right loops and cells land far below the target on every seed; a loop that resets the
    state every window (but reads the right windows) stays far above it."""
    for loop, cell in [(train_tbptt, Fused), (train_tbptt_class, PerGate)]:
        assert rnn_build.train_on_stream(loop, cell, seed) < rnn_build.TRAIN_TARGET / 1.5
    no_carry = _loop(carry=lambda state: None)
    assert rnn_build.train_on_stream(no_carry, Fused, seed) > rnn_build.TRAIN_TARGET * 1.5
