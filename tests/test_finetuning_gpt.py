"""Fine-tuning the GPT classification heads with `hf-bigmodel finetune` (Trainer): SST-2 sentiment from
../shared/data/sst2 with accuracy and F1, and token classification on a synthetic tagging task."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from hf_bigmodel import create_model
from hf_bigmodel.cli import main as cli_main
from hf_bigmodel.metrics import classification_metrics
from hf_bigmodel.tokenization import sync_config_with_tokenizer, train_tokenizer

SST2 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2"


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
