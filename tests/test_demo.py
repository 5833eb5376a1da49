"""`hf-bigmodel demo` (what `make demo` runs), at a tiny size: it reports its phases and where it saved the model, and
the folder it leaves loads and matches what was evaluated. The full-size run is timed by hand (README)."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_bigmodel import demo
from hf_bigmodel.cli import main as cli_main

TINY = ["--preset", "gpt-tiny", "--max_steps", "3", "--batch_size", "2", "--block_size", "32", "--vocab_size", "300",
        "--prompt", "The", "--precision", "fp32"]  # fmt: skip


def test_demo_reports_its_phases_and_leaves_a_folder_that_loads(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    assert cli_main(["demo", "--output_dir", str(out_dir), *TINY]) == 0
    out = capsys.readouterr().out

    # the phases, in order, each with its wall time, and the total
    phases = ["corpus", "tokenizer", "tokenizing", "training", "saving", "evaluation", "model card", "sample"]
    lines = out.split("Wall time of each phase (fp32):\n")[1].splitlines()
    assert [line.rsplit(None, 2)[0].strip() for line in lines[: len(phases) + 1]] == [*phases, "total"]
    seconds = [float(line.split()[-2]) for line in lines[: len(phases) + 1]]
    assert all(value >= 0 for value in seconds) and seconds[-1] == pytest.approx(sum(seconds[:-1]), abs=0.15)
    # where the model went, and the loss it reached, as all_results.json has it
    results = json.loads((out_dir / "all_results.json").read_text())
    assert f"Validation loss {results['eval_loss']:.2f}" in out and f"in {out_dir}/" in out
    assert "----- sample -----\nThe" in out
    # one evaluation at the end and no checkpoints: the log has no eval before the last step, the folder no
    # checkpoint-*
    state = json.loads((out_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and not any("eval_loss" in entry for entry in state["log_history"])
    assert not list(out_dir.glob("checkpoint-*")) and (out_dir / demo.CORPUS_DIR / "train.txt").is_file()

    model = AutoModelForCausalLM.from_pretrained(out_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    assert type(model).__name__ == "BigModelGPTForCausalLM" and len(tokenizer) <= model.config.vocab_size
    ids = tokenizer("The while statement", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()

    # run again: the finished run is reported, nothing is trained, and no phase table claims it was
    assert cli_main(["demo", "--output_dir", str(out_dir), *TINY]) == 0
    captured = capsys.readouterr()
    assert "already holds a finished run" in captured.err and "Wall time" not in captured.out


def test_demo_arguments_choose_precision_and_one_evaluation(tmp_path):
    args = demo.build_parser().parse_args(["--output_dir", str(tmp_path), "--precision", "bf16"])
    argv = demo.pretrain_arguments(args, tmp_path / "train.txt", tmp_path / "validation.txt")
    flags = dict(zip(argv[::2], argv[1::2]))
    assert flags["--bf16"] == "true" and flags["--eval_strategy"] == "no" and flags["--save_strategy"] == "no"
    assert flags["--max_steps"] == str(args.max_steps) and flags["--train_file"] == str(tmp_path / "train.txt")
    args.precision = "fp32"
    assert "--bf16" not in demo.pretrain_arguments(args, tmp_path / "train.txt", tmp_path / "validation.txt")
    assert demo.build_parser().parse_args([]).precision == "auto"


def test_demo_rejects_a_bad_precision(capsys):
    with pytest.raises(SystemExit) as exited:
        cli_main(["demo", "--precision", "fp8"])
    assert exited.value.code == 2
    assert "argument --precision: invalid choice: 'fp8'" in capsys.readouterr().err
