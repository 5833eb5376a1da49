"""`hf-bigmodel finetune`: train a sequence- or token-classification head with `Trainer`.

    hf-bigmodel finetune --model_name_or_path runs/demo --task sequence-classification \\
        --train_file ../shared/data/sst2/train.tsv --validation_file ../shared/data/sst2/dev.tsv \\
        --text_column sentence --label_column label --output_dir runs/sst2 --num_train_epochs 1

Data: CSV, TSV (by extension), JSON or JSON lines files, or a `datasets` dataset. Sequence classification reads a
text column (and optionally a second one for sentence pairs) and a label column; token classification reads a
column of word lists and a column of per-word tags, and labels the first sub-token of each word (the others get
-100, as transformers' `run_ner.py`). Reports accuracy and macro F1 at every evaluation.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import transformers
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)

from ..data import DataError, validate_text_files
from ..model_card import write_model_card
from ..tokenization import check_tokenizer_matches_config

logger = logging.getLogger("hf_bigmodel.finetune")

TASKS = {
    "sequence-classification": AutoModelForSequenceClassification,
    "token-classification": AutoModelForTokenClassification,
}


@dataclass
class FinetuneArguments:
    model_name_or_path: str = field(metadata={"help": "Saved model folder (e.g. the output of `pretrain`)."})
    task: str = field(default="sequence-classification", metadata={"help": f"One of {', '.join(TASKS)}."})
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer, if not in the model folder."}
    )
    train_file: str | None = field(default=None, metadata={"help": "csv / tsv / json / jsonl training file."})
    validation_file: str | None = field(default=None, metadata={"help": "csv / tsv / json / jsonl validation file."})
    dataset_name: str | None = field(default=None, metadata={"help": "A `datasets` dataset instead of files."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset configuration name."})
    text_column: str = field(default="text", metadata={"help": "Text column (word-list column for tokens)."})
    text_pair_column: str | None = field(default=None, metadata={"help": "Second text column for sentence pairs."})
    label_column: str = field(default="label", metadata={"help": "Label column (tag-list column for tokens)."})
    max_seq_length: int | None = field(default=None, metadata={"help": "Truncate longer inputs (default: model max)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N validation rows."})


def _load_dataset(args: FinetuneArguments):
    import datasets

    if args.dataset_name is not None:
        raw = datasets.load_dataset(args.dataset_name, args.dataset_config_name)
    else:
        if args.train_file is None:
            raise DataError("Give --train_file (csv/tsv/json/jsonl) or --dataset_name.")
        files = {"train": args.train_file}
        if args.validation_file:
            files["validation"] = args.validation_file
        validate_text_files(files.values())
        extension = os.path.splitext(args.train_file)[1].lstrip(".").lower()
        builder = {"tsv": "csv", "jsonl": "json"}.get(extension, extension)
        if builder not in ("csv", "json"):
            raise DataError(f"--train_file must be .csv, .tsv, .json or .jsonl, got {args.train_file}.")
        kwargs = {"delimiter": "\t", "quoting": 3} if extension == "tsv" else {}  # SST-2 has bare quotes in text
        raw = datasets.load_dataset(builder, data_files=files, **kwargs)
    for split, ds in raw.items():
        for column in filter(None, (args.text_column, args.text_pair_column, args.label_column)):
            if column not in ds.column_names:
                raise DataError(
                    f"The {split} data has no column {column!r}; its columns are {ds.column_names}. "
                    "Set --text_column / --label_column."
                )
    if args.max_train_samples:
        raw["train"] = raw["train"].select(range(min(args.max_train_samples, len(raw["train"]))))
    if args.max_eval_samples and "validation" in raw:
        raw["validation"] = raw["validation"].select(range(min(args.max_eval_samples, len(raw["validation"]))))
    return raw


def _label_list(raw, column: str, per_token: bool) -> list:
    values = set()
    for ds in raw.values():
        for value in ds[column]:
            values.update(value if per_token else [value])
    return sorted(values, key=lambda v: (str(type(v)), v))


def classification_metrics(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy and macro F1 over the positions whose label is not -100 (binary tasks: F1 of class 1)."""
    keep = labels != -100
    predictions, labels = predictions[keep], labels[keep]
    accuracy = float((predictions == labels).mean()) if len(labels) else 0.0
    f1_scores = []
    for cls in range(num_labels):
        true_pos = np.sum((predictions == cls) & (labels == cls))
        denom = np.sum(predictions == cls) + np.sum(labels == cls)
        f1_scores.append(2 * true_pos / denom if denom else 0.0)
    f1 = f1_scores[1] if num_labels == 2 else float(np.mean(f1_scores))
    return {"accuracy": accuracy, "f1": float(f1)}


def run_finetuning(args: FinetuneArguments, training_args: TrainingArguments) -> dict:
    """Fine-tune and save; returns the final evaluation metrics (eval_accuracy, eval_f1, eval_loss)."""
    if args.task not in TASKS:
        raise DataError(f"--task must be one of {', '.join(TASKS)}, got {args.task!r}.")
    set_seed(training_args.seed)
    per_token = args.task == "token-classification"
    raw = _load_dataset(args)
    labels = _label_list(raw, args.label_column, per_token)
    label_to_id = {label: i for i, label in enumerate(labels)}

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name_or_path or args.model_name_or_path)
    config = AutoConfig.from_pretrained(
        args.model_name_or_path,
        num_labels=len(labels),
        id2label={i: str(label) for i, label in enumerate(labels)},
        label2id={str(label): i for i, label in enumerate(labels)},
    )
    check_tokenizer_matches_config(tokenizer, config)
    if tokenizer.pad_token_id is None:
        raise DataError("The tokenizer has no pad token; batches of different lengths cannot be padded.")
    config.pad_token_id = tokenizer.pad_token_id
    model = TASKS[args.task].from_pretrained(args.model_name_or_path, config=config)
    max_length = min(args.max_seq_length or config.max_position_embeddings, config.max_position_embeddings)

    def preprocess(batch):
        if per_token:
            encoded = tokenizer(
                batch[args.text_column], is_split_into_words=True, truncation=True, max_length=max_length
            )
            encoded["labels"] = []
            for row, tags in enumerate(batch[args.label_column]):
                previous, row_labels = None, []
                for word in encoded.word_ids(row):
                    row_labels.append(-100 if word is None or word == previous else label_to_id[tags[word]])
                    previous = word
                encoded["labels"].append(row_labels)
            return encoded
        texts = (batch[args.text_column],) + ((batch[args.text_pair_column],) if args.text_pair_column else ())
        encoded = tokenizer(*texts, truncation=True, max_length=max_length)
        encoded["labels"] = [label_to_id[label] for label in batch[args.label_column]]
        return encoded

    with training_args.main_process_first(desc="tokenizing"):
        processed = raw.map(preprocess, batched=True, remove_columns=raw["train"].column_names, desc="Tokenizing")
    collator = (DataCollatorForTokenClassification if per_token else DataCollatorWithPadding)(tokenizer)

    def compute_metrics(eval_pred) -> dict[str, float]:
        logits, label_ids = eval_pred
        return classification_metrics(np.argmax(logits, axis=-1), label_ids, len(labels))

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=processed["train"],
        eval_dataset=processed.get("validation"),
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    metrics = dict(trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint).metrics)
    trainer.save_model()
    trainer.save_state()
    if "validation" in processed:
        metrics.update(trainer.evaluate())
    trainer.log_metrics("all", metrics)
    trainer.save_metrics("all", metrics)
    if trainer.is_world_process_zero():
        write_model_card(training_args.output_dir, args, training_args)
    return metrics


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = HfArgumentParser((FinetuneArguments, TrainingArguments))
    if argv and argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if len(argv) == 1 and argv[0].endswith(".json"):
        args, training_args = parser.parse_json_file(os.path.abspath(argv[0]))
    else:
        args, training_args = parser.parse_args_into_dataclasses(args=argv)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    try:
        run_finetuning(args, training_args)
    except (DataError, FileNotFoundError) as err:
        print(f"hf-bigmodel finetune: error: {err}", file=sys.stderr)
        return 2
    return 0
