"""What every training command shares: argument parsing (command line or one .json/.yaml file), the command-line
runner and its error handling, the model arguments common to the pretrainers, `--config_overrides`, tokenizer
loading or training, model building from a preset or a saved folder, auto-resume, and the end of a run (metrics,
model card, push).

The trainers (`pretrain_gpt`, `pretrain_bert`, `pretrain_seq2seq`, `pretrain_images`, `finetune`) keep only what
their objective needs; data lives in `hf_bigmodel.data` and metrics in `hf_bigmodel.metrics`.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoTokenizer, HfArgumentParser, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from .. import registry
from .._cli import command, is_disk_full, require_folder_or_repo
from .._io import safetensors_header
from ..data import DataError
from ..models import ARCHITECTURES
from ..publish.card import ModelCardError, write_model_card  # publishing is imported here only, for all of training
from ..publish.card_seqrec import write_recommender_card
from ..publish.push import push_folder
from ..tokenization import check_tokenizer_matches_config, train_tokenizer

logger = logging.getLogger("hf_bigmodel.training")

__all__ = [
    "CommonModelArguments",
    "PhaseTimer",
    "SetEpochCallback",
    "TokenizerModelArguments",
    "write_recommender_card",
    "check_arguments",
    "error_message",
    "finish_run",
    "load_or_train_tokenizer",
    "load_saved_model",
    "model_kwargs",
    "parse_args",
    "parse_overrides",
    "preset_config",
    "checkpoint_problem",
    "evaluation_only",
    "finished_run",
    "last_complete_checkpoint",
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
            "when they parse as JSON: 'hidden_sizes=[16,32,64]'). With --model_name_or_path, they override the "
            "saved config's fields that leave the weights' shapes alone, e.g. 'dropout=0.3'."
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


def parse_args(argv: Sequence[str], dataclass_types: Sequence[type], prog: str | None = None) -> tuple:
    """The argument dataclasses from the command line, or from one .json/.yaml file given as the only argument.
    `prog`: the command's name in usage lines (argparse's default is the script's file name)."""
    parser = HfArgumentParser(tuple(dataclass_types), prog=prog)
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        path = Path(argv[0])
        if not path.is_file():
            raise DataError(f"{path}: no such arguments file.")
        text = path.read_text(encoding="utf-8")
        import yaml  # what HfArgumentParser.parse_yaml_file reads with

        try:
            values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            kind = "JSON" if path.suffix == ".json" else "YAML"
            raise DataError(f"{path} is not valid {kind}: {str(err).splitlines()[0]}") from err
        if not isinstance(values, dict):
            raise DataError(
                f"{path} holds a {type(values).__name__}, not a mapping of argument names to values "
                '(e.g. {"output_dir": "runs/x", "max_steps": 100}).'
            )
        return tuple(parser.parse_dict(values))
    return tuple(parser.parse_args_into_dataclasses(args=list(argv)))


# Argument fields that must be positive when given (0 or a negative number would crash later, or be read as "use the
# default" without a word), and fractions or percentages with their range.
POSITIVE_FIELDS = (
    "block_size", "max_seq_length", "max_source_length", "max_target_length", "tokenizer_vocab_size", "doc_stride",
    "max_answer_length", "n_best_size", "dupe_factor", "image_size", "num_channels", "max_tokens_per_batch",
    "max_train_samples", "max_eval_samples", "max_predict_samples",
    "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
)  # fmt: skip
RANGES = {
    "validation_split_percentage": (0, 100),
    "mlm_probability": (0, 1),
    "short_seq_prob": (0, 1),
    "mask_ratio": (0, 1),
    "noise_density": (0, 1),
    "label_smoothing": (0, 1),
    "label_smoothing_factor": (0, 1),
    "warmup_ratio": (0, 1),
}


def check_arguments(arguments: Sequence[Any]) -> None:
    """Refuse argument values that would crash deep inside a run or train something other than asked: sizes that
    are not positive, fractions out of range, a learning rate that is not a finite number, nothing to train for."""
    for args in arguments:
        for name in POSITIVE_FIELDS:
            value = getattr(args, name, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
                raise DataError(f"--{name} must be a positive number, got {value}.")
        for name, (low, high) in RANGES.items():
            value = getattr(args, name, None)
            if isinstance(value, (int, float)) and not (low <= value <= high):
                raise DataError(f"--{name} must be between {low} and {high}, got {value}.")
    training_args = arguments[-1]
    if isinstance(training_args, TrainingArguments):
        lr = training_args.learning_rate
        if not math.isfinite(lr) or lr < 0:
            raise DataError(f"--learning_rate must be a finite number >= 0, got {lr} (typical: 1e-4 to 1e-3).")
        if training_args.max_steps <= 0 and training_args.num_train_epochs <= 0:
            raise DataError(
                f"--num_train_epochs {training_args.num_train_epochs:g} trains nothing; give a positive number of "
                "epochs or --max_steps."
            )


def _implied_flags(argv: list[str]) -> list[str]:
    """`--bf16` on a machine without an accelerator means bf16 on the CPU: add the `--use_cpu true` that
    TrainingArguments would otherwise demand in an error."""
    if any(arg in ("--bf16", "--bf16=true", "--bf16=True") for arg in argv) and not any(
        arg.startswith("--use_cpu") for arg in argv
    ):
        import torch

        from ..hardware import native_bf16

        accelerators = (torch.cuda, getattr(torch, "xpu", None), getattr(torch.backends, "mps", None))
        if not any(device is not None and device.is_available() for device in accelerators):
            logger.info("--bf16 without an accelerator: training on the CPU (--use_cpu true).")
            if not native_bf16():
                logger.warning(
                    "--bf16: this CPU has no AVX-512 BF16 or AMX, so bfloat16 products are emulated and can train "
                    "several times slower than float32; leave --bf16 out here."
                )
            return [*argv, "--use_cpu", "true"]
    return argv


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
            HfArgumentParser(tuple(dataclass_types), prog=prog).print_help()
            return 0
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
        arguments = parse_args(_implied_flags(argv), dataclass_types, prog=prog)
        check_arguments(arguments)
        transformers.utils.logging.set_verbosity(arguments[-1].get_process_log_level())
        args = arguments[-1]
        if args.dataloader_pin_memory and (args.use_cpu or not torch.accelerator.is_available()):
            # Pinned memory only speeds up copies to an accelerator; on a CPU run the DataLoader warns about it.
            args.dataloader_pin_memory = False
        done = None if evaluation_only(args) else finished_run(args)
        if done is not None:  # a rerun of a finished command: say so rather than train one step past the end
            print(f"{prog}: {done}", file=sys.stderr)
            return 0
        try:
            run(*arguments)
        except Exception as err:
            if is_disk_full(err):  # name the folder: the writers' own messages do not
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), args.output_dir) from err
            raise
        return 0

    return main(argv)


class PhaseTimer:
    """Wall time of the phases of a run (tokenizer, tokenizing, training, ...): each phase is logged when it starts
    and ends, so a long run says what it is doing, and `summary()` gives the table at the end."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        logger.info("%s ...", name)
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
            logger.info("%s: %.1f s", name, elapsed)

    def summary(self) -> str:
        """One line per phase, and the total."""
        width = max(map(len, self.seconds), default=0)
        lines = [f"  {name.ljust(width)}  {seconds:6.1f} s" for name, seconds in self.seconds.items()]
        return "\n".join([*lines, f"  {'total'.ljust(width)}  {sum(self.seconds.values()):6.1f} s"])


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
    if model_args.model_name_or_path is not None:  # before a tokenizer library reads a broken folder
        require_folder_or_repo(model_args.model_name_or_path, "--model_name_or_path")
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
    flag_overrides: dict[str, Any] | None = None,
    **kwargs,
):
    """The model of --model_name_or_path, after checking its config against the tokenizer (and `check(config)`)
    before any weight is read. `flag_overrides`: config fields that a trainer's own flags set (`--loss`), applied
    after --config_overrides."""
    require_folder_or_repo(model_args.model_name_or_path, "--model_name_or_path")
    config = AutoConfig.from_pretrained(model_args.model_name_or_path)
    # A fine-tune often changes what the weights do not fix (dropout, label smoothing): apply --config_overrides to
    # the saved config rather than ignore them. Fields that change a weight's shape are refused below.
    overrides = {**parse_overrides(getattr(model_args, "config_overrides", None)), **(flag_overrides or {})}
    registry.check_config_keys(config, overrides, f"--config_overrides on {model_args.model_name_or_path}")
    config.update(overrides)
    if overrides and callable(getattr(config, "validate", None)):
        config.validate()  # what the config's own checks say of the new values (a loss it does not know)
    if tokenizer is not None:
        check_tokenizer_matches_config(tokenizer, config)
    if check is not None:
        check(config)
    try:
        return auto_class.from_pretrained(
            model_args.model_name_or_path, config=config, **model_kwargs(model_args), **kwargs
        )
    except RuntimeError as error:
        if overrides and "ignore_mismatched_sizes" in str(error):
            raise DataError(
                f"--config_overrides {model_args.config_overrides!r} change the shape of weights saved in "
                f"{model_args.model_name_or_path}; a saved model takes only overrides that keep its weights (such "
                "as dropout). To change the architecture, train from --preset."
            ) from error
        raise


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


def checkpoint_problem(folder: str | Path) -> str | None:
    """Why `folder` (a Trainer `checkpoint-N`) cannot be resumed from, or None when it is complete. Trainer writes
    `trainer_state.json` last, after the weights, optimizer, scheduler and RNG states, so a checkpoint whose state
    file is whole and names its own step was written to the end; the weights are checked as well, since a full disk
    can cut a file short without killing the process."""
    folder = Path(folder)
    state_file = folder / "trainer_state.json"
    if not state_file.is_file():
        return "it has no trainer_state.json (Trainer writes it last: the save was interrupted)"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "its trainer_state.json is cut short (the save was interrupted)"
    step = folder.name.rpartition("-")[2]
    if not isinstance(state, dict) or str(state.get("global_step")) != step:
        return f"its trainer_state.json is for step {state.get('global_step') if isinstance(state, dict) else '?'}"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and not any(folder.glob("*.bin")) and not (folder / "adapter_model.safetensors").is_file():
        return "it holds no weights"
    for path in weights:
        try:
            safetensors_header(path)
        except ValueError as err:
            return str(err).replace(str(path), path.name).split(" Save the model")[0]
    return None


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete `checkpoint-N` of `output_dir`, or None. Newer incomplete ones (a kill or a full disk
    during a save) are removed, with a warning that says why: they can never be resumed from, and the rerun writes
    the same step again."""
    while (checkpoint := get_last_checkpoint(str(output_dir))) is not None:
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return checkpoint
        logger.warning("Skipping %s: %s. Removing it and resuming from the checkpoint before.", checkpoint, problem)
        shutil.rmtree(checkpoint)
    return None


class SetEpochCallback(TrainerCallback):
    """Tells a dataset with `set_epoch` (`data.common.PerExampleRandom`) the epoch about to start. Trainer's own
    `set_epoch` call reaches the dataset only for some samplers (accelerate skips it when the sampler has one of
    its own, as under several processes), so the epoch is set here whatever the sampler. `state.epoch` is the
    completed fraction of epochs, restored on resume: its integer part is the epoch that begins or resumes."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(int(state.epoch or 0))


def evaluation_only(training_args: TrainingArguments) -> bool:
    """Whether the flags ask to evaluate or predict without training (`pretrain transformer --do_eval` or
    `--do_predict` without `--do_train`). `--eval_strategy` turns `do_eval` on by itself, which says nothing about
    training, so only a `--do_eval` without an eval strategy counts."""
    explicit_eval = training_args.do_eval and str(training_args.eval_strategy).rpartition(".")[2].lower() == "no"
    return not training_args.do_train and (training_args.do_predict or explicit_eval)


def finished_run(training_args: TrainingArguments) -> str | None:
    """A message when `output_dir` holds a run that already reached `--max_steps` (or `--num_train_epochs`): the
    end of a run saves `trainer_state.json` at the top of `output_dir`, next to the model."""
    state_file = Path(training_args.output_dir) / "trainer_state.json"
    if training_args.resume_from_checkpoint is not None or not state_file.is_file():
        return None
    if getattr(training_args, "overwrite_output_dir", False):
        return None
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        step, epoch = int(state["global_step"]), float(state.get("epoch") or 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if training_args.max_steps > 0:
        done = step >= training_args.max_steps
        target = f"--max_steps {training_args.max_steps}"
    else:
        done = epoch >= training_args.num_train_epochs - 1e-6
        target = f"--num_train_epochs {training_args.num_train_epochs:g}"
    if not done:
        return None
    return (
        f"{training_args.output_dir} already holds a finished run (step {step}, epoch {epoch:.3g}; {target}): "
        f"nothing to do.\nRaise {target.split()[0]} to train further, or choose another --output_dir."
    )


def resolve_checkpoint(training_args: TrainingArguments) -> str | None:
    """The checkpoint to resume from: `--resume_from_checkpoint PATH`, the last complete checkpoint-* of
    `output_dir` for `--resume_from_checkpoint last` (or True), and also without the flag when `output_dir` holds
    one, so that an interrupted run continues where it stopped when it is started again with the same command. An
    incomplete checkpoint (killed during its save) is skipped and removed, with a warning."""
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint is None and os.path.isdir(training_args.output_dir):
        checkpoint = last_complete_checkpoint(training_args.output_dir)
        if checkpoint is not None:
            logger.info("Resuming from the last checkpoint in the output directory: %s", checkpoint)
    elif checkpoint in ("True", "true", "last"):
        checkpoint = last_complete_checkpoint(training_args.output_dir)
        if checkpoint is None:
            raise DataError(
                f"--resume_from_checkpoint: no complete checkpoint-* folder in {training_args.output_dir}."
            )
    elif checkpoint is not None:
        if not os.path.isdir(checkpoint):
            raise DataError(f"--resume_from_checkpoint {checkpoint}: no such folder.")
        problem = checkpoint_problem(checkpoint)
        if problem is not None:
            raise DataError(
                f"--resume_from_checkpoint {checkpoint} is incomplete: {problem}. Give an earlier checkpoint, or "
                "'last' for the newest complete one."
            )
    return checkpoint


def train_and_save(
    trainer: Trainer,
    training_args: TrainingArguments,
    evaluate: bool,
    use_cache: bool = False,
    timer: PhaseTimer | None = None,
):
    """Train (resuming as `resolve_checkpoint` says), save the model and the trainer state, then evaluate when
    `evaluate`; returns the train (and eval) metrics. `use_cache` turns the KV cache back on before saving (Trainer
    turns it off for training; generation wants it on). `timer` times the three phases."""
    timer = timer if timer is not None else PhaseTimer()
    checkpoint = resolve_checkpoint(training_args)
    with timer("training"):  # evaluations during training (--eval_strategy) and checkpoints included
        metrics = dict(trainer.train(resume_from_checkpoint=checkpoint).metrics)
    broken = [name for name, p in trainer.model.named_parameters() if not bool(p.detach().isfinite().all())]
    if broken:  # never save (nor card, nor push) a model that diverged: it would load and answer garbage
        raise DataError(
            f"Training diverged: after step {trainer.state.global_step}, {len(broken)} weight tensors hold NaN or "
            f"inf (first: {broken[0]}); nothing was saved. Lower --learning_rate (it is "
            f"{training_args.learning_rate:g}) or add --max_grad_norm 1.0."
        )
    if use_cache:
        trainer.model.config.use_cache = True
    with timer("saving"):
        trainer.save_model()
        trainer.save_state()
    if evaluate:
        # Evaluation wants no cache: at an evaluation batch every layer's keys and values would be kept for nothing
        # (the nanoGPT recipe's GPT at evaluation batch 256: 100 MiB more peak memory).
        config = trainer.model.config
        cached = getattr(config, "use_cache", None)
        if cached:
            config.use_cache = False
        with timer("evaluation"):
            metrics.update(trainer.evaluate())
        if cached:
            config.use_cache = cached
    return metrics


def finish_run(
    trainer: Trainer,
    training_args: TrainingArguments,
    metrics: dict,
    card_arguments: tuple,
    published: str,
    publish: bool = True,
    add_files: Callable[[str], None] | None = None,
    write_card: Callable[[str], Any] | None = None,
    **card_options,
) -> None:
    """The end of every training run: log and save the metrics; then, on the main process and when `publish`,
    write the model card (`write_model_card(output_dir, *card_arguments, training_args, **card_options)`), let
    `write_card(output_dir)` replace that card where given, let `add_files(output_dir)` add what else the folder publishes (e.g. pipeline code) and, with `--push_to_hub`, push
    the whole folder: it replaces the card Trainer pushed with ours and adds the code. `published` names what the
    folder holds besides model, code and card ("tokenizer", "image processor")."""
    if metrics:  # log_metrics fails on an empty dict
        trainer.log_metrics("all", metrics)
        trainer.save_metrics("all", metrics)
    if not (publish and trainer.is_world_process_zero()):
        return
    try:
        if write_card is not None:  # a model with a card of its own (the recommenders: publish/card_seqrec.py)
            write_card(training_args.output_dir)
        else:
            write_model_card(training_args.output_dir, *card_arguments, training_args, **card_options)
    except ModelCardError as err:  # e.g. a stock model type without a card template: the model is saved anyway
        logger.warning("No model card written: %s", err)
    if add_files is not None:
        add_files(training_args.output_dir)
    if training_args.push_to_hub:
        push_folder(training_args.output_dir, trainer.hub_model_id, token=training_args.hub_token,
                    revision=training_args.hub_revision, private=training_args.hub_private_repo, exist_ok=True,
                    commit_message=f"End of training: model, {published}, code and model card")  # fmt: skip
