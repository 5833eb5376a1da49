"""`hf-bigmodel pretrain gpt`: pretrain a language model from raw text with `Trainer`.

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

import importlib
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import transformers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

from .. import registry
from ..data import DataError, load_raw_text, pack_token_stream, tokenize_to_stream
from ..models import ARCHITECTURES
from ..publish.card import ModelCardError, write_model_card
from ..publish.push import push_folder
from ..tokenization import check_tokenizer_matches_config, sync_config_with_tokenizer, train_tokenizer

logger = logging.getLogger("hf_bigmodel.pretrain")

# Architectures this command pretrains, with the task head that carries the pretraining objective.
PRETRAINING_HEADS = {"gpt": "causal-lm"}

# Architectures whose pretraining lives in a module of its own (its objective needs other data and arguments):
# arch -> module exposing `main(argv: list[str]) -> int`, imported only when asked for.
OTHER_PRETRAINERS: dict[str, str] = {
    "bert": "hf_bigmodel.training.pretrain_bert",
    "transformer": "hf_bigmodel.training.pretrain_seq2seq",
    "resnet": "hf_bigmodel.training.pretrain_images",
}


@dataclass
class ModelArguments:
    preset: str = field(
        default="gpt-small-cpu",
        metadata={"help": "Config preset to train from scratch (see `hf_bigmodel.list_presets()`)."},
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Override preset fields, e.g. 'hidden_size=256,num_hidden_layers=6,position_embedding_type=rope'."
        },
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Continue pretraining a saved model folder instead of starting from a preset."}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Use this saved tokenizer instead of training one on the training data."}
    )
    tokenizer_kind: str = field(default="bpe", metadata={"help": "Tokenizer to train if none is given: bpe or char."})
    tokenizer_vocab_size: int = field(default=4096, metadata={"help": "Vocabulary size of a trained BPE tokenizer."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention backend: sdpa (default), eager, flex_attention, flash_attention_2."}
    )


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


def parse_args(argv: list[str]) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        loader = parser.parse_json_file if argv[0].endswith(".json") else parser.parse_yaml_file
        return loader(os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


def _parse_overrides(text: str | None) -> dict:
    """'a=1,b=rope,c=true' -> {"a": 1, "b": "rope", "c": True}; values are read as JSON when they parse as JSON."""
    overrides = {}
    for item in filter(None, (text or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise DataError(f"--config_overrides item {item!r} is not KEY=VALUE.")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value.strip()
    return overrides


def build_tokenizer(model_args: ModelArguments, raw_train, training_args: TrainingArguments):
    source = model_args.tokenizer_name_or_path or model_args.model_name_or_path
    if source is not None:
        return AutoTokenizer.from_pretrained(source)
    # Train on the training split only; the main process trains and saves it, the others load it.
    tokenizer_dir = Path(training_args.output_dir) / "tokenizer"
    with training_args.main_process_first(desc="tokenizer training"):
        if (tokenizer_dir / "tokenizer.json").is_file():
            return AutoTokenizer.from_pretrained(tokenizer_dir)
        return train_tokenizer(
            kind=model_args.tokenizer_kind,
            dataset=raw_train,
            vocab_size=model_args.tokenizer_vocab_size,
            output_dir=tokenizer_dir,
        )


def build_model(arch: str, model_args: ModelArguments, tokenizer):
    extra = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    if model_args.model_name_or_path is not None:
        config = AutoConfig.from_pretrained(model_args.model_name_or_path)
        check_tokenizer_matches_config(tokenizer, config)
        return AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, **extra)
    if arch not in ARCHITECTURES:
        raise DataError(f"Unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}.")
    if model_args.preset not in registry.list_presets(arch):
        raise DataError(
            f"--preset {model_args.preset!r} is not a {arch} preset; choose from {', '.join(registry.list_presets(arch))}."
        )
    # Start from the tokenizer's vocabulary and ids (a preset's defaults may not fit it), then the user's overrides.
    token_ids = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id") for name in ("pad", "bos", "eos")}
    overrides = {"vocab_size": len(tokenizer), **token_ids, **_parse_overrides(model_args.config_overrides)}
    config = sync_config_with_tokenizer(
        registry.create_config(model_args.preset, **overrides), tokenizer, pad_to_multiple_of=64
    )
    return AutoModelForCausalLM.from_config(config, **extra)


class PerplexityTrainer(Trainer):
    """Adds `<prefix>_perplexity = exp(<prefix>_loss)` to every evaluation's metrics, so it is logged with them."""

    def evaluation_loop(self, *args, **kwargs):
        output = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        loss = output.metrics.get(f"{prefix}_loss")
        if loss is not None:
            output.metrics[f"{prefix}_perplexity"] = math.exp(min(loss, 50.0))
        return output


def finish_run(
    trainer: Trainer,
    training_args: TrainingArguments,
    metrics: dict,
    card_arguments: tuple,
    published: str,
    publish: bool = True,
    **card_options,
) -> None:
    """The end of every pretraining run: log and save the metrics; then, on the main process and when `publish`,
    write the model card (`write_model_card(output_dir, *card_arguments, training_args, **card_options)`) and, with
    `--push_to_hub`, push the whole folder: it replaces the card Trainer pushed with ours and adds the code.
    `published` names what the folder holds besides model, code and card ("tokenizer", "image processor")."""
    trainer.log_metrics("all", metrics)
    trainer.save_metrics("all", metrics)
    if not (publish and trainer.is_world_process_zero()):
        return
    try:
        write_model_card(training_args.output_dir, *card_arguments, training_args, **card_options)
    except ModelCardError as err:  # e.g. a stock model type without a card template: the model is saved anyway
        logger.warning("No model card written: %s", err)
    if training_args.push_to_hub:
        push_folder(training_args.output_dir, trainer.hub_model_id, token=training_args.hub_token,
                    revision=training_args.hub_revision, private=training_args.hub_private_repo, exist_ok=True,
                    commit_message=f"End of training: model, {published}, code and model card")  # fmt: skip


def resolve_checkpoint(training_args: TrainingArguments) -> str | None:
    """The checkpoint to resume from: `--resume_from_checkpoint PATH`, the last checkpoint-* of `output_dir` for
    `--resume_from_checkpoint last` (or True), and also without the flag when `output_dir` holds one, so that an
    interrupted run continues where it stopped when it is started again with the same command."""
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint is None and os.path.isdir(training_args.output_dir):
        checkpoint = get_last_checkpoint(training_args.output_dir)
        if checkpoint is not None:
            logger.info("Resuming from the last checkpoint in the output directory: %s", checkpoint)
    elif checkpoint in ("True", "true", "last"):
        checkpoint = get_last_checkpoint(training_args.output_dir)
        if checkpoint is None:
            raise DataError(f"--resume_from_checkpoint: no checkpoint-* folder in {training_args.output_dir}.")
    return checkpoint


def run_pretraining(
    arch: str, model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments
) -> dict:
    """Pretrain and save; returns the final evaluation metrics (eval_loss, eval_perplexity)."""
    if arch not in PRETRAINING_HEADS:
        raise DataError(f"`pretrain {arch}` is not available; choose from {', '.join(PRETRAINING_HEADS)}.")
    set_seed(training_args.seed)

    raw = load_raw_text(
        data_args.train_file,
        data_args.validation_file,
        data_args.dataset_name,
        data_args.dataset_config_name,
        data_args.text_column,
    )
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

    with training_args.main_process_first(desc="tokenizing"):
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

    checkpoint = resolve_checkpoint(training_args)
    metrics = dict(trainer.train(resume_from_checkpoint=checkpoint).metrics)
    model.config.use_cache = True  # Trainer turned it off for training; generation wants it on.
    trainer.save_model()
    trainer.save_state()
    if eval_dataset is not None:
        metrics.update(trainer.evaluate())
    finish_run(trainer, training_args, metrics, (model_args, data_args), "tokenizer",
               extra={"train_tokens": int(len(train_tokens))})  # fmt: skip

    if trainer.is_world_process_zero() and data_args.sample_max_new_tokens > 0:
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
    argv = sys.argv[1:] if argv is None else argv
    archs = [*PRETRAINING_HEADS, *OTHER_PRETRAINERS]
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: hf-bigmodel pretrain ARCH [options]   (ARCH: {', '.join(archs)}; options of ARCH: ARCH --help)")
        print("\nOptions of `pretrain gpt`:")
        HfArgumentParser((ModelArguments, DataArguments, TrainingArguments)).print_help()
        return 0
    arch, rest = argv[0], argv[1:]
    if arch in OTHER_PRETRAINERS:
        return importlib.import_module(OTHER_PRETRAINERS[arch]).main(rest)
    if arch not in PRETRAINING_HEADS:
        print(f"hf-bigmodel pretrain: error: unknown architecture {arch!r}; choose from {', '.join(archs)}.",
              file=sys.stderr)  # fmt: skip
        return 2
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    model_args, data_args, training_args = parse_args(rest)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    try:
        run_pretraining(arch, model_args, data_args, training_args)
    except (DataError, FileNotFoundError) as err:
        print(f"hf-bigmodel pretrain: error: {err}", file=sys.stderr)
        return 2
    return 0
