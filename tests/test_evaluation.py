"""`hf-bigmodel evaluate`: perplexity with a sliding window (against brute force and the model's own loss), word/byte
perplexity, classification reports, eval_results.json, the card's model-index, stock models and the bad-input
errors. Tiny models built from configs; each test takes a few seconds."""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from hf_bigmodel import create_model
from hf_bigmodel.conversion.convert_gpt import convert_bigmodel_to_gpt2
from hf_bigmodel.evaluation import main, sliding_window_nll
from hf_bigmodel.metrics import (
    classification_report,
    confusion_matrix,
    confusion_matrix_text,
    count_words,
    language_model_metrics,
)
from hf_bigmodel.tokenization import sync_config_with_tokenizer, train_tokenizer

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "tree", "good", "bad", "very", "not", "film"]


def corpus(rows: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + " ." for _ in range(rows)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A causal-LM GPT, its GPT2LMHeadModel export, a GPT classifier and a ResNet, saved with their tokenizer."""
    root = tmp_path_factory.mktemp("evaluate")
    text = root / "corpus.txt"
    text.write_text("\n".join(corpus(300)) + "\n", encoding="utf-8")
    tokenizer = train_tokenizer(kind="bpe", files=[text], vocab_size=300, show_progress=False)
    torch.manual_seed(0)
    out = {}
    for name, task, extra in (
        ("gpt", "causal-lm", {}),
        ("classifier", "sequence-classification", {"id2label": {0: "negative", 1: "positive"}}),
    ):
        model = create_model("gpt-tiny", task, hidden_size=32, num_attention_heads=2, max_position_embeddings=32,
                             **extra)  # fmt: skip
        sync_config_with_tokenizer(model.config, tokenizer)
        model.resize_token_embeddings(model.config.vocab_size, mean_resizing=False)
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        out[name] = root / name
    out["gpt2"] = convert_bigmodel_to_gpt2(out["gpt"], root / "gpt2")
    create_model("resnet-tiny", "image-classification").save_pretrained(root / "resnet")
    out["resnet"] = root / "resnet"
    long_text = root / "long.txt"
    long_text.write_text("\n".join(corpus(12, seed=1)) + "\n", encoding="utf-8")  # ~150 tokens: several windows
    out["long"] = long_text
    return out


def load(folder: Path, task: str = "perplexity"):
    from hf_bigmodel.evaluation import load_model

    return load_model(str(folder), task)


def test_one_window_equals_the_models_own_loss(folders):
    model, tokenizer = load(folders["gpt"])
    ids = tokenizer("the cat sat on the mat .", add_special_tokens=False)["input_ids"]
    prefix = tokenizer.eos_token_id
    nll, scored = sliding_window_nll(model, ids, max_length=32, stride=32, prefix_id=prefix)
    full = torch.tensor([[prefix, *ids]])
    with torch.no_grad():
        loss = model(input_ids=full, labels=full).loss
    assert scored == len(ids)  # the prefix makes the first token a target too
    assert nll / scored == pytest.approx(float(loss), rel=1e-5)
    nll_no_prefix, scored_no_prefix = sliding_window_nll(model, ids, 32, 32, prefix_id=None)
    assert scored_no_prefix == len(ids) - 1


def brute_force_nll(model, ids: list[int], context: int) -> float:
    """Each position p >= 1 predicted from the `context` tokens before it (all of them while p <= context)."""
    total = 0.0
    for p in range(1, len(ids)):
        window = torch.tensor([ids[max(0, p - context) : p]])
        with torch.no_grad():
            logits = model(input_ids=window).logits[0, -1].double()
        total -= float(torch.log_softmax(logits, -1)[ids[p]])
    return total


def test_stride_one_predicts_each_token_from_the_full_window_before_it(folders):
    model, tokenizer = load(folders["gpt"])
    ids = tokenizer(folders["long"].read_text(), add_special_tokens=False)["input_ids"][:60]
    nll, scored = sliding_window_nll(model, ids, max_length=16, stride=1, prefix_id=tokenizer.eos_token_id)
    assert scored == len(ids)
    assert nll == pytest.approx(brute_force_nll(model, [tokenizer.eos_token_id, *ids], 16), rel=1e-9)


def rolling_windows(tokens: list[int], prefix: int, length: int):
    """lm-evaluation-harness's `get_rolling_token_windows(tokens, prefix, max_seq_len=length, context_len=1)`:
    (inputs, targets) pairs; the first predicts the first `length` tokens after the prefix, each later one the next
    `length` tokens (fewer at the end) from the `length` tokens before them."""
    first = min(length, len(tokens))
    yield [prefix, *tokens[: first - 1]], tokens[:first]
    done = first
    while done < len(tokens):
        n = min(len(tokens) - done, length)
        end = done + n
        yield ([prefix, *tokens])[end - length : end], tokens[end - n : end]
        done += n


def test_disjoint_windows_are_lm_eval_rolling_windows(folders):
    model, tokenizer = load(folders["gpt"])
    tokens = tokenizer(folders["long"].read_text(), add_special_tokens=False)["input_ids"]
    prefix, length, reference = tokenizer.eos_token_id, 16, 0.0
    windows = list(rolling_windows(tokens, prefix, length))
    assert len(windows) > 5 and sum(len(targets) for _, targets in windows) == len(tokens)
    for inputs, targets in windows:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([inputs])).logits[0, -len(targets) :].double()
        reference += float(F.cross_entropy(logits, torch.tensor(targets), reduction="sum"))
    nll, scored = sliding_window_nll(model, tokens, length, length, prefix_id=prefix)
    assert scored == len(tokens)
    assert nll == pytest.approx(reference, rel=1e-9)
    # A smaller stride gives every token more context: another number.
    assert sliding_window_nll(model, tokens, length, 4, prefix)[0] != pytest.approx(reference, rel=1e-6)


def test_language_model_metrics_follow_lm_eval_definitions():
    assert count_words("a  b\nc") == 3
    assert count_words(" a b \n") == 4  # re.split keeps the empty strings at both ends, as lm-eval counts them
    metrics = language_model_metrics(nll=100.0, num_tokens=50, num_words=20, num_bytes=80)
    assert metrics["perplexity"] == pytest.approx(math.exp(2.0))
    assert metrics["word_perplexity"] == pytest.approx(math.exp(5.0))
    assert metrics["byte_perplexity"] == pytest.approx(math.exp(1.25))
    assert metrics["bits_per_byte"] == pytest.approx(1.25 / math.log(2))


def test_perplexity_command_writes_results_and_agrees_with_the_stock_export(folders, tmp_path, capsys):
    assert main([str(folders["gpt"]), "--task", "perplexity", "--data", str(folders["long"]), "--stride", "8",
                 "--output_dir", str(tmp_path / "zoo")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "| word_perplexity" in printed and "bits_per_byte" in printed
    zoo = json.loads((tmp_path / "zoo" / "eval_results.json").read_text())["perplexity"]
    text = folders["long"].read_text()
    assert zoo["metrics"]["bytes"] == len(text.encode()) and zoo["metrics"]["words"] == count_words(text)
    assert (zoo["max_length"], zoo["stride"], zoo["documents"]) == (32, 8, 1)
    model, tokenizer = load(folders["gpt"])
    nll, tokens = sliding_window_nll(model, tokenizer(text, add_special_tokens=False)["input_ids"], 32, 8,
                                     tokenizer.eos_token_id)  # fmt: skip
    assert zoo["metrics"]["perplexity"] == pytest.approx(math.exp(nll / tokens), rel=1e-12)
    # The same weights as a stock GPT2LMHeadModel (through the registry's stock Auto mapping) give the same numbers.
    assert json.loads((folders["gpt2"] / "config.json").read_text())["architectures"] == ["GPT2LMHeadModel"]
    assert main([str(folders["gpt2"]), "--task", "perplexity", "--data", str(folders["long"]), "--stride", "8",
                 "--output_dir", str(tmp_path / "stock")]) == 0  # fmt: skip
    stock = json.loads((tmp_path / "stock" / "eval_results.json").read_text())["perplexity"]
    for key in ("perplexity", "word_perplexity", "bits_per_byte"):
        assert stock["metrics"][key] == pytest.approx(zoo["metrics"][key], rel=1e-5)


def test_perplexity_of_a_column_scores_each_row_as_a_document(folders, tmp_path):
    rows = corpus(5, seed=3)
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"body": row}) + "\n" for row in rows))
    assert main([str(folders["gpt"]), "--task", "perplexity", "--data", str(data), "--text_column", "body"]) == 0
    entry = json.loads((folders["gpt"] / "eval_results.json").read_text())["perplexity"]
    assert entry["documents"] == 5 and entry["split"] == "train"
    assert entry["metrics"]["words"] == sum(count_words(row) for row in rows)


def write_labelled(path: Path, rows: int, labels) -> Path:
    texts = corpus(rows, seed=7)
    path.write_text("sentence,label\n" + "".join(f"{t},{labels[i % len(labels)]}\n" for i, t in enumerate(texts)))
    return path


def test_classification_report_confusion_matrix_and_png(folders, tmp_path, capsys):
    data = write_labelled(tmp_path / "dev.csv", 40, ["positive", "negative", "negative"])
    out = tmp_path / "out"
    args = [str(folders["classifier"]), "--task", "classification", "--data", str(data), "--text_column", "sentence",
            "--output_dir", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    entry = json.loads((out / "eval_results.json").read_text())["classification"]
    # The reference: the model's own argmax over the same rows.
    model, tokenizer = load(folders["classifier"], "classification")
    import datasets

    rows = datasets.load_dataset("csv", data_files=str(data))["train"]
    with torch.no_grad():
        predictions = np.array(
            [int(model(**tokenizer(t, return_tensors="pt")).logits.argmax()) for t in rows["sentence"]]
        )
    labels = np.array([{"negative": 0, "positive": 1}[label] for label in rows["label"]])
    expected = classification_report(predictions, labels, ["negative", "positive"])
    assert entry["metrics"] == pytest.approx(expected)
    assert set(expected) >= {"accuracy", "f1", "macro_f1", "f1_negative", "f1_positive"}
    matrix = confusion_matrix(predictions, labels, 2)
    assert entry["confusion_matrix"] == matrix.tolist() and matrix.sum() == 40
    assert confusion_matrix_text(matrix, ["negative", "positive"]) in printed
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Integer class ids work as well as label names.
    assert main([*args[:4], str(write_labelled(tmp_path / "ids.csv", 40, [1, 0, 0])), *args[5:]]) == 0
    again = json.loads((out / "eval_results.json").read_text())["classification"]
    assert again["confusion_matrix"] == entry["confusion_matrix"]


def test_classification_report_by_hand():
    report = classification_report(np.array([0, 1, 1, 2, 2, 2]), np.array([0, 1, 2, 2, 2, 0]), ["a", "b", "c"])
    # a: tp 1, 1 predicted, 2 true -> 2/3; b: tp 1, 2 predicted, 1 true -> 2/3; c: tp 2, 3 predicted, 3 true -> 2/3
    assert report["f1_a"] == pytest.approx(2 / 3) and report["f1_c"] == pytest.approx(2 / 3)
    assert report["accuracy"] == pytest.approx(4 / 6) and report["macro_f1"] == pytest.approx(2 / 3)
    assert confusion_matrix(np.array([0, 1, 1]), np.array([0, 0, 1]), 2).tolist() == [[1, 1], [0, 1]]


def test_update_card_adds_and_replaces_model_index_results(folders, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for path in folders["gpt"].iterdir():
        if path.is_file() and path.name not in ("README.md", "eval_results.json"):
            (folder / path.name).write_bytes(path.read_bytes())
    (folder / "README.md").write_text(
        "---\nlicense: mit\nmodel-index:\n- name: model\n  results:\n  - task: {type: text-generation}\n"
        "    dataset: {name: other, type: other}\n    metrics:\n    - {type: perplexity, value: 9.0}\n---\n\n# Kept\n"
    )
    args = [str(folder), "--task", "perplexity", "--data", str(folders["long"]), "--update_card", "--dataset_name",
            "long-text"]  # fmt: skip
    assert main(args) == 0 and main(args) == 0  # twice: the second run replaces, never duplicates
    text = (folder / "README.md").read_text()
    assert text.rstrip().endswith("# Kept")
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["license"] == "mit"
    results = meta["model-index"][0]["results"]
    by_dataset = {r["dataset"]["name"]: r for r in results}
    assert set(by_dataset) == {"other", "long-text"}
    ours = {m["type"]: m["value"] for m in by_dataset["long-text"]["metrics"]}
    assert set(ours) == {"loss", "perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"}
    saved = json.loads((folder / "eval_results.json").read_text())["perplexity"]["metrics"]
    assert ours["perplexity"] == pytest.approx(saved["perplexity"], rel=1e-5)


def test_model_index_survives_a_regenerated_card(folders, tmp_path):
    """A card written again (by training's `write_model_card` or by `hf-bigmodel push`) keeps what --update_card
    recorded, also when eval_results.json went to another --output_dir."""
    from hf_bigmodel.publish.card import build_model_card, write_model_card

    folder = tmp_path / "model"
    folder.mkdir()
    for path in folders["gpt"].iterdir():
        if path.is_file() and path.name not in ("README.md", "eval_results.json"):
            (folder / path.name).write_bytes(path.read_bytes())
    assert main([str(folder), "--task", "perplexity", "--data", str(folders["long"]), "--update_card",
                 "--dataset_name", "long-text", "--output_dir", str(tmp_path / "elsewhere")]) == 0  # fmt: skip
    recorded = json.loads((folder / "eval_results.json").read_text())["perplexity"]
    assert recorded["in_model_index"] is True

    def model_index(metadata: dict) -> dict[str, float]:
        [entry] = metadata["model-index"]
        return {(r["dataset"]["name"], m["type"]): m["value"] for r in entry["results"] for m in r["metrics"]}

    for metadata in (
        build_model_card(folder, repo_id="me/model").metadata,  # what push uploads
        yaml.safe_load(write_model_card(folder, overwrite=True).read_text().split("---")[1]),
    ):
        index = model_index(metadata)
        assert index[("long-text", "perplexity")] == pytest.approx(recorded["metrics"]["perplexity"], rel=1e-5)
        assert {name for dataset, name in index if dataset == "long-text"} == {
            "loss", "perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"
        }  # fmt: skip


def error_of(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line and "/s]" not in line]  # no progress bars
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("hf-bigmodel evaluate: error: ")
    return err


def test_a_task_that_does_not_fit_the_model(folders, capsys):
    err = error_of(capsys, str(folders["resnet"]), "--task", "perplexity", "--data", str(folders["long"]))
    assert "needs a causal language model" in err and "ResNet" in err
    err = error_of(capsys, str(folders["gpt"]), "--task", "classification", "--data", str(folders["long"]))
    assert "sequence classifier" in err and "tasks that fit it: perplexity" in err


def test_missing_columns_unknown_labels_and_empty_sets(folders, tmp_path, capsys):
    data = write_labelled(tmp_path / "d.csv", 4, ["positive"])
    err = error_of(capsys, str(folders["classifier"]), "--task", "classification", "--data", str(data))
    assert "no column 'text' (set it with --text_column)" in err and "sentence, label" in err
    bad = write_labelled(tmp_path / "bad.csv", 4, ["neutral"])
    err = error_of(capsys, str(folders["classifier"]), "--task", "classification", "--data", str(bad),
                   "--text_column", "sentence")  # fmt: skip
    assert "'neutral'" in err and "negative, positive" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n")
    err = error_of(capsys, str(folders["gpt"]), "--task", "perplexity", "--data", str(empty))
    assert "evaluation set is empty" in err
    header_only = tmp_path / "header.jsonl"
    header_only.write_text(json.dumps({"text": ""}) + "\n")
    err = error_of(capsys, str(folders["gpt"]), "--task", "perplexity", "--data", str(header_only))
    assert "evaluation set is empty" in err
    err = error_of(capsys, str(tmp_path / "nowhere"), "--task", "perplexity", "--data", str(empty))
    assert "No model folder" in err
    err = error_of(capsys, str(folders["gpt"]), "--task", "perplexity", "--data", str(folders["long"]),
                   "--max_length", "64")  # fmt: skip
    assert "longer than the model's context (32 tokens)" in err


def test_a_metric_whose_package_is_missing_names_the_pip_line(folders, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    data = write_labelled(tmp_path / "d.csv", 4, ["positive"])
    err = error_of(capsys, str(folders["classifier"]), "--task", "classification", "--data", str(data),
                   "--text_column", "sentence", "--output_dir", str(tmp_path / "o"))  # fmt: skip
    assert "pip install matplotlib" in err
