"""`hf-bigmodel evaluate FOLDER --task TASK --data DATA`: evaluate a saved model on local data, outside training.

    hf-bigmodel evaluate runs/demo --task perplexity --data ../shared/data/wikitext2/valid.txt --stride 64
    hf-bigmodel evaluate runs/sst2 --task classification --data ../shared/data/sst2/dev.tsv --text_column sentence
    hf-bigmodel evaluate runs/demo --harness --max_samples 50

FOLDER is a saved zoo model or a stock transformers model of the same kind (`GPT2LMHeadModel`,
`BertForSequenceClassification`, ...), with its tokenizer. The command prints a table of the metrics, writes (or
adds to) `eval_results.json` in `--output_dir` (default: FOLDER) and, with `--update_card`, records the results in
the `model-index` of the folder's model card (README.md). The metrics are `hf_bigmodel.metrics`', the same code
that training reports with.

Tasks:

* ``perplexity`` (a causal LM): each document (a whole .txt file, or each row of `--text_column` of another data
  file) is scored with a sliding window of `--max_length` tokens (default: the model's context) moved by
  `--stride` tokens, as in transformers' perplexity guide: every token is predicted once, with at least
  max_length - stride tokens of context after the first window (see `sliding_window_nll`). A BOS token (else EOS) is put in front of each
  document, as lm-evaluation-harness does, so that its first token is scored too; the default stride (the whole
  window) gives lm-evaluation-harness's disjoint rolling windows. Reports token perplexity,
  word perplexity, byte perplexity and bits per byte with lm-evaluation-harness's definitions (see
  `metrics.language_model_metrics`).
* ``classification`` (a sequence-classification head): accuracy, F1 (as training reports it: class 1 of two
  classes, else macro), macro F1, F1 per class, and the confusion matrix as text and as `confusion_matrix.png`.
* ``image-classification`` (an image classifier, with its image processor saved in the folder): `--data` is an
  image folder (one sub-folder per class), a folder of MNIST idx files (its test split unless `--split train`) or
  a dataset with `--image_column` and `--label_column`. Top-1 and top-5 accuracy (`metrics.accuracy_metrics`, as
  training reports them) and the confusion matrix as text and PNG.
* ``token-classification`` (a token-classification head): `--text_column` holds each sentence's words (a list),
  `--label_column` their tags (names of the model's labels, or ids), as `finetune` reads them. The first sub-token
  of each word gives its tag (words cut off by `--max_length` are left out, as transformers' run_ner does).
  Reported: seqeval-style entity precision, recall and F1 (micro, and per entity type) and token accuracy
  (`metrics.entity_metrics`).
* ``question-answering`` (an extractive QA head): SQuAD-format rows (question, context, answers = {"text",
  "answer_start"}), or a file in SQuAD's own nested layout. Each context is cut into windows of `--max_length`
  tokens overlapping by `--doc_stride`; the best span over the windows is the answer, with the QA pipeline's and
  training's code (`pipelines.question_answering`). SQuAD's exact match and F1 in % (`metrics.squad_metrics`).
* ``translation`` / ``summarization`` (a sequence-to-sequence model): parallel files PREFIX.<source_lang> and
  PREFIX.<target_lang>, a `--translation_column` of {lang: text} rows, or `--source_column` and `--target_column`
  (summarization: document and summary). Outputs come from `generate` with `--num_beams`, `--length_penalty`,
  `--no_repeat_ngram_size`, `--min_new_tokens` and `--max_new_tokens`; reported: sacreBLEU BLEU and chrF
  (`metrics.translation_scores`, as training reports them) and ROUGE-1/2/L (`metrics.rouge_scores`,
  the `rouge-score` package).

``--harness`` (instead of a task) runs the package's offline lm-evaluation-harness tasks (`harness_tasks/`: WikiText-2
document perplexity, tiny-shakespeare bits per byte, SST-2 multiple choice) through lm-eval's `hf` model, with
`--data` the folder holding their data (default ../shared/data); one eval_results.json entry per task.

Bad input (a task that does not fit the model, missing columns, unknown labels, an empty evaluation set, a metric
whose package is missing) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._cli import command
from .data import DataError

logger = logging.getLogger("hf_bigmodel.evaluation")

__all__ = ["EVAL_RESULTS", "TASKS", "build_parser", "evaluate", "main", "sliding_window_nll"]

EVAL_RESULTS = "eval_results.json"
CONFUSION_PNG = "confusion_matrix.png"
PREDICTIONS = "{task}_predictions.txt"  # translation / summarization outputs, one a line


@dataclass(frozen=True)
class Task:
    auto_class: str  # the transformers Auto class that loads the head the task needs
    pipeline_tag: str  # the model-index task type
    description: str


TASKS: dict[str, Task] = {
    "perplexity": Task("AutoModelForCausalLM", "text-generation", "a causal language model"),
    "classification": Task("AutoModelForSequenceClassification", "text-classification", "a sequence classifier"),
    "image-classification": Task("AutoModelForImageClassification", "image-classification", "an image classifier"),
    "token-classification": Task("AutoModelForTokenClassification", "token-classification", "a token classifier"),
    "question-answering": Task("AutoModelForQuestionAnswering", "question-answering", "an extractive QA model"),
    "translation": Task("AutoModelForSeq2SeqLM", "translation", "a sequence-to-sequence model"),
    "summarization": Task("AutoModelForSeq2SeqLM", "summarization", "a sequence-to-sequence model"),
}
# The offline lm-evaluation-harness tasks shipped in hf_bigmodel/harness_tasks (short name -> lm-eval task name, the
# task type and data folder recorded for each) and the data folder their YAMLs point at, relative to the working
# directory (the shared data of this project's checkout).
HARNESS_TASKS = {
    "wikitext2": ("bigmodel_wikitext2", "text-generation", "wikitext2"),
    "tinyshakespeare": ("bigmodel_tinyshakespeare", "text-generation", "tiny_shakespeare"),
    "sst2": ("bigmodel_sst2", "text-classification", "sst2"),
}
HARNESS_DATA = sorted({folder + "/" for _, _, folder in HARNESS_TASKS.values()})
HARNESS_DEFAULT_DATA = "../shared/data"
# Generation options of translation and summarization, passed to `generate` when given (else the folder's
# generation_config decides).
GENERATE_OPTIONS = ("num_beams", "length_penalty", "no_repeat_ngram_size", "min_new_tokens", "max_new_tokens")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-bigmodel evaluate",
        description="Evaluate a saved model (zoo or stock transformers) on local data.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="saved model folder, with its tokenizer")
    parser.add_argument("--task", choices=sorted(TASKS), help="what to evaluate (or --harness)")
    parser.add_argument("--data", help="a data file (.txt/.csv/.tsv/.json/.jsonl/.parquet), a save_to_disk folder "
                        f"or a cached dataset name; with --harness, the folder holding {', '.join(HARNESS_DATA)} "
                        f"(default: {HARNESS_DEFAULT_DATA})")  # fmt: skip
    parser.add_argument("--harness", action="store_true", help="run the package's offline lm-evaluation-harness "
                        "tasks through `lm_eval --model hf` instead of a --task")  # fmt: skip
    parser.add_argument("--harness_tasks", nargs="+", choices=sorted(HARNESS_TASKS), default=sorted(HARNESS_TASKS),
                        help="--harness: which tasks (default: all)")  # fmt: skip
    parser.add_argument("--split", default=None, help="split of --data (default: validation, else test, else the "
                        "only split; a data file is one split)")  # fmt: skip
    parser.add_argument("--text_column", default="text", help="the text column (not used for a .txt file)")
    parser.add_argument("--label_column", default="label", help="classification: the label column")
    parser.add_argument("--image_column", default="image", help="image-classification: the image column of a "
                        "dataset (an image folder or MNIST folder needs none)")  # fmt: skip
    parser.add_argument("--question_column", default="question", help="question-answering: the question column")
    parser.add_argument("--context_column", default="context", help="question-answering: the context column")
    parser.add_argument("--answers_column", default="answers", help="question-answering: the column of "
                        "{'text': [...], 'answer_start': [...]} (SQuAD format)")  # fmt: skip
    parser.add_argument("--doc_stride", type=int, default=None, help="question-answering: overlap in tokens between "
                        "the windows of a long context (default: 128, at most half the window, as the QA pipeline)")  # fmt: skip
    parser.add_argument("--max_answer_length", type=int, default=30, help="question-answering: longest answer, "
                        "in tokens")  # fmt: skip
    parser.add_argument("--n_best", type=int, default=20, help="question-answering: start and end candidates per "
                        "window")  # fmt: skip
    parser.add_argument("--source_lang", default=None, help="translation: source language (PREFIX.<lang> files or "
                        "a key of --translation_column)")  # fmt: skip
    parser.add_argument("--target_lang", default=None, help="translation: target language")
    parser.add_argument("--translation_column", default="translation", help="translation: the column of "
                        "{lang: text} rows")  # fmt: skip
    parser.add_argument("--source_column", default=None, help="translation / summarization: the source text column "
                        "(summarization default: document)")  # fmt: skip
    parser.add_argument("--target_column", default=None, help="translation / summarization: the reference column "
                        "(summarization default: summary)")  # fmt: skip
    parser.add_argument("--num_beams", type=int, default=None, help="generation: beams (1: greedy)")
    parser.add_argument("--length_penalty", type=float, default=None, help="generation: beam length penalty")
    parser.add_argument("--no_repeat_ngram_size", type=int, default=None, help="generation: never repeat an n-gram")
    parser.add_argument("--min_new_tokens", type=int, default=None, help="generation: shortest output")
    parser.add_argument("--max_new_tokens", type=int, default=None, help="generation: longest output (default: up "
                        "to the model's context)")  # fmt: skip
    parser.add_argument("--max_length", type=int, default=None, help="tokens per window (default: the context)")
    parser.add_argument("--stride", type=int, default=None, help="perplexity: tokens scored per window after the "
                        "first (default: --max_length, lm-eval's disjoint windows)")  # fmt: skip
    parser.add_argument("--max_samples", type=int, default=None, help="evaluate the first N rows only")
    parser.add_argument("--batch_size", type=int, default=32, help="classification: rows per forward pass")
    parser.add_argument("--output_dir", default=None, help=f"where {EVAL_RESULTS} goes (default: the model folder)")
    parser.add_argument("--update_card", action="store_true", help="record the results in README.md's model-index")
    parser.add_argument("--dataset_name", default=None, help="the dataset's name in the model card (default: "
                        "the --data file or folder name)")  # fmt: skip
    parser.add_argument("--trust_remote_code", action="store_true", help="load with the code saved in the folder")
    return parser


# ----------------------------------------------------------------------------------------------------------------
# Model and data


def _head_fits(config, auto_class) -> bool:
    """Whether `auto_class` loads a trained head for `config`: the config type has a class in its mapping and the
    folder's `architectures` (when recorded) name that class, so a base model never gets a random head."""
    try:
        model_class = auto_class._model_mapping[type(config)]
    except (KeyError, ValueError):
        auto_map = getattr(config, "auto_map", None) or {}
        return auto_class.__name__ in auto_map
    classes = model_class if isinstance(model_class, (tuple, list)) else (model_class,)
    archs = getattr(config, "architectures", None) or []
    return not archs or any(arch in {c.__name__ for c in classes} for arch in archs)


def check_model(folder: str, task: str, trust_remote_code: bool = False):
    """The config of `folder`, after checking that the folder holds the head `task` needs (before any weight is read)."""
    import transformers
    from transformers import AutoConfig

    import hf_bigmodel  # noqa: F401  (registers the zoo's architectures with the Auto classes)

    if not (Path(folder) / "config.json").is_file():
        raise FileNotFoundError(f"No model folder at {folder} (no config.json). Give a saved model folder.")
    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    if not _head_fits(config, getattr(transformers, TASKS[task].auto_class)):
        fitting = [name for name, t in TASKS.items() if _head_fits(config, getattr(transformers, t.auto_class))]
        holds = ", ".join(getattr(config, "architectures", None) or [config.model_type])
        raise DataError(
            f"--task {task} needs {TASKS[task].description} ({TASKS[task].auto_class}), but {folder} holds {holds}; "
            f"tasks that fit it: {', '.join(fitting) or 'none of ' + ', '.join(TASKS)}."
        )
    return config


def load_model(folder: str, task: str, trust_remote_code: bool = False):
    """(model in eval mode, tokenizer, or image processor for image classification) of `folder`, after
    `check_model`."""
    import transformers
    from transformers import AutoTokenizer

    check_model(folder, task, trust_remote_code)
    if task == "image-classification":
        from transformers import AutoImageProcessor

        try:
            tokenizer = AutoImageProcessor.from_pretrained(folder, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as err:
            raise DataError(
                f"{folder} has no image processor that loads ({err}); save the one it was trained with next to the "
                f"model (preprocessor_config.json)."
            ) from err
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as err:
            raise DataError(f"{folder} has no tokenizer that loads ({err}); save one next to the model.") from err
    auto_class = getattr(transformers, TASKS[task].auto_class)
    model = auto_class.from_pretrained(folder, trust_remote_code=trust_remote_code).eval()
    return model, tokenizer


def _context_length(model, tokenizer) -> int | None:
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "block_size"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < 1_000_000 else None


def load_rows(data: str, split: str | None, max_samples: int | None):
    """(rows, split name): the `split` of `data` (a `datasets.Dataset`), else validation, else test, else the only
    split (a data file is one split, "train")."""
    from .data import load_dataset_any, select_split

    raw = load_dataset_any(data)
    if split is None:
        split = next((s for s in ("validation", "test") if s in raw), None) or next(iter(raw))
    rows = select_split(raw, split, data)
    if max_samples is not None:
        rows = rows.select(range(min(max_samples, len(rows))))
    if len(rows) == 0:
        raise DataError(f"The evaluation set is empty: {data} (split {split!r}) has no rows.")
    return rows, split


def require_columns(rows, columns: dict[str, str], data: str) -> None:
    """`DataError` naming each missing column, the flag that names it and the columns the data has."""
    missing = [
        f"{column!r} (set it with {flag})" for flag, column in columns.items() if column not in rows.column_names
    ]
    if missing:
        raise DataError(f"{data} has no column {', '.join(missing)}; its columns: {', '.join(rows.column_names)}.")


# ----------------------------------------------------------------------------------------------------------------
# Perplexity


def sliding_window_nll(model, token_ids: list[int], max_length: int, stride: int, prefix_id: int | None):
    """(summed NLL in nats, tokens scored) of one document with a sliding window (transformers' perplexity guide,
    laid out as lm-evaluation-harness's rolling windows).

    `prefix_id` (BOS or EOS) goes in front as context only, so every token of `token_ids` is scored; without one,
    the first token has no context and is not scored. The first window feeds `max_length` tokens and scores the
    `max_length` tokens they predict; each later window scores the next `stride` tokens from the `max_length`
    tokens before them (so `max_length - stride` tokens of context at least). `stride == max_length` gives
    lm-evaluation-harness's disjoint windows; a smaller stride gives more context and costs more windows."""
    import torch

    ids = ([prefix_id] if prefix_id is not None else []) + list(token_ids)
    device = next(model.parameters()).device
    nll, scored, start = 0.0, 0, 1  # position 0 (the prefix, or the first token without one) is never a target
    while start < len(ids):
        end = min(start + (max_length if start == 1 else stride), len(ids))  # targets: positions start..end-1
        begin = max(0, end - 1 - max_length)
        window = torch.tensor([ids[begin : end - 1]], device=device)
        with torch.inference_mode():
            logits = model(input_ids=window).logits[0].double()  # logits[j] predicts position begin + 1 + j
        targets = torch.tensor(ids[begin + 1 : end], device=device)
        token_nll = -torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None])[:, 0]
        nll += float(token_nll[start - (begin + 1) :].sum())
        scored += end - start
        start = end
    return nll, scored


def evaluate_perplexity(model, tokenizer, documents: list[str], max_length: int, stride: int) -> dict[str, float]:
    from .metrics import count_words, language_model_metrics

    prefix_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    nll, tokens, words, num_bytes = 0.0, 0, 0, 0
    for doc in documents:
        token_ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
        if not token_ids:
            continue
        doc_nll, doc_tokens = sliding_window_nll(model, token_ids, max_length, stride, prefix_id)
        nll, tokens = nll + doc_nll, tokens + doc_tokens
        words, num_bytes = words + count_words(doc), num_bytes + len(doc.encode("utf-8"))
    if tokens == 0:
        raise DataError("The evaluation set is empty: no document has a token to score.")
    return language_model_metrics(nll, tokens, words, num_bytes)


def _documents(args) -> tuple[list[str], str]:
    """(documents, split): a .txt file is one document, its line breaks included; else each row of the column."""
    path = Path(args.data)
    if path.is_file() and path.suffix.lower() in (".txt", ".text", ".raw"):
        text = path.read_text(encoding="utf-8")
        return ([text] if text.strip() else []), args.split or path.stem
    rows, split = load_rows(args.data, args.split, args.max_samples)
    require_columns(rows, {"--text_column": args.text_column}, args.data)
    return [text for text in rows[args.text_column] if isinstance(text, str) and text.strip()], split


# ----------------------------------------------------------------------------------------------------------------
# Classification


def _label_ids(values: list, config, column: str) -> list[int]:
    """Class ids of the label column: label names of the model's `id2label`, or ids in range."""
    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    by_name = {name: i for i, name in id2label.items()}
    num_labels = config.num_labels
    ids = []
    for row, value in enumerate(values):
        if isinstance(value, str) and value in by_name:
            ids.append(by_name[value])
            continue
        try:
            label = int(value)
        except (TypeError, ValueError):
            label = -1
        if not 0 <= label < num_labels:
            raise DataError(
                f"Row {row} of --label_column {column!r} holds {value!r}, which is neither a label of the model "
                f"({', '.join(id2label.values())}) nor a class id 0..{num_labels - 1}."
            )
        ids.append(label)
    return ids


def evaluate_classification(model, tokenizer, texts: list[str], labels: list[int], batch_size: int, max_length):
    """(metrics, confusion matrix, label names) of a sequence classifier on `texts`."""
    import numpy as np
    import torch

    from .metrics import classification_report, confusion_matrix

    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # a stock GPT-2 tokenizer has none; the mask hides it anyway
    predictions = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=max_length is not None,
                          max_length=max_length, return_tensors="pt")  # fmt: skip
        if "token_type_ids" not in _forward_args(model):
            batch.pop("token_type_ids", None)
        with torch.inference_mode():
            predictions.append(model(**batch).logits.argmax(-1).numpy())
    predictions = np.concatenate(predictions)
    names = [str(model.config.id2label.get(i, i)) for i in range(model.config.num_labels)]
    labels_array = np.asarray(labels)
    return (
        classification_report(predictions, labels_array, names),
        confusion_matrix(predictions, labels_array, len(names)),
        names,
    )


def _forward_args(model) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


# ----------------------------------------------------------------------------------------------------------------
# Image classification


def _is_mnist_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*idx3-ubyte*"))


def _is_image_folder(path: Path) -> bool:
    """A folder of class sub-folders of images (not a `save_to_disk` folder nor a folder of data files)."""
    from .data.common import DATA_FILE_BUILDERS

    if not path.is_dir() or (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return False
    return not any(p.suffix.lower() in DATA_FILE_BUILDERS for p in path.iterdir() if p.is_file())


def image_rows(args, config):
    """(rows with an undecoded "image" column, class ids of the model, split) of an image folder, an MNIST folder
    (its test split unless --split train) or a dataset with --image_column and --label_column."""
    import datasets

    from .data.images import check_image_file, image_files, load_image_data, load_mnist

    path = Path(args.data)
    if _is_mnist_folder(path):
        split = args.split or "test"
        rows = load_mnist(path, splits=[split], limit={split: args.max_samples})[split]
    elif _is_image_folder(path):
        split = path.name  # the folder is the evaluation set: there is no split to pick
        classes = [child for child in path.iterdir() if child.is_dir()]
        if len(classes) == 1:  # `datasets`' imagefolder gives no label column for a single class: label it here
            files = [str(f) for f in image_files(classes[0])[: args.max_samples]]
            for file in files:
                check_image_file(file)
            rows = datasets.Dataset.from_dict({"image": files, "label": [classes[0].name] * len(files)},
                                              features=datasets.Features({"image": datasets.Image(decode=False),
                                                                          "label": datasets.Value("string")}))  # fmt: skip
        else:
            rows = load_image_data(train_dir=str(path), validation_split_percentage=0,
                                   max_train_samples=args.max_samples)["train"]  # fmt: skip
    else:
        rows, split = load_rows(args.data, args.split, args.max_samples)
        require_columns(rows, {"--image_column": args.image_column, "--label_column": args.label_column}, args.data)
        rows = rows.select_columns([args.image_column, args.label_column])
        rows = rows.rename_columns({args.image_column: "image", args.label_column: "label"})
    if len(rows) == 0:
        raise DataError(f"The evaluation set is empty: {args.data} has no images.")
    if isinstance(rows.features["image"], datasets.Image) and rows.features["image"].decode:
        rows = rows.cast_column("image", datasets.Image(decode=False))  # decoded a batch at a time
    values = rows["label"]
    feature = rows.features["label"]
    if isinstance(feature, datasets.ClassLabel):  # folder names / MNIST digits: matched by name to the model's
        values = feature.int2str(values)
    return rows, _label_ids(values, config, args.label_column), split


def evaluate_image_classification(model, image_processor, rows, labels: list[int], batch_size: int):
    """(metrics, confusion matrix of the top-1 predictions, label names) of an image classifier: each batch is
    decoded (errors name the file) and processed by the folder's image processor as in training."""
    import numpy as np
    import torch
    from transformers import EvalPrediction

    from .data.images import ImageTransform
    from .metrics import accuracy_metrics, confusion_matrix, top_k_indices

    transform = ImageTransform(image_processor)
    top = []
    for start in range(0, len(rows), batch_size):
        batch = transform({"image": rows[start : start + batch_size]["image"], "label": []})
        with torch.inference_mode():
            logits = model(pixel_values=batch["pixel_values"]).logits
        top.append(top_k_indices(logits).numpy())
    top, labels_array = np.concatenate(top), np.asarray(labels)
    names = [str(model.config.id2label.get(i, i)) for i in range(model.config.num_labels)]
    metrics = accuracy_metrics(EvalPrediction(predictions=top, label_ids=labels_array))
    return metrics, confusion_matrix(top[:, 0], labels_array, len(names)), names


# ----------------------------------------------------------------------------------------------------------------
# Token classification


def token_rows(args, config) -> tuple[list[list[str]], list[list[str]], str]:
    """(words per sentence, reference tags per sentence as the model's label names, split)."""
    import datasets

    rows, split = load_rows(args.data, args.split, args.max_samples)
    require_columns(rows, {"--text_column": args.text_column, "--label_column": args.label_column}, args.data)
    feature = rows.features[args.label_column]
    inner = getattr(feature, "feature", None) if not isinstance(feature, list) else feature[0]
    names = inner.names if isinstance(inner, datasets.ClassLabel) else None  # tag ids of a ClassLabel sequence
    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    sentences, references = [], []
    for row, (words, tags) in enumerate(zip(rows[args.text_column], rows[args.label_column])):
        if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags):
            raise DataError(
                f"Row {row}: --text_column {args.text_column!r} must hold a list of words and --label_column "
                f"{args.label_column!r} a list of as many tags; got {words!r} and {tags!r}."
            )
        if not words:
            continue  # nothing to tag
        tags = [names[t] for t in tags] if names else tags
        sentences.append([str(word) for word in words])
        references.append([id2label[i] for i in _label_ids(tags, config, args.label_column)])
    if not sentences:
        raise DataError(f"The evaluation set is empty: {args.data} has no words.")
    return sentences, references, split


def evaluate_token_classification(model, tokenizer, sentences, references, batch_size: int, max_length):
    """(entity metrics, predicted tags): each word is tagged by its first sub-token (as `finetune` trains it);
    words past the truncation are left out of both sides."""
    import torch

    from .metrics import entity_metrics

    id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
    predictions, kept_references = [], []
    for start in range(0, len(sentences), batch_size):
        batch_words = sentences[start : start + batch_size]
        batch = tokenizer(batch_words, is_split_into_words=True, truncation=max_length is not None,
                          max_length=max_length, padding=True, return_tensors="pt")  # fmt: skip
        word_ids = [batch.word_ids(i) for i in range(len(batch_words))]
        if "token_type_ids" not in _forward_args(model):
            batch.pop("token_type_ids", None)
        with torch.inference_mode():
            ids = model(**batch).logits.argmax(-1).tolist()
        for row, words in enumerate(word_ids):
            firsts = {}
            for position, word in enumerate(words):
                if word is not None and word not in firsts:
                    firsts[word] = position
            tags = [id2label[ids[row][firsts[word]]] for word in sorted(firsts)]
            predictions.append(tags)
            kept_references.append(references[start + row][: len(tags)])
    return entity_metrics(predictions, kept_references), predictions


# ----------------------------------------------------------------------------------------------------------------
# Extractive question answering


def qa_rows(args):
    """(rows, reference answers per row, split): SQuAD-format rows, or a .json file in SQuAD's nested layout."""
    import datasets

    from .data.qa import check_answers, squad_file_rows

    path = Path(args.data)
    squad = squad_file_rows(str(path)) if path.is_file() and path.suffix.lower() == ".json" else None
    if squad is not None:
        rows, split = datasets.Dataset.from_list(squad[: args.max_samples] if args.max_samples else squad), "train"
        if len(rows) == 0:
            raise DataError(f"The evaluation set is empty: {args.data} has no questions.")
    else:
        rows, split = load_rows(args.data, args.split, args.max_samples)
    columns = {"--question_column": args.question_column, "--context_column": args.context_column,
               "--answers_column": args.answers_column}  # fmt: skip
    require_columns(rows, columns, args.data)
    references = [
        check_answers(value, row, args.answers_column)[0] for row, value in enumerate(rows[args.answers_column])
    ]
    return rows, references, split


def evaluate_question_answering(model, tokenizer, questions, contexts, references, args, max_length: int):
    """(metrics, predicted answers) of an extractive QA model: windows by `prepare_qa_features`, the best span over
    an example's windows by `qa_predictions` (the pipeline's and training's post-processing)."""
    import torch

    from .metrics import squad_metrics
    from .pipelines.question_answering import prepare_qa_features, qa_predictions

    inputs = [name for name in tokenizer.model_input_names if name in _forward_args(model)]
    start_logits, end_logits, offsets, example_ids = [], [], [], []
    for first in range(0, len(questions), args.batch_size):
        last = first + args.batch_size
        try:
            features = prepare_qa_features(tokenizer, questions[first:last], contexts[first:last], max_length,
                                           args.doc_stride, padding=True)  # fmt: skip
        except ValueError as err:  # windows too short for the question and the overlap, or no fast tokenizer
            raise DataError(f"{err} Here: --max_length {max_length}, --doc_stride {args.doc_stride}.") from None
        with torch.inference_mode():
            outputs = model(**{name: torch.tensor(features[name]) for name in inputs if name in features})
        start_logits.extend(outputs.start_logits.float().numpy())
        end_logits.extend(outputs.end_logits.float().numpy())
        offsets.extend(features["offset_mapping"])
        example_ids.extend(first + i for i in features["overflow_to_sample_mapping"])
    answers = qa_predictions(contexts, example_ids, offsets, start_logits, end_logits, args.n_best,
                             args.max_answer_length)  # fmt: skip
    return squad_metrics(answers, references), answers


# ----------------------------------------------------------------------------------------------------------------
# Translation and summarization


def text_pairs(args) -> tuple[list[str], list[str], str]:
    """(sources, references, split) of parallel files PREFIX.<source_lang> / PREFIX.<target_lang>, a translation
    column of {lang: text} rows, or a source and a target column."""
    from .data.seq2seq import load_dataset_splits, read_parallel, resolve_prefix

    summarization = args.task == "summarization"
    source_column = args.source_column or ("document" if summarization else None)
    target_column = args.target_column or ("summary" if summarization else None)
    path = Path(args.data)
    if args.source_lang and args.target_lang and not path.exists():  # a PREFIX of parallel text files
        sources, targets, _ = read_parallel(
            resolve_prefix(args.data, args.source_lang), resolve_prefix(args.data, args.target_lang)
        )
        split = path.name
    elif source_column is None:  # translation from a {lang: text} column
        if not args.source_lang or not args.target_lang:
            raise DataError(
                "--task translation needs --source_lang and --target_lang (with PREFIX.<lang> files or a "
                "--translation_column of {lang: text} rows), or --source_column and --target_column."
            )
        splits = load_dataset_splits(args.data, None, args.source_lang, args.target_lang, args.translation_column,
                                      skip_empty_pairs=False)  # fmt: skip
        if not splits:
            raise DataError(f"{args.data} has no train, validation or test split.")
        split = args.split or next(s for s in ("validation", "test", "train") if s in splits)
        if split not in splits:
            raise DataError(f"{args.data} has no {split!r} split (it has {', '.join(splits)}).")
        sources, targets = splits[split].sources, splits[split].targets
    else:
        rows, split = load_rows(args.data, args.split, args.max_samples)
        flags = {"--source_column": source_column, "--target_column": target_column or ""}
        require_columns(rows, flags, args.data)
        sources, targets = [str(t) for t in rows[source_column]], [str(t) for t in rows[target_column]]
    if args.max_samples is not None:
        sources, targets = sources[: args.max_samples], targets[: args.max_samples]
    if not sources:
        raise DataError(f"The evaluation set is empty: {args.data} has no text pairs.")
    return sources, targets, split


def generate_texts(model, tokenizer, sources: list[str], args, max_length: int | None) -> list[str]:
    """Outputs of `model.generate` for `sources`, `--batch_size` at a time, with the options given (see
    `GENERATE_OPTIONS`); without a length limit they may run to the model's context, as the translation pipeline
    allows (generate's own default stops at 20 tokens)."""
    import torch

    from .metrics import decode_generations

    options = {name: getattr(args, name) for name in GENERATE_OPTIONS if getattr(args, name) is not None}
    if "max_new_tokens" not in options and max_length and model.generation_config.max_length in (None, 20):
        options["max_length"] = max_length
    outputs = []
    for start in range(0, len(sources), args.batch_size):
        batch = tokenizer(sources[start : start + args.batch_size], return_tensors="pt", padding=True,
                          truncation=max_length is not None, max_length=max_length)  # fmt: skip
        batch.pop("token_type_ids", None)
        with torch.inference_mode():
            ids = model.generate(**batch, **options)
        outputs.extend(decode_generations(tokenizer, ids.numpy()))
    return outputs


def generation_metrics(outputs: list[str], references: list[str]) -> dict[str, float]:
    """sacreBLEU BLEU and chrF (as training reports them) and ROUGE-1/2/L."""
    from .metrics import rouge_scores, translation_scores

    return {**translation_scores(outputs, references), **rouge_scores(outputs, references)}


# ----------------------------------------------------------------------------------------------------------------
# lm-evaluation-harness


def harness_task_dir() -> Path:
    """The package's offline lm-evaluation-harness task folder (`lm_eval --include_path` takes it)."""
    return Path(__file__).resolve().parent / "harness_tasks"


def harness_tasks_for(data_dir: str | Path, destination: Path) -> Path:
    """Copy the task folder to `destination` with every data path re-rooted at `data_dir` (absolute, so lm-eval
    finds the files from any working directory); the missing data files raise `DataError`."""
    import yaml

    data_dir = Path(data_dir).expanduser().resolve()
    destination.mkdir(parents=True, exist_ok=True)
    missing = []
    for source in harness_task_dir().iterdir():
        if source.suffix not in (".yaml", ".py"):
            continue
        text = source.read_text(encoding="utf-8")
        if source.suffix == ".yaml":
            text = text.replace(HARNESS_DEFAULT_DATA + "/", data_dir.as_posix() + "/")
            # The YAMLs hold lm-eval's `!function` tags, which yaml.safe_load does not know: read the paths only.
            loader = type("PathsOnly", (yaml.SafeLoader,), {})
            loader.add_constructor("!function", lambda loader, node: None)
            files = (yaml.load(text, Loader=loader).get("dataset_kwargs") or {}).get("data_files") or {}
            missing += [f for f in files.values() if not Path(f).is_file()]
        (destination / source.name).write_text(text, encoding="utf-8")
    if missing:
        raise DataError(
            f"The harness tasks' data is not under {data_dir}: no {', '.join(missing)}. Give --data, the folder "
            f"holding {', '.join(HARNESS_DATA)}."
        )
    return destination


def harness_model_args(folder: str | Path, trust_remote_code: bool) -> dict:
    return {"pretrained": str(folder), "trust_remote_code": trust_remote_code, "dtype": "float32"}


def run_harness(args: argparse.Namespace) -> dict[str, dict]:
    """Run the offline lm-evaluation-harness tasks (`--harness_tasks`) on the folder with lm-eval's `hf` model,
    as `lm_eval --model hf --model_args pretrained=FOLDER --include_path hf_bigmodel/harness_tasks` does; returns
    one eval_results.json entry per task ("harness/<task>"), with lm-eval's metric names."""
    import tempfile

    from .metrics import require_package

    require_package("lm_eval", "lm-eval", "--harness (lm-evaluation-harness)")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    import hf_bigmodel  # noqa: F401  (registers the zoo's model types, so lm-eval tells causal from seq2seq)

    if not (Path(args.model) / "config.json").is_file():
        raise FileNotFoundError(f"No model folder at {args.model} (no config.json). Give a saved model folder.")
    data_dir = args.data or HARNESS_DEFAULT_DATA
    entries = {}
    with tempfile.TemporaryDirectory(prefix="hf_bigmodel_harness_") as tmp:
        tasks_dir = harness_tasks_for(data_dir, Path(tmp))
        names = [HARNESS_TASKS[name][0] for name in args.harness_tasks]
        output = simple_evaluate(
            model="hf",
            model_args=harness_model_args(args.model, args.trust_remote_code),
            tasks=names,
            task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False),
            batch_size=args.batch_size,
            device="cpu",
            limit=args.max_samples,
            bootstrap_iters=0,  # no standard errors: lm-eval's bootstrap over 100k resamples takes minutes
            log_samples=False,
        )
    for name in args.harness_tasks:
        task, task_type, folder = HARNESS_TASKS[name]
        raw = output["results"][task]
        metrics = {
            key.split(",")[0]: float(value)
            for key, value in raw.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and "_stderr" not in key
            and key != "sample_len"  # the number of documents, kept as "samples" below
        }  # fmt: skip
        entries[f"harness/{name}"] = {
            "model": str(args.model),
            "data": str(Path(data_dir) / folder),
            "split": output["configs"][task].get("test_split") or output["configs"][task].get("validation_split"),
            "dataset_name": f"{folder} ({task}, lm-evaluation-harness)",
            "task_type": task_type,
            "metrics": metrics,
            "harness": {"task": task, "lm_eval": _version("lm_eval"), "samples": raw.get("sample_len")},
        }
    return entries


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


# ----------------------------------------------------------------------------------------------------------------
# Results


def format_table(metrics: dict[str, Any]) -> str:
    width = max(map(len, metrics))
    lines = [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    for name, value in metrics.items():
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        lines.append(f"| {name.ljust(width)} | {shown} |")
    return "\n".join(lines)


def write_results(output_dir: Path, task: str, entry: dict) -> Path:
    """Add the `task` entry to `output_dir/eval_results.json` (other tasks' entries are kept)."""
    from ._io import atomic_write_text

    path = output_dir / EVAL_RESULTS
    results = {}
    if path.is_file():
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            logger.warning("%s is not valid JSON; it is replaced.", path)
    results[task] = entry
    return atomic_write_text(path, json.dumps(results, indent=2, sort_keys=True) + "\n")


def evaluate(args: argparse.Namespace) -> dict:
    """Run one evaluation as the command line describes it; returns the `eval_results.json` entry."""
    from .metrics import confusion_matrix_text, render_confusion_matrix

    output_dir = Path(args.output_dir or args.model)
    if (args.stride is not None and args.stride <= 0) or (args.max_length is not None and args.max_length <= 0):
        raise DataError("--stride and --max_length must be positive.")
    # The cheap checks first (the head, the data and its columns and labels), then the weights.
    config = check_model(args.model, args.task, args.trust_remote_code)
    if args.task == "perplexity":
        documents, split = _documents(args)
        if not documents:
            raise DataError(f"The evaluation set is empty: {args.data} has no text.")
    elif args.task == "image-classification":
        rows, labels, split = image_rows(args, config)
    elif args.task == "question-answering":
        rows, references, split = qa_rows(args)
    elif args.task == "token-classification":
        sentences, references, split = token_rows(args, config)
    elif args.task in ("translation", "summarization"):
        from .metrics import require_package

        require_package("rouge_score.rouge_scorer", "rouge-score", "ROUGE")  # before the weights load
        sources, references, split = text_pairs(args)
    else:
        rows, split = load_rows(args.data, args.split, args.max_samples)
        require_columns(rows, {"--text_column": args.text_column, "--label_column": args.label_column}, args.data)
        labels = _label_ids(rows[args.label_column], config, args.label_column)
        texts = [str(text) for text in rows[args.text_column]]
    model, tokenizer = load_model(args.model, args.task, args.trust_remote_code)
    context = None if args.task == "image-classification" else _context_length(model, tokenizer)
    max_length = args.max_length or context
    if max_length is not None and context is not None and max_length > context:
        raise DataError(f"--max_length {max_length} is longer than the model's context ({context} tokens).")
    extra_files = {}
    if args.task == "perplexity":
        if max_length is None:
            raise DataError("The model does not say its context length; give --max_length.")
        stride = args.stride or max_length
        if stride > max_length:
            raise DataError(f"--stride {stride} is larger than --max_length {max_length}; tokens would be skipped.")
        metrics = evaluate_perplexity(model, tokenizer, documents, max_length, stride)
        settings = {"max_length": max_length, "stride": stride, "documents": len(documents)}
    elif args.task == "question-answering":
        max_length = args.max_length or min(context or 384, 384)  # the QA pipeline's default window
        if args.doc_stride is None:
            args.doc_stride = min(128, max_length // 2)
        metrics, answers = evaluate_question_answering(
            model, tokenizer, rows[args.question_column], rows[args.context_column], references, args, max_length
        )
        settings = {"examples": len(answers), "max_length": max_length, "doc_stride": args.doc_stride}
    elif args.task == "token-classification":
        metrics, predictions = evaluate_token_classification(
            model, tokenizer, sentences, references, args.batch_size, max_length
        )
        settings = {"examples": len(predictions), "words": sum(map(len, predictions))}
    elif args.task in ("translation", "summarization"):
        outputs = generate_texts(model, tokenizer, sources, args, max_length)
        metrics = generation_metrics(outputs, references)
        options = {name: getattr(args, name) for name in GENERATE_OPTIONS if getattr(args, name) is not None}
        settings = {"examples": len(outputs), "generation": options}
        extra_files[PREDICTIONS.format(task=args.task)] = "".join(
            o.replace("\n", " ") + "\n" for o in outputs
        ).encode()
    else:
        if args.task == "image-classification":
            metrics, matrix, names = evaluate_image_classification(model, tokenizer, rows, labels, args.batch_size)
        else:
            metrics, matrix, names = evaluate_classification(
                model, tokenizer, texts, labels, args.batch_size, max_length
            )
        extra_files[CONFUSION_PNG] = render_confusion_matrix(matrix, names)
        settings = {"examples": len(labels), "confusion_matrix": matrix.tolist(), "labels": names}
        print(confusion_matrix_text(matrix, names))
    entry = {
        "model": str(args.model),
        "data": str(args.data),
        "split": split,
        "dataset_name": args.dataset_name or Path(args.data).name,
        "task_type": TASKS[args.task].pipeline_tag,
        "metrics": metrics,
        **settings,
    }
    from ._io import atomic_write_bytes

    output_dir.mkdir(parents=True, exist_ok=True)
    for name, data in extra_files.items():
        atomic_write_bytes(output_dir / name, data)
    record_results(args, args.task, entry)
    return entry


def record_results(args: argparse.Namespace, key: str, entry: dict) -> None:
    """Write `entry` under `key` in `--output_dir`'s eval_results.json and, with `--update_card`, into the card's
    model-index. A card entry is flagged in the model folder's eval_results.json too (written there as well when
    --output_dir is elsewhere), so a card regenerated later (by training or `hf-bigmodel push`) keeps it."""
    output_dir, folder = Path(args.output_dir or args.model), Path(args.model)
    if args.update_card:
        from .publish.card import IN_MODEL_INDEX, update_model_index

        entry[IN_MODEL_INDEX] = True
    write_results(output_dir, key, entry)
    if args.update_card:
        if output_dir.resolve() != folder.resolve():
            write_results(folder, key, entry)
        update_model_index(folder, entry)


@command("hf-bigmodel evaluate")
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.harness == (args.task is not None):
        parser.error("give either --task TASK --data DATA, or --harness")
    if args.task is not None and args.data is None:
        parser.error(f"--task {args.task} needs --data")
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    try:
        if args.harness:
            entries = run_harness(args)
            for key, entry in entries.items():
                record_results(args, key, entry)
        else:
            entries = {args.task: evaluate(args)}
    except (DataError, FileNotFoundError) as err:
        print(f"hf-bigmodel evaluate: error: {err}", file=sys.stderr)
        return 2
    for key, entry in entries.items():
        if len(entries) > 1:
            print(f"\n{key} ({entry['data']}, split {entry['split']})")
        print(format_table(entry["metrics"]))
    print(f"Wrote {Path(args.output_dir or args.model) / EVAL_RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
