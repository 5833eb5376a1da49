"""Pretraining from raw text with `hf-bigmodel pretrain gpt`: data checks, packing, Trainer integration (resume,
gradient accumulation, activation checkpointing, bf16, TensorBoard) and multi-process training."""

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_bigmodel.cli import main as cli_main
from hf_bigmodel.corpus import builtin_corpus_text, write_builtin_corpus
from hf_bigmodel.data import DataError, PackedBlocks, load_raw_text, open_text, pack_token_stream, validate_text_files
from hf_bigmodel.data.mlm import read_documents
from hf_bigmodel.testing import logged_losses
from hf_bigmodel.tokenization import train_tokenizer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """A small slice of the built-in corpus (no download, no third-party file)."""
    text = builtin_corpus_text()[:60_000]
    directory = tmp_path_factory.mktemp("corpus")
    (directory / "train.txt").write_text(text[:54_000], encoding="utf-8")
    (directory / "valid.txt").write_text(text[54_000:], encoding="utf-8")
    return directory / "train.txt", directory / "valid.txt"


def pretrain_args(corpus, output_dir, *extra: str) -> list[str]:
    train, valid = corpus
    return [
        "pretrain", "gpt", "--preset", "gpt-tiny", "--tokenizer_kind", "char",
        "--train_file", str(train), "--validation_file", str(valid), "--output_dir", str(output_dir),
        "--block_size", "32", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8",
        "--learning_rate", "1e-3", "--logging_steps", "1", "--report_to", "none", "--use_cpu", "true",
        "--seed", "7", "--sample_max_new_tokens", "8", "--dataloader_num_workers", "0",
        "--train_sampling_strategy", "sequential", *extra,
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------------- data checks


def test_validate_text_files_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(DataError, match=r"empty.txt contains only whitespace"):
        validate_text_files([empty])
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.txt is not valid UTF-8: byte b'\\xe9' at byte offset 3 .*iconv"):
        validate_text_files([latin])
    with pytest.raises(FileNotFoundError, match="Training file not found"):
        validate_text_files([tmp_path / "missing.txt"])


@pytest.mark.parametrize("compress", ["gzip", "bz2", "lzma"])
def test_compressed_text_reads_as_the_plain_file(tmp_path, compress):
    """gzip, bzip2 and xz text is read directly, told apart by its first bytes as `datasets` does."""
    import importlib

    text = "Der Hund läuft.\r\nA second line\n\nAnother document\n"
    plain = tmp_path / "plain.txt"
    plain.write_bytes(text.encode())
    packed = tmp_path / "packed.data"  # no telling extension: the magic bytes decide
    packed.write_bytes(importlib.import_module(compress).compress(text.encode()))
    assert validate_text_files([packed]) == [packed]
    with open_text(packed, newline="") as f:
        assert f.read() == text
    assert read_documents([packed]) == read_documents([plain])
    raw = load_raw_text([str(packed)])
    assert "".join(raw["train"]["text"]) == text.replace("\r\n", "\n")  # the text builder normalises line ends
    a = train_tokenizer(files=[str(plain)], kind="char", vocab_size=64, show_progress=False)
    b = train_tokenizer(files=[str(packed)], kind="char", vocab_size=64, show_progress=False)
    assert a.get_vocab() == b.get_vocab()


def test_compressed_text_errors_name_the_file(tmp_path):
    import gzip

    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(gzip.compress(("line\n" * 2000).encode())[:-30])
    with pytest.raises(DataError, match=r"cut.txt.gz is a corrupt or truncated gzip file"):
        validate_text_files([cut])
    latin = tmp_path / "latin.txt.gz"
    latin.write_bytes(gzip.compress("ok\ncaf\xe9\n".encode("latin-1")))
    with pytest.raises(DataError, match=r"latin.txt.gz \(gzip-compressed\) is not valid UTF-8 .*offset 6 .*line 2"):
        validate_text_files([latin])
    archive = tmp_path / "texts.zip"
    archive.write_bytes(b"PK\x03\x04" + bytes(40))
    with pytest.raises(DataError, match=r"texts.zip is a zip archive.*unzip"):
        validate_text_files([archive])


def test_pretrain_cli_reports_bad_training_file(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00binary")
    assert cli_main(pretrain_args((bad, bad), tmp_path / "out")) == 2
    assert "bad.txt is not valid UTF-8" in capsys.readouterr().err
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_packing_is_a_lossless_slicing_of_the_stream():
    tokens = np.arange(103, dtype=np.uint16)
    blocks = pack_token_stream(tokens, 10)
    assert isinstance(blocks, PackedBlocks) and len(blocks) == 10  # the 3-token tail is dropped
    assert torch.equal(blocks[4]["input_ids"], torch.arange(40, 50))
    assert torch.equal(blocks[4]["labels"], blocks[4]["input_ids"])  # the model shifts labels itself
    with pytest.raises(IndexError):
        blocks[10]
    with pytest.raises(DataError, match="fewer than one block of 200"):
        pack_token_stream(tokens, 200)


def test_builtin_corpus_is_deterministic_and_split_at_a_line(tmp_path):
    train, valid = write_builtin_corpus(tmp_path)
    text = builtin_corpus_text()
    assert len(text) > 300_000
    assert train.read_text() + valid.read_text() == text
    assert train.read_text().endswith("\n")
    assert 0.03 < len(valid.read_text()) / len(text) < 0.07


# --------------------------------------------------------------------------------------------- pretraining


def test_pretrain_end_to_end_saves_a_loadable_model(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = pretrain_args(corpus, out, "--max_steps", "4", "--eval_strategy", "steps", "--eval_steps", "2")
        del args[args.index("--use_cpu") : args.index("--use_cpu") + 2]  # the default device, a CPU here
        assert cli_main(args) == 0
    # A run without an accelerator does not ask the DataLoader for pinned memory (which only helps copies to one).
    assert not [w for w in caught if "pin_memory" in str(w.message)], [str(w.message) for w in caught]
    captured = capsys.readouterr().out
    assert "----- sample -----" in captured

    metrics = json.loads((out / "all_results.json").read_text())
    assert math.isclose(metrics["eval_perplexity"], math.exp(metrics["eval_loss"]), rel_tol=1e-6)
    losses = logged_losses(out)
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)

    # The folder carries the modeling code, a full auto_map and the tokenizer; the model reloads exactly.
    for name in ("configuration_gpt.py", "modeling_gpt.py", "tokenizer.json", "model.safetensors"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "bigmodel_gpt" and config["use_cache"] is True
    assert "AutoModelForCausalLM" in config["auto_map"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert len(tokenizer) <= config["vocab_size"]
    assert config["pad_token_id"] == tokenizer.pad_token_id and config["eos_token_id"] == tokenizer.eos_token_id
    # The run leaves a model card whose metadata carries the evaluation result, and a loss curve.
    import yaml

    card = (out / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    results = metadata["model-index"][0]["results"][0]["metrics"]
    assert any(m["value"] == pytest.approx(metrics["eval_loss"], rel=1e-3) for m in results), results
    assert (out / "loss_curve.png").read_bytes().startswith(b"\x89PNG")

    model = AutoModelForCausalLM.from_pretrained(out)
    saved = load_file(out / "model.safetensors")
    assert torch.equal(model.model.embed_tokens.weight, saved["model.embed_tokens.weight"])


def test_pretrain_from_a_datasets_dataset(corpus, tmp_path):
    """Rows of a `datasets` dataset are documents: each gets <|endoftext|> after it in the packed stream."""
    import datasets

    paragraphs = [p for p in corpus[0].read_text().split("\n\n") if p.strip()]
    data = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"body": paragraphs[:-20]}),
         "validation": datasets.Dataset.from_dict({"body": paragraphs[-20:]})}
    )  # fmt: skip
    data.save_to_disk(tmp_path / "data")
    out = tmp_path / "run"
    args = pretrain_args(corpus, out, "--max_steps", "2")
    train_at = args.index("--train_file")
    del args[train_at : train_at + 4]  # drop --train_file/--validation_file
    assert cli_main([*args, "--dataset_name", str(tmp_path / "data"), "--text_column", "body"]) == 0
    assert len(logged_losses(out)) == 2

    from hf_bigmodel.data import tokenize_to_stream

    tokenizer = AutoTokenizer.from_pretrained(out)
    stream = tokenize_to_stream(data["validation"].rename_column("body", "text"), tokenizer, append_eos=True)
    assert (stream == tokenizer.eos_token_id).sum() == 20
    assert tokenizer.decode(stream[: stream.tolist().index(tokenizer.eos_token_id)]) == paragraphs[-20]


def test_pretrain_refuses_a_tokenizer_bigger_than_the_model(corpus, tmp_path, capsys):
    from hf_bigmodel import create_model
    from hf_bigmodel.tokenization import train_tokenizer

    small = create_model("gpt-tiny", "causal-lm", vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=1)
    small.save_pretrained(tmp_path / "small")
    train_tokenizer(kind="char", files=[corpus[0]], output_dir=tmp_path / "tok", show_progress=False)
    args = pretrain_args(corpus, tmp_path / "out", "--max_steps", "1", "--model_name_or_path", str(tmp_path / "small"),
                         "--tokenizer_name_or_path", str(tmp_path / "tok"))  # fmt: skip
    assert cli_main(args) == 2
    assert "vocab_size" in capsys.readouterr().err


def test_resume_from_checkpoint_continues_exactly(corpus, tmp_path):
    common = ("--lr_scheduler_type", "constant", "--save_steps", "3", "--save_strategy", "steps")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert cli_main(pretrain_args(corpus, straight, "--max_steps", "6", *common)) == 0
    # "Interrupt" after 3 steps (a checkpoint is written), then run again with the same output dir.
    assert cli_main(pretrain_args(corpus, resumed, "--max_steps", "3", *common)) == 0
    assert (resumed / "checkpoint-3" / "optimizer.pt").is_file()
    assert (
        cli_main(pretrain_args(corpus, resumed, "--max_steps", "6", "--resume_from_checkpoint", "last", *common)) == 0
    )

    state = json.loads((resumed / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert logged_losses(resumed)[-3:] == pytest.approx(logged_losses(straight)[-3:], abs=1e-6)
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_gradient_accumulation_and_activation_checkpointing_give_the_same_loss(corpus, tmp_path):
    """Same global batch of 4: one step of 4, two accumulated steps of 2, and with activation checkpointing. Trainer
    passes `num_items_in_batch` and stops dividing by the accumulation steps, so the model must normalise by it."""
    base = ("--max_steps", "3", "--lr_scheduler_type", "constant")
    runs = {
        "batch4": ("--per_device_train_batch_size", "4"),
        "ga2": ("--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2"),
        "ckpt": ("--per_device_train_batch_size", "4", "--activation_checkpointing", "true"),
    }
    losses = {}
    for name, extra in runs.items():
        assert cli_main(pretrain_args(corpus, tmp_path / name, *base, *extra)) == 0
        losses[name] = logged_losses(tmp_path / name)
    assert len(losses["batch4"]) == 3
    assert losses["ga2"] == pytest.approx(losses["batch4"], rel=1e-5)
    assert losses["ckpt"] == pytest.approx(losses["batch4"], rel=1e-5)


def test_bf16_and_tensorboard(corpus, tmp_path):
    """`--bf16 true` (TrainingArguments' flag: autocast on CPU) trains float32 weights whose losses follow the float32
    run's to bf16 precision, and saves them in float32."""
    out, reference = tmp_path / "bf16", tmp_path / "fp32"
    args = pretrain_args(corpus, out, "--max_steps", "2", "--bf16", "true", "--report_to", "tensorboard")
    assert cli_main(args) == 0
    assert cli_main(pretrain_args(corpus, reference, "--max_steps", "2", "--sample_max_new_tokens", "0")) == 0
    assert all(math.isfinite(loss) for loss in logged_losses(out))
    assert logged_losses(out) == pytest.approx(logged_losses(reference), rel=2e-2)
    results = [json.loads((run / "all_results.json").read_text()) for run in (out, reference)]
    assert results[0]["eval_loss"] == pytest.approx(results[1]["eval_loss"], rel=2e-2)
    assert {tensor.dtype for tensor in load_file(out / "model.safetensors").values()} == {torch.float32}
    events = list((out / "runs").rglob("events.out.tfevents.*"))  # transformers 5: OUTPUT_DIR/runs/<date>
    assert events and events[0].stat().st_size > 0


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bfloat16_warns(native, monkeypatch, caplog):
    """`--bf16` adds `--use_cpu true` without an accelerator, and says so when the CPU would emulate bfloat16
    (a BERT4Rec epoch took several times as long as in float32 on such a CPU)."""
    from hf_bigmodel.training.common import _implied_flags

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    if hasattr(torch, "xpu"):
        monkeypatch.setattr(torch.xpu, "is_available", lambda: False)
    monkeypatch.setattr("hf_bigmodel.hardware.native_bf16", lambda: native)
    with caplog.at_level("WARNING", logger="hf_bigmodel"):
        assert _implied_flags(["--bf16", "true"]) == ["--bf16", "true", "--use_cpu", "true"]
    warned = [r.getMessage() for r in caplog.records if "no AVX-512 BF16 or AMX" in r.getMessage()]
    assert len(warned) == (0 if native else 1) and all("leave --bf16 out" in message for message in warned)
    assert _implied_flags(["--max_steps", "2"]) == ["--max_steps", "2"]  # no --bf16: nothing implied


def test_evaluation_runs_without_kv_cache_and_the_saved_model_keeps_it(corpus, tmp_path, monkeypatch):
    """The final evaluation needs no KV cache (at an evaluation batch it only costs memory); the saved config keeps
    `use_cache` on for generation."""
    from transformers import Trainer

    seen = []
    evaluate = Trainer.evaluate

    def recording_evaluate(self, *args, **kwargs):
        seen.append(self.model.config.use_cache)
        metrics = evaluate(self, *args, **kwargs)
        seen.append(self.model.config.use_cache)
        return metrics

    monkeypatch.setattr(Trainer, "evaluate", recording_evaluate)
    out = tmp_path / "run"
    assert cli_main(pretrain_args(corpus, out, "--max_steps", "1", "--sample_max_new_tokens", "0")) == 0
    assert seen == [False, False]
    assert json.loads((out / "config.json").read_text())["use_cache"] is True


@pytest.mark.slow
def test_two_processes_on_gloo_match_one_process(corpus, tmp_path):
    """torchrun with 2 CPU processes (gloo) and 2 sequences each equals 1 process with 4 sequences: the same global
    batches (sequential sampling), gradients averaged across processes, loss normalised by the global token count."""
    extra = ("--max_steps", "3", "--lr_scheduler_type", "constant", "--sample_max_new_tokens", "0")
    single, double = tmp_path / "single", tmp_path / "double"
    assert cli_main(pretrain_args(corpus, single, "--per_device_train_batch_size", "4", *extra)) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               "-m", "hf_bigmodel.cli", *pretrain_args(corpus, double, "--per_device_train_batch_size", "2", *extra)]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert logged_losses(double) == pytest.approx(logged_losses(single), rel=1e-4)
    a, b = load_file(single / "model.safetensors"), load_file(double / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_finish_run_saves_metrics_and_survives_a_model_without_card(tmp_path, monkeypatch, caplog):
    """Every pretrainer ends with `finish_run`: metrics are saved whatever happens to the card, a model type
    without a card template only warns, and `publish=False` writes no card."""
    from transformers import TrainingArguments

    from hf_bigmodel.publish.card import ModelCardError
    from hf_bigmodel.training import common

    class RecordingTrainer:
        def __init__(self):
            self.saved = []

        def log_metrics(self, split, metrics):
            pass

        def save_metrics(self, split, metrics):
            self.saved.append((split, metrics))

        def is_world_process_zero(self):
            return True

    cards = []

    def refuse_card(output_dir, *arguments, **options):
        cards.append((output_dir, arguments[-1].output_dir, options))
        raise ModelCardError("no card template for model_type 'gpt2'")

    monkeypatch.setattr(common, "write_model_card", refuse_card)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[])
    trainer = RecordingTrainer()
    common.finish_run(trainer, args, {"eval_loss": 1.0}, ("model", "data"), "tokenizer", extra={"n": 3})
    assert trainer.saved == [("all", {"eval_loss": 1.0})]
    assert cards == [(str(tmp_path), str(tmp_path), {"extra": {"n": 3}})]
    assert "No model card written: no card template for model_type 'gpt2'" in caplog.text
    common.finish_run(trainer, args, {"eval_loss": 2.0}, ("model", "data"), "tokenizer", publish=False)
    assert len(trainer.saved) == 2 and len(cards) == 1


def test_config_overrides_apply_to_a_saved_model(tmp_path):
    """--config_overrides with --model_name_or_path change the saved config (a fine-tune's dropout), keep every
    weight, and name a field the config does not have."""
    from types import SimpleNamespace

    from hf_bigmodel import create_model
    from hf_bigmodel.training.common import load_saved_model

    saved = create_model("gpt-tiny", "causal-lm", vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=1)
    saved.save_pretrained(tmp_path / "saved")
    args = SimpleNamespace(model_name_or_path=str(tmp_path / "saved"), config_overrides="hidden_dropout=0.3",
                           attn_implementation=None)  # fmt: skip
    model = load_saved_model(AutoModelForCausalLM, args)
    assert model.config.hidden_dropout == 0.3 and saved.config.hidden_dropout != 0.3
    for name, tensor in saved.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, rtol=0, atol=0)
    args.config_overrides = "hidden_dropout=0.3,hiden_dropout=0.1"
    with pytest.raises(ValueError, match=r"has no field 'hiden_dropout' \(--config_overrides on .*saved\)\. "
                       r"Did you mean hidden_dropout"):  # fmt: skip
        load_saved_model(AutoModelForCausalLM, args)
    args.config_overrides = "intermediate_size=100"
    with pytest.raises(DataError, match=r"change the shape of weights saved in .*train from --preset"):
        load_saved_model(AutoModelForCausalLM, args)
