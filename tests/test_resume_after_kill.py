"""Resume survives a kill at any moment: a training process killed while it writes a checkpoint, then started again
with the same command, skips the half-written checkpoint, resumes from the last complete one and ends with the
same weights as a run that was never interrupted. A rerun of a finished run says so and trains nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_bigmodel.cli import main as cli_main
from hf_bigmodel.corpus import builtin_corpus_text
from hf_bigmodel.training.common import checkpoint_problem, last_complete_checkpoint

REPO = Path(__file__).resolve().parents[1]

# Run in a child process: kill it (SIGKILL, no cleanup) while Trainer saves checkpoint-KILL_AT_STEP, after the
# weights were started and before the optimizer and trainer_state.json: the weights file is cut in half first, as a
# kill in the middle of writing it leaves it.
KILLING_CHILD = """
import os, signal, sys
from pathlib import Path
from transformers import Trainer
from hf_bigmodel.cli import main

kill_at = int(os.environ["KILL_AT_STEP"])
save_optimizer = Trainer._save_optimizer_and_scheduler

def killed_mid_save(self, output_dir):
    if self.state.global_step == kill_at:
        weights = Path(output_dir) / "model.safetensors"
        os.truncate(weights, weights.stat().st_size // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    return save_optimizer(self, output_dir)

Trainer._save_optimizer_and_scheduler = killed_mid_save
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    text = builtin_corpus_text()[:30_000]
    directory = tmp_path_factory.mktemp("corpus")
    (directory / "train.txt").write_text(text[:27_000], encoding="utf-8")
    (directory / "valid.txt").write_text(text[27_000:], encoding="utf-8")
    return directory / "train.txt", directory / "valid.txt"


def pretrain_args(corpus, output_dir) -> list[str]:
    train, valid = corpus
    return [
        "pretrain", "gpt", "--preset", "gpt-tiny", "--tokenizer_kind", "char",
        "--train_file", str(train), "--validation_file", str(valid), "--output_dir", str(output_dir),
        "--block_size", "32", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8",
        "--learning_rate", "1e-3", "--lr_scheduler_type", "cosine", "--warmup_steps", "1", "--max_steps", "6",
        "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1", "--report_to", "none",
        "--use_cpu", "true", "--seed", "7", "--sample_max_new_tokens", "4", "--dataloader_num_workers", "0",
    ]  # fmt: skip


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)


def test_kill_during_a_checkpoint_write_then_rerun_ends_with_the_same_weights(corpus, tmp_path, caplog):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert cli_main(pretrain_args(corpus, straight)) == 0

    env = {**os.environ, "PYTHONPATH": str(REPO), "KILL_AT_STEP": "4"}
    child = subprocess.run([sys.executable, "-c", KILLING_CHILD, *pretrain_args(corpus, killed)], env=env,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert child.returncode == -9, child.stderr[-3000:]
    assert checkpoint_problem(killed / "checkpoint-2") is None
    assert "trainer_state.json" in checkpoint_problem(killed / "checkpoint-4")
    assert not (killed / "model.safetensors").exists()

    # The same command again: checkpoint-4 is skipped (and removed), training resumes from checkpoint-2.
    with caplog.at_level("WARNING", logger="hf_bigmodel.training"):
        assert cli_main(pretrain_args(corpus, killed)) == 0
    assert any("Skipping" in r.message and "checkpoint-4" in r.message for r in caplog.records)
    state = json.loads((killed / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert checkpoint_problem(killed / "checkpoint-4") is None  # written again, whole this time
    assert_same_weights(straight, killed)


def test_rerun_of_a_finished_run_says_so_and_trains_nothing(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_main(pretrain_args(corpus, run)) == 0
    before = (run / "model.safetensors").read_bytes(), sorted(p.name for p in run.iterdir())
    capsys.readouterr()
    assert cli_main(pretrain_args(corpus, run)) == 0
    err = capsys.readouterr().err
    assert "already holds a finished run (step 6" in err and "Raise --max_steps" in err
    assert ((run / "model.safetensors").read_bytes(), sorted(p.name for p in run.iterdir())) == before
    assert not (run / "checkpoint-7").exists()


def _checkpoint(folder: Path, step: int) -> Path:
    """A fake but well-formed checkpoint-`step`: a real safetensors file and a trainer state naming the step."""
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"w": torch.arange(64, dtype=torch.float32)}, str(path / "model.safetensors"))
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda p: (p / "trainer_state.json").unlink(), "no trainer_state.json"),
        (lambda p: (p / "trainer_state.json").write_text('{"global_step": 4, "log_hi'), "cut short"),
        (lambda p: (p / "trainer_state.json").write_text('{"global_step": 2}'), "for step 2"),
        (lambda p: os.truncate(p / "model.safetensors", 100), "model.safetensors is cut short"),
        (
            lambda p: (p / "model.safetensors").write_bytes(b""),
            "model.safetensors is not a whole safetensors file: no readable header",
        ),
        (lambda p: (p / "model.safetensors").unlink(), "holds no weights"),
    ],
)
def test_incomplete_checkpoints_are_named_and_skipped(tmp_path, damage, reason, caplog):
    _checkpoint(tmp_path, 2)
    newest = _checkpoint(tmp_path, 4)
    assert checkpoint_problem(newest) is None
    damage(newest)
    assert reason in checkpoint_problem(newest)
    with caplog.at_level("WARNING", logger="hf_bigmodel.training"):
        assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert not newest.exists() and reason in caplog.text


def test_resume_from_an_incomplete_checkpoint_by_path_is_refused(corpus, tmp_path, capsys):
    _checkpoint(tmp_path / "run", 2)
    (tmp_path / "run" / "checkpoint-2" / "trainer_state.json").unlink()
    args = [*pretrain_args(corpus, tmp_path / "run"), "--resume_from_checkpoint", str(tmp_path / "run/checkpoint-2")]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "checkpoint-2 is incomplete: it has no trainer_state.json" in err and "Traceback" not in err
