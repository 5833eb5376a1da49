"""`hf-bigmodel pretrain gpt`: pretrain a GPT language model from raw text with `Trainer`.

Every `TrainingArguments` flag works (parsed by `HfArgumentParser`, as transformers' example scripts do), so the
same command scales from a laptop run to `accelerate launch` / `torchrun` on several processes:

    hf-bigmodel pretrain gpt --train_file input.txt --preset nanogpt-cpu --tokenizer_kind char \\
        --output_dir runs/shakespeare --max_steps 2000 --per_device_train_batch_size 12 --learning_rate 1e-3

The run trains (or loads) a tokenizer, builds the model from a preset, packs the text into blocks, trains,
evaluates perplexity and saves a folder that `AutoModelForCausalLM.from_pretrained` loads (with the modeling code,
for `trust_remote_code=True`). Pass `--resume_from_checkpoint` to continue an interrupted run from its last
checkpoint (or a given one).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator, set_seed

from ..data import DataError, load_raw_text, pack_token_stream, tokenize_to_stream
from ..tokenization import sync_config_with_tokenizer
from . import common
from .common import (
    PhaseTimer,
    TokenizerModelArguments,
    finish_run,
    load_or_train_tokenizer,
    load_saved_model,
    model_kwargs,
    preset_config,
    run_cli,
    train_and_save,
)

logger = logging.getLogger("hf_bigmodel.pretrain")

# Architectures this command pretrains, with the task head that carries the pretraining objective.
PRETRAINING_HEADS = {"gpt": "causal-lm"}


@dataclass
class ModelArguments(TokenizerModelArguments):
    preset: str = field(
        default="gpt-small-cpu",
        metadata={"help": "Config preset to train from scratch (see `hf_bigmodel.list_presets('gpt')`)."},
    )
    tokenizer_kind: str = field(default="bpe", metadata={"help": "Tokenizer to train if none is given: bpe or char."})
    tokenizer_vocab_size: int = field(default=4096, metadata={"help": "Vocabulary size of a trained BPE tokenizer."})


@dataclass
class DataArguments:
    train_file: list[str] | None = field(default=None, metadata={"help": "UTF-8 text file(s) to train on."})
    validation_file: list[str] | None = field(default=None, metadata={"help": "UTF-8 text file(s) to evaluate on."})
    dataset_name: str | None = field(
        default=None, metadata={"help": "A `datasets` dataset (local folder or cached name) instead of text files."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset configuration name."})
    text_column: str = field(default="text", metadata={"help": "Column of the dataset that holds the text."})
    validation_split_percentage: float = field(
        default=5.0,
        metadata={
            "help": "Without a validation set, hold out the last N percent of the training tokens (as nanoGPT)."
        },
    )
    block_size: int | None = field(
        default=None, metadata={"help": "Tokens per training sequence; defaults to max_position_embeddings."}
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    sample_prompt: str = field(default="\n", metadata={"help": "Prompt of the sample printed after training."})
    sample_max_new_tokens: int = field(default=200, metadata={"help": "Length of that sample (0 to skip it)."})


ARGUMENTS = (ModelArguments, DataArguments, TrainingArguments)


def parse_args(argv: list[str]) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    return common.parse_args(argv, ARGUMENTS)


def build_tokenizer(model_args: ModelArguments, raw_train, training_args: TrainingArguments):
    return load_or_train_tokenizer(model_args, training_args, kind=model_args.tokenizer_kind, dataset=raw_train)


def build_model(arch: str, model_args: ModelArguments, tokenizer):
    if model_args.model_name_or_path is not None:
        return load_saved_model(AutoModelForCausalLM, model_args, tokenizer)
    # Start from the tokenizer's vocabulary and ids (a preset's defaults may not fit it), then the user's overrides.
    token_ids = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id") for name in ("pad", "bos", "eos")}
    config = preset_config(arch, model_args, {"vocab_size": len(tokenizer), **token_ids})
    config = sync_config_with_tokenizer(config, tokenizer, pad_to_multiple_of=64)
    return AutoModelForCausalLM.from_config(config, **model_kwargs(model_args))


class PerplexityTrainer(Trainer):
    """Adds `<prefix>_perplexity = exp(<prefix>_loss)` to every evaluation's metrics, so it is logged with them."""

    def evaluation_loop(self, *args, **kwargs):
        output = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        loss = output.metrics.get(f"{prefix}_loss")
        if loss is not None:
            output.metrics[f"{prefix}_perplexity"] = math.exp(min(loss, 50.0))
        return output


def run_pretraining(
    arch: str,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    timer: PhaseTimer | None = None,
) -> dict:
    """Pretrain and save; returns the final evaluation metrics (eval_loss, eval_perplexity). `timer` records the
    wall time of each phase (a fresh one when not given; either way each phase is logged as it ends)."""
    if arch not in PRETRAINING_HEADS:
        raise DataError(f"`pretrain {arch}` is not available; choose from {', '.join(PRETRAINING_HEADS)}.")
    timer = timer if timer is not None else PhaseTimer()
    set_seed(training_args.seed)

    raw = load_raw_text(
        data_args.train_file,
        data_args.validation_file,
        data_args.dataset_name,
        data_args.dataset_config_name,
        data_args.text_column,
    )
    with timer("tokenizer"):
        tokenizer = build_tokenizer(model_args, raw["train"], training_args)
    model = build_model(arch, model_args, tokenizer)
    config = model.config
    block_size = data_args.block_size or config.max_position_embeddings
    if block_size > config.max_position_embeddings:
        raise DataError(
            f"--block_size {block_size} is longer than the model's max_position_embeddings "
            f"({config.max_position_embeddings}). Use a smaller --block_size or set max_position_embeddings via "
            f"--config_overrides max_position_embeddings={block_size}."
        )

    with timer("tokenizing"), training_args.main_process_first(desc="tokenizing"):
        # Text-file lines are pieces of one running text; dataset rows are separate documents.
        documents = data_args.dataset_name is not None
        num_proc = data_args.preprocessing_num_workers
        train_tokens = tokenize_to_stream(raw["train"], tokenizer, documents, num_proc, "Tokenizing train")
        if "validation" in raw:
            eval_tokens = tokenize_to_stream(
                raw["validation"], tokenizer, documents, num_proc, "Tokenizing validation"
            )
        else:
            cut = int(len(train_tokens) * (1 - data_args.validation_split_percentage / 100))
            train_tokens, eval_tokens = train_tokens[:cut], train_tokens[cut:]
    train_dataset = pack_token_stream(train_tokens, block_size, "train")
    eval_dataset = pack_token_stream(eval_tokens, block_size, "validation") if len(eval_tokens) else None
    logger.info(
        "%d train blocks, %s validation blocks of %d tokens; model has %.2fM parameters",
        len(train_dataset),
        len(eval_dataset) if eval_dataset else 0,
        block_size,
        model.num_parameters() / 1e6,
    )

    trainer = PerplexityTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=default_data_collator,
        processing_class=tokenizer,
    )

    metrics = train_and_save(trainer, training_args, evaluate=eval_dataset is not None, use_cache=True, timer=timer)
    with timer("model card"):
        finish_run(trainer, training_args, metrics, (model_args, data_args), "tokenizer",
                   extra={"train_tokens": int(len(train_tokens))})  # fmt: skip

    if trainer.is_world_process_zero() and data_args.sample_max_new_tokens > 0:
        with timer("sample"):
            print_sample(model, tokenizer, data_args.sample_prompt, data_args.sample_max_new_tokens)
    return metrics


def print_sample(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """Print a sampled continuation of `prompt` (top-k 50, temperature 0.8, as nanoGPT's sample.py)."""
    model.eval()
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    max_new_tokens = min(max_new_tokens, model.config.max_position_embeddings - inputs["input_ids"].shape[1])
    output = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=True,
        top_k=50,
        temperature=0.8,
        pad_token_id=tokenizer.pad_token_id,
    )
    text = tokenizer.decode(output[0], skip_special_tokens=True)
    print(f"\n----- sample -----\n{text}\n------------------")
    return text


def main(argv: list[str] | None = None) -> int:
    """`hf-bigmodel pretrain gpt ...`: 0 on success, 2 with a message on bad input."""
    return run_cli("hf-bigmodel pretrain gpt", ARGUMENTS, lambda *args: run_pretraining("gpt", *args), argv)


__all__ = [
    "DataArguments",
    "ModelArguments",
    "PerplexityTrainer",
    "build_model",
    "build_tokenizer",
    "main",
    "parse_args",
    "print_sample",
    "run_pretraining",
]
