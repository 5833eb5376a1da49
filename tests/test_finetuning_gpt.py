"""Fine-tuning the GPT classification heads with `hf-bigmodel finetune` (Trainer): SST-2 sentiment from
../shared/data/sst2 with accuracy and F1, and token classification on a synthetic tagging task."""

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from hf_bigmodel import create_model
from hf_bigmodel.cli import main as cli_main
from hf_bigmodel.metrics import classification_metrics
from hf_bigmodel.testing import shared_data
from hf_bigmodel.tokenization import sync_config_with_tokenizer, train_tokenizer

SST2 = shared_data("sst2")


def make_base_model(directory: Path, text_files: list[Path], **overrides) -> Path:
    """A small randomly initialised GPT with a tokenizer trained on `text_files`, saved as a fine-tuning start."""
    tokenizer = train_tokenizer(kind="bpe", files=text_files, vocab_size=1024, show_progress=False)
    model = create_model("gpt-tiny", "causal-lm", hidden_size=64, num_attention_heads=4, **overrides)
    sync_config_with_tokenizer(model.config, tokenizer)
    model.resize_token_embeddings(model.config.vocab_size)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_classification_metrics_against_hand_computed_values():
    predictions = np.array([1, 1, 0, 0, 1, -5])
    labels = np.array([1, 0, 0, 1, 1, -100])  # the last position is ignored
    metrics = classification_metrics(predictions, labels, num_labels=2)
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    # class 1: tp=2, fp=1, fn=1 -> F1 = 2*2 / (3 + 3)
    assert metrics["f1"] == pytest.approx(4 / 6)
    three = classification_metrics(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]), num_labels=3)
    assert three["f1"] == pytest.approx(np.mean([1.0, 2 / 3, 2 / 3]))


@pytest.mark.skipif(not SST2.is_dir(), reason="../shared/data/sst2 is not available")
def test_sst2_sequence_classification_learns(tmp_path, capsys):
    base = make_base_model(tmp_path / "base", [SST2 / "train.tsv"], max_position_embeddings=64)
    out = tmp_path / "sst2"
    status = cli_main([
        "finetune", "--model_name_or_path", str(base), "--task", "sequence-classification",
        "--train_file", str(SST2 / "train.tsv"), "--validation_file", str(SST2 / "dev.tsv"),
        "--text_column", "sentence", "--label_column", "label", "--max_train_samples", "6000",
        "--max_seq_length", "64", "--output_dir", str(out), "--num_train_epochs", "1",
        "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "128", "--learning_rate", "2e-3",
        "--warmup_steps", "10", "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none",
        "--use_cpu", "true", "--seed", "0",
    ])  # fmt: skip
    assert status == 0
    metrics = json.loads((out / "all_results.json").read_text())
    # Chance is ~0.51 on the dev set; a tiny model trained from scratch for one short epoch clearly beats it.
    assert metrics["eval_accuracy"] > 0.62, metrics
    assert 0.0 < metrics["eval_f1"] <= 1.0

    # The fine-tuned folder works with the text-classification pipeline and its id2label.
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "0", 1: "1"}
    classifier = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(out))
    predictions = classifier(["a gorgeous , witty , seductive movie .", "the acting is dreadful"])
    assert {p["label"] for p in predictions} <= {"0", "1"}


def test_token_classification_learns_a_tagging_rule(tmp_path):
    """Tags depend only on the word (digits -> NUM, capitalised -> CAP, else O), so a few steps must learn them."""
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "mat", "Paris", "London", "Alice", "7", "42", "2024", "runs", "Bob", "9"]

    def tag(word: str) -> str:
        return "NUM" if word.isdigit() else "CAP" if word[0].isupper() else "O"

    def write(path: Path, rows: int) -> Path:
        with path.open("w") as f:
            for _ in range(rows):
                sentence = [rng.choice(words) for _ in range(rng.randint(3, 9))]
                f.write(json.dumps({"tokens": sentence, "tags": [tag(w) for w in sentence]}) + "\n")
        return path

    train, valid = write(tmp_path / "train.jsonl", 600), write(tmp_path / "valid.jsonl", 100)
    corpus = tmp_path / "words.txt"
    corpus.write_text(" ".join(words * 20))
    base = make_base_model(tmp_path / "base", [corpus])
    out = tmp_path / "tagger"
    status = cli_main([
        "finetune", "--model_name_or_path", str(base), "--task", "token-classification",
        "--train_file", str(train), "--validation_file", str(valid), "--text_column", "tokens",
        "--label_column", "tags", "--output_dir", str(out), "--num_train_epochs", "3",
        "--per_device_train_batch_size", "16", "--learning_rate", "3e-3", "--report_to", "none",
        "--use_cpu", "true", "--save_strategy", "no", "--seed", "0",
    ])  # fmt: skip
    assert status == 0
    metrics = json.loads((out / "all_results.json").read_text())
    assert metrics["eval_accuracy"] > 0.9, metrics
    config = json.loads((out / "config.json").read_text())
    assert sorted(config["id2label"].values()) == ["CAP", "NUM", "O"]


def test_finetune_reports_a_missing_column(tmp_path, capsys):
    base = tmp_path / "base"
    corpus = tmp_path / "c.txt"
    corpus.write_text("some words to train a tokenizer on " * 10)
    make_base_model(base, [corpus])
    data = tmp_path / "d.csv"
    data.write_text("text,label\nhello,1\nbye,0\n")
    status = cli_main(["finetune", "--model_name_or_path", str(base), "--train_file", str(data),
                       "--text_column", "sentence", "--output_dir", str(tmp_path / "o"), "--use_cpu", "true"])  # fmt: skip
    assert status == 2
    assert "has no column 'sentence'" in capsys.readouterr().err


def write_sentiment_csv(path: Path, rows: int, seed: int) -> Path:
    """Rows whose label is decided by one word (good/great -> 1, bad/awful -> 0), in varied filler text."""
    rng = random.Random(seed)
    filler = ["the", "film", "was", "quite", "and", "plot", "a", "very", "story", "acting"]
    with path.open("w") as f:
        f.write("text,label\n")
        for _ in range(rows):
            label = rng.randint(0, 1)
            words = [rng.choice(filler) for _ in range(rng.randint(2, 6))]
            words.insert(rng.randint(0, len(words)), rng.choice(["good", "great"] if label else ["bad", "awful"]))
            f.write(f"{' '.join(words)},{label}\n")
    return path


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(base model folder, train csv, validation csv)."""
    directory = tmp_path_factory.mktemp("sentiment")
    train = write_sentiment_csv(directory / "train.csv", 64, seed=1)
    valid = write_sentiment_csv(directory / "valid.csv", 16, seed=2)
    return make_base_model(directory / "base", [train]), train, valid


def finetune_args(sentiment, output_dir: Path, *extra: str) -> list[str]:
    base, train, valid = sentiment
    return [
        "finetune", "--model_name_or_path", str(base), "--task", "sequence-classification",
        "--train_file", str(train), "--validation_file", str(valid), "--output_dir", str(output_dir),
        "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--lr_scheduler_type", "constant",
        "--logging_steps", "1", "--report_to", "none", "--use_cpu", "true", "--dataloader_num_workers", "0",
        "--train_sampling_strategy", "sequential", *extra,
    ]  # fmt: skip


def test_finetune_resumes_an_interrupted_run_from_its_last_checkpoint(sentiment, tmp_path, caplog):
    """Run again with the same command and output dir, a stopped fine-tuning continues from its last checkpoint
    (the pretrainers' auto-resume). The rerun has another --seed: started afresh, its new classification head would
    be initialised differently; resumed, it ends with exactly the weights of the run that was never stopped."""
    from safetensors.torch import load_file

    common = ("--save_strategy", "steps", "--save_steps", "2")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert cli_main(finetune_args(sentiment, straight, "--max_steps", "4", "--seed", "7", *common)) == 0
    # "Interrupted" after 2 steps, with checkpoint-2 written.
    assert cli_main(finetune_args(sentiment, resumed, "--max_steps", "2", "--seed", "7", *common)) == 0
    assert (resumed / "checkpoint-2" / "optimizer.pt").is_file()
    caplog.set_level(logging.INFO, logger="hf_bigmodel.training")
    assert cli_main(finetune_args(sentiment, resumed, "--max_steps", "4", "--seed", "99", *common)) == 0
    assert f"Resuming from the last checkpoint in the output directory: {resumed / 'checkpoint-2'}" in caplog.text

    state = json.loads((resumed / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    losses = {
        name: [e["loss"] for e in json.loads((d / "trainer_state.json").read_text())["log_history"] if "loss" in e]
        for name, d in (("straight", straight), ("resumed", resumed))
    }
    assert losses["resumed"][-2:] == pytest.approx(losses["straight"][-2:], abs=1e-6)
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=0, atol=1e-6, err_msg=key)


@pytest.mark.slow  # a child process: huggingface_hub reads HF_ENDPOINT once, at import
def test_finetune_push_to_hub_publishes_model_tokenizer_code_and_card(sentiment, tmp_path):
    """`--push_to_hub` ends a fine-tuning as it ends a pretraining: the whole folder (weights, tokenizer, modeling
    code, our model card with the run's metrics) is pushed, through the package's local Hub server."""
    import os
    import subprocess
    import sys

    import yaml

    from hf_bigmodel.testing import HubServer

    repo = "testuser/gpt-sentiment"
    with HubServer(tmp_path / "hub") as hub:
        args = finetune_args(sentiment, tmp_path / "run", "--max_steps", "2", "--save_strategy", "no",
                             "--push_to_hub", "true", "--hub_model_id", repo)  # fmt: skip
        env = {**os.environ, **hub.env(), "OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf_home")}
        result = subprocess.run([sys.executable, "-m", "hf_bigmodel.cli", *args], env=env, capture_output=True,
                                text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        files = hub.files(repo)
        for name in ("model.safetensors", "config.json", "tokenizer.json", "README.md"):
            assert name in files, (name, sorted(files))
        assert any(name.startswith("modeling_") for name in files), sorted(files)
        assert not [n for n in files if n.endswith(".pt") or n.startswith("checkpoint-")], sorted(files)
        card = hub.read(repo, "README.md").decode()
        assert card == (tmp_path / "run" / "README.md").read_text(encoding="utf-8")  # our card, not Trainer's
        metadata = yaml.safe_load(card.split("---")[1])
        metrics = {m["type"]: m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]}
        saved = json.loads((tmp_path / "run" / "all_results.json").read_text())
        assert metrics["accuracy"] == pytest.approx(saved["eval_accuracy"], abs=1e-6)
        assert metadata["pipeline_tag"] == "text-classification"


def test_finetune_reads_a_save_to_disk_dataset_with_a_valid_split(sentiment, tmp_path):
    """--dataset_name goes through the one dataset loader: a `save_to_disk` folder works, and its "valid" split is
    evaluated as the validation set (the same metrics as the same rows given as files)."""
    import datasets

    _, train, valid = sentiment
    folder = tmp_path / "saved"
    splits = {"train": train, "valid": valid}
    datasets.DatasetDict({name: datasets.Dataset.from_csv(str(path)) for name, path in splits.items()}).save_to_disk(
        str(folder)
    )
    from_files = finetune_args(sentiment, tmp_path / "files", "--max_steps", "2", "--save_strategy", "no")
    assert cli_main(from_files) == 0
    from_saved = finetune_args(sentiment, tmp_path / "saved_run", "--max_steps", "2", "--save_strategy", "no")
    for flag in ("--train_file", "--validation_file"):
        del from_saved[from_saved.index(flag) : from_saved.index(flag) + 2]
    assert cli_main([*from_saved, "--dataset_name", str(folder)]) == 0
    expected = json.loads((tmp_path / "files" / "all_results.json").read_text())
    metrics = json.loads((tmp_path / "saved_run" / "all_results.json").read_text())
    for key in ("eval_accuracy", "eval_f1", "eval_loss", "train_loss"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6), key
