"""`hf-bigmodel evaluate` beyond perplexity and text classification: image classification, extractive QA,
translation and token classification. Tiny models built from configs, references computed here from the model's
own outputs; each test takes a few seconds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hf_bigmodel import create_model
from hf_bigmodel.evaluation import main
from hf_bigmodel.metrics import confusion_matrix, confusion_matrix_text
from hf_bigmodel.testing import shared_data

MNIST = shared_data("mnist")
needs_mnist = pytest.mark.skipif(not MNIST.is_dir(), reason="MNIST idx files not in ../shared/data/mnist")


def error_of(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line and "/s]" not in line]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("hf-bigmodel evaluate: error: ")
    return err


# ----------------------------------------------------------------------------------------------------------------
# Image classification


@pytest.fixture(scope="module")
def resnet(tmp_path_factory) -> Path:
    """A grayscale 10-digit ResNet (labels "0".."9") and its image processor, saved; 28x28 inputs as MNIST."""
    from hf_bigmodel.models.resnet.image_processing_resnet import BigModelResNetImageProcessor

    folder = tmp_path_factory.mktemp("resnet") / "model"
    torch.manual_seed(0)
    model = create_model("resnet-tiny", "image-classification", num_channels=1, num_labels=10,
                         id2label={i: str(i) for i in range(10)})  # fmt: skip
    model.save_pretrained(folder)
    BigModelResNetImageProcessor(num_channels=1, size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                 image_mean=[0.1307], image_std=[0.3081]).save_pretrained(folder)  # fmt: skip
    return folder


def reference_top(folder: Path, images: list) -> np.ndarray:
    """Top-5 class ids of each image, one image at a time through the saved processor and model."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    processor = AutoImageProcessor.from_pretrained(folder)
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    tops = []
    for image in images:
        with torch.no_grad():
            logits = model(**processor(image, return_tensors="pt")).logits[0]
        tops.append(logits.topk(5).indices.numpy())
    return np.stack(tops)


@needs_mnist
def test_image_classification_on_mnist_files(resnet, tmp_path, capsys):
    from hf_bigmodel.data.images import load_mnist_arrays

    out = tmp_path / "out"
    assert main([str(resnet), "--task", "image-classification", "--data", str(MNIST), "--max_samples", "40",
                 "--batch_size", "16", "--output_dir", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    entry = json.loads((out / "eval_results.json").read_text())["image-classification"]
    images, labels = load_mnist_arrays(MNIST, "test")
    top = reference_top(resnet, [Image.fromarray(a) for a in images[:40]])
    labels = labels[:40]
    assert entry["split"] == "test" and entry["examples"] == 40 and entry["task_type"] == "image-classification"
    assert entry["metrics"]["accuracy"] == pytest.approx(float((top[:, 0] == labels).mean()))
    assert entry["metrics"]["top5_accuracy"] == pytest.approx(float((top == labels[:, None]).any(1).mean()))
    assert entry["metrics"]["top5_accuracy"] >= entry["metrics"]["accuracy"]
    matrix = confusion_matrix(top[:, 0], labels, 10)
    assert entry["confusion_matrix"] == matrix.tolist() and entry["labels"] == [str(i) for i in range(10)]
    assert confusion_matrix_text(matrix, entry["labels"]) in printed and "| top5_accuracy" in printed
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def write_image_folder(root: Path, classes: dict[str, int]) -> tuple[Path, list[Image.Image], list[int]]:
    """root/<class>/<i>.png with random RGB images (the processor turns them grey); (root, images, class ids)."""
    rng = np.random.default_rng(0)
    images, ids = [], []
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            image = Image.fromarray(rng.integers(0, 256, (30, 26, 3), dtype=np.uint8))
            image.save(root / name / f"{i}.png")
            images.append(image)
            ids.append(int(name))
    return root, images, ids


def test_image_classification_on_an_image_folder_and_a_dataset(resnet, tmp_path):
    import datasets

    folder, images, ids = write_image_folder(tmp_path / "digits", {"3": 3, "7": 4})
    assert main([str(resnet), "--task", "image-classification", "--data", str(folder), "--output_dir",
                 str(tmp_path / "a")]) == 0  # fmt: skip
    entry = json.loads((tmp_path / "a" / "eval_results.json").read_text())["image-classification"]
    top, labels = reference_top(resnet, images), np.array(ids)  # folder names "3", "7" are the model's labels
    assert entry["metrics"]["accuracy"] == pytest.approx(float((top[:, 0] == labels).mean()))
    assert entry["confusion_matrix"] == confusion_matrix(top[:, 0], labels, 10).tolist()
    # The same images as a save_to_disk dataset with other column names and integer labels.
    data = datasets.Dataset.from_dict({"picture": images, "digit": ids},
                                      features=datasets.Features({"picture": datasets.Image(),
                                                                  "digit": datasets.Value("int64")}))  # fmt: skip
    data.save_to_disk(tmp_path / "saved")
    assert main([str(resnet), "--task", "image-classification", "--data", str(tmp_path / "saved"), "--image_column",
                 "picture", "--label_column", "digit", "--output_dir", str(tmp_path / "b")]) == 0  # fmt: skip
    again = json.loads((tmp_path / "b" / "eval_results.json").read_text())["image-classification"]
    assert again["metrics"] == entry["metrics"] and again["confusion_matrix"] == entry["confusion_matrix"]
    # A folder of one class (where `datasets`' imagefolder would give no labels) is labelled by its sub-folder.
    one, images, ids = write_image_folder(tmp_path / "sevens", {"7": 4})
    assert main([str(resnet), "--task", "image-classification", "--data", str(one), "--output_dir",
                 str(tmp_path / "c")]) == 0  # fmt: skip
    single = json.loads((tmp_path / "c" / "eval_results.json").read_text())["image-classification"]
    top = reference_top(resnet, images)
    assert single["metrics"]["accuracy"] == pytest.approx(float((top[:, 0] == 7).mean()))
    assert np.array(single["confusion_matrix"]).sum(axis=1).tolist() == [0] * 7 + [4, 0, 0]


def test_image_classification_bad_input(resnet, tmp_path, capsys):
    write_image_folder(tmp_path / "digits", {"1": 1, "2": 1})
    folder, _, _ = write_image_folder(tmp_path / "animals", {"3": 1})
    (folder / "cat").mkdir()
    Image.new("L", (28, 28)).save(folder / "cat" / "0.png")
    err = error_of(capsys, str(resnet), "--task", "image-classification", "--data", str(folder))
    assert "'cat'" in err and "neither a label of the model" in err
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": "x", "label": 1}) + "\n")
    err = error_of(capsys, str(resnet), "--task", "image-classification", "--data", str(rows))
    assert "no column 'image' (set it with --image_column)" in err
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    err = error_of(capsys, str(resnet), "--task", "image-classification", "--data", str(empty))
    assert "evaluation set is empty" in err and "has no images" in err
    # A text model is not an image classifier, and a folder without its image processor says what to save.
    err = error_of(capsys, str(resnet), "--task", "perplexity", "--data", str(rows))
    assert "tasks that fit it: image-classification" in err
    bare = tmp_path / "bare"
    create_model("resnet-tiny", "image-classification", num_channels=1).save_pretrained(bare)
    err = error_of(capsys, str(bare), "--task", "image-classification", "--data", str(tmp_path / "digits"))
    assert "no image processor" in err and "preprocessor_config.json" in err


# ----------------------------------------------------------------------------------------------------------------
# Extractive question answering

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "tree", "red", "blue", "green", "colour", "?"]


def sentences(n: int, seed: int, length: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, length)) for _ in range(n)]


@pytest.fixture(scope="module")
def bert_qa(tmp_path_factory) -> Path:
    """A random bert-tiny QA model (64 positions) with a WordPiece tokenizer, saved."""
    from hf_bigmodel.tokenization import sync_config_with_tokenizer, train_tokenizer

    root = tmp_path_factory.mktemp("qa")
    (root / "corpus.txt").write_text("\n".join(sentences(200, 0, 10)))
    tokenizer = train_tokenizer("wordpiece", files=[root / "corpus.txt"], vocab_size=200, show_progress=False)
    torch.manual_seed(0)
    model = create_model("bert-tiny", "question-answering", vocab_size=len(tokenizer), max_position_embeddings=64)
    sync_config_with_tokenizer(model.config, tokenizer)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root / "model"


def test_question_answering_exact_match_and_f1_agree_with_the_pipeline(bert_qa, tmp_path, capsys):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from hf_bigmodel.metrics import squad_scores
    from hf_bigmodel.pipelines.question_answering import QuestionAnsweringPipeline

    contexts = sentences(9, 1, 40)  # ~40 tokens: two or three windows of 24 tokens each
    qa = QuestionAnsweringPipeline(model=AutoModelForQuestionAnswering.from_pretrained(bert_qa).eval(),
                                   tokenizer=AutoTokenizer.from_pretrained(bert_qa))  # fmt: skip
    answers = [qa(question="colour ?", context=c, max_seq_len=24, doc_stride=6)["answer"] for c in contexts]
    assert all(answers)
    # Right answers for a third of the rows, one extra word for another third, a wrong word for the rest.
    truths = [[a] if i % 3 == 0 else [a + " mat"] if i % 3 == 1 else ["zebra"] for i, a in enumerate(answers)]
    rows = [{"q": "colour ?", "context": c, "answers": {"text": t, "answer_start": [0]}}
            for c, t in zip(contexts, truths)]  # fmt: skip
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main([str(bert_qa), "--task", "question-answering", "--data", str(data), "--question_column", "q",
                 "--max_length", "24", "--doc_stride", "6", "--batch_size", "4"]) == 0  # fmt: skip
    entry = json.loads((bert_qa / "eval_results.json").read_text())["question-answering"]
    scores = np.array([squad_scores(a, t) for a, t in zip(answers, truths)])
    assert entry["metrics"]["exact_match"] == pytest.approx(100 * scores[:, 0].mean())
    assert entry["metrics"]["f1"] == pytest.approx(100 * scores[:, 1].mean())
    assert 0 < entry["metrics"]["exact_match"] < entry["metrics"]["f1"] < 100
    assert (entry["examples"], entry["max_length"], entry["doc_stride"]) == (9, 24, 6)
    assert "| exact_match" in capsys.readouterr().out
    # The same rows in SQuAD's own nested layout give the same scores.
    squad = {"data": [{"title": "t", "paragraphs": [
        {"context": r["context"], "qas": [{"id": str(i), "question": r["q"],
                                            "answers": [{"text": t, "answer_start": 0} for t in r["answers"]["text"]]}]}
        for i, r in enumerate(rows)]}]}  # fmt: skip
    (tmp_path / "squad.json").write_text(json.dumps(squad))
    assert main([str(bert_qa), "--task", "question-answering", "--data", str(tmp_path / "squad.json"),
                 "--max_length", "24", "--doc_stride", "6", "--output_dir", str(tmp_path / "o")]) == 0  # fmt: skip
    again = json.loads((tmp_path / "o" / "eval_results.json").read_text())["question-answering"]
    assert again["metrics"] == pytest.approx(entry["metrics"])


def test_squad_metrics_by_hand():
    from hf_bigmodel.metrics import squad_metrics

    # "the red cat" vs "red cat": articles dropped -> exact; "red" vs "red dog": precision 1, recall 1/2 -> F1 2/3.
    metrics = squad_metrics(["the red cat", "red", "blue"], [["red cat"], ["red dog"], ["green", "Blue!"]])
    assert metrics["exact_match"] == pytest.approx(200 / 3)
    assert metrics["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1) / 3)


def test_question_answering_bad_input(bert_qa, tmp_path, capsys):
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"question": "colour ?", "passage": "red cat", "answers": {"text": ["red"]}}) + "\n")
    err = error_of(capsys, str(bert_qa), "--task", "question-answering", "--data", str(data))
    assert "no column 'context' (set it with --context_column)" in err and "passage" in err
    err = error_of(capsys, str(bert_qa), "--task", "question-answering", "--data", str(data), "--context_column",
                   "passage")  # fmt: skip
    assert "SQuAD format" in err
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"question": "colour ?", "context": "red cat", "answers": {"text": ["red"],
                                "answer_start": [0]}}) + "\n")  # fmt: skip
    err = error_of(capsys, str(bert_qa), "--task", "question-answering", "--data", str(good), "--max_length", "16",
                   "--doc_stride", "14")  # fmt: skip
    assert "smaller stride" in err and "--doc_stride 14" in err
    # By default the overlap is 128 tokens but at most half a window, as in the pipeline: 32 of this model's 64.
    assert (
        main([str(bert_qa), "--task", "question-answering", "--data", str(good), "--output_dir", str(tmp_path)]) == 0
    )
    entry = json.loads((tmp_path / "eval_results.json").read_text())["question-answering"]
    assert (entry["max_length"], entry["doc_stride"]) == (64, 32)
    (tmp_path / "empty.json").write_text(json.dumps({"data": []}))
    err = error_of(capsys, str(bert_qa), "--task", "question-answering", "--data", str(tmp_path / "empty.json"))
    assert "evaluation set is empty" in err


# ----------------------------------------------------------------------------------------------------------------
# Translation and summarization

SOURCE_WORDS = ["ein", "hund", "katze", "läuft", "schläft", "auf", "dem", "gras", "roter", "ball"]
TARGET_WORDS = ["a", "dog", "cat", "runs", "sleeps", "on", "the", "grass", "red", "ball"]


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory) -> Path:
    """A random transformer-tiny (untied, initializer_range 0.1 so that outputs vary) with a word-level tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>", *dict.fromkeys(SOURCE_WORDS + TARGET_WORDS)]
    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>",
                                        eos_token="</s>", unk_token="<unk>")  # fmt: skip
    torch.manual_seed(0)
    model = create_model("transformer-tiny", "seq2seq-lm", vocab_size=len(words), initializer_range=0.1,
                         tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                         decoder_start_token_id=1)  # fmt: skip
    folder = tmp_path_factory.mktemp("seq2seq") / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def pipeline_outputs(folder: Path, sources: list[str], **options) -> list[str]:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from hf_bigmodel.pipelines.translation import TranslationPipeline

    translate = TranslationPipeline(model=AutoModelForSeq2SeqLM.from_pretrained(folder).eval(),
                                    tokenizer=AutoTokenizer.from_pretrained(folder))  # fmt: skip
    return [translate(text, **options)[0]["translation_text"].strip() for text in sources]


def test_translation_from_parallel_files_with_beam_search(seq2seq, tmp_path, capsys):
    from hf_bigmodel.metrics import rouge_scores, translation_scores

    rng = np.random.default_rng(0)
    sources = [" ".join(rng.choice(SOURCE_WORDS, rng.integers(3, 8))) for _ in range(7)]
    options = {"num_beams": 3, "length_penalty": 0.6, "no_repeat_ngram_size": 2, "max_new_tokens": 7}
    outputs = pipeline_outputs(seq2seq, sources, **options)
    assert len(set(outputs)) > 1 and all(outputs)
    # References: the model's own output for some rows (so that BLEU and ROUGE are not 0), other text for the rest.
    references = [o if i % 2 else "a dog runs on the red grass" for i, o in enumerate(outputs)]
    (tmp_path / "test.de").write_text("\n".join(sources) + "\n")
    (tmp_path / "test.en").write_text("\n".join(references) + "\n")
    argv = [str(seq2seq), "--task", "translation", "--data", str(tmp_path / "test"), "--source_lang", "de",
            "--target_lang", "en", "--batch_size", "3", "--output_dir", str(tmp_path / "out")]  # fmt: skip
    argv += [item for name, value in options.items() for item in (f"--{name}", str(value))]
    assert main(argv) == 0
    entry = json.loads((tmp_path / "out" / "eval_results.json").read_text())["translation"]
    assert (tmp_path / "out" / "translation_predictions.txt").read_text().splitlines() == outputs
    expected = {**translation_scores(outputs, references), **rouge_scores(outputs, references)}
    assert entry["metrics"] == pytest.approx(expected)
    assert set(expected) == {"bleu", "chrf", "rouge1", "rouge2", "rougeL"} and 0 < expected["bleu"] < 100
    assert entry["generation"] == options and entry["split"] == "test" and entry["examples"] == 7
    assert "| rougeL" in capsys.readouterr().out
    # Greedy decoding is another output: the options reach generate.
    assert main([*argv[:-8], "--max_new_tokens", "7"]) == 0
    greedy = json.loads((tmp_path / "out" / "eval_results.json").read_text())["translation"]
    greedy_outputs = pipeline_outputs(seq2seq, sources, max_new_tokens=7)
    assert greedy_outputs != outputs
    assert greedy["metrics"] == pytest.approx(translation_scores(greedy_outputs, references)
                                              | rouge_scores(greedy_outputs, references))  # fmt: skip
    # The same pairs as a {lang: text} column of a dataset file.
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(json.dumps({"translation": {"de": s, "en": r}}) + "\n" for s, r in zip(sources, references))
    )
    assert main([str(seq2seq), "--task", "translation", "--data", str(data), "--source_lang", "de", "--target_lang",
                 "en", "--max_new_tokens", "7", "--output_dir", str(tmp_path / "col")]) == 0  # fmt: skip
    column = json.loads((tmp_path / "col" / "eval_results.json").read_text())["translation"]
    assert column["metrics"] == pytest.approx(greedy["metrics"])


def test_summarization_reads_document_and_summary_columns(seq2seq, tmp_path):
    from hf_bigmodel.metrics import rouge_scores

    rng = np.random.default_rng(1)
    documents = [" ".join(rng.choice(SOURCE_WORDS, 9)) for _ in range(5)]
    summaries = [" ".join(rng.choice(TARGET_WORDS, 3)) for _ in range(5)]
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"document": d, "summary": s}) + "\n" for d, s in zip(documents, summaries)))
    assert main([str(seq2seq), "--task", "summarization", "--data", str(data), "--num_beams", "2",
                 "--max_new_tokens", "5", "--min_new_tokens", "3", "--update_card"]) == 0  # fmt: skip
    entry = json.loads((seq2seq / "eval_results.json").read_text())["summarization"]
    card = yaml.safe_load((seq2seq / "README.md").read_text().split("---")[1])
    recorded = {m["type"]: m["value"] for m in card["model-index"][0]["results"][0]["metrics"]}
    assert card["model-index"][0]["results"][0]["task"]["type"] == "summarization"
    assert recorded["rougeL"] == pytest.approx(entry["metrics"]["rougeL"], abs=1e-6)
    outputs = pipeline_outputs(seq2seq, documents, num_beams=2, max_new_tokens=5, min_new_tokens=3)
    assert all(len(o.split()) >= 3 for o in outputs)
    assert entry["task_type"] == "summarization"
    for key, value in rouge_scores(outputs, summaries).items():
        assert entry["metrics"][key] == pytest.approx(value)


def test_rouge_by_hand():
    from hf_bigmodel.metrics import rouge_scores

    # Prediction 5 tokens, reference 6; unigrams: 5 shared -> P 1, R 5/6, F 10/11. Bigrams: 3 of 4 and 3 of 5 ->
    # F 2/3. Longest common subsequence: 5 tokens -> as ROUGE-1. Upper case and punctuation are dropped.
    scores = rouge_scores(["The cat on the mat.", "x"], ["the cat sat on the mat", "y"])
    assert scores["rouge1"] == pytest.approx(100 * (10 / 11) / 2)
    assert scores["rouge2"] == pytest.approx(100 * (2 / 3) / 2)
    assert scores["rougeL"] == pytest.approx(100 * (10 / 11) / 2)


def test_translation_bad_input(seq2seq, bert_qa, tmp_path, capsys, monkeypatch):
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"translation": {"de": "ein hund", "fr": "un chien"}}) + "\n")
    err = error_of(capsys, str(seq2seq), "--task", "translation", "--data", str(data))
    assert "--source_lang and --target_lang" in err
    err = error_of(capsys, str(seq2seq), "--task", "translation", "--data", str(data), "--source_lang", "de",
                   "--target_lang", "en")  # fmt: skip
    assert "no 'en' text" in err
    err = error_of(capsys, str(seq2seq), "--task", "summarization", "--data", str(data))
    assert "no column 'document' (set it with --source_column)" in err
    err = error_of(capsys, str(seq2seq), "--task", "translation", "--data", str(tmp_path / "nothing"),
                   "--source_lang", "de", "--target_lang", "en")  # fmt: skip
    assert "No file" in err and "nothing.de" in err
    err = error_of(capsys, str(bert_qa), "--task", "translation", "--data", str(data))
    assert "needs a sequence-to-sequence model" in err
    monkeypatch.setitem(sys.modules, "rouge_score", None)
    monkeypatch.setitem(sys.modules, "rouge_score.rouge_scorer", None)
    err = error_of(capsys, str(seq2seq), "--task", "summarization", "--data", str(data))
    assert "pip install rouge-score" in err


# ----------------------------------------------------------------------------------------------------------------
# Token classification

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_entity_spans_and_scores_by_hand():
    from hf_bigmodel.metrics import entity_metrics, entity_spans

    assert entity_spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3),
                                                                               ("LOC", 4, 5)]  # fmt: skip
    # conlleval's reading: an I- without a B- starts an entity; a type change ends one; IOBES tags.
    assert entity_spans(["I-PER", "I-LOC", "O"]) == [("PER", 0, 0), ("LOC", 1, 1)]
    assert entity_spans(["S-PER", "B-LOC", "E-LOC", "I-LOC"]) == [("PER", 0, 0), ("LOC", 1, 2), ("LOC", 3, 3)]
    references = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "I-LOC", "O"]]
    predictions = [["B-PER", "I-PER", "O", "O"], ["B-LOC", "O", "B-PER"]]
    # True: PER(0-1), LOC(3), LOC(0-1); predicted: PER(0-1) right, LOC(0) wrong end, PER(2) spurious.
    metrics = entity_metrics(predictions, references)
    assert metrics["precision"] == pytest.approx(1 / 3) and metrics["recall"] == pytest.approx(1 / 3)
    assert metrics["f1"] == pytest.approx(1 / 3) and metrics["accuracy"] == pytest.approx(4 / 7)
    assert metrics["f1_PER"] == pytest.approx(2 / 3)  # P 1/2, R 1/1
    assert metrics["f1_LOC"] == 0.0


def test_entity_scores_equal_seqeval():
    seqeval = pytest.importorskip("seqeval.metrics")
    from hf_bigmodel.metrics import entity_metrics

    rng = np.random.default_rng(0)
    tags = [*TAGS, "I-MISC", "E-PER", "S-LOC"]
    for _ in range(50):
        references = [list(rng.choice(tags, rng.integers(1, 9))) for _ in range(6)]
        predictions = [list(rng.choice(tags, len(r))) for r in references]
        metrics = entity_metrics(predictions, references)
        assert metrics["f1"] == pytest.approx(seqeval.f1_score(references, predictions), abs=1e-12)
        assert metrics["precision"] == pytest.approx(seqeval.precision_score(references, predictions), abs=1e-12)
        assert metrics["recall"] == pytest.approx(seqeval.recall_score(references, predictions), abs=1e-12)
        report = seqeval.classification_report(references, predictions, output_dict=True, zero_division=0)
        for type_ in ("PER", "LOC", "MISC"):
            if type_ in report:
                assert metrics[f"f1_{type_}"] == pytest.approx(report[type_]["f1-score"], abs=1e-12)


@pytest.fixture(scope="module")
def tagger(bert_qa, tmp_path_factory) -> Path:
    """A random bert-tiny token classifier with five BIO tags and the QA fixture's WordPiece tokenizer."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tagger") / "model"
    torch.manual_seed(1)
    tokenizer = AutoTokenizer.from_pretrained(bert_qa)
    model = create_model("bert-tiny", "token-classification", vocab_size=len(tokenizer), max_position_embeddings=64,
                         num_labels=len(TAGS), id2label=dict(enumerate(TAGS)))  # fmt: skip
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def first_subtoken_tags(folder: Path, sentences: list[list[str]]) -> list[list[str]]:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    tags = []
    for words in sentences:
        encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            ids = model(**encoded).logits[0].argmax(-1).tolist()
        word_ids = encoded.word_ids(0)
        tags.append([TAGS[ids[word_ids.index(w)]] for w in range(len(words))])
    return tags


def test_token_classification_entity_f1(tagger, tmp_path, capsys):
    import datasets

    from hf_bigmodel.metrics import entity_metrics

    rng = np.random.default_rng(2)
    sentences = [[*rng.choice(WORDS, rng.integers(3, 9)), "catdogx"] for _ in range(8)]  # "catdogx": sub-tokens
    predicted = first_subtoken_tags(tagger, sentences)
    # References: the model's tags for even rows (right entities), shifted tags for odd rows.
    references = [p if i % 2 == 0 else p[1:] + ["B-LOC"] for i, p in enumerate(predicted)]
    data = tmp_path / "ner.jsonl"
    data.write_text("".join(json.dumps({"tokens": w, "ner_tags": t}) + "\n" for w, t in zip(sentences, references)))
    argv = [str(tagger), "--task", "token-classification", "--data", str(data), "--text_column", "tokens",
            "--label_column", "ner_tags", "--batch_size", "3"]  # fmt: skip
    assert main(argv) == 0
    entry = json.loads((tagger / "eval_results.json").read_text())["token-classification"]
    expected = entity_metrics(predicted, references)
    assert entry["metrics"] == pytest.approx(expected)
    assert 0 < expected["f1"] < 1 and {"precision", "recall", "accuracy"} <= set(expected)
    assert entry["words"] == sum(map(len, sentences)) and "| f1" in capsys.readouterr().out
    # A save_to_disk dataset with ClassLabel tag ids gives the same scores.
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=TAGS))})  # fmt: skip
    ids = [[TAGS.index(t) for t in tags] for tags in references]
    datasets.Dataset.from_dict({"tokens": sentences, "ner_tags": ids}, features=features).save_to_disk(tmp_path / "d")
    assert main([*argv[:4], str(tmp_path / "d"), *argv[5:], "--output_dir", str(tmp_path / "o")]) == 0
    again = json.loads((tmp_path / "o" / "eval_results.json").read_text())["token-classification"]
    assert again["metrics"] == pytest.approx(expected)
    # Words past --max_length are left out of both sides.
    assert main([*argv, "--max_length", "6", "--output_dir", str(tmp_path / "short")]) == 0
    short = json.loads((tmp_path / "short" / "eval_results.json").read_text())["token-classification"]
    assert short["words"] == 4 * len(sentences)  # [CLS] + 4 one-token words + [SEP]; every sentence has 4 or more
    assert short["metrics"] == pytest.approx(entity_metrics([p[:4] for p in predicted], [r[:4] for r in references]))


def test_token_classification_bad_input(tagger, tmp_path, capsys):
    data = tmp_path / "ner.jsonl"
    data.write_text(json.dumps({"text": ["a", "cat"], "label": ["O"]}) + "\n")
    err = error_of(capsys, str(tagger), "--task", "token-classification", "--data", str(data))
    assert "a list of as many tags" in err
    data.write_text(json.dumps({"text": ["a", "cat"], "label": ["O", "B-ORG"]}) + "\n")
    err = error_of(capsys, str(tagger), "--task", "token-classification", "--data", str(data))
    assert "'B-ORG'" in err and "B-PER" in err
    data.write_text(json.dumps({"text": [], "label": []}) + "\n")
    err = error_of(capsys, str(tagger), "--task", "token-classification", "--data", str(data))
    assert "evaluation set is empty" in err
    # Sentences without words are skipped, not fed to the model.
    data.write_text(json.dumps({"text": [], "label": []}) + "\n" + json.dumps({"text": ["a"], "label": ["O"]}) + "\n")
    assert main([str(tagger), "--task", "token-classification", "--data", str(data), "--output_dir",
                 str(tmp_path / "o")]) == 0  # fmt: skip
    entry = json.loads((tmp_path / "o" / "eval_results.json").read_text())["token-classification"]
    assert (entry["examples"], entry["words"]) == (1, 1)
