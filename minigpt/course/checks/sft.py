"""Checks for exercises/08_sft.ipynb: the loss mask of a chat, the masked cross-entropy, a LoRA
layer, and how few parameters LoRA trains.

The references: hand-written chats with their masks written out token by token; hand-computed
losses and ``F.cross_entropy(..., ignore_index=-100)``; ``minigpt.methods.lora.LoRALinear`` and the
formula y = x W^T + b + (alpha / r) x A^T B^T; ``lora.apply_lora`` + ``lora.trainable_share``
on real (meta-device) GPTs. Inputs catch the usual slips: leaving out the end token, marking
the assistant marker or a user turn's end, stopping after the first answer, averaging over all
positions or per row, a missing or upside-down alpha / r, and dividing by the base model alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from minigpt.course.checks._base import _number
from minigpt.course.checks._base import call as _call
from minigpt.course.checks._base import passed as _passed
from minigpt.methods.lora import LoRALinear, apply_lora, trainable_share
from minigpt.models.gpt import GPT, GPTConfig

__all__ = ["check_answer_mask", "check_lora_forward", "check_lora_param_count",
           "check_lora_share", "check_masked_loss"]


# ---- task 1 ---------------------------------------------------------------------------------

SYSTEM, USER, ASSISTANT, END = 1, 2, 3, 4  # the special tokens of most cases
NAMES = {SYSTEM: "<|system|>", USER: "<|user|>", ASSISTANT: "<|assistant|>", END: "<|end|>"}
Y, N = True, False

# (what the case is, ids, assistant_id, end_id, the expected mask written out, token names)
MASK_CASES = [
    ("one question, one answer",
     [USER, 21, 22, END, ASSISTANT, 23, 24, END], ASSISTANT, END,
     [N, N, N, N, N, Y, Y, Y], NAMES),
    ("an answer that is only its end token (the model must learn to stop at once)",
     [USER, 21, END, ASSISTANT, END], ASSISTANT, END,
     [N, N, N, N, Y], NAMES),
    ("a system prompt and two rounds of questions and answers",
     [SYSTEM, 25, END, USER, 21, END, ASSISTANT, 22, END, USER, 23, END, ASSISTANT, 24, 26, END],
     ASSISTANT, END,
     [N, N, N, N, N, N, N, Y, Y, N, N, N, N, Y, Y, Y], NAMES),
    ("an answer cut off by the end of the sequence (no end token)",
     [USER, 21, END, ASSISTANT, 22, 23], ASSISTANT, END,
     [N, N, N, N, Y, Y], NAMES),
    ("no assistant turn at all",
     [SYSTEM, 21, END, USER, 22, 23, END], ASSISTANT, END,
     [N, N, N, N, N, N, N], NAMES),
    ("a sequence that stops right after the assistant marker",
     [USER, 21, END, ASSISTANT], ASSISTANT, END,
     [N, N, N, N], NAMES),
    ("an empty sequence", [], ASSISTANT, END, [], NAMES),
    ("other ids (assistant_id=0, end_id=9): two rounds, the second cut off",
     [8, 3, 4, 9, 0, 5, 9, 8, 6, 9, 0, 7, 3], 0, 9,
     [N, N, N, N, N, Y, Y, N, N, N, N, Y, Y], {8: "<|user|>", 0: "<|assistant|>", 9: "<|end|>"}),
]


def _show_ids(ids: list[int], names: dict[int, str]) -> str:
    return "[" + " ".join(names.get(t, str(t)) for t in ids) + "]"


def _show_mask(mask: list) -> str:
    return "[" + " ".join(str(int(bool(v))) for v in mask) + "]"


def _as_bools(got) -> list[bool] | None:
    """``got`` as a list of bools if it is a sequence of bools (or 0/1), else None."""
    if hasattr(got, "tolist"):  # a tensor or a NumPy array
        got = got.tolist()
    try:
        values = list(got)
    except TypeError:
        return None
    if not all(isinstance(v, (bool, int)) and v in (0, 1) for v in values):
        return None
    return [bool(v) for v in values]


def _mask_tip(ids: list[int], assistant_id: int, end_id: int, i: int, want: bool) -> str:
    """Why position ``i`` is expected ``want`` (the learner returned the opposite)."""
    token = ids[i]
    if token == assistant_id and not want:
        return (" The assistant_id marker itself is not part of the answer: the chat template "
                "puts it there, the model never has to write it.")
    if token == end_id and want:
        return (" The end token that closes an answer belongs to it: predicting it is how the "
                "model learns to stop.")
    if token == end_id:
        return (" end_id closes user and system turns too: only the one that closes an "
                "assistant turn is part of an answer.")
    earlier = [j for j in range(i) if ids[j] == assistant_id]
    if want and earlier and end_id not in ids[earlier[-1] + 1 :]:
        return (" An answer cut off before its end token runs to the end of the sequence.")
    if want and len(earlier) >= 2:
        return (" A chat can hold several assistant turns: every assistant_id starts a new "
                "answer.")
    if not want:
        return (" Outside the answers (before an assistant_id, or after the end token that "
                "closes an answer) the mask is False.")
    return ""


def check_answer_mask(answer_mask: Callable[[list[int], int, int], list[bool]]) -> None:
    """Task: ``answer_mask(ids, assistant_id, end_id)``: True on assistant answers' tokens."""
    task = "Task 1 (answer_mask)"
    hint = ("walk through ids keeping a flag 'inside an answer': a token inside an answer is "
            "True, and end_id closes the answer (after marking it True); assistant_id (itself "
            "False) opens one; every other token outside an answer is False.")
    for what, ids, assistant_id, end_id, want, names in MASK_CASES:
        assert len(want) == len(ids), what  # the case itself is written out right
        got = _call(task, hint, answer_mask, list(ids), assistant_id, end_id)
        shown = (f"{task}, {what}: ids {_show_ids(ids, names)} (assistant_id={assistant_id}, "
                 f"end_id={end_id})")
        mask = _as_bools(got)
        if mask is None:
            raise AssertionError(f"{shown}: you returned {got!r}; return a list of bools, one "
                                 f"per token. Hint: {hint}")
        if len(mask) != len(ids):
            raise AssertionError(f"{shown}: you returned {len(mask)} values for {len(ids)} "
                                 f"tokens; return one bool per token. Hint: {hint}")
        if mask != want:
            i = next(j for j, (g, w) in enumerate(zip(mask, want)) if g != w)
            raise AssertionError(
                f"{shown}: the mask should be {_show_mask(want)}, you returned "
                f"{_show_mask(mask)}. First difference at position {i} (token "
                f"{names.get(ids[i], ids[i])}): expected {want[i]}, got {mask[i]}."
                f"{_mask_tip(ids, assistant_id, end_id, i, want[i])} Hint: {hint}")
    _what, ids, _a, _e, want, _names = MASK_CASES[2]
    _passed(task, "only the assistant's tokens, each answer's end token included: "
                  f"{sum(want)} of the {len(ids)} tokens of the chat with two rounds")


# ---- task 2 ---------------------------------------------------------------------------------


def _masked_loss_slips(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
                       ) -> dict[str, float]:
    """What the usual wrong answers return, each with the tip that explains it."""
    per_token = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    per_token = per_token.view(targets.shape).detach()
    m = mask.float()
    rows = m.sum(dim=1)
    slips = {
        "You averaged over every position: the prompt's tokens must not count, so average "
        "over the positions where mask is True only.": per_token.mean().item(),
        "You summed the masked losses: divide by how many positions the mask keeps "
        "(mask.sum()).": (per_token * m).sum().item(),
        "You divided by every position (B x T): divide by how many positions the mask keeps "
        "(mask.sum()).": ((per_token * m).sum() / m.numel()).item(),
        "The mask is the wrong way round: keep the positions where it is True.":
            (per_token * (1 - m)).sum().item() / max((1 - m).sum().item(), 1.0),
    }
    if bool((rows > 0).all()):
        slips["You averaged each row, then the rows: a row with more answer tokens must weigh "
              "more. Average over all masked positions of the batch at once."] = (
            ((per_token * m).sum(dim=1) / rows).mean().item())
    return slips


def check_masked_loss(masked_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                                            torch.Tensor]) -> None:
    """Task: ``masked_loss(logits, targets, mask)``: mean cross-entropy over masked positions."""
    task = "Task 2 (masked_loss)"
    hint = ("F.cross_entropy(logits[mask], targets[mask]) picks the kept positions, (N, V) and "
            "(N,), and averages over them; or take F.cross_entropy(..., reduction='none') per "
            "token and average it where mask is True.")
    # By hand: position 0 has logits (ln 3, 0) and target 0, so p = 3/4 and the loss ln(4/3);
    # position 1 has logits (0, 0) and target 1: p = 1/2, loss ln 2.
    hand_logits = torch.tensor([[[math.log(3.0), 0.0], [0.0, 0.0]]])
    hand_targets = torch.tensor([[0, 1]])
    cases = [("[[True, False]]", hand_logits, hand_targets, torch.tensor([[True, False]]),
              math.log(4 / 3), "ln(4/3)"),
             ("[[False, True]]", hand_logits, hand_targets, torch.tensor([[False, True]]),
              math.log(2), "ln 2"),
             ("[[True, True]]", hand_logits, hand_targets, torch.tensor([[True, True]]),
              (math.log(4 / 3) + math.log(2)) / 2, "(ln(4/3) + ln 2) / 2")]
    gen = torch.Generator().manual_seed(8)
    logits = torch.randn(2, 5, 7, generator=gen)
    targets = torch.randint(7, (2, 5), generator=gen)
    mask = torch.tensor([[False, True, True, True, True], [False, False, False, True, False]])
    reference = F.cross_entropy(logits.flatten(0, 1), targets.masked_fill(~mask, -100).flatten(),
                                ignore_index=-100).item()
    cases.append(("of a batch of 2 x 5 positions, 4 kept in the first row and 1 in the second",
                  logits, targets, mask, reference, "F.cross_entropy with ignore_index"))
    for what, lg, tg, mk, want, how in cases:
        lg = lg.clone().requires_grad_(True)
        got = _call(task, hint, masked_loss, lg, tg.clone(), mk.clone())
        shown = f"{task}: with mask {what}"
        if not isinstance(got, torch.Tensor) or got.dim() != 0:
            kind = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise AssertionError(f"{shown} you returned {kind}; return a scalar tensor (0-dim), "
                                 f"the mean. Hint: {hint}")
        if not math.isclose(got.item(), want, rel_tol=1e-5, abs_tol=1e-6):
            tip = next((t for t, v in _masked_loss_slips(lg, tg, mk).items()
                        if math.isclose(got.item(), v, rel_tol=1e-5, abs_tol=1e-6)), "")
            raise AssertionError(f"{shown} the loss is {how} = {want:.6f}, you returned "
                                 f"{got.item():.6f}. {tip + ' ' if tip else ''}Hint: {hint}")
        if not got.requires_grad:
            raise AssertionError(f"{shown} the value is right, but it carries no gradient: keep "
                                 "it a tensor computed from logits (no .item(), no torch.tensor("
                                 "...) around it, no torch.no_grad()) so that loss.backward() "
                                 f"can train the model. Hint: {hint}")
    _passed(task, "the mean cross-entropy over answer tokens only, as F.cross_entropy(..., "
                  "ignore_index=-100) gives with every other target set to -100")


# ---- task 3 ---------------------------------------------------------------------------------


def _lora_layer(d_in: int, d_out: int, r: int, alpha: float, seed: int) -> LoRALinear:
    torch.manual_seed(seed)
    layer = LoRALinear(nn.Linear(d_in, d_out), rank=r, alpha=alpha)
    with torch.no_grad():  # a trained adapter: B no longer zero
        layer.lora_B.copy_(torch.randn(d_out, r, generator=torch.Generator().manual_seed(seed)))
    return layer


def check_lora_forward(lora_forward: Callable[..., torch.Tensor]) -> None:
    """Task: ``lora_forward(x, W, b, A, B, alpha, r)`` = x W^T + b + (alpha / r) x A^T B^T."""
    task = "Task 3 (lora_forward)"
    hint = ("x @ W.T + b is the frozen layer; x @ A.T @ B.T is the low-rank update (in -> r -> "
            "out), multiplied by alpha / r. Shapes: x (..., in), W (out, in), A (r, in), "
            "B (out, r).")
    d_in, d_out, r, alpha = 6, 10, 3, 12.0  # alpha / r = 4: distinct from r / alpha and alpha
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, d_in, generator=gen)

    def run(what: str, W, b, A, B, a, rank) -> torch.Tensor:
        try:
            got = _call(task, hint, lora_forward, x.clone(), W.clone(), b.clone(), A.clone(),
                        B.clone(), a, rank)
        except RuntimeError as error:
            raise AssertionError(f"{task}, {what}: your function raised {error!r}. Mind the "
                                 f"shapes. Hint: {hint}") from None
        if not isinstance(got, torch.Tensor) or got.shape != (2, 4, d_out):
            kind = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise AssertionError(f"{task}, {what}: for x of shape (2, 4, {d_in}) and a layer "
                                 f"from {d_in} to {d_out} features, you returned {kind}; expected "
                                 f"a tensor of shape (2, 4, {d_out}). Hint: {hint}")
        return got

    # 1. B = 0, as LoRA starts: exactly the frozen linear layer.
    W, b = torch.randn(d_out, d_in, generator=gen), torch.randn(d_out, generator=gen)
    A, B = torch.randn(r, d_in, generator=gen), torch.zeros(d_out, r)
    got = run("with B = 0", W, b, A, B, alpha, r)
    if not torch.allclose(got, F.linear(x, W, b), atol=1e-5):
        tip = " The bias b is missing." if torch.allclose(got, x @ W.T, atol=1e-5) else ""
        raise AssertionError(f"{task}: with B = 0 the update is zero, so the result must be the "
                             f"plain linear layer x @ W.T + b; it is not.{tip} Hint: {hint}")
    # 2. A trained adapter: the formula, and minigpt.methods.lora.LoRALinear.
    layer = _lora_layer(d_in, d_out, r, alpha, seed=4)
    W, b = layer.base.weight.detach(), layer.base.bias.detach()
    A, B = layer.lora_A.detach(), layer.lora_B.detach()
    with torch.no_grad():
        want = layer(x)
    assert torch.allclose(want, x @ W.T + b + (alpha / r) * (x @ A.T @ B.T), atol=1e-5)
    got = run("with a trained adapter (B not zero)", W, b, A, B, alpha, r)
    if not torch.allclose(got, want, atol=1e-4):
        update = x @ A.T @ B.T
        slips = {"The update is not scaled: multiply it by alpha / r.": 1.0,
                 "Upside down: the scale is alpha / r, not r / alpha.": r / alpha,
                 "The scale is alpha / r: you multiplied by alpha alone.": alpha,
                 "The scale is alpha / r: you divided by r but left out alpha.": 1 / r}
        tip = next((t for t, s in slips.items()
                    if torch.allclose(got, x @ W.T + b + s * update, atol=1e-4)), "")
        if not tip and torch.allclose(got, x @ W.T + (alpha / r) * update, atol=1e-4):
            tip = "The bias b is missing."
        raise AssertionError(f"{task}: with alpha = {alpha:g} and r = {r} your result differs "
                             "from x @ W.T + b + (alpha / r) * x @ A.T @ B.T (what "
                             f"minigpt.methods.lora.LoRALinear computes). {tip + ' ' if tip else ''}"
                             f"Hint: {hint}")
    _passed(task, "with B = 0 it is the frozen layer; with a trained adapter it is "
                  "x W^T + b + (alpha / r) x A^T B^T, what minigpt.methods.lora.LoRALinear computes")


# ---- task 4 ---------------------------------------------------------------------------------




def check_lora_param_count(lora_param_count: Callable[[int, int, int], int]) -> None:
    """Task: ``lora_param_count(d_in, d_out, r)`` = r (d_in + d_out)."""
    task = "Task 4 (lora_param_count)"
    hint = "A is r x d_in and B is d_out x r: count both matrices' entries; W stays frozen."
    for d_in, d_out, r in [(128, 384, 4), (512, 128, 1), (768, 768, 8), (4096, 4096, 16)]:
        with torch.device("meta"):  # count without allocating memory
            layer = LoRALinear(nn.Linear(d_in, d_out), rank=r)
        want = layer.lora_A.numel() + layer.lora_B.numel()
        assert want == r * (d_in + d_out)
        got = _call(task, hint, lora_param_count, d_in, d_out, r)
        g = _number(got)
        if g != want:
            slips = {d_in * d_out: "That is the frozen matrix W: count the adapters A and B.",
                     r * d_in * d_out: "A and B hold r x d_in and d_out x r numbers: add them, "
                                       "do not multiply.",
                     r * d_in: "That is A alone: add B's d_out x r.",
                     r * d_out: "That is B alone: add A's r x d_in.",
                     want + d_out: "The adapters have no bias: only A and B."}
            tip = next((" " + t for v, t in slips.items() if g == v), "")
            raise AssertionError(f"{task}: lora_param_count({d_in}, {d_out}, {r}) returned "
                                 f"{got!r}, a rank-{r} adapter on a {d_out} x {d_in} weight has "
                                 f"{want:,} numbers.{tip} Hint: {hint}")
    _passed(task, "a rank-16 adapter on a 4096 x 4096 weight trains 131,072 numbers instead of "
                  "16,777,216 (0.8%)")


def _reference_share(cfg: GPTConfig, r: int) -> tuple[float, int, int]:
    """(share, adapter parameters, base parameters) by ``apply_lora`` on a meta-device GPT."""
    with torch.device("meta"):  # count without allocating memory
        model = GPT(cfg)
        base = model.num_params()
        apply_lora(model, rank=r, targets=("attn", "mlp"))
    return trainable_share(model), model.num_params() - base, base


def check_lora_share(lora_share: Callable[[GPTConfig, int], float]) -> None:
    """Task: ``lora_share(cfg, r)``: trainable share with rank-r adapters on attention and MLP."""
    task = "Task 4 (lora_share)"
    hint = ("each block has four linear layers: qkv (C -> 3C), the attention output (C -> C), "
            "and the MLP's C -> 4C and 4C -> C; n_layer blocks of those adapters are trainable, "
            "and the model now has GPT(cfg).num_params() + those adapters in all. Return "
            "trainable / all, a fraction.")
    cases = [GPTConfig.preset("micro", 100), GPTConfig.preset("nano", 65),
             GPTConfig(vocab_size=500, block_size=32, n_layer=3, n_head=2, n_embd=48),
             GPTConfig.preset("gpt2", 50257)]
    for cfg, r in zip(cases, (4, 8, 2, 8)):
        want, adapters, base = _reference_share(cfg, r)
        got = _call(task, hint, lora_share, cfg, r)
        g = _number(got)
        if g is None or not math.isclose(g, want, rel_tol=1e-9):
            C = cfg.n_embd
            attention_only = cfg.n_layer * r * (4 * C + 2 * C)
            slips = {adapters / base: "Divide by all parameters, the adapters included: they "
                                      "are part of the model now.",
                     100 * want: "Return a fraction (0.04), not a percentage (4).",
                     adapters: "That is the number of adapter parameters: divide it by all "
                               "parameters.",
                     attention_only / (base + attention_only): "The MLP's two linear layers "
                                                               "get adapters too.",
                     adapters / (base + adapters + cfg.vocab_size * C): "The output layer is "
                     "tied to the token embedding: count that matrix once (as num_params does)."}
            tip = next((" " + t for v, t in slips.items()
                        if g is not None and math.isclose(g, v, rel_tol=1e-9)), "")
            raise AssertionError(f"{task}: for {cfg} with rank {r}, lora_share returned "
                                 f"{got!r}; {adapters:,} adapter parameters out of "
                                 f"{base + adapters:,} are {want:.6f}.{tip} Hint: {hint}")
    micro = _reference_share(cases[0], 4)
    _passed(task, f"rank 4 on the micro preset's attention and MLP trains {micro[1]:,} of "
                  f"{micro[1] + micro[2]:,} parameters ({micro[0]:.1%}); on GPT-2 small's "
                  f"shape, rank 8 trains {_reference_share(cases[3], 8)[0]:.2%}")
