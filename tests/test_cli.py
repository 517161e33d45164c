"""The command line: ``python -m minigpt train / sample / presets``."""

import subprocess
import sys

import pytest
import torch

from minigpt.cli import load_model, main
from minigpt.gpt import GPT, GPTConfig
from minigpt.train import TrainConfig, Trainer

TINY = ["--corpus", "news", "--preset", "nano", "--block-size", "16", "--batch-size", "4",
        "--eval-interval", "2"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_presets_lists_every_size(capsys):
    code, out, _ = run(capsys, "presets")
    assert code == 0
    for name in ("nano", "micro", "mini", "small", "gpt2"):
        assert name in out


def test_train_then_sample_then_resume(tmp_path, capsys):
    ckpt = tmp_path / "run.pt"
    code, out, _ = run(capsys, "train", *TINY, "--steps", "3", "--out", str(ckpt))
    assert code == 0 and ckpt.exists()
    assert "bits per byte" in out

    model, tokenizer = load_model(ckpt, "cpu")
    assert model.cfg.block_size == 16 and model.cfg.n_layer == 2
    code, out, _ = run(capsys, "sample", "--checkpoint", str(ckpt), "--prompt", "The ",
                       "--max-new-tokens", "12", "--top-p", "0.9", "--device", "cpu")
    assert code == 0 and out.startswith("The ")
    assert len(tokenizer.encode(out.rstrip("\n"))) >= 4 + 12 - 1  # prompt + new tokens

    code, out, _ = run(capsys, "train", *TINY, "--steps", "5", "--out", str(ckpt), "--resume")
    assert code == 0 and "step 5:" in out
    assert torch.load(ckpt, weights_only=True)["step"] == 5


def test_mistakes_are_clear_errors_without_a_traceback(tmp_path, capsys):
    ckpt = tmp_path / "run.pt"
    assert run(capsys, "train", *TINY, "--steps", "1", "--out", str(ckpt))[0] == 0

    code, _, err = run(capsys, "train", *TINY, "--steps", "1", "--out", str(ckpt))
    assert code == 2 and "exists: pass --resume" in err

    argv = ["train", "--corpus", "news", "--preset", "micro", "--out", str(ckpt), "--resume"]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "trained with --preset nano, not micro" in err

    code, _, err = run(capsys, "train", "--corpus", "nope", "--out", str(tmp_path / "x.pt"))
    assert code == 2 and "nope" in err and "wiki" in err

    code, _, err = run(capsys, "train", "--tokenizer", "bpe", "--out", str(tmp_path / "x.pt"))
    assert code == 2 and "use 'char' or 'bpe:N'" in err

    # a Trainer checkpoint of some other model: no settings or tokenizer to rebuild it from
    other = tmp_path / "other.pt"
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8))
    Trainer(model, lambda split: None, TrainConfig(max_steps=0, progress=False)).save(other)
    code, _, err = run(capsys, "sample", "--checkpoint", str(other))
    assert code == 2 and "without the model's settings" in err

    code, _, err = run(capsys, "sample", "--checkpoint", str(ckpt), "--top-p", "2")
    assert code == 2 and "top_p must be in (0, 1]" in err


def test_python_dash_m_minigpt_runs():
    done = subprocess.run([sys.executable, "-m", "minigpt", "--help"], capture_output=True,
                          text=True, check=True)
    assert "train" in done.stdout and "sample" in done.stdout


@pytest.mark.parametrize("argv", [["sample"], ["train"], []])
def test_missing_arguments_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
