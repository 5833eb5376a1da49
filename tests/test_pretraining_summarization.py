"""`hf-bigmodel pretrain transformer --objective summarization`: document/summary pairs from data files or a
`datasets` dataset, ROUGE at evaluation (the same numbers as scoring the written predictions), a saved folder that
the summarization pipeline serves; the offline WikiText-2 section-heading task; and the data errors. Tiny
transformer on synthetic pairs; a few seconds each."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
from transformers import pipeline

from hf_bigmodel.cli import main as cli_main
from hf_bigmodel.data import DataError
from hf_bigmodel.data.seq2seq import load_summarization_splits, wikitext_heading_pairs
from hf_bigmodel.metrics import rouge_scores
from hf_bigmodel.testing import logged_losses, shared_data
from hf_bigmodel.training.pretrain_seq2seq import PREDICTIONS_FILE

TOPICS = {
    "history": ["founded", "century", "war", "king", "built", "early", "years"],
    "reception": ["critics", "praised", "review", "album", "rating", "score", "positive"],
    "geography": ["river", "mountain", "north", "area", "coast", "valley", "km"],
}


def pairs(n: int, seed: int) -> list[dict[str, str]]:
    """Documents whose words come from one topic; the summary is the topic's name (a heading-like task)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topic = rng.choice(sorted(TOPICS))
        words = [rng.choice(TOPICS[topic] + ["the", "a", "of", "in"]) for _ in range(rng.randint(8, 20))]
        rows.append({"document": " ".join(words) + " .", "summary": topic.capitalize()})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def summarization_args(data: list[str], output_dir: Path, *extra: str) -> list[str]:
    return [
        "pretrain", "transformer", "--objective", "summarization", "--preset", "transformer-tiny",
        *data, "--output_dir", str(output_dir), "--tokenizer_kind", "bpe",
        "--tokenizer_vocab_size", "300", "--do_train", "--per_device_train_batch_size", "8",
        "--per_device_eval_batch_size", "16", "--learning_rate", "3e-3", "--logging_steps", "5", "--report_to", "none",
        "--use_cpu", "true", "--seed", "3", "--dataloader_num_workers", "0", "--save_strategy", "no",
        "--truncate_long_sequences", *extra,
    ]  # fmt: skip


def test_summarization_end_to_end_with_rouge(tmp_path, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", pairs(120, seed=0))
    test_rows = pairs(12, seed=1)
    test = write_jsonl(tmp_path / "test.jsonl", test_rows)
    out = tmp_path / "run"
    args = summarization_args(["--train_file", str(train)], out, "--max_steps", "60", "--validation_file", str(test), "--do_eval",
                              "--do_predict", "--test_file", str(test), "--predict_with_generate",
                              "--generation_num_beams", "2", "--no_repeat_ngram_size", "2",
                              "--generation_max_length", "8")  # fmt: skip
    assert cli_main(args) == 0
    assert "eval_rougeL=" in capsys.readouterr().out
    metrics = json.loads((out / "all_results.json").read_text())
    predictions = (out / PREDICTIONS_FILE).read_text(encoding="utf-8").splitlines()
    references = [r["summary"] for r in test_rows]
    assert len(predictions) == len(references)
    # The reported ROUGE is the metric code's score of the written predictions against the raw summaries.
    assert metrics["test_rougeL"] == pytest.approx(rouge_scores(predictions, references)["rougeL"], abs=1e-6)
    assert {"eval_rouge1", "eval_rouge2", "eval_rougeL", "test_gen_len"} <= metrics.keys()
    losses = logged_losses(out)
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])  # it learns (60 steps are too few to spell the topics)
    # The saved folder: generation settings kept, and the summarization pipeline gives the predictions.
    summarize = pipeline("summarization", model=str(out))
    assert summarize.model.generation_config.no_repeat_ngram_size == 2
    assert summarize(test_rows[0]["document"])[0]["summary_text"] == predictions[0]
    card = (out / "README.md").read_text()
    assert "ROUGE-L (F, %)" in card


def test_pairs_from_a_datasets_dataset_with_other_columns(tmp_path):
    import datasets

    rows = pairs(40, seed=2)
    data = datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {"article": [r["document"] for r in part], "heading": [r["summary"] for r in part]}
            )
            for split, part in (("train", rows[:32]), ("validation", rows[32:]))
        }
    )
    data.save_to_disk(tmp_path / "data")
    splits = load_summarization_splits({}, str(tmp_path / "data"), text_column="article", summary_column="heading")
    assert set(splits) == {"train", "validation"}
    assert splits["validation"].targets == [r["summary"] for r in rows[32:]]
    out = tmp_path / "run"
    args = summarization_args(["--dataset_name", str(tmp_path / "data")], out, "--max_steps", "4", "--do_eval",
                              "--text_column", "article", "--summary_column", "heading")  # fmt: skip
    assert cli_main(args) == 0
    assert "eval_loss" in json.loads((out / "all_results.json").read_text())


def test_summarization_data_errors(tmp_path, capsys):
    rows = pairs(4, seed=3)
    no_summary = write_jsonl(tmp_path / "nosummary.jsonl", [{"document": r["document"]} for r in rows])
    with pytest.raises(DataError, match=r"has no column 'summary' \(set it with --summary_column\); its columns: "):
        load_summarization_splits({"train": [str(no_summary)]})
    empty = write_jsonl(tmp_path / "empty.jsonl", [*rows, {"document": "text", "summary": " "}])
    with pytest.raises(DataError, match=r"Row 4 of the .* has an empty or missing 'document' or 'summary'"):
        load_summarization_splits({"train": [str(empty)]})
    assert len(load_summarization_splits({"train": [str(empty)]}, skip_empty_pairs=True)["train"].sources) == 4
    with pytest.raises(DataError, match=r"Give either data files or --dataset_name, not both"):
        load_summarization_splits({"train": [str(empty)]}, "some/dataset")
    # From the command line: one line, exit code 2.
    assert cli_main(summarization_args(["--train_file", str(no_summary)], tmp_path / "run", "--max_steps", "1")) == 2
    err = capsys.readouterr().err
    assert "has no column 'summary' (set it with --summary_column)" in err and "Traceback" not in err


def test_wikitext_heading_pairs(tmp_path):
    text = (
        " \n = Valkyria = \n \n Senjo no Valkyria is a game . It was made in 2011 . \n \n"
        " = = Gameplay = = \n \n The game has a turn @-@ based system . \n It plays well . \n \n"
        " = = = Battle system = = = \n \n Units move on a map . \n \n"
        " = = <unk> = = \n \n This section has an unknown heading . \n \n"
        " = = Empty = = \n \n"
        " = Next article = \n \n Its lead has no heading . \n"
    )
    path = tmp_path / "wiki.txt"
    path.write_text(text, encoding="utf-8")
    assert wikitext_heading_pairs(path) == [
        {"document": "The game has a turn @-@ based system . It plays well .", "summary": "Gameplay"},
        {"document": "Units move on a map .", "summary": "Battle system"},
    ]
    assert wikitext_heading_pairs(path, max_words=3)[0] == {"document": "The game has", "summary": "Gameplay"}
    assert [p["article"] for p in wikitext_heading_pairs(path, article=True)] == ["Valkyria", "Valkyria"]
    # Windows: every `stride` words a window of `max_words`, until one reaches the section's end.
    windows = wikitext_heading_pairs(path, max_words=4, stride=2)
    assert [p["document"] for p in windows if p["summary"] == "Gameplay"] == [
        "The game has a",
        "has a turn @-@",
        "turn @-@ based system",
        "based system . It",
        ". It plays well",
        "plays well .",
    ]
    assert [p["document"] for p in windows if p["summary"] == "Battle system"] == ["Units move on a", "on a map ."]
    with pytest.raises(ValueError, match="stride must be between 1 and max_words"):
        wikitext_heading_pairs(path, max_words=4, stride=5)


def test_wikitext_heading_task_on_the_shared_data():
    candidate = shared_data("wikitext2")
    if not (candidate / "valid.txt").is_file():
        pytest.skip("the shared WikiText-2 is not on this machine")
    valid, test = (wikitext_heading_pairs(candidate / f"{split}.txt") for split in ("valid", "test"))
    assert (len(test), len(valid)) == (392, 367)  # the counts benchmarks/README.md quotes
    assert valid[0]["summary"] == "Description" and all(len(p["document"].split()) <= 100 for p in valid)


@pytest.mark.slow  # a subprocess that trains a model: about a minute on a quiet machine
def test_bench_summarization_quick_runs(tmp_path):
    import subprocess
    import sys

    wikitext = tmp_path / "wikitext2"
    wikitext.mkdir()
    rng = random.Random(4)
    for split in ("test", "valid"):
        lines = []
        for article in range(6):
            lines.append(f" = Article {article} = \n \n Lead text . \n \n")
            for topic in sorted(TOPICS):
                words = " ".join(rng.choice(TOPICS[topic]) for _ in range(15))
                lines.append(f" = = {topic.capitalize()} = = \n \n {words} . \n \n")
        (wikitext / f"{split}.txt").write_text("".join(lines), encoding="utf-8")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_summarization_headings.py"
    result = subprocess.run([sys.executable, str(script), "--quick", "--data", str(wikitext), "--output_dir",
                             str(tmp_path / "run"), "--vocab_size", "300"],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lead-sentence baseline" in result.stdout and "ROUGE-L margin over the baseline:" in result.stdout
    assert len((tmp_path / "run" / "model" / PREDICTIONS_FILE).read_text().splitlines()) == 18
