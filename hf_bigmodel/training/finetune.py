"""`hf-bigmodel finetune`: train a classification, question-answering or multiple-choice head with `Trainer`.

    hf-bigmodel finetune --model_name_or_path runs/demo --task sequence-classification \\
        --train_file ../shared/data/sst2/train.tsv --validation_file ../shared/data/sst2/dev.tsv \\
        --text_column sentence --label_column label --output_dir runs/sst2 --num_train_epochs 1

Data: CSV, TSV (by extension), JSON or JSON lines files, or a `datasets` dataset. Sequence classification reads a
text column (and optionally a second one for sentence pairs) and a label column; token classification reads a
column of word lists and a column of per-word tags, and labels the first sub-token of each word (the others get
-100, as transformers' `run_ner.py`). Reports accuracy and macro F1 at every evaluation. Sentence pairs get
the tokenizer's pair template (BERT: `[CLS] a [SEP] b [SEP]` with token_type_ids).

Question answering (`--task question-answering`, extractive, SQuAD format): JSON / JSON lines rows (or a dataset)
with `question`, `context` and `answers` = {"text": [...], "answer_start": [...]} (SQuAD v1: one answer per
training row; evaluation may list several, the best match counts), or the original SQuAD v1.1 files
(`{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}`, read as such). Long contexts are cut into windows of
`--max_seq_length` tokens overlapping by `--doc_stride`; a window without the answer is trained to point at
[CLS]. Evaluation maps the best start/end logits over the windows back to a character span with the offset mapping
(`hf_bigmodel.pipelines.question_answering.best_span`, the code of the question-answering pipeline) and reports
`exact_match` and `f1` (SQuAD's normalised-text scores, in %). The saved folder carries the pipeline code:
with hf_bigmodel imported, `pipeline("question-answering", model=folder)`; with plain transformers,
`pipeline(model=folder, trust_remote_code=True)` (see `hf_bigmodel.pipelines`).

Multiple choice (`--task multiple-choice`, SWAG format): a context column (`--context_column`, SWAG: sent1), an
optional column prefixed to every ending (`--question_column`, SWAG: sent2), the endings (`--ending_columns
ending0,ending1,...` or one list column named by `--ending_columns`) and the index of the right ending
(`--label_column`). Each (context, ending) pair is scored by the model; reports accuracy.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np
from torch.utils.data import SequentialSampler
from transformers import (
    AutoConfig,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForMultipleChoice,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from .._cli import require_folder_or_repo
from ..data import DataError, load_dataset_any, validate_text_files
from ..data.common import builder_options
from ..data.qa import check_answers, squad_file_rows
from ..metrics import classification_metrics, squad_metrics
from ..pipelines import add_question_answering_pipeline
from ..pipelines.question_answering import prepare_qa_features, qa_predictions
from ..tokenization import check_tokenizer_matches_config
from . import common
from .common import finish_run, run_cli, train_and_save

logger = logging.getLogger("hf_bigmodel.finetune")

TASKS = {
    "sequence-classification": AutoModelForSequenceClassification,
    "token-classification": AutoModelForTokenClassification,
    "question-answering": AutoModelForQuestionAnswering,
    "multiple-choice": AutoModelForMultipleChoice,
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
    question_column: str | None = field(
        default=None, metadata={"help": "QA: question column (default: question). MC: text put before each ending."}
    )
    context_column: str = field(default="context", metadata={"help": "QA / MC: the context column."})
    answers_column: str = field(
        default="answers", metadata={"help": "QA: column of {'text': [...], 'answer_start': [...]}."}
    )
    ending_columns: str | None = field(
        default=None, metadata={"help": "MC: comma-separated ending columns (ending0,ending1,...) or one list column."}
    )
    doc_stride: int = field(default=128, metadata={"help": "QA: overlap in tokens between windows of a context."})
    max_answer_length: int = field(default=30, metadata={"help": "QA: longest answer, in tokens."})
    n_best_size: int = field(default=20, metadata={"help": "QA: start/end candidates searched per window."})


def _load_dataset(args: FinetuneArguments):
    import datasets

    if args.dataset_name is not None:
        raw = load_dataset_any(args.dataset_name, args.dataset_config_name)
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
        kwargs = builder_options(builder, f".{extension}")
        squad = {split: squad_file_rows(path) for split, path in files.items()} if extension == "json" else {}
        if squad and all(rows is not None for rows in squad.values()):
            raw = datasets.DatasetDict({split: datasets.Dataset.from_list(rows) for split, rows in squad.items()})
        else:
            raw = datasets.load_dataset(builder, data_files=files, **kwargs)
    for split, ds in raw.items():
        for column in _required_columns(args):
            if column not in ds.column_names:
                raise DataError(
                    f"The {split} data has no column {column!r}; its columns are {ds.column_names}. "
                    f"Set {_COLUMN_FLAGS[args.task]}."
                )
    if args.max_train_samples:
        raw["train"] = raw["train"].select(range(min(args.max_train_samples, len(raw["train"]))))
    if args.max_eval_samples and "validation" in raw:
        raw["validation"] = raw["validation"].select(range(min(args.max_eval_samples, len(raw["validation"]))))
    return raw


_COLUMN_FLAGS = {
    "sequence-classification": "--text_column / --text_pair_column / --label_column",
    "token-classification": "--text_column / --label_column",
    "question-answering": "--question_column / --context_column / --answers_column",
    "multiple-choice": "--context_column / --question_column / --ending_columns / --label_column",
}


def _ending_columns(args: FinetuneArguments) -> list[str]:
    if not args.ending_columns:
        raise DataError("--task multiple-choice needs --ending_columns (e.g. ending0,ending1,ending2,ending3).")
    return [c.strip() for c in args.ending_columns.split(",") if c.strip()]


def _required_columns(args: FinetuneArguments) -> list[str]:
    if args.task == "question-answering":
        return [args.question_column or "question", args.context_column, args.answers_column]
    if args.task == "multiple-choice":
        return [args.context_column, *filter(None, [args.question_column]), *_ending_columns(args), args.label_column]
    return list(filter(None, (args.text_column, args.text_pair_column, args.label_column)))


def _label_list(raw, column: str, per_token: bool, text_column: str | None = None) -> list:
    """The sorted label set of the training split, after checking every split's labels: no empty cell, a scalar per
    row (a list of tags per row, as many as words, for token classification), and no label that the training split
    lacks (the model could never learn it, and it would silently become an extra class)."""
    seen: dict[str, set] = {}
    for split, ds in raw.items():
        values: set = set()
        words = ds[text_column] if per_token and text_column in ds.column_names else None
        for row, value in enumerate(ds[column]):
            where = f"row {row + 1} of the {split} data"
            if per_token:
                if not isinstance(value, (list, tuple)):
                    raise DataError(f"--label_column {column!r} must hold a list of tags per row; {where} holds "
                                    f"{value!r}.")  # fmt: skip
                if words is not None and len(value) != len(words[row]):
                    raise DataError(f"{where} has {len(words[row])} words but {len(value)} tags in {column!r}: give "
                                    "one tag per word.")  # fmt: skip
                items = value
            else:
                if isinstance(value, (list, tuple, dict)):
                    raise DataError(f"--label_column {column!r} holds a {type(value).__name__} in {where}; sequence "
                                    "classification takes one label per row (per-word tags: --task "
                                    "token-classification).")  # fmt: skip
                items = [value]
            for item in items:
                if item is None or (isinstance(item, str) and not item.strip()):
                    raise DataError(f"{where} has an empty label in {column!r}: fill it in or remove the row.")
            values.update(items)
        seen[split] = values
    train = seen.get("train", set().union(*seen.values()))
    for split, values in seen.items():
        unknown = sorted(map(str, values - train))
        if unknown:
            raise DataError(f"The {split} data has labels the training data never shows: {', '.join(unknown[:10])}. "
                            "A model cannot learn them; fix the labels or add training examples.")  # fmt: skip
    return sorted(train, key=lambda v: (str(type(v)), v))


def _check_against_the_model_labels(model_name_or_path: str, labels: list) -> None:
    """A model already fine-tuned on named classes keeps them: labels of the data outside those classes are a
    mistake (another task's data, or a typo), not new classes."""
    from transformers import AutoConfig

    try:
        label2id = dict(AutoConfig.from_pretrained(model_name_or_path).label2id or {})
    except (OSError, ValueError):
        return  # the model's own loading reports a bad MODEL
    if not label2id or all(name.startswith("LABEL_") for name in label2id):
        return  # a base model: its labels are transformers' placeholders
    outside = sorted(str(label) for label in labels if str(label) not in label2id)
    if outside:
        raise DataError(f"Labels {', '.join(outside[:10])} are not among the classes of {model_name_or_path} "
                        f"({', '.join(label2id)}). Fine-tune a base model for new classes, or fix the labels.")  # fmt: skip


def run_finetuning(args: FinetuneArguments, training_args: TrainingArguments) -> dict:
    """Fine-tune and save; returns the final evaluation metrics (eval_accuracy, eval_f1, eval_loss)."""
    if args.task not in TASKS:
        raise DataError(f"--task must be one of {', '.join(TASKS)}, got {args.task!r}.")
    set_seed(training_args.seed)
    require_folder_or_repo(args.model_name_or_path, "--model_name_or_path", tokenizer=not args.tokenizer_name_or_path)
    if args.tokenizer_name_or_path:
        require_folder_or_repo(args.tokenizer_name_or_path, "--tokenizer_name_or_path", needs="", tokenizer=True)
    per_token = args.task == "token-classification"
    raw = _load_dataset(args)
    if args.task == "question-answering":
        return _run_question_answering(args, training_args, raw)
    if args.task == "multiple-choice":
        return _run_multiple_choice(args, training_args, raw)
    labels = _label_list(raw, args.label_column, per_token, args.text_column)
    label_to_id = {label: i for i, label in enumerate(labels)}
    _check_against_the_model_labels(args.model_name_or_path, labels)

    tokenizer, config = _load_tokenizer_and_config(
        args,
        num_labels=len(labels),
        id2label={i: str(label) for i, label in enumerate(labels)},
        label2id={str(label): i for i, label in enumerate(labels)},
    )
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
    metrics = train_and_save(trainer, training_args, evaluate="validation" in processed)
    finish_run(trainer, training_args, metrics, (args,), "tokenizer")
    return metrics


# ---------------------------------------------------------------------------------------- question answering


def _run_question_answering(args: FinetuneArguments, training_args: TrainingArguments, raw) -> dict:
    tokenizer, config = _load_tokenizer_and_config(args)
    model = AutoModelForQuestionAnswering.from_pretrained(args.model_name_or_path, config=config)
    max_length = min(args.max_seq_length or 384, config.max_position_embeddings)
    if not 0 <= args.doc_stride < max_length // 2:
        raise DataError(
            f"--doc_stride {args.doc_stride} must be >= 0 and below half of --max_seq_length ({max_length})."
        )
    question_col, context_col, answers_col = (
        args.question_column or "question",
        args.context_column,
        args.answers_column,
    )

    def train_features(batch, indices):
        encoded = prepare_qa_features(tokenizer, batch[question_col], batch[context_col], max_length, args.doc_stride)
        encoded["start_positions"], encoded["end_positions"] = [], []
        for i, offsets in enumerate(encoded["offset_mapping"]):
            example = encoded["overflow_to_sample_mapping"][i]
            texts, starts = check_answers(batch[answers_col][example], indices[example], answers_col)
            cls_index = (
                encoded["input_ids"][i].index(tokenizer.cls_token_id)
                if tokenizer.cls_token_id in encoded["input_ids"][i]
                else 0
            )
            inside = [k for k, o in enumerate(offsets) if o is not None]
            start_token = end_token = cls_index  # no answer in this window: point at [CLS], as BERT
            if texts:
                start_char, end_char = starts[0], starts[0] + len(texts[0])
                if batch[context_col][example][start_char:end_char] != texts[0]:
                    raise DataError(
                        f"Row {indices[example]}: answer {texts[0]!r} is not at answer_start {start_char} of the "
                        f"context (found {batch[context_col][example][start_char:end_char]!r})."
                    )
                if inside and offsets[inside[0]][0] <= start_char and offsets[inside[-1]][1] >= end_char:
                    start_token = next(k for k in inside if offsets[k][1] > start_char)
                    end_token = [k for k in inside if offsets[k][0] < end_char][-1]
            encoded["start_positions"].append(start_token)
            encoded["end_positions"].append(end_token)
        encoded.pop("offset_mapping")
        encoded.pop("overflow_to_sample_mapping")
        return encoded

    def eval_features(batch, indices):
        encoded = prepare_qa_features(tokenizer, batch[question_col], batch[context_col], max_length, args.doc_stride)
        encoded["example_id"] = [indices[m] for m in encoded.pop("overflow_to_sample_mapping")]
        return encoded

    with training_args.main_process_first(desc="tokenizing"):
        train = raw["train"].map(train_features, batched=True, with_indices=True,
                                 remove_columns=raw["train"].column_names, desc="Train windows")  # fmt: skip
        evaluation = None
        if "validation" in raw:
            evaluation = raw["validation"].map(eval_features, batched=True, with_indices=True,
                                               remove_columns=raw["validation"].column_names, desc="Eval windows")  # fmt: skip
    contexts = list(raw["validation"][context_col]) if evaluation is not None else []
    references = []
    for row, value in enumerate(raw["validation"][answers_col] if evaluation is not None else []):
        references.append(check_answers(value, row, answers_col)[0])

    trainer = _QuestionAnsweringTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=evaluation.remove_columns(["example_id", "offset_mapping"]) if evaluation is not None else None,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    if evaluation is not None:
        trainer.qa_eval = (
            contexts,
            references,
            list(evaluation["example_id"]),
            list(evaluation["offset_mapping"]),
            args,
        )
    metrics = train_and_save(trainer, training_args, evaluate=evaluation is not None)
    # The pipeline code next to the weights and `custom_pipelines` in config.json (published with them): users
    # without hf_bigmodel load it with pipeline(model=repo, trust_remote_code=True).
    finish_run(trainer, training_args, metrics, (args,), "tokenizer, question-answering pipeline",
               add_files=add_question_answering_pipeline)  # fmt: skip
    return metrics


class _QuestionAnsweringTrainer(Trainer):
    """`evaluate()` predicts start/end logits for every window, maps them back to answer text and reports SQuAD's
    exact match and F1 (in %)."""

    qa_eval = None

    def _get_eval_sampler(self, eval_dataset):
        # Windows are mapped back to their examples by position: keep the dataset's order (transformers 5 groups
        # evaluation batches by length too under --train_sampling_strategy group_by_length).
        return SequentialSampler(eval_dataset) if eval_dataset is not None else None

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        if self.qa_eval is None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        contexts, references, example_ids, offsets, args = self.qa_eval
        output = self.predict(self.eval_dataset, metric_key_prefix=metric_key_prefix)
        start_logits, end_logits = output.predictions[:2]
        answers = qa_predictions(contexts, example_ids, offsets, start_logits, end_logits,
                                 args.n_best_size, args.max_answer_length)  # fmt: skip
        metrics = dict(output.metrics)
        metrics.update({f"{metric_key_prefix}_{k}": v for k, v in squad_metrics(answers, references).items()})
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


# ------------------------------------------------------------------------------------------- multiple choice


def _run_multiple_choice(args: FinetuneArguments, training_args: TrainingArguments, raw) -> dict:
    tokenizer, config = _load_tokenizer_and_config(args)
    model = AutoModelForMultipleChoice.from_pretrained(args.model_name_or_path, config=config)
    max_length = min(args.max_seq_length or config.max_position_embeddings, config.max_position_embeddings)
    columns = _ending_columns(args)

    def preprocess(batch):
        if len(columns) == 1:  # one column holding the list of endings
            endings = [list(row) for row in batch[columns[0]]]
        else:
            endings = [list(row) for row in zip(*(batch[c] for c in columns))]
        n = {len(row) for row in endings}
        if len(n) != 1:
            raise DataError(f"Every row must have the same number of endings; found {sorted(n)}.")
        n = n.pop()
        prefixes = batch[args.question_column] if args.question_column else [""] * len(endings)
        firsts = [context for context in batch[args.context_column] for _ in range(n)]
        seconds = [f"{prefix} {ending}".strip() for prefix, row in zip(prefixes, endings) for ending in row]
        encoded = tokenizer(firsts, seconds, truncation=True, max_length=max_length)
        grouped = {k: [v[i : i + n] for i in range(0, len(v), n)] for k, v in encoded.items()}
        labels = [int(label) for label in batch[args.label_column]]
        if any(not 0 <= label < n for label in labels):
            raise DataError(
                f"--label_column {args.label_column!r} must hold the index of the right ending (0..{n - 1})."
            )
        grouped["labels"] = labels
        return grouped

    with training_args.main_process_first(desc="tokenizing"):
        processed = raw.map(preprocess, batched=True, remove_columns=raw["train"].column_names, desc="Tokenizing")

    def compute_metrics(eval_pred) -> dict[str, float]:
        logits, label_ids = eval_pred
        return {"accuracy": float((np.argmax(logits, axis=-1) == label_ids).mean())}

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=processed["train"],
        eval_dataset=processed.get("validation"),
        data_collator=DataCollatorForMultipleChoice(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    metrics = train_and_save(trainer, training_args, evaluate="validation" in processed)
    finish_run(trainer, training_args, metrics, (args,), "tokenizer")
    return metrics


def _load_tokenizer_and_config(args: FinetuneArguments, **config_kwargs):
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name_or_path or args.model_name_or_path)
    config = AutoConfig.from_pretrained(args.model_name_or_path, **config_kwargs)
    check_tokenizer_matches_config(tokenizer, config)
    if tokenizer.pad_token_id is None:
        raise DataError("The tokenizer has no pad token; batches of different lengths cannot be padded.")
    config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, config


ARGUMENTS = (FinetuneArguments, TrainingArguments)


def parse_args(argv: list[str]) -> tuple[FinetuneArguments, TrainingArguments]:
    return common.parse_args(argv, ARGUMENTS)


def main(argv: list[str] | None = None) -> int:
    """`hf-bigmodel finetune ...`: 0 on success, 2 with a message on bad input."""
    return run_cli("hf-bigmodel finetune", ARGUMENTS, run_finetuning, argv)
