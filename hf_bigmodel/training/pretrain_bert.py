"""`hf-bigmodel pretrain bert`: pretrain a BERT with masked language modeling (+ next sentence prediction).

    hf-bigmodel pretrain bert --train_file ../shared/data/wikitext2/valid.txt --preset bert-mini \\
        --objective mlm_nsp --max_seq_length 128 --output_dir runs/bert --max_steps 2000 \\
        --per_device_train_batch_size 32 --learning_rate 5e-4 --warmup_steps 100 --eval_strategy steps

Every `TrainingArguments` flag works (`HfArgumentParser`). The data recipe (documents, sentence pairs, 15% masking
80/10/10, whole-word masking, static vs dynamic masks) is described in `hf_bigmodel.data.mlm`. Objectives:

* ``mlm_nsp`` (BERT): sentence pairs, statically masked (``--dupe_factor`` copies with different masks), model
  `AutoModelForPreTraining`; evaluation reports ``eval_mlm_accuracy``, ``eval_nsp_accuracy``, ``eval_mlm_loss``,
  ``eval_nsp_loss`` and ``eval_perplexity`` (exp of the MLM loss).
* ``mlm`` (RoBERTa): packed sequences, masks drawn anew every epoch (dynamic), seeded per example so that any
  number of processes masks the same tokens, model `AutoModelForMaskedLM`; reports ``eval_mlm_accuracy``,
  ``eval_mlm_loss`` and ``eval_perplexity``.

Evaluation data is always masked once with a fixed seed, so metrics are comparable across evaluations and runs.
The loss is computed here from the logits (not by the model): the MLM part is summed over the masked tokens and
divided by the number of masked tokens of the whole accumulated batch, so gradient accumulation and several
processes give the same loss and gradients as one big batch. Logits are reduced to argmax ids before they are
gathered for metrics (`preprocess_logits_for_metrics`), so evaluation memory does not grow with the vocabulary.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch.nn.functional as F
from transformers import AutoModelForMaskedLM, AutoModelForPreTraining, Trainer, TrainingArguments, set_seed

from ..data import DataError
from ..data.common import PerExampleRandom
from ..data.mlm import BertMasker, DataCollatorForBertPretraining, build_pretraining_dataset, load_documents
from ..metrics import preprocess_logits_for_metrics, pretraining_metrics
from ..tokenization import sync_config_with_tokenizer
from . import common
from .common import (
    SetEpochCallback,
    TokenizerModelArguments,
    finish_run,
    load_or_train_tokenizer,
    load_saved_model,
    model_kwargs,
    preset_config,
    run_cli,
    train_and_save,
)

logger = logging.getLogger("hf_bigmodel.pretrain_bert")

OBJECTIVES = {"mlm_nsp": AutoModelForPreTraining, "mlm": AutoModelForMaskedLM}
EVAL_SEED_OFFSET = 10_007  # evaluation masks differ from any training copy's


@dataclass
class BertModelArguments(TokenizerModelArguments):
    preset: str = field(default="bert-mini", metadata={"help": "BERT config preset to train from scratch."})
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Use this saved tokenizer instead of training a WordPiece one."}
    )
    tokenizer_vocab_size: int = field(default=8192, metadata={"help": "Vocabulary size of a trained WordPiece."})
    lowercase: bool = field(default=True, metadata={"help": "Trained WordPiece: lowercase (uncased BERT)."})
    strip_accents: bool | None = field(
        default=None, metadata={"help": "Trained WordPiece: strip accents (default: same as --lowercase)."}
    )


@dataclass
class BertDataArguments:
    train_file: list[str] | None = field(
        default=None, metadata={"help": "UTF-8 text file(s); blank lines separate documents."}
    )
    validation_file: list[str] | None = field(default=None, metadata={"help": "UTF-8 text file(s) to evaluate on."})
    dataset_name: str | None = field(
        default=None, metadata={"help": "A `datasets` dataset (local folder or cached name): one document per row."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset configuration name."})
    text_column: str = field(default="text", metadata={"help": "Column of the dataset that holds the documents."})
    validation_split_percentage: float = field(
        default=5.0, metadata={"help": "Without validation data, hold out this percentage of the documents."}
    )
    objective: str = field(
        default="mlm_nsp", metadata={"help": "mlm_nsp (BERT: MLM + next sentence) or mlm (RoBERTa: MLM only)."}
    )
    max_seq_length: int = field(default=128, metadata={"help": "Tokens per sequence, [CLS] and [SEP]s included."})
    short_seq_prob: float = field(
        default=0.1, metadata={"help": "mlm_nsp: probability of a shorter random target length for a pair."}
    )
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of the tokens to predict."})
    whole_word_mask: bool = field(default=False, metadata={"help": "Mask whole words (a token and its ## pieces)."})
    chinese_whole_word_mask: bool = field(
        default=False,
        metadata={
            "help": "Mask Chinese words (found by jieba's shipped dictionary) as whole words, as Chinese BERT-wwm; "
            'needs the zh extra: pip install "hf_bigmodel[zh]".'
        },
    )
    dupe_factor: int = field(
        default=1, metadata={"help": "mlm_nsp: copies of the training data, each with other pairs and masks."}
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for datasets.map."})


ARGUMENTS = (BertModelArguments, BertDataArguments, TrainingArguments)


def parse_args(argv: list[str]) -> tuple[BertModelArguments, BertDataArguments, TrainingArguments]:
    return common.parse_args(argv, ARGUMENTS)


def build_tokenizer(model_args: BertModelArguments, raw_train, training_args: TrainingArguments):
    """The given tokenizer, the one a previous run of this output_dir trained, or a new WordPiece."""
    tokenizer = load_or_train_tokenizer(model_args, training_args, kind="wordpiece", dataset=raw_train,
                                        lowercase=model_args.lowercase, strip_accents=model_args.strip_accents,
                                        show_progress=False)  # fmt: skip
    missing = [
        name for name in ("cls_token", "sep_token", "mask_token", "pad_token") if getattr(tokenizer, name) is None
    ]
    if missing:
        raise DataError(
            f"The tokenizer has no {', '.join(missing)}: BERT pretraining needs [CLS], [SEP], [MASK] and [PAD]. "
            "Train one with `hf-bigmodel train-tokenizer --kind wordpiece` or leave out --tokenizer_name_or_path."
        )
    return tokenizer


def build_model(model_args: BertModelArguments, objective: str, tokenizer):
    """The model for `objective`: loaded from --model_name_or_path, or built from the preset with the tokenizer's
    vocabulary size and ids."""
    auto_class = OBJECTIVES[objective]
    if model_args.model_name_or_path is not None:
        return load_saved_model(auto_class, model_args, tokenizer)
    config = preset_config("bert", model_args, {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id})
    config = sync_config_with_tokenizer(config, tokenizer)
    return auto_class.from_config(config, **model_kwargs(model_args))


class BertPretrainingTrainer(Trainer):
    """Trainer computing the MLM (+ NSP) loss from the logits, normalised over the whole accumulated batch, and
    reporting MLM/NSP losses and perplexity at evaluation."""

    def __init__(self, *args, eval_data_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        # Evaluation batches keep their static masks even when training batches are masked dynamically.
        self.eval_data_collator = eval_data_collator
        # compute_loss below divides by the masked-token count of the whole accumulated batch, so Trainer must
        # count it (num_items_in_batch) and must not divide by the accumulation steps again.
        self.model_accepts_loss_kwargs = True
        self._eval_sums: list[float] | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs["labels"]
        nsp_labels = inputs.pop("next_sentence_label", None)
        # The MLM labels go to the model: in training mode hf_bigmodel's BERT then runs its prediction head only at
        # the labelled positions (its logits are (number of labels, vocab), in the order of labels[labels != -100]);
        # in eval mode, and for stock BERT, the logits cover every position. The loss is computed here either way,
        # so that the NSP part is scaled exactly under gradient accumulation and several processes.
        outputs = model(**inputs)
        logits = outputs["prediction_logits"] if "prediction_logits" in outputs else outputs["logits"]
        targets = labels[labels != -100] if logits.dim() == 2 else labels.reshape(-1)
        mlm_sum = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets, ignore_index=-100, reduction="sum"
        )
        masked = (labels != -100).sum()
        training = num_items_in_batch is not None and model.training
        mlm = mlm_sum / (num_items_in_batch if training else masked.clamp(min=1))
        if training and self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
            # num_items_in_batch counts the masked tokens of every process, and the processes' gradients are
            # averaged: scale back up so the MLM gradient is that of the global sum / global count.
            mlm = mlm * self.accelerator.num_processes
        loss = mlm
        nsp = None
        if nsp_labels is not None:
            nsp = F.cross_entropy(outputs["seq_relationship_logits"].float(), nsp_labels.reshape(-1))
            loss = loss + (nsp / self.current_gradient_accumulation_steps if training else nsp)
        if not model.training and self._eval_sums is not None:
            sums = self._eval_sums
            sums[0] += float(mlm_sum)
            sums[1] += float(masked)
            if nsp is not None:
                sums[2] += float(nsp) * len(nsp_labels)
                sums[3] += len(nsp_labels)
        return (loss, outputs) if return_outputs else loss

    def get_eval_dataloader(self, eval_dataset=None):
        if self.eval_data_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        training_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = training_collator

    def evaluation_loop(self, *args, **kwargs):
        self._eval_sums = [0.0, 0.0, 0.0, 0.0]
        try:
            output = super().evaluation_loop(*args, **kwargs)
        finally:
            sums, self._eval_sums = self._eval_sums, None
        prefix = kwargs.get("metric_key_prefix", "eval")
        if sums[1]:
            mlm_loss = sums[0] / sums[1]
            output.metrics[f"{prefix}_mlm_loss"] = mlm_loss
            output.metrics[f"{prefix}_perplexity"] = math.exp(min(mlm_loss, 50.0))
        if sums[3]:
            output.metrics[f"{prefix}_nsp_loss"] = sums[2] / sums[3]
        return output


def run_pretraining(
    model_args: BertModelArguments, data_args: BertDataArguments, training_args: TrainingArguments
) -> dict:
    """Pretrain and save; returns the final metrics (train and eval)."""
    if data_args.objective not in OBJECTIVES:
        raise DataError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {data_args.objective!r}.")
    set_seed(training_args.seed)
    documents = load_documents(
        data_args.train_file,
        data_args.validation_file,
        data_args.dataset_name,
        data_args.dataset_config_name,
        data_args.text_column,
        data_args.validation_split_percentage,
        seed=training_args.seed,
    )
    tokenizer = build_tokenizer(model_args, documents["train"], training_args)
    model = build_model(model_args, data_args.objective, tokenizer)
    config = model.config
    if data_args.max_seq_length > config.max_position_embeddings:
        raise DataError(
            f"--max_seq_length {data_args.max_seq_length}: a sequence ([CLS] A [SEP] B [SEP]) of that length is longer "
            f"than the model's max_position_embeddings ({config.max_position_embeddings}). Use --max_seq_length "
            f"<= {config.max_position_embeddings} or --config_overrides max_position_embeddings={data_args.max_seq_length}."
        )
    if data_args.objective == "mlm_nsp" and getattr(config, "type_vocab_size", 2) < 2:
        raise DataError("Sentence pairs need two segment ids; the model has type_vocab_size < 2. Use --objective mlm.")

    segmenter = None
    if data_args.chinese_whole_word_mask:
        from ..data.zh import ChineseWordSegmenter

        segmenter = ChineseWordSegmenter()
    masker = BertMasker(tokenizer, data_args.mlm_probability, data_args.whole_word_mask, segmenter)
    dynamic = data_args.objective == "mlm"
    common = {
        "objective": data_args.objective,
        "max_seq_length": data_args.max_seq_length,
        "short_seq_prob": data_args.short_seq_prob,
        "masker": masker,
        "num_proc": data_args.preprocessing_num_workers,
    }
    with training_args.main_process_first(desc="building the pretraining data"):
        train_dataset = build_pretraining_dataset(
            documents["train"], tokenizer, static_masking=not dynamic, dupe_factor=data_args.dupe_factor,
            seed=training_args.seed, **common,
        )  # fmt: skip
        eval_dataset = build_pretraining_dataset(
            documents["validation"], tokenizer, static_masking=True, seed=training_args.seed + EVAL_SEED_OFFSET,
            **common,
        )  # fmt: skip
    logger.info(
        "%d training and %d evaluation sequences (objective %s, %s masking); model has %.2fM parameters",
        len(train_dataset), len(eval_dataset), data_args.objective, "dynamic" if dynamic else "static",
        model.num_parameters() / 1e6,
    )  # fmt: skip
    if training_args.label_names is None:
        training_args.label_names = ["labels", "next_sentence_label"] if not dynamic else ["labels"]
    callbacks = []
    if dynamic:
        # Masks drawn per example (seed, epoch, index), not per process: several processes mask as one does.
        train_dataset = PerExampleRandom(train_dataset, masker.mask_example, training_args.seed)
        callbacks.append(SetEpochCallback(train_dataset))
    collator = DataCollatorForBertPretraining(tokenizer)
    trainer = BertPretrainingTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=pretraining_metrics,
        preprocess_logits_for_metrics=preprocess_logits_for_metrics,
        eval_data_collator=DataCollatorForBertPretraining(tokenizer),
        callbacks=callbacks,
    )

    metrics = train_and_save(trainer, training_args, evaluate=True)
    finish_run(trainer, training_args, metrics, (model_args, data_args), "tokenizer",
               extra={"train_sequences": len(train_dataset)})  # fmt: skip
    return metrics


def main(argv: list[str] | None = None) -> int:
    """`hf-bigmodel pretrain bert ...`: 0 on success, 2 with a message on bad input."""
    return run_cli("hf-bigmodel pretrain bert", ARGUMENTS, run_pretraining, argv)


__all__ = [
    "BertDataArguments",
    "BertModelArguments",
    "BertPretrainingTrainer",
    "main",
    "parse_args",
    "run_pretraining",
]
