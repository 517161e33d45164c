"""The command line: ``python -m minigpt train / sample / presets``."""

import argparse
import pickle
import subprocess
import sys

import pytest
import torch
from tiny_training import zero_64_bytes_in_the_largest_tensor

from minigpt import cli
from minigpt.cli import load_model, main
from minigpt.models.gpt import GPT, GPTConfig
from minigpt.train.config import TrainConfig
from minigpt.train.trainer import Trainer

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


# ---- bad input: one `error:` line, exit status 2, nothing lost -------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint of `train` (2 steps), shared by the tests below that only read it."""
    ckpt = tmp_path_factory.mktemp("trained") / "run.pt"
    assert main(["train", *TINY, "--steps", "2", "--out", str(ckpt)]) == 0
    return ckpt


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if a refused command got as far as loading data or training."""
    def reached(*args, **kwargs):
        raise AssertionError("the command started work instead of refusing its arguments")

    monkeypatch.setattr(cli.corpora, "load_corpus", reached)
    monkeypatch.setattr(cli.Trainer, "fit", reached)


def one_error_line(code: int, err: str) -> str:
    """The message of a refusal: exit status 2, one `error:` line on stderr, no traceback."""
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps must be >= 1 (the optimizer steps to train in all), got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--batch-size", "-4"], "--batch-size must be >= 1, got -4"),
    (["--block-size", "0"], "--block-size must be >= 1, got 0"),
    (["--eval-interval", "-1"], "--eval-interval must be >= 0"),
    (["--lr", "0"], "--lr must be > 0, got 0.0"),
    (["--dropout", "1"], "--dropout must be in [0, 1), got 1.0"),
])
def test_impossible_numbers_are_refused_before_any_work(tmp_path, capsys, no_training, argv,
                                                        message):
    out = tmp_path / "x.pt"
    code, _, err = run(capsys, "train", *TINY, "--steps", "3", *argv, "--out", str(out))
    assert message in one_error_line(code, err)
    assert not out.exists()  # --steps 0 used to save an untrained checkpoint


def test_a_device_this_machine_lacks_is_refused(tmp_path, capsys, no_training, monkeypatch,
                                                trained):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run(capsys, "train", *TINY, "--device", "cuda", "--out", str(tmp_path / "x.pt"))
    err = one_error_line(code, err)
    assert "--device cuda: CUDA is not available on this machine" in err
    assert "use --device cpu, or leave --device out" in err
    code, _, err = run(capsys, "sample", "--checkpoint", str(trained), "--device", "cuda")
    assert "CUDA is not available" in one_error_line(code, err)
    code, _, err = run(capsys, "train", *TINY, "--device", "gpu", "--out", str(tmp_path / "x.pt"))
    assert "--device gpu: not a device; use cpu, cuda, cuda:N or mps" in one_error_line(code, err)


def test_an_out_that_cannot_be_written_is_refused_before_training(tmp_path, capsys, no_training,
                                                                   monkeypatch):
    folder = tmp_path / "runs"
    folder.mkdir()
    for extra in ([], ["--force"], ["--resume"]):  # with --force it trained, then lost it all
        code, _, err = run(capsys, "train", *TINY, *extra, "--out", str(folder))
        err = one_error_line(code, err)
        assert f"--out {folder} is a directory: give a file path, e.g. --out {folder}/run.pt" in err
    afile = tmp_path / "notes.txt"
    afile.write_text("")
    code, _, err = run(capsys, "train", *TINY, "--out", str(afile / "run.pt"))
    assert f"{afile} is a file, so it cannot hold a folder" in one_error_line(code, err)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cli.tempfile, "NamedTemporaryFile", denied)
    code, _, err = run(capsys, "train", *TINY, "--force", "--out", str(folder / "run.pt"))
    assert f"cannot write in {folder} (Permission denied)" in one_error_line(code, err)


def test_check_out_accepts_a_new_file_in_folders_to_be_made(tmp_path):
    out = tmp_path / "new" / "deeper" / "run.pt"
    cli.check_out(out)  # Trainer.save makes the folders
    cli.check_out(tmp_path / "run.pt")
    assert list(tmp_path.iterdir()) == []  # the write test leaves nothing behind


def test_resume_refuses_options_that_would_be_ignored(tmp_path, capsys, trained, monkeypatch):
    monkeypatch.setattr(cli.Trainer, "fit", lambda self: pytest.fail("trained"))
    before = trained.read_bytes()
    for option, value, was in (("--tokenizer", "bpe:300", "char"), ("--block-size", "32", "16"),
                               ("--dropout", "0.2", "0.0")):
        # (TINY has --block-size 16: argparse takes the last one given)
        code, _, err = run(capsys, "train", *TINY, option, value, "--steps", "9", "--out",
                           str(trained), "--resume")
        err = one_error_line(code, err)
        assert f"{trained} was trained with {option} {was}, not {value}" in err
        assert f"resume it with the same {option} (or leave it out)" in err
    # A checkpoint from before tokenizer_spec was stored: the spec comes from its tokenizer.
    old = tmp_path / "old.pt"
    checkpoint = torch.load(trained, weights_only=True)
    del checkpoint["extra"]["tokenizer_spec"]
    torch.save(checkpoint, old)
    code, _, err = run(capsys, "train", *TINY, "--tokenizer", "bpe:300", "--steps", "9", "--out",
                       str(old), "--resume")
    assert f"{old} was trained with --tokenizer char, not bpe:300" in one_error_line(code, err)
    # --steps is the total to reach
    code, _, err = run(capsys, "train", *TINY, "--steps", "2", "--out", str(trained), "--resume")
    err = one_error_line(code, err)
    assert f"{trained} has already been trained for 2 steps" in err
    assert "--steps is the total to reach" in err and "e.g. --steps 4" in err
    assert trained.read_bytes() == before


def test_tokenizer_spec_names_the_option_that_makes_a_tokenizer():
    from minigpt.data.bpe import train_bpe
    from minigpt.data.tokenizers import CharTokenizer

    assert cli.tokenizer_spec(CharTokenizer.fit("abc", unk="?")) == "char"
    bpe = train_bpe("the cat sat on the mat " * 20, 260)
    assert cli.tokenizer_spec(bpe) == f"bpe:{bpe.vocab_size}"


def test_sample_refuses_a_negative_max_new_tokens(capsys, trained):
    code, _, err = run(capsys, "sample", "--checkpoint", str(trained), "--max-new-tokens", "-1")
    assert "--max-new-tokens must be >= 0" in one_error_line(code, err)


@pytest.mark.parametrize("how, message", [
    ("empty", "is empty (0 bytes), not a minigpt checkpoint"),
    ("text", "is not a torch file (it starts with b'step'"),
    ("pickled object", "holds pickled Python objects (such as argparse.Namespace)"),
    ("plain pickle", "is a plain pickle file, not a minigpt checkpoint"),
    ("truncated", "is truncated or corrupt"),
    ("64 bytes zeroed", "has changed since it was saved"),
    ("folder", "is a folder, not a minigpt checkpoint"),
])
def test_an_unusable_checkpoint_is_one_clear_error(tmp_path, capsys, trained, how, message):
    bad = tmp_path / "bad.pt"
    if how == "empty":
        bad.write_bytes(b"")
    elif how == "text":
        bad.write_text("step 2: validation 4.2 nats per token\n")
    elif how == "pickled object":
        torch.save({"model": argparse.Namespace(lr=1)}, bad)
    elif how == "plain pickle":
        bad.write_bytes(pickle.dumps({"format": "minigpt.train/1"}))
    elif how == "truncated":
        bad.write_bytes(trained.read_bytes()[:-10])
    elif how == "64 bytes zeroed":
        bad.write_bytes(trained.read_bytes())
        zero_64_bytes_in_the_largest_tensor(bad)
    else:
        bad.mkdir()
    code, _, err = run(capsys, "sample", "--checkpoint", str(bad), "--device", "cpu")
    err = one_error_line(code, err)
    assert f"error: {bad} {message}" in err


def test_resuming_a_damaged_checkpoint_is_refused_and_leaves_it_alone(tmp_path, capsys, trained):
    bad = tmp_path / "run.pt"
    bad.write_bytes(trained.read_bytes())
    zero_64_bytes_in_the_largest_tensor(bad)
    damaged = bad.read_bytes()
    code, _, err = run(capsys, "train", *TINY, "--steps", "4", "--out", str(bad), "--resume")
    assert f"{bad} has changed since it was saved" in one_error_line(code, err)
    assert bad.read_bytes() == damaged
