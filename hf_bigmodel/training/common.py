"""What every training command shares: argument parsing (command line or one .json/.yaml file), the command-line
runner and its error handling, the model arguments common to the pretrainers, `--config_overrides`, tokenizer
loading or training, model building from a preset or a saved folder, auto-resume, and the end of a run (metrics,
model card, push).

The trainers (`pretrain_gpt`, `pretrain_bert`, `pretrain_seq2seq`, `pretrain_images`, `finetune`) keep only what
their objective needs; data lives in `hf_bigmodel.data` and metrics in `hf_bigmodel.metrics`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import transformers
from transformers import AutoConfig, AutoTokenizer, HfArgumentParser, Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from .. import registry
from .._cli import command
from ..data import DataError
from ..models import ARCHITECTURES
from ..publish.card import ModelCardError, write_model_card  # publishing is imported here only, for all of training
from ..publish.push import push_folder
from ..tokenization import check_tokenizer_matches_config, train_tokenizer

logger = logging.getLogger("hf_bigmodel.training")

__all__ = [
    "CommonModelArguments",
    "TokenizerModelArguments",
    "error_message",
    "finish_run",
    "load_or_train_tokenizer",
    "load_saved_model",
    "model_kwargs",
    "parse_args",
    "parse_overrides",
    "preset_config",
    "resolve_checkpoint",
    "run_cli",
    "train_and_save",
]


@dataclass
class CommonModelArguments:
    """Where every pretrainer's model comes from. Each trainer subclasses it to set its own `preset` default."""

    preset: str | None = field(
        default=None, metadata={"help": "Config preset to train from scratch (see `hf_bigmodel.list_presets()`)."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Override preset fields, e.g. 'hidden_size=256,num_hidden_layers=6' (values are read as JSON "
            "when they parse as JSON: 'hidden_sizes=[16,32,64]')."
        },
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Continue training a saved model folder instead of starting from a preset."}
    )


@dataclass
class TokenizerModelArguments(CommonModelArguments):
    """The model arguments of the text pretrainers: a tokenizer to use or train, and the attention backend."""

    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Use this saved tokenizer instead of training one on the training data."}
    )
    tokenizer_vocab_size: int = field(default=8192, metadata={"help": "Vocabulary size of a trained tokenizer."})
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "Attention backend: sdpa (default), eager, flex_attention, flash_attention_2 (as the "
                  "architecture supports)."},
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str], dataclass_types: Sequence[type]) -> tuple:
    """The argument dataclasses from the command line, or from one .json/.yaml file given as the only argument."""
    parser = HfArgumentParser(tuple(dataclass_types))
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        loader = parser.parse_json_file if argv[0].endswith(".json") else parser.parse_yaml_file
        return tuple(loader(os.path.abspath(argv[0])))
    return tuple(parser.parse_args_into_dataclasses(args=list(argv)))


def error_message(err: BaseException) -> str:
    """The message of a data error; one raised in a DataLoader worker arrives wrapped with the worker's traceback,
    of which only the last line (the original message) is kept."""
    message = str(err)
    if "Original Traceback" in message:
        message = message.strip().splitlines()[-1].split("DataError: ", 1)[-1]
    return message


def run_cli(
    prog: str,
    dataclass_types: Sequence[type],
    run: Callable[..., Any],
    argv: Sequence[str] | None = None,
) -> int:
    """A training command's `main`: `--help`, logging, verbosity from the TrainingArguments (the last dataclass),
    then `run(*arguments)`. Errors reach the user through `hf_bigmodel._cli.command`: bad input (including
    TrainingArguments' own checks) is one message on stderr and exit code 2; `--debug` shows the traceback."""

    @command(prog)
    def main(argv: list[str]) -> int:
        if argv and argv[0] in ("-h", "--help"):
            HfArgumentParser(tuple(dataclass_types)).print_help()
            return 0
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
        arguments = parse_args(argv, dataclass_types)
        transformers.utils.logging.set_verbosity(arguments[-1].get_process_log_level())
        run(*arguments)
        return 0

    return main(argv)


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer and model


def parse_overrides(text: str | None) -> dict:
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


def load_or_train_tokenizer(model_args: TokenizerModelArguments, training_args: TrainingArguments, **train_options):
    """The tokenizer of --tokenizer_name_or_path or --model_name_or_path; else the one an earlier run of this
    output_dir trained (`output_dir/tokenizer`); else a new one, `train_tokenizer(vocab_size=--tokenizer_vocab_size,
    **train_options)`. The main process trains and saves it, the others load it."""
    source = model_args.tokenizer_name_or_path or model_args.model_name_or_path
    if source is not None:
        return AutoTokenizer.from_pretrained(source)
    tokenizer_dir = Path(training_args.output_dir) / "tokenizer"
    with training_args.main_process_first(desc="tokenizer training"):
        if (tokenizer_dir / "tokenizer.json").is_file():
            return AutoTokenizer.from_pretrained(tokenizer_dir)
        return train_tokenizer(vocab_size=model_args.tokenizer_vocab_size, output_dir=tokenizer_dir, **train_options)


def model_kwargs(model_args: CommonModelArguments) -> dict[str, Any]:
    """`from_pretrained` / `from_config` keyword arguments from the model arguments (the attention backend)."""
    attn = getattr(model_args, "attn_implementation", None)
    return {"attn_implementation": attn} if attn else {}


def load_saved_model(
    auto_class,
    model_args: CommonModelArguments,
    tokenizer=None,
    check: Callable[[Any], None] | None = None,
    **kwargs,
):
    """The model of --model_name_or_path, after checking its config against the tokenizer (and `check(config)`)
    before any weight is read."""
    config = AutoConfig.from_pretrained(model_args.model_name_or_path)
    if tokenizer is not None:
        check_tokenizer_matches_config(tokenizer, config)
    if check is not None:
        check(config)
    return auto_class.from_pretrained(model_args.model_name_or_path, **model_kwargs(model_args), **kwargs)


def preset_config(arch: str, model_args: CommonModelArguments, defaults: dict | None = None, hint: str = ""):
    """The config of --preset, a preset of `arch`: `defaults` (what the data and tokenizer decide), then
    --config_overrides on top. `hint` ends the error message of a preset of another architecture."""
    presets = registry.list_presets(arch) if arch in ARCHITECTURES else []
    if model_args.preset not in presets:
        raise DataError(
            f"--preset {model_args.preset!r} is not a {arch} preset; choose from {', '.join(presets) or 'none'}{hint}."
        )
    overrides = {**(defaults or {}), **parse_overrides(model_args.config_overrides)}
    return registry.create_config(model_args.preset, **overrides)


# ----------------------------------------------------------------------------------------------------------------
# Training and the end of a run


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


def train_and_save(trainer: Trainer, training_args: TrainingArguments, evaluate: bool, use_cache: bool = False):
    """Train (resuming as `resolve_checkpoint` says), save the model and the trainer state, then evaluate when
    `evaluate`; returns the train (and eval) metrics. `use_cache` turns the KV cache back on before saving (Trainer
    turns it off for training; generation wants it on)."""
    checkpoint = resolve_checkpoint(training_args)
    metrics = dict(trainer.train(resume_from_checkpoint=checkpoint).metrics)
    if use_cache:
        trainer.model.config.use_cache = True
    trainer.save_model()
    trainer.save_state()
    if evaluate:
        metrics.update(trainer.evaluate())
    return metrics


def finish_run(
    trainer: Trainer,
    training_args: TrainingArguments,
    metrics: dict,
    card_arguments: tuple,
    published: str,
    publish: bool = True,
    add_files: Callable[[str], None] | None = None,
    **card_options,
) -> None:
    """The end of every training run: log and save the metrics; then, on the main process and when `publish`,
    write the model card (`write_model_card(output_dir, *card_arguments, training_args, **card_options)`), let
    `add_files(output_dir)` add what else the folder publishes (e.g. pipeline code) and, with `--push_to_hub`, push
    the whole folder: it replaces the card Trainer pushed with ours and adds the code. `published` names what the
    folder holds besides model, code and card ("tokenizer", "image processor")."""
    trainer.log_metrics("all", metrics)
    trainer.save_metrics("all", metrics)
    if not (publish and trainer.is_world_process_zero()):
        return
    try:
        write_model_card(training_args.output_dir, *card_arguments, training_args, **card_options)
    except ModelCardError as err:  # e.g. a stock model type without a card template: the model is saved anyway
        logger.warning("No model card written: %s", err)
    if add_files is not None:
        add_files(training_args.output_dir)
    if training_args.push_to_hub:
        push_folder(training_args.output_dir, trainer.hub_model_id, token=training_args.hub_token,
                    revision=training_args.hub_revision, private=training_args.hub_private_repo, exist_ok=True,
                    commit_message=f"End of training: model, {published}, code and model card")  # fmt: skip
