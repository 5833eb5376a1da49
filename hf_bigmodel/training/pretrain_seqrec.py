"""`hf-bigmodel pretrain sasrec` and `hf-bigmodel pretrain bert4rec`: train a sequential recommender with `Trainer`.

    hf-bigmodel pretrain sasrec --train_file ../shared/data/seqrec/Video.txt --output_dir runs/sasrec-video \\
        --num_train_epochs 200 --per_device_train_batch_size 128 --learning_rate 1e-3

Every `TrainingArguments` flag works. Unless the command line says otherwise, the run evaluates each epoch on the
validation items (leave-one-out) with the one evaluator (`hf_bigmodel.recommendation`), keeps the best epoch by
validation NDCG@10 (`--validation_protocol`, default sampled-uniform), stops early after
`--early_stopping_patience` epochs without improvement, then reports HR/NDCG/MRR @1,5,10,20 on the test items under
the three protocols, writes `eval_results.json`, a model card stating each protocol and the data's sha256, the
pipeline code, and pushes with `--push_to_hub`. Rerunning the same command resumes from the last checkpoint.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field

from transformers import AutoConfig, EarlyStoppingCallback, Trainer, TrainingArguments, set_seed
from transformers.trainer_pt_utils import LengthGroupedSampler

from .. import registry
from .._io import atomic_write_text
from ..data import DataError
from ..data.seqrec import (
    CausalItemDataset,
    ItemMap,
    MaskedItemCollator,
    MaskedItemDataset,
    causal_item_collator,
    leave_one_out,
    read_interactions,
)
from ..models import RECOMMENDERS
from ..pipelines import add_sequential_recommendation_pipeline
from ..recommendation import PROTOCOLS, evaluate_recommender, sample_candidates
from . import common
from .common import CommonModelArguments, finish_run, parse_overrides, run_cli, train_and_save

logger = logging.getLogger("hf_bigmodel.pretrain_seqrec")

DEFAULT_PRESETS = {"sasrec": "sasrec-50", "bert4rec": "bert4rec-50"}


@dataclass
class ModelArguments(CommonModelArguments):
    loss: str | None = field(
        default=None,
        metadata={
            "help": "Training loss: bce, ce, sampled_ce:N or gbce:k,t (default: the saved model's, or the "
            "preset's: ce)."
        },
    )


@dataclass
class DataArguments:
    train_file: str | None = field(
        default=None,
        metadata={"help": "Interactions: a `user item` .txt file (grouped by user, in time order) or a table "
                  "(.csv, .jsonl, .parquet, a datasets folder) with user, item and time columns."},
    )  # fmt: skip
    user_column: str = field(default="user", metadata={"help": "User column of a table."})
    item_column: str = field(default="item", metadata={"help": "Item column of a table."})
    time_column: str | None = field(default="timestamp", metadata={"help": "Time column of a table."})
    validation_protocol: str = field(
        default="sampled-uniform",
        metadata={"help": f"Protocol of the per-epoch validation NDCG@10 ({', '.join(PROTOCOLS)})."},
    )
    test_protocols: str = field(
        default=",".join(PROTOCOLS), metadata={"help": "Protocols of the final test evaluation, comma-separated."}
    )
    early_stopping_patience: int = field(
        default=10, metadata={"help": "Stop after this many evaluations without a better validation NDCG@10."}
    )
    eval_batch_size: int = field(default=512, metadata={"help": "Users scored at once in evaluation."})
    num_negatives: int = field(default=100, metadata={"help": "Negatives per user of the sampled protocols."})


ARGUMENTS = (ModelArguments, DataArguments, TrainingArguments)


class RecommenderTrainer(Trainer):
    """`evaluate()` is the leave-one-out evaluator on the validation items (every evaluated user), so checkpoint
    selection and early stopping read `eval_<protocol>_NDCG@10`."""

    def __init__(self, *args, split=None, validation_protocol: str = "sampled-uniform", eval_batch_size: int = 512,
                 num_negatives: int = 100, **kwargs):  # fmt: skip
        super().__init__(*args, **kwargs)
        self.split = split
        self.validation_protocol = validation_protocol
        self.eval_batch_size = eval_batch_size
        self.num_negatives = num_negatives
        self.candidates = {}  # drawn at the first evaluation, then the same for every epoch

    def _get_train_sampler(self, train_dataset=None):
        # Only on request (`--train_sampling_strategy group_by_length`): batches of similar lengths make the
        # collators' cut of the padding pay, but they scored lower (benchmarks/README.md). Trainer would measure
        # each example's padded length; the datasets know the real ones.
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and hasattr(dataset, "lengths"):
            return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                        lengths=dataset.lengths)  # fmt: skip
        return super()._get_train_sampler(train_dataset)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        protocol = self.validation_protocol
        if protocol != "full" and protocol not in self.candidates:
            self.candidates[protocol] = sample_candidates(self.split, "valid", protocol, self.num_negatives,
                                                          self.args.seed)  # fmt: skip
        report = evaluate_recommender(self.model, self.split, "valid", protocols=[protocol],
                                      batch_size=self.eval_batch_size, candidates=self.candidates,
                                      num_negatives=self.num_negatives, seed=self.args.seed)  # fmt: skip
        metrics = report.flat(f"{metric_key_prefix}_")
        metrics[f"{metric_key_prefix}_seconds"] = round(report.seconds, 2)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def build_model(arch: str, model_args: ModelArguments, item_map: ItemMap):
    """A new model of --preset for this data's item map, or the saved --model_name_or_path (whose item map must be
    this data's). --config_overrides and --loss apply to either."""
    row = RECOMMENDERS[arch]
    auto_class = next(iter(row.heads.values()))
    flag_overrides = {"loss": model_args.loss} if model_args.loss is not None else {}
    config_overrides = parse_overrides(model_args.config_overrides)
    for derived in ("num_items", "item_ids", "vocab_size"):
        if derived in config_overrides:
            raise DataError(f"--config_overrides cannot set {derived}: it comes from the data's item map.")
    if model_args.model_name_or_path is not None:

        def check_item_map(config) -> None:
            if list(config.item_ids or []) != item_map.item_ids:
                raise DataError(
                    f"The model of --model_name_or_path {model_args.model_name_or_path} has an item map of "
                    f"{config.num_items} items that is not this data's ({len(item_map)} items): continue training "
                    f"it on the data it was trained on, or start from a --preset."
                )

        return common.load_saved_model(auto_class, model_args, check=check_item_map, flag_overrides=flag_overrides)
    preset = model_args.preset or DEFAULT_PRESETS[arch]
    if preset not in row.presets:
        raise DataError(f"--preset {preset!r} is not a {arch} preset; choose from {', '.join(row.presets)}.")
    overrides = {**config_overrides, **flag_overrides}
    registry.check_config_keys(row.config_class.from_preset(preset, num_items=1), overrides, "--config_overrides")
    try:
        config = row.config_class.from_preset(preset, num_items=len(item_map), item_ids=item_map.item_ids,
                                              **overrides)  # fmt: skip
    except ValueError as error:
        raise DataError(str(error).splitlines()[-1].strip()) from error
    return auto_class(config)


def default_flags(argv: list[str]) -> list[str]:
    """Per-epoch validation, best epoch kept and early stopping, unless the command line decides them."""
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        return argv
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    protocol = "sampled-uniform"
    if "--validation_protocol" in argv:
        protocol = argv[argv.index("--validation_protocol") + 1]
    defaults = {
        "--eval_strategy": "epoch",
        "--save_strategy": "epoch",
        "--load_best_model_at_end": "true",
        "--metric_for_best_model": f"eval_{protocol}_NDCG@10",
        "--greater_is_better": "true",
        "--save_total_limit": "2",
        "--report_to": "tensorboard",
        "--learning_rate": "1e-3",
        "--per_device_train_batch_size": "128",
        "--logging_steps": "50",
    }
    if "--eval_strategy" in given and "--save_strategy" not in given:
        defaults.pop("--save_strategy")
    extra = [item for key, value in defaults.items() if key not in given for item in (key, value)]
    return argv + extra


def run_pretraining(arch: str, model_args: ModelArguments, data_args: DataArguments,
                    training_args: TrainingArguments) -> dict:  # fmt: skip
    """Train, select on validation NDCG@10, evaluate on the test items, save; returns the metrics."""
    if data_args.train_file is None:
        raise DataError("Give the interactions with --train_file (a `user item` .txt file or a table).")
    if data_args.validation_protocol not in PROTOCOLS:
        raise DataError(f"--validation_protocol must be one of {', '.join(PROTOCOLS)}.")
    test_protocols = [p.strip() for p in data_args.test_protocols.split(",") if p.strip()]
    unknown = [p for p in test_protocols if p not in PROTOCOLS]
    if unknown:
        raise DataError(f"--test_protocols names {unknown[0]!r}; choose from {', '.join(PROTOCOLS)}.")
    if data_args.num_negatives < 1:
        raise DataError(f"--num_negatives must be positive, got {data_args.num_negatives}.")
    set_seed(training_args.seed)
    interactions = read_interactions(data_args.train_file, user_column=data_args.user_column,
                                     item_column=data_args.item_column, time_column=data_args.time_column)  # fmt: skip
    if model_args.model_name_or_path is not None:
        item_map = ItemMap.from_config(AutoConfig.from_pretrained(model_args.model_name_or_path))
        try:
            split = leave_one_out(interactions, item_map)
        except DataError as error:
            raise DataError(f"{error} The data holds items the model of --model_name_or_path does not know.") from None
    else:
        split = leave_one_out(interactions)
    if split.skipped:
        print(f"{split.skipped} of {len(split.users)} users have fewer than 3 interactions: not evaluated.",
              file=sys.stderr)  # fmt: skip
    model = build_model(arch, model_args, split.item_map)
    config = model.config
    train = split.train_sequences()
    if arch == "sasrec":
        train_dataset = CausalItemDataset(train, config.max_position_embeddings)
        collator = causal_item_collator
    else:
        train_dataset = MaskedItemDataset(train, config.max_position_embeddings)
        collator = MaskedItemCollator(config.mask_token_id, config.max_position_embeddings,
                                      config.mask_probability, seed=training_args.seed,
                                      pad_to_longest=True)  # fmt: skip
    logger.info("%d users, %d items, %d training sequences; model has %.2fM parameters", len(split.users),
                split.num_items, len(train_dataset), model.num_parameters() / 1e6)  # fmt: skip

    callbacks = []
    if training_args.load_best_model_at_end and data_args.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=data_args.early_stopping_patience))
    trainer = RecommenderTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=train_dataset,  # only so that Trainer accepts eval_strategy: evaluate() reads `split`
        data_collator=collator,
        callbacks=callbacks,
        split=split,
        validation_protocol=data_args.validation_protocol,
        eval_batch_size=data_args.eval_batch_size,
        num_negatives=data_args.num_negatives,
    )
    metrics = train_and_save(trainer, training_args, evaluate=False)
    best = trainer.state.best_metric
    report = evaluate_recommender(trainer.model, split, "test", protocols=test_protocols,
                                  batch_size=data_args.eval_batch_size, num_negatives=data_args.num_negatives,
                                  seed=training_args.seed)  # fmt: skip
    if trainer.is_world_process_zero():
        print(report)
    metrics.update(report.flat("test_"))
    if best is not None:
        metrics["best_validation_metric"] = best
        metrics["best_checkpoint"] = trainer.state.best_model_checkpoint
    data = {"source": split.source, "sha256": split.sha256, "users": len(split.users),
            "interactions": interactions.num_interactions}  # fmt: skip
    card_config = config.to_dict()

    def write_card(folder: str) -> None:
        results = {"data": data, "protocols": {p: report.protocol_line(p) for p in report.metrics},
                   "test": report.metrics}  # fmt: skip
        atomic_write_text(f"{folder}/eval_results.json", json.dumps(results, indent=2) + "\n")
        common.write_recommender_card(folder, card_config, report, data, repo_id=trainer.hub_model_id)

    finish_run(trainer, training_args, metrics, (model_args, data_args), "item map", write_card=write_card,
               add_files=add_sequential_recommendation_pipeline)  # fmt: skip
    return metrics


def main_sasrec(argv: list[str] | None = None) -> int:
    """`hf-bigmodel pretrain sasrec ...`: 0 on success, 2 with a message on bad input."""
    argv = default_flags(list(sys.argv[1:] if argv is None else argv))
    return run_cli("hf-bigmodel pretrain sasrec", ARGUMENTS, lambda *a: run_pretraining("sasrec", *a), argv)


def main_bert4rec(argv: list[str] | None = None) -> int:
    """`hf-bigmodel pretrain bert4rec ...`: 0 on success, 2 with a message on bad input."""
    argv = default_flags(list(sys.argv[1:] if argv is None else argv))
    return run_cli("hf-bigmodel pretrain bert4rec", ARGUMENTS, lambda *a: run_pretraining("bert4rec", *a), argv)


__all__ = ["DataArguments", "ModelArguments", "RecommenderTrainer", "main_bert4rec", "main_sasrec", "run_pretraining"]
