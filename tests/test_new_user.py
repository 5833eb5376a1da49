"""The new user's path: what they download, the files they write and what a push of the demo folder uploads."""

import os
from pathlib import Path

import pytest

from hf_bigmodel import _io, create_model
from hf_bigmodel.conversion.common import atomic_output_dir
from hf_bigmodel.demo import CORPUS_DIR
from hf_bigmodel.publish.folder import InvalidFolderError, folder_files

REPO = Path(__file__).resolve().parents[1]


def test_license_file_matches_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_written_files_and_folders_are_readable_by_others(tmp_path, umask_022):
    path = _io.atomic_write_text(tmp_path / "a.json", "{}")
    assert path.stat().st_mode & 0o777 == 0o644
    with atomic_output_dir(tmp_path / "converted") as out:
        (out / "x").write_text("x")
    assert (tmp_path / "converted").stat().st_mode & 0o777 == 0o755


def test_push_leaves_out_the_demo_corpus_and_refuses_links_out_of_the_folder(tmp_path):
    folder = tmp_path / "run"
    create_model("gpt-tiny", task="causal-lm").save_pretrained(folder)
    _io.atomic_write_text(folder / CORPUS_DIR / "train.txt", "training text")
    assert "config.json" in folder_files(folder) and not any(
        name.startswith(CORPUS_DIR) for name in folder_files(folder)
    )

    (tmp_path / "secret.txt").write_text("token")
    (folder / "notes.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(InvalidFolderError, match=r"notes.txt is a symbolic link to .*secret.txt, outside"):
        folder_files(folder)
    (folder / "notes.txt").unlink()
    (folder / "inside.txt").symlink_to(folder / "config.json")  # a link inside the folder is fine
    assert "inside.txt" in folder_files(folder)


def test_pretrain_transformer_without_do_train_trains(tmp_path):
    """The denoising example has no --do_train: training data given means train (it crashed on an empty metrics
    dict before)."""
    from hf_bigmodel.cli import main as cli_main
    from hf_bigmodel.corpus import builtin_corpus_text

    (tmp_path / "text.txt").write_text(builtin_corpus_text()[:3_000], encoding="utf-8")
    args = ["pretrain", "transformer", "--preset", "transformer-tiny", "--objective", "denoising", "--train_file",
            str(tmp_path / "text.txt"), "--output_dir", str(tmp_path / "out"), "--max_steps", "1",
            "--truncate_long_sequences", "true", "--use_cpu", "true", "--report_to", "none"]  # fmt: skip
    assert cli_main(args) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "all_results.json").is_file()
