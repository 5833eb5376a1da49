"""Bad input, command by command: every `hf-bigmodel` command answers a user's mistake with exit code 2, no
traceback, and one message (at most two lines) that names the input and the fix. One row per command and kind of
bad input; the runner itself (`hf_bigmodel._cli.command`) is tested at the end."""

import errno
import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

from hf_bigmodel import _cli, create_model
from hf_bigmodel.cli import main as cli_main
from hf_bigmodel.corpus import builtin_corpus_text


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace of good and broken inputs, built once."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "train.txt").write_text(builtin_corpus_text()[:8_000], encoding="utf-8")
    (root / "texts").mkdir()
    (root / "empty.txt").write_bytes(b"")
    (root / "latin.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (root / "cut.txt.gz").write_bytes(gzip.compress(builtin_corpus_text()[:8_000].encode())[:-40])
    (root / "texts.zip").write_bytes(b"PK\x03\x04" + bytes(60))
    (root / "noconfig").mkdir()
    (root / "listconfig").mkdir()
    (root / "listconfig" / "config.json").write_text("[]")
    (root / "badjson").mkdir()
    (root / "badjson" / "config.json").write_text("{not json")
    create_model("gpt-tiny", task="causal-lm").save_pretrained(root / "notokenizer")
    shutil.copytree(root / "notokenizer", root / "damaged")
    weights = root / "damaged" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    shutil.copytree(root / "notokenizer", root / "mismatch")
    config = json.loads((root / "mismatch" / "config.json").read_text())
    (root / "mismatch" / "config.json").write_text(json.dumps({**config, "vocab_size": config["vocab_size"] + 1}))
    shutil.copytree(root / "notokenizer", root / "withtokenizer")  # a tokenizer file: finetune reads the data first
    (root / "withtokenizer" / "tokenizer.json").write_text("{}")
    shutil.copytree(root / "notokenizer", root / "halftokenizer")
    (root / "halftokenizer" / "tokenizer_config.json").write_text("{}")
    (root / "args_list.json").write_text("[1, 2]")
    (root / "args_bad.json").write_text('{"output_dir": ')
    (root / "sst.csv").write_text("text,label\ngood,1\nbad,0\n")
    (root / "empty_label.csv").write_text("text,label\ngood,1\nbad,\n")
    (root / "three_labels.csv").write_text("text,label\ngood,1\nbad,0\nugly,2\n")
    (root / "ragged.csv").write_text("text,label\ngood,1\nbad,0,extra\n")
    (root / "list_label.jsonl").write_text('{"text": "a", "label": [1, 2]}\n{"text": "b", "label": [0]}\n')
    (root / "tags.jsonl").write_text('{"words": ["a", "b"], "tags": ["O"]}\n')
    return root


def gpt(ws: Path, *extra: str, steps: int = 1) -> list[str]:
    return ["pretrain", "gpt", "--preset", "gpt-tiny", "--tokenizer_kind", "char", "--train_file",
            str(ws / "train.txt"), "--output_dir", str(ws / "out"), "--max_steps", str(steps), "--report_to", "none",
            "--use_cpu", "true", *extra]  # fmt: skip


def ft(ws: Path, train: str, *extra: str) -> list[str]:
    return ["finetune", "--model_name_or_path", str(ws / "withtokenizer"), "--train_file", str(ws / train),
            "--output_dir", str(ws / "ft"), "--use_cpu", "true", "--report_to", "none", *extra]  # fmt: skip


# (id, argv from the workspace, what the message must contain: the input it names, and words of the fix)
CASES = [
    # generate
    ("generate-missing-folder", lambda w: ["generate", str(w / "nothere"), "hi"], ["nothere", "no such folder"]),
    ("generate-file-not-folder", lambda w: ["generate", str(w / "train.txt"), "hi"], ["train.txt", "is a file"]),
    ("generate-no-config", lambda w: ["generate", str(w / "noconfig"), "hi"], ["noconfig", "no config.json"]),
    ("generate-config-is-a-list", lambda w: ["generate", str(w / "listconfig"), "hi"], ["config.json", "list"]),
    ("generate-config-not-json", lambda w: ["generate", str(w / "badjson"), "hi"], ["config.json", "not valid JSON"]),
    ("generate-no-tokenizer", lambda w: ["generate", str(w / "notokenizer"), "hi"], ["tokenizer.json", "save_pretrained"]),
    ("generate-empty-prompt", lambda w: ["generate", str(w / "notokenizer"), " "], ["PROMPT", "empty"]),
    ("generate-zero-beams", lambda w: ["generate", str(w / "notokenizer"), "hi", "--num_beams", "0"], ["--num_beams", "0"]),
    ("generate-negative-length", lambda w: ["generate", str(w / "notokenizer"), "hi", "--max_new_tokens", "-1"],
     ["--max_new_tokens", "-1"]),
    ("generate-zero-temperature", lambda w: ["generate", str(w / "notokenizer"), "hi", "--temperature", "0"],
     ["--temperature", "--greedy"]),
    # pretrain
    ("pretrain-unknown-arch", lambda w: ["pretrain", "lstm"], ["lstm", "choose from"]),
    ("pretrain-missing-train-file", lambda w: gpt(w, "--train_file", str(w / "nope.txt")), ["nope.txt", "not found"]),
    ("pretrain-directory-as-train-file", lambda w: gpt(w, "--train_file", str(w / "texts")), ["texts", "directory"]),
    ("pretrain-truncated-gzip", lambda w: gpt(w, "--train_file", str(w / "cut.txt.gz")),
     ["cut.txt.gz", "corrupt or truncated gzip"]),
    ("pretrain-zip-train-file", lambda w: gpt(w, "--train_file", str(w / "texts.zip")), ["texts.zip", "unzip"]),
    ("pretrain-empty-train-file", lambda w: gpt(w, "--train_file", str(w / "empty.txt")), ["empty.txt", "empty"]),
    ("pretrain-not-utf8", lambda w: gpt(w, "--train_file", str(w / "latin.txt")), ["latin.txt", "UTF-8"]),
    ("pretrain-jsonl-as-train-file", lambda w: gpt(w, "--train_file", str(w / "list_label.jsonl"), "--text_column",
     "text"), ["list_label.jsonl", "--dataset_name"]),
    ("pretrain-block-size-0", lambda w: gpt(w, "--block_size", "0"), ["--block_size", "0"]),
    ("pretrain-learning-rate-inf", lambda w: gpt(w, "--learning_rate", "inf"), ["--learning_rate", "inf"]),
    ("pretrain-negative-validation-split", lambda w: gpt(w, "--validation_split_percentage", "-5"),
     ["--validation_split_percentage", "-5"]),
    ("pretrain-zero-epochs", lambda w: gpt(w, "--num_train_epochs", "0", steps=-1), ["--num_train_epochs", "0"]),
    ("pretrain-zero-batch", lambda w: gpt(w, "--per_device_train_batch_size", "0"), ["--per_device_train_batch_size"]),
    ("pretrain-unknown-preset", lambda w: gpt(w, "--preset", "gpt-huge"), ["gpt-huge", "choose from"]),
    ("pretrain-override-not-key-value", lambda w: gpt(w, "--config_overrides", "hidden_size"),
     ["hidden_size", "KEY=VALUE"]),
    ("pretrain-override-typo", lambda w: gpt(w, "--config_overrides", "hiden_size=32"), ["hiden_size", "hidden_size"]),
    ("pretrain-unknown-flag", lambda w: gpt(w, "--nonsense", "1"), ["--nonsense"]),
    ("pretrain-args-file-is-a-list", lambda w: ["pretrain", "gpt", str(w / "args_list.json")], ["args_list.json", "list"]),
    ("pretrain-args-file-not-json", lambda w: ["pretrain", "gpt", str(w / "args_bad.json")], ["args_bad.json", "JSON"]),
    ("pretrain-args-file-missing", lambda w: ["pretrain", "gpt", str(w / "nothere.json")], ["nothere.json"]),
    ("pretrain-resume-missing", lambda w: gpt(w, "--resume_from_checkpoint", str(w / "ckpt")), ["ckpt", "no such"]),
    ("pretrain-transformer-no-data", lambda w: ["pretrain", "transformer", "--output_dir", str(w / "o"), "--use_cpu",
     "true"], ["--model_name_or_path"]),
    # finetune
    ("finetune-missing-model", lambda w: ["finetune", "--model_name_or_path", str(w / "nomodel"), "--train_file",
     str(w / "sst.csv"), "--output_dir", str(w / "ft"), "--use_cpu", "true"], ["nomodel"]),
    ("finetune-text-file", lambda w: ["finetune", "--model_name_or_path", str(w / "withtokenizer"), "--train_file",
     str(w / "train.txt"), "--output_dir", str(w / "ft"), "--use_cpu", "true"], ["train.txt", ".csv"]),
    ("finetune-empty-label", lambda w: ft(w, "empty_label.csv"), ["row 2 of the train data", "empty label"]),
    ("finetune-label-only-in-validation", lambda w: ft(w, "sst.csv", "--validation_file", str(w / "three_labels.csv")),
     ["validation data has labels the training data never shows: 2"]),
    ("finetune-list-label", lambda w: ft(w, "list_label.jsonl"), ["'label'", "list", "token-classification"]),
    ("finetune-fewer-tags-than-words", lambda w: ft(w, "tags.jsonl", "--task", "token-classification",
     "--text_column", "words", "--label_column", "tags"), ["2 words but 1 tags"]),
    ("finetune-model-without-tokenizer", lambda w: ft(w, "sst.csv", "--model_name_or_path", str(w / "notokenizer")),
     ["notokenizer", "no tokenizer"]),
    ("finetune-config-is-a-list", lambda w: ft(w, "sst.csv", "--model_name_or_path", str(w / "listconfig")),
     ["listconfig", "list"]),
    ("pretrain-model-config-is-a-list", lambda w: gpt(w, "--model_name_or_path", str(w / "listconfig")),
     ["listconfig", "list"]),
    # train-tokenizer
    ("tokenizer-missing-file", lambda w: ["train-tokenizer", "--files", str(w / "nope.txt"), "--output_dir",
     str(w / "tk")], ["nope.txt", "not found"]),
    ("tokenizer-directory", lambda w: ["train-tokenizer", "--files", str(w / "texts"), "--output_dir", str(w / "tk")],
     ["texts", "directory"]),
    ("tokenizer-truncated-gzip", lambda w: ["train-tokenizer", "--files", str(w / "cut.txt.gz"), "--output_dir",
     str(w / "tk")], ["cut.txt.gz", "corrupt or truncated gzip"]),
    ("tokenizer-empty-file", lambda w: ["train-tokenizer", "--files", str(w / "empty.txt"), "--output_dir",
     str(w / "tk")], ["empty.txt", "empty"]),
    # convert
    ("convert-missing-source", lambda w: ["convert", str(w / "nothere"), str(w / "c1")], ["nothere"]),
    ("convert-damaged-safetensors", lambda w: ["convert", str(w / "damaged"), str(w / "c2")],
     ["damaged/model.safetensors", "cut short"]),
    ("convert-config-is-a-list", lambda w: ["convert", str(w / "listconfig"), str(w / "c3")], ["listconfig"]),
    # push (--dry-run checks the folder without a Hub)
    ("push-missing-folder", lambda w: ["push", str(w / "nothere"), "a/b", "--dry-run"], ["nothere", "not a folder"]),
    ("push-no-config", lambda w: ["push", str(w / "noconfig"), "a/b", "--dry-run"], ["noconfig", "config.json"]),
    ("push-config-is-a-list", lambda w: ["push", str(w / "listconfig"), "a/b", "--dry-run"], ["config.json"]),
    ("push-damaged-safetensors", lambda w: ["push", str(w / "damaged"), "a/b", "--dry-run"],
     ["damaged/model.safetensors", "cut short"]),
    ("push-config-not-the-weights", lambda w: ["push", str(w / "mismatch"), "a/b", "--dry-run"],
     ["config.json does not match the weights", "embed_tokens"]),
    ("push-tokenizer-config-without-tokenizer", lambda w: ["push", str(w / "halftokenizer"), "a/b", "--dry-run"],
     ["halftokenizer", "no tokenizer.json"]),
    ("push-bad-repo-id", lambda w: ["push", str(w / "notokenizer"), "not a repo id", "--dry-run"], ["not a repo id"]),
]  # fmt: skip


@pytest.mark.parametrize("argv, expected", [pytest.param(a, e, id=i) for i, a, e in CASES])
def test_bad_input_is_one_message_and_exit_2(ws, argv, expected, capsys):
    capsys.readouterr()
    code = cli_main(argv(ws))
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err[-2000:]
    assert code == 2, err[-2000:]
    start = next(i for i, line in enumerate(err.splitlines()) if line.startswith("hf-bigmodel") and "error:" in line)
    message = "\n".join(err.splitlines()[start : start + 2])
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_a_ragged_csv_names_its_line_in_a_fresh_process(ws):
    """In a child, as a user runs it: datasets logs the parse error itself, and no traceback may appear."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "hf_bigmodel.cli", *ft(ws, "ragged.csv")], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(repo)})  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "hf-bigmodel finetune: error:" in proc.stderr and "Expected 2 fields in line 3, saw 3" in proc.stderr


def test_unknown_command_lists_the_commands(capsys):
    assert cli_main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err and "generate" in err


# ------------------------------------------------------------------------------------------------- the runner


def test_debug_flag_and_environment_variable_show_the_traceback(monkeypatch):
    seen = []

    @_cli.command("prog")
    def main(argv):
        seen.append(argv)
        raise ValueError("bad value")

    assert main(["--x"]) == 2
    monkeypatch.delenv(_cli.DEBUG_ENV, raising=False)
    with pytest.raises(ValueError, match="bad value"):
        main(["--debug", "--x"])
    assert seen[-1] == ["--x"]  # --debug is the runner's, never the command's
    monkeypatch.setenv(_cli.DEBUG_ENV, "1")
    with pytest.raises(ValueError, match="bad value"):
        main([])
    monkeypatch.setenv(_cli.DEBUG_ENV, "0")
    assert main([]) == 2


@pytest.mark.parametrize(
    "error, code, expected",
    [
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "data.txt"), 2, "No such file or directory: data.txt"),
        (KeyError("no column 'text'"), 2, "no column 'text'"),
        (ConnectionError("the Hub cannot be reached"), 1, "the Hub cannot be reached"),
        (OSError(errno.ENOSPC, "No space left on device", "runs/x"), 1, "no space left on the device while writing in runs/x"),
        (RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"), 1, "no space left"),
        (ZeroDivisionError("division by zero"), 1, "internal error (a bug in hf_bigmodel, not in your input): ZeroDivisionError"),
        (KeyboardInterrupt(), 130, "prog: interrupted"),
    ],
)  # fmt: skip
def test_runner_exit_codes_and_messages(error, code, expected, capsys, monkeypatch):
    monkeypatch.delenv(_cli.DEBUG_ENV, raising=False)

    @_cli.command("prog")
    def main(argv):
        raise error

    assert main([]) == code
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2


def test_runner_passes_argparse_exits_through():
    @_cli.command("prog")
    def main(argv):
        raise SystemExit(0)

    with pytest.raises(SystemExit):
        main([])


def test_a_full_disk_during_training_names_the_output_folder(tmp_path, capsys, monkeypatch):
    from transformers import Trainer

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Trainer, "train", full_disk)
    (tmp_path / "train.txt").write_text(builtin_corpus_text()[:8_000], encoding="utf-8")
    assert cli_main(gpt(tmp_path)) == 1
    err = capsys.readouterr().err
    assert f"no space left on the device while writing in {tmp_path / 'out'}" in err and "Traceback" not in err


def test_a_diverged_run_saves_nothing(tmp_path, capsys):
    (tmp_path / "train.txt").write_text(builtin_corpus_text()[:8_000], encoding="utf-8")
    args = gpt(
        tmp_path, "--learning_rate", "1e30", "--max_grad_norm", "0", "--max_steps", "3", "--save_strategy", "no"
    )
    code = cli_main(args)
    err = capsys.readouterr().err
    assert code == 2 and "Training diverged" in err and "--learning_rate" in err
    assert not (tmp_path / "out" / "model.safetensors").exists() and not (tmp_path / "out" / "README.md").exists()


def test_require_folder_or_repo_leaves_repo_ids_to_the_hub(tmp_path):
    assert _cli.require_folder_or_repo("gpt2", "MODEL") == "gpt2"
    assert _cli.require_folder_or_repo("owner/name", "MODEL") == "owner/name"
    for value in ("./runs/demo", str(tmp_path / "x"), "runs/demo/final", "..\\x", "~/x"):
        with pytest.raises(ValueError, match="no such folder"):
            _cli.require_folder_or_repo(value, "MODEL")
