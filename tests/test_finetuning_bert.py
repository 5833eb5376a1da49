"""Fine-tuning BERT with `hf-bigmodel finetune`: extractive question answering (windows, span post-processing,
exact match / F1, the question-answering pipeline locally and as remote code), multiple choice, and SST-2
sentence classification with token_type_ids."""

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

from hf_bigmodel import create_model
from hf_bigmodel.cli import main as cli_main
from hf_bigmodel.metrics import normalize_answer, squad_scores
from hf_bigmodel.pipelines import QuestionAnsweringPipeline, add_question_answering_pipeline
from hf_bigmodel.pipelines.question_answering import best_span, prepare_qa_features, qa_predictions
from hf_bigmodel.testing import WITHOUT_HF_BIGMODEL, shared_data
from hf_bigmodel.tokenization import sync_config_with_tokenizer, train_tokenizer

SST2 = shared_data("sst2")

FILLER = [
    "river",
    "stone",
    "table",
    "window",
    "garden",
    "paper",
    "music",
    "bridge",
    "cloud",
    "forest",
    "candle",
    "mirror",
    "ladder",
    "pencil",
]
COLORS = [
    "crimson",
    "scarlet",
    "turquoise",
    "magenta",
    "ochre",
    "vermilion",
    "chartreuse",
]  # several WordPiece pieces each


def make_base(directory: Path, texts: list[str], vocab_size_for_tokenizer: int = 400, **overrides) -> Path:
    """A randomly initialised bert-tiny with a WordPiece tokenizer trained on `texts`, saved as a starting point."""
    corpus = directory.parent / f"{directory.name}_corpus.txt"
    corpus.write_text("\n\n".join(texts))
    tokenizer = train_tokenizer("wordpiece", files=[corpus], vocab_size=vocab_size_for_tokenizer, show_progress=False)
    torch.manual_seed(0)
    model = create_model("bert-tiny", "masked-lm", vocab_size=len(tokenizer), **overrides)
    sync_config_with_tokenizer(model.config, tokenizer)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def qa_rows(n: int, seed: int, length: int = 12) -> list[dict]:
    """The answer is the one colour word in a context of filler words, at a random place."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(FILLER) for _ in range(length)]
        words.insert(rng.randrange(length), rng.choice(COLORS))
        context = " ".join(words)
        answer = next(w for w in words if w in COLORS)
        rows.append({"question": "colour ?", "context": context,
                     "answers": {"text": [answer], "answer_start": [context.index(answer)]}})  # fmt: skip
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_squad_scores_against_hand_computed_values():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert squad_scores("the Eiffel Tower", ["Eiffel Tower", "tower"]) == (1.0, 1.0)
    exact, f1 = squad_scores("big red house", ["red house on the hill"])
    assert exact == 0.0 and f1 == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))
    assert squad_scores("", ["x"]) == (0.0, 0.0)


def test_post_processing_maps_logits_back_to_the_exact_span_across_windows(tmp_path):
    """Logits that peak at the gold tokens give back exactly the gold text, whichever window holds it."""
    rows = qa_rows(30, seed=1, length=40)
    base = make_base(tmp_path / "base", [r["context"] for r in rows])
    tokenizer = AutoTokenizer.from_pretrained(base)
    contexts = [r["context"] for r in rows]
    features = prepare_qa_features(tokenizer, [r["question"] for r in rows], contexts, max_length=32, stride=8)
    example_ids = features["overflow_to_sample_mapping"]
    assert len(example_ids) > 2 * len(rows)  # long contexts: several windows each
    width = max(len(ids) for ids in features["input_ids"])
    start_logits = np.full((len(example_ids), width), -100.0)
    end_logits = np.full((len(example_ids), width), -100.0)
    for f, (example, offsets) in enumerate(zip(example_ids, features["offset_mapping"])):
        start_char = rows[example]["answers"]["answer_start"][0]
        end_char = start_char + len(rows[example]["answers"]["text"][0])
        for k, offset in enumerate(offsets):
            start_logits[f, k] = 0.0
            end_logits[f, k] = 0.0
            if offset is not None and offset[0] == start_char:
                start_logits[f, k] = 10.0
            if offset is not None and offset[1] == end_char:
                end_logits[f, k] = 10.0
    # A decoy in the question part must be ignored: positions outside the context never win.
    start_logits[:, 1] = end_logits[:, 1] = 50.0
    answers = qa_predictions(contexts, example_ids, features["offset_mapping"], start_logits, end_logits)
    assert answers == [r["answers"]["text"][0] for r in rows]
    assert best_span([np.zeros(3)], [np.zeros(3)], [[None, None, None]]) is None


def test_question_answering_learns_and_the_pipeline_works(tmp_path):
    train, valid = qa_rows(400, seed=2), qa_rows(60, seed=3)
    base = make_base(tmp_path / "base", [r["context"] for r in train] + ["colour ?"])
    out = tmp_path / "qa"
    status = cli_main([
        "finetune", "--model_name_or_path", str(base), "--task", "question-answering",
        "--train_file", str(write_jsonl(tmp_path / "train.jsonl", train)),
        "--validation_file", str(write_jsonl(tmp_path / "valid.jsonl", valid)),
        "--max_seq_length", "48", "--doc_stride", "8", "--output_dir", str(out), "--num_train_epochs", "3",
        "--per_device_train_batch_size", "16", "--learning_rate", "3e-3", "--report_to", "none",
        "--use_cpu", "true", "--save_strategy", "no", "--seed", "0",
    ])  # fmt: skip
    assert status == 0
    metrics = json.loads((out / "all_results.json").read_text())
    assert metrics["eval_exact_match"] > 80 and metrics["eval_f1"] >= metrics["eval_exact_match"], metrics

    # Local registry: the task name transformers 5 removed works again after `import hf_bigmodel`.
    qa = pipeline("question-answering", model=str(out), trust_remote_code=False)
    assert isinstance(qa, QuestionAnsweringPipeline)
    row = valid[0]
    result = qa(question=row["question"], context=row["context"])
    assert set(result) == {"score", "start", "end", "answer"} and 0 < result["score"] <= 1
    assert row["context"][result["start"] : result["end"]] == result["answer"] == row["answers"]["text"][0]
    batch = qa([{"question": r["question"], "context": r["context"]} for r in valid[:4]])
    assert [b["answer"] for b in batch] == [r["answers"]["text"][0] for r in valid[:4]]
    long_context = " ".join([row["context"]] * 6)  # longer than one window: the best window wins
    assert qa(question=row["question"], context=long_context, max_seq_len=32, doc_stride=8)["answer"] in COLORS
    with pytest.raises(ValueError, match="Pass both question= and context="):
        qa(question="x")

    # Remote code: the folder carries the pipeline file, and a process without hf_bigmodel loads it.
    config = json.loads((out / "config.json").read_text())
    assert config["custom_pipelines"]["extractive-question-answering"]["impl"] == (
        "question_answering.QuestionAnsweringPipeline"
    )
    assert (out / "question_answering.py").is_file()
    code = (
        WITHOUT_HF_BIGMODEL
        + f"""
import json, sys
from transformers import pipeline
qa = pipeline(model={str(out)!r}, trust_remote_code=True)
assert type(qa).__module__.startswith("transformers_modules."), type(qa).__module__
assert type(qa.model).__module__.startswith("transformers_modules."), type(qa.model).__module__
print(json.dumps(qa(question={row["question"]!r}, context={row["context"]!r})))
"""
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert remote["answer"] == row["answers"]["text"][0]
    assert remote["score"] == pytest.approx(qa(question=row["question"], context=row["context"])["score"], rel=1e-4)


def test_add_question_answering_pipeline_to_a_saved_model(tmp_path):
    base = make_base(tmp_path / "base", [r["context"] for r in qa_rows(20, 4)])
    model = AutoModelForQuestionAnswering.from_pretrained(base)
    model.save_pretrained(tmp_path / "qa")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        add_question_answering_pipeline(tmp_path / "nothing")
    add_question_answering_pipeline(tmp_path / "qa")
    assert (tmp_path / "qa" / "question_answering.py").read_text().count("import hf_bigmodel") == 0


def test_multiple_choice_learns(tmp_path):
    """SWAG-style: the right ending is the context's colour, the wrong ones are other words."""
    rng = random.Random(5)

    def rows(n):
        out = []
        for _ in range(n):
            color = rng.choice(COLORS)
            wrong = rng.sample(FILLER, 3)
            label = rng.randrange(4)
            endings = wrong[:label] + [color] + wrong[label:]
            out.append({"sent1": f"the {rng.choice(FILLER)} is {color}", "sent2": "so it is",
                        **{f"ending{i}": e for i, e in enumerate(endings)}, "label": label})  # fmt: skip
        return out

    train, valid = rows(400), rows(80)
    base = make_base(tmp_path / "base", [f"the {w} is {c} so it is" for w in FILLER for c in COLORS])
    out = tmp_path / "mc"
    status = cli_main([
        "finetune", "--model_name_or_path", str(base), "--task", "multiple-choice",
        "--train_file", str(write_jsonl(tmp_path / "train.jsonl", train)),
        "--validation_file", str(write_jsonl(tmp_path / "valid.jsonl", valid)),
        "--context_column", "sent1", "--question_column", "sent2", "--ending_columns", "ending0,ending1,ending2,ending3",
        "--label_column", "label", "--output_dir", str(out), "--num_train_epochs", "3",
        "--per_device_train_batch_size", "16", "--learning_rate", "3e-3", "--report_to", "none",
        "--use_cpu", "true", "--save_strategy", "no", "--seed", "0",
    ])  # fmt: skip
    assert status == 0
    metrics = json.loads((out / "all_results.json").read_text())
    assert metrics["eval_accuracy"] > 0.8, metrics  # chance is 0.25
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BigModelBertForMultipleChoice"]


def test_finetune_errors_name_the_problem(tmp_path, capsys):
    base = make_base(tmp_path / "base", [r["context"] for r in qa_rows(20, 6)])
    bad = qa_rows(5, 7)
    bad[2]["answers"]["answer_start"] = [0]
    data = write_jsonl(tmp_path / "bad.jsonl", bad)
    common = ["finetune", "--model_name_or_path", str(base), "--train_file", str(data), "--output_dir",
              str(tmp_path / "o"), "--use_cpu", "true", "--report_to", "none"]  # fmt: skip
    assert cli_main([*common, "--task", "question-answering"]) == 2  # the model's 128 positions, stride 128
    assert "--doc_stride 128 must be >= 0 and below half of --max_seq_length (128)" in capsys.readouterr().err
    assert cli_main([*common, "--task", "question-answering", "--doc_stride", "16"]) == 2
    assert re.search(r"Row 2: answer '\w+' is not at answer_start 0 of the context", capsys.readouterr().err)
    assert cli_main([*common, "--task", "multiple-choice"]) == 2
    assert "needs --ending_columns" in capsys.readouterr().err


@pytest.mark.skipif(not SST2.is_dir(), reason="../shared/data/sst2 is not available")
def test_sst2_with_bert_and_sentence_pairs(tmp_path):
    sentences = [line.split("\t")[0] for line in (SST2 / "train.tsv").read_text().splitlines()[1:6001]]
    base = make_base(tmp_path / "base", sentences, max_position_embeddings=64, hidden_size=64, intermediate_size=128,
                     vocab_size_for_tokenizer=1000)  # fmt: skip
    out = tmp_path / "sst2"
    status = cli_main([
        "finetune", "--model_name_or_path", str(base), "--task", "sequence-classification",
        "--train_file", str(SST2 / "train.tsv"), "--validation_file", str(SST2 / "dev.tsv"),
        "--text_column", "sentence", "--label_column", "label", "--max_train_samples", "6000",
        "--max_seq_length", "64", "--output_dir", str(out), "--num_train_epochs", "1",
        "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "128", "--learning_rate", "2e-3",
        "--warmup_steps", "10", "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none", "--use_cpu", "true", "--seed", "0",
    ])  # fmt: skip
    assert status == 0
    metrics = json.loads((out / "all_results.json").read_text())
    assert metrics["eval_accuracy"] > 0.6 and 0.0 < metrics["eval_f1"] <= 1.0, metrics
    classifier = pipeline("text-classification", model=str(out), trust_remote_code=False)
    assert classifier("a gorgeous , witty , seductive movie .")[0]["label"] in {"0", "1"}

    # Sentence pairs: the second column becomes segment B with token_type_ids 1.
    pairs = tmp_path / "pairs.csv"
    rng = random.Random(0)
    lines = ["premise,hypothesis,label"]
    for _ in range(200):
        a, b = rng.choice(FILLER), rng.choice(FILLER)
        lines.append(f"{a} and {b},{rng.choice([a, b, rng.choice(FILLER)])},{int(True)}")
    pairs.write_text("\n".join(lines) + "\n")
    status = cli_main([
        "finetune", "--model_name_or_path", str(base), "--train_file", str(pairs), "--text_column", "premise",
        "--text_pair_column", "hypothesis", "--output_dir", str(tmp_path / "pairs"), "--max_steps", "2",
        "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no",
    ])  # fmt: skip
    assert status == 0
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "pairs")
    encoded = tokenizer("river and stone", "stone")
    first_sep = encoded["input_ids"].index(tokenizer.sep_token_id)
    assert encoded["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(encoded["input_ids"]) - first_sep - 1)
    assert encoded["token_type_ids"][-1] == 1


def test_question_answering_reads_original_squad_files(tmp_path):
    rows = qa_rows(40, seed=8)
    base = make_base(tmp_path / "base", [r["context"] for r in rows] + ["colour ?"])

    def squad_file(path: Path, part: list[dict]) -> Path:
        paragraphs = [{"context": r["context"], "qas": [{"id": str(i), "question": r["question"], "answers": [
            {"text": t, "answer_start": a} for t, a in zip(r["answers"]["text"], r["answers"]["answer_start"])
        ]}]} for i, r in enumerate(part)]  # fmt: skip
        path.write_text(json.dumps({"version": "1.1", "data": [{"title": "colours", "paragraphs": paragraphs}]}))
        return path

    out = tmp_path / "qa"
    status = cli_main([
        "finetune", "--model_name_or_path", str(base), "--task", "question-answering",
        "--train_file", str(squad_file(tmp_path / "train-v1.1.json", rows[:30])),
        "--validation_file", str(squad_file(tmp_path / "dev-v1.1.json", rows[30:])),
        "--max_seq_length", "48", "--doc_stride", "8", "--output_dir", str(out), "--max_steps", "2",
        "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no",
    ])  # fmt: skip
    assert status == 0
    metrics = json.loads((out / "all_results.json").read_text())
    assert 0.0 <= metrics["eval_exact_match"] <= metrics["eval_f1"] <= 100.0


@pytest.mark.slow
@pytest.mark.skipif(not SST2.is_dir(), reason="../shared/data/sst2 is not available")
def test_bench_bert_sst2_quick_runs():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_bert_sst2.py"
    result = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.startswith(("ours ", "ref"))}
    assert rows["ours"][1] == "BigModelBertForSequenceClassification"
    assert rows["reference"][1] == "BertForSequenceClassification"
    assert all(0.0 < float(rows[side][4]) <= 1.0 for side in rows)  # SST-2 dev accuracy
    assert re.search(r"SST-2 dev accuracy ratio \(ours / reference\): [0-9.]+", result.stdout)
