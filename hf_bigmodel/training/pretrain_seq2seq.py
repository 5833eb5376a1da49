"""`hf-bigmodel pretrain transformer`: train an encoder-decoder model with `Seq2SeqTrainer`, for translation
(parallel text), summarization (document/summary pairs) or as a denoising autoencoder (monolingual text).

Every `Seq2SeqTrainingArguments` flag works (`--predict_with_generate`, `--generation_num_beams`,
`--generation_max_length`, ...). A Multi30k German->English run:

    hf-bigmodel pretrain transformer --preset transformer-multi30k --source_lang de --target_lang en \\
        --train_file data/train --validation_file data/val --test_file data/test_2016_flickr \\
        --output_dir runs/multi30k --do_train --do_eval --do_predict --predict_with_generate \\
        --generation_num_beams 5 --num_train_epochs 10 --learning_rate 5e-4 --lr_scheduler_type inverse_sqrt \\
        --warmup_steps 1000 --label_smoothing_factor 0.1 --per_device_train_batch_size 128

`--train_file PREFIX` with `--source_lang de --target_lang en` reads `PREFIX.de` and `PREFIX.en` (`.gz` files too:
`PREFIX.de.gz`); `--train_source_file` / `--train_target_file` name the files explicitly. Line i of one file must
translate line i of the other. `--dataset_name` takes a `datasets` dataset (a `save_to_disk` folder or a cached
name) with a "translation" column of `{de: ..., en: ...}` rows instead.

The run trains a joint source/target tokenizer (unigram or byte-level BPE, `hf_bigmodel.tokenization`) unless one is
given, builds the model from a preset with the tokenizer's vocabulary and special-token ids, trains, evaluates
(loss; with `--predict_with_generate` also sacreBLEU and chrF of beam-search translations), writes the test
translations to `generated_predictions.txt` for `--do_predict`, and saves a folder that
`AutoModelForSeq2SeqLM.from_pretrained` and `AutoTokenizer.from_pretrained` load, with a model card.

BLEU conventions (the metric names say which):

* ``<split>_bleu``: sacreBLEU on detokenized, cased text: `sacrebleu.corpus_bleu(hyps, [refs])` with its default
  "13a" tokenizer (`--bleu_tokenize` changes it). ``<split>_chrf``: sacreBLEU's chrF (character 6-grams, beta 2).
* ``--lowercase_bleu sacrebleu`` adds ``<split>_bleu_lc``: the same sacreBLEU call with ``lowercase=True``.
* ``--lowercase_bleu moses`` adds ``<split>_bleu_lc_tok``: hypotheses and references are lower-cased,
  punctuation-normalized and tokenized with the Moses tools (`sacremoses`: `MosesPunctNormalizer(lang)`,
  `MosesTokenizer(lang).tokenize(escape=True)`), exactly the pipeline that made Multi30k's
  ``tok/*.lc.norm.tok.*`` files (it reproduces test2016's tokenized references byte for byte), then scored with
  `corpus_bleu(..., tokenize="none")`. This is the "lower-cased tokenized BLEU" of most Multi30k papers.

Summarization (`--objective summarization`): `--train_file`, `--validation_file`, `--test_file` are data files
(csv/tsv/json/jsonl/parquet) of document/summary pairs, one a row, in `--text_column` (default "document") and
`--summary_column` (default "summary"); or `--dataset_name` (a `save_to_disk` folder or a cached name) with those
columns in its splits. With `--predict_with_generate` the evaluation reports ROUGE-1/2/L (`metrics.rouge_scores`,
the `rouge-score` package) of the generated summaries, and `--generation_num_beams`, `--length_penalty`,
`--no_repeat_ngram_size` and `--generation_max_length` shape them. `benchmarks/summarization_headings.py` trains
one on the offline WikiText-2 section-heading task (`data.seq2seq.wikitext_heading_pairs`).

Denoising (`--objective denoising`, monolingual `--train_file` text, one document per line): BART text infilling
(`--noise infilling`, default: spans with Poisson(`--poisson_lambda` 3) lengths covering `--mask_ratio` 30% of the
tokens, each replaced by one `<mask>`; `--permute_sentences` shuffles sentences first, off by default), the
target being the original text; or T5 span corruption (`--noise t5`: `--noise_density` 15% of the tokens in spans
of mean length `--mean_noise_span_length` 3, each replaced by a sentinel `<extra_id_N>`; the target is the dropped
spans, each after its sentinel, as T5).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import SequentialSampler
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    set_seed,
)

from .._io import atomic_write_text
from ..data import DataError
from ..data.common import PerExampleRandom
from ..data.seq2seq import (
    DenoisingCollator,
    ParallelFiles,
    Split,
    TokenBudgetBatchSampler,
    WithoutNoneLabels,
    add_denoising_tokens,
    as_dataset,
    load_denoising_splits,
    load_summarization_splits,
    load_translation_splits,
    tokenize_split,
)
from ..metrics import decode_generations, require_package, rouge_scores, translation_scores
from ..tokenization import sync_config_with_tokenizer
from . import common
from .common import (
    SetEpochCallback,
    TokenizerModelArguments,
    evaluation_only,
    finish_run,
    load_or_train_tokenizer,
    load_saved_model,
    model_kwargs,
    parse_overrides,
    preset_config,
    run_cli,
    train_and_save,
)

logger = logging.getLogger("hf_bigmodel.pretrain_seq2seq")

ARCH = "transformer"
PREDICTIONS_FILE = "generated_predictions.txt"


@dataclass
class Seq2SeqModelArguments(TokenizerModelArguments):
    preset: str = field(
        default="transformer-multi30k",
        metadata={"help": "Config preset to train from scratch (see `hf_bigmodel.list_presets('transformer')`)."},
    )
    config_name: str | None = field(
        default=None,
        metadata={"help": "Build from this saved config (folder or config.json) instead of a preset, e.g. Marian."},
    )
    tokenizer_kind: str = field(
        default="unigram",
        metadata={"help": "Joint tokenizer to train if none is given: unigram or bpe.", "choices": ["unigram", "bpe"]},
    )
    tokenizer_vocab_size: int = field(default=8000, metadata={"help": "Vocabulary size of the trained tokenizer."})


@dataclass
class Seq2SeqDataArguments:
    objective: str = field(
        default="translation",
        metadata={
            "help": "translation (parallel text), summarization (document/summary pairs) or denoising (plain text).",
            "choices": ["translation", "summarization", "denoising"],
        },
    )
    source_lang: str | None = field(default=None, metadata={"help": "Source language code, e.g. de."})
    target_lang: str | None = field(default=None, metadata={"help": "Target language code, e.g. en."})
    train_file: list[str] | None = field(
        default=None,
        metadata={
            "help": "translation: PREFIX of PREFIX.<source_lang> / PREFIX.<target_lang>; denoising: text files."
        },
    )
    validation_file: list[str] | None = field(default=None, metadata={"help": "Like --train_file, for evaluation."})
    test_file: list[str] | None = field(default=None, metadata={"help": "Like --train_file, for --do_predict."})
    train_source_file: str | None = field(default=None, metadata={"help": "Source side of the training pairs."})
    train_target_file: str | None = field(default=None, metadata={"help": "Target side of the training pairs."})
    validation_source_file: str | None = field(default=None, metadata={"help": "Source side, validation."})
    validation_target_file: str | None = field(default=None, metadata={"help": "Target side, validation."})
    test_source_file: str | None = field(default=None, metadata={"help": "Source side, test (target optional)."})
    test_target_file: str | None = field(default=None, metadata={"help": "Target side, test."})
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A `datasets` dataset with a translation column (save_to_disk folder or name)."},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset configuration name."})
    translation_column: str = field(default="translation", metadata={"help": "Column of {lang: text} rows."})
    text_column: str = field(default="document", metadata={"help": "summarization: the document column."})
    summary_column: str = field(default="summary", metadata={"help": "summarization: the summary column."})
    no_repeat_ngram_size: int | None = field(
        default=None, metadata={"help": "Generation at eval and predict never repeats an n-gram of this size."}
    )
    max_source_length: int = field(default=256, metadata={"help": "Longest source in tokens (with </s>)."})
    max_target_length: int = field(default=256, metadata={"help": "Longest target in tokens (with </s>)."})
    truncate_long_sequences: bool = field(
        default=False, metadata={"help": "Cut longer sequences to the maximum instead of stopping with an error."}
    )
    skip_empty_pairs: bool = field(
        default=False, metadata={"help": "Drop pairs with an empty side instead of stopping with an error."}
    )
    max_tokens_per_batch: int | None = field(
        default=None,
        metadata={
            "help": "Batch by tokens: each training batch holds pairs of similar length with at most this many "
            "padded source + target tokens (replaces --per_device_train_batch_size)."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training pairs."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N validation pairs."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Use only the first N test pairs."})
    length_penalty: float = field(
        default=1.0, metadata={"help": "Beam-search length penalty (score / length**penalty) at eval and predict."}
    )
    bleu_tokenize: str = field(default="13a", metadata={"help": "sacreBLEU tokenizer for <split>_bleu."})
    lowercase_bleu: str = field(
        default="none",
        metadata={
            "help": "Also report lower-cased BLEU: sacrebleu (<split>_bleu_lc: lowercase=True, 13a) or moses "
            "(<split>_bleu_lc_tok: lower-cased Moses-normalized/tokenized text, tokenize=none).",
            "choices": ["none", "sacrebleu", "moses"],
        },
    )
    noise: str = field(
        default="infilling",
        metadata={"help": "Denoising noise: infilling (BART) or t5.", "choices": ["infilling", "t5"]},
    )
    mask_ratio: float = field(default=0.3, metadata={"help": "infilling: fraction of tokens masked."})
    poisson_lambda: float = field(default=3.0, metadata={"help": "infilling: mean span length (Poisson lambda)."})
    permute_sentences: bool = field(default=False, metadata={"help": "infilling: shuffle sentences first."})
    noise_density: float = field(default=0.15, metadata={"help": "t5: fraction of tokens corrupted."})
    mean_noise_span_length: float = field(default=3.0, metadata={"help": "t5: mean corrupted span length."})


ARGUMENTS = (Seq2SeqModelArguments, Seq2SeqDataArguments, Seq2SeqTrainingArguments)


def parse_args(argv: list[str]) -> tuple[Seq2SeqModelArguments, Seq2SeqDataArguments, Seq2SeqTrainingArguments]:
    """Parse the command line (or one .json/.yaml file) into the three argument dataclasses."""
    return common.parse_args(argv, ARGUMENTS)


def build_tokenizer(model_args: Seq2SeqModelArguments, train: Split, training_args: Seq2SeqTrainingArguments):
    """A saved tokenizer, or a joint one trained on both sides of the training split (saved in output_dir)."""
    import datasets

    texts = (train.sources + (train.targets or [])) if train is not None else []
    return load_or_train_tokenizer(model_args, training_args, kind=model_args.tokenizer_kind,
                                   dataset=datasets.Dataset.from_dict({"text": texts}), seq2seq=True,
                                   show_progress=False)  # fmt: skip


def build_model(model_args: Seq2SeqModelArguments, tokenizer, training_args: Seq2SeqTrainingArguments):
    """The model: from a saved folder, a saved config, or a preset; vocabulary and special ids from the tokenizer."""
    if model_args.model_name_or_path is not None:
        return load_saved_model(AutoModelForSeq2SeqLM, model_args, tokenizer)
    ids = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id") for name in ("pad", "bos", "eos")}
    # Marian convention: the decoder starts from the pad token; any special id works if the config says so.
    defaults = {"vocab_size": len(tokenizer), **ids, "decoder_start_token_id": tokenizer.pad_token_id}
    if model_args.config_name is not None:
        config = AutoConfig.from_pretrained(
            model_args.config_name, **defaults, **parse_overrides(model_args.config_overrides)
        )
    else:
        config = preset_config(ARCH, model_args, defaults, hint=" (or pass --config_name / --model_name_or_path)")
    sync_config_with_tokenizer(config, tokenizer, pad_to_multiple_of=8)
    if hasattr(config, "decoder_vocab_size"):  # Marian keeps a second vocabulary size for the decoder
        config.decoder_vocab_size = config.vocab_size
    if not config.is_encoder_decoder:
        raise DataError(f"The config ({config.model_type}) is not an encoder-decoder model.")
    # Label smoothing inside the model (config.label_smoothing) is normalised by num_items_in_batch, so gradient
    # accumulation stays exact; Trainer's label smoother is not, and would smooth a second time.
    if training_args.label_smoothing_factor > 0 and hasattr(config, "label_smoothing"):
        config.label_smoothing = training_args.label_smoothing_factor
        training_args.label_smoothing_factor = 0.0
        logger.info("Label smoothing %.3g applied by the model (config.label_smoothing)", config.label_smoothing)
    return AutoModelForSeq2SeqLM.from_config(config, **model_kwargs(model_args))


def _max_positions(config) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "max_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class TranslationTrainer(Seq2SeqTrainer):
    """Seq2SeqTrainer whose metrics (with --predict_with_generate) score the generated translations against the
    raw reference text of the dataset being evaluated (not the decoded labels, which went through the tokenizer)."""

    def __init__(self, *args, references: dict[int, list[str]], data_args: Seq2SeqDataArguments, **kwargs):
        super().__init__(*args, compute_metrics=self._metrics, **kwargs)
        self._references = references  # id(dataset) -> raw reference texts
        self._current: list[str] | None = None
        self._data_args = data_args

    def _get_eval_sampler(self, eval_dataset):
        # Predictions are matched with the references (and written to generated_predictions.txt) by position, so
        # evaluation keeps the dataset's order. transformers 5 also groups evaluation batches by length under
        # --train_sampling_strategy group_by_length, which would pair each translation with another sentence.
        return SequentialSampler(eval_dataset) if eval_dataset is not None else None

    def get_train_dataloader(self):
        max_tokens = self._data_args.max_tokens_per_batch
        if not max_tokens:
            return super().get_train_dataloader()
        from torch.utils.data import DataLoader

        data = self.train_dataset
        clean = data.dataset if isinstance(data, PerExampleRandom) else data  # denoising noises rows per example
        sources = [len(ids) for ids in clean["input_ids"]]
        # Denoising makes its labels from the clean source: the target is as long as it.
        targets = [len(ids) for ids in clean["labels"]] if "labels" in clean.column_names else sources
        sampler = TokenBudgetBatchSampler(sources, targets, max_tokens, self.args.seed)
        loader = DataLoader(
            data if data is not clean else self._remove_unused_columns(data, description="Training"),
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(loader)

    def evaluate(self, eval_dataset=None, *args, **kwargs):
        self._current = self._references.get(id(eval_dataset if eval_dataset is not None else self.eval_dataset))
        return super().evaluate(eval_dataset, *args, **kwargs)

    def predict(self, test_dataset, *args, **kwargs):
        self._current = self._references.get(id(test_dataset))
        return super().predict(test_dataset, *args, **kwargs)

    def _metrics(self, prediction) -> dict[str, float]:
        if not self.args.predict_with_generate:
            return {}
        hypotheses = decode_generations(self.processing_class, prediction.predictions)
        references = self._current
        if references is None or len(references) != len(hypotheses):
            references = decode_generations(self.processing_class, prediction.label_ids)
        data_args = self._data_args
        if data_args.objective == "summarization":
            scores = rouge_scores(hypotheses, references)
        else:
            scores = translation_scores(hypotheses, references, data_args.bleu_tokenize, data_args.lowercase_bleu,
                                        data_args.target_lang or "en")  # fmt: skip
        pad = self.processing_class.pad_token_id
        lengths = [int(np.count_nonzero((row != pad) & (row >= 0))) for row in np.asarray(prediction.predictions)]
        scores["gen_len"] = float(np.mean(lengths)) if lengths else 0.0
        return scores


# ----------------------------------------------------------------------------------------------------------------
# The run


def run_seq2seq(
    model_args: Seq2SeqModelArguments, data_args: Seq2SeqDataArguments, training_args: Seq2SeqTrainingArguments
) -> dict:
    """Train/evaluate/predict as the flags say and save; returns all metrics (train_*, eval_*, test_*)."""
    set_seed(training_args.seed)
    denoising = data_args.objective == "denoising"
    if denoising:
        splits = load_denoising_splits(data_args.train_file, data_args.validation_file)
    elif data_args.objective == "summarization":
        if training_args.predict_with_generate:
            require_package("rouge_score.rouge_scorer", "rouge-score", "ROUGE")  # before any training
        files = {split: getattr(data_args, f"{split}_file") for split in ("train", "validation", "test")}
        splits = load_summarization_splits(files, data_args.dataset_name, data_args.dataset_config_name,
                                           data_args.text_column, data_args.summary_column,
                                           data_args.skip_empty_pairs)  # fmt: skip
    else:
        files = {
            split: ParallelFiles(getattr(data_args, f"{split}_file"), getattr(data_args, f"{split}_source_file"),
                                 getattr(data_args, f"{split}_target_file"))
            for split in ("train", "validation", "test")
        }  # fmt: skip
        splits = load_translation_splits(files, data_args.source_lang, data_args.target_lang, data_args.dataset_name,
                                         data_args.dataset_config_name, data_args.translation_column,
                                         data_args.skip_empty_pairs)  # fmt: skip
    if "train" in splits and not training_args.do_train and not evaluation_only(training_args):
        # Training data and no --do_eval/--do_predict of its own: `pretrain` trains, as the other pretrainers do.
        logger.info("Training data given without --do_train: training (add --do_eval or --do_predict alone to "
                    "only evaluate).")  # fmt: skip
        training_args.do_train = True
    if not (training_args.do_train or training_args.do_eval or training_args.do_predict):
        raise DataError("Nothing to do: give training data (--train_file ...), or --do_eval / --do_predict with "
                        "--model_name_or_path.")  # fmt: skip
    if training_args.do_train and "train" not in splits:
        raise DataError("--do_train needs training data: --train_file, --train_source_file or --dataset_name.")
    if "train" not in splits and model_args.tokenizer_name_or_path is None and model_args.model_name_or_path is None:
        raise DataError("Without training data, give --model_name_or_path (or --tokenizer_name_or_path).")
    if training_args.do_predict and "test" not in splits:
        raise DataError("--do_predict needs test data: --test_file or --test_source_file.")
    splits["train"] = splits["train"].head(data_args.max_train_samples) if "train" in splits else None
    if "validation" in splits:
        splits["validation"] = splits["validation"].head(data_args.max_eval_samples)
    if "test" in splits:
        splits["test"] = splits["test"].head(data_args.max_predict_samples)

    tokenizer = build_tokenizer(model_args, splits["train"], training_args)
    if denoising:
        add_denoising_tokens(tokenizer, data_args.noise)
    model = build_model(model_args, tokenizer, training_args)
    limit = _max_positions(model.config)
    for flag in ("max_source_length", "max_target_length"):
        if limit is not None and getattr(data_args, flag) > limit:
            logger.info("--%s %d is more than the model's %d positions: using %d", flag, getattr(data_args, flag),
                        limit, limit)  # fmt: skip
            setattr(data_args, flag, limit)

    generation = model.generation_config
    generation.num_beams = training_args.generation_num_beams or generation.num_beams or 1
    generation.length_penalty = data_args.length_penalty
    if data_args.no_repeat_ngram_size:
        generation.no_repeat_ngram_size = data_args.no_repeat_ngram_size
    generation.max_length = training_args.generation_max_length or data_args.max_target_length
    generation.decoder_start_token_id = model.config.decoder_start_token_id
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(generation, name, getattr(tokenizer, name))

    datasets_, references = {}, {}
    with training_args.main_process_first(desc="tokenizing"):
        for name, split in splits.items():
            if split is None:
                continue
            features = tokenize_split(split, tokenizer, name, data_args.max_source_length,
                                      data_args.max_target_length, data_args.truncate_long_sequences, limit)  # fmt: skip
            datasets_[name] = as_dataset(features)
            if split.targets is not None:
                references[id(datasets_[name])] = split.targets
    if denoising:
        collator = DenoisingCollator(tokenizer, model, training_args.seed, data_args.noise, data_args.mask_ratio,
                                     data_args.poisson_lambda, data_args.permute_sentences, data_args.noise_density,
                                     data_args.mean_noise_span_length)  # fmt: skip
    else:
        collator = WithoutNoneLabels(DataCollatorForSeq2Seq(tokenizer, model=model))
    logger.info(
        "%s; model has %.2fM parameters",
        ", ".join(f"{len(ds)} {name} rows" for name, ds in datasets_.items()),
        model.num_parameters() / 1e6,
    )

    train_dataset, callbacks = datasets_.get("train"), []
    if denoising and train_dataset is not None:
        # Noise drawn per example (seed, epoch, index), not per process: several processes noise as one does.
        train_dataset = PerExampleRandom(train_dataset, collator.noise_example, training_args.seed)
        callbacks.append(SetEpochCallback(train_dataset))
    training_args.remove_unused_columns = True  # drops the "length" column before the model sees a batch
    trainer = TranslationTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        callbacks=callbacks,
        eval_dataset=datasets_.get("validation"),
        data_collator=collator,
        processing_class=tokenizer,
        references=references,
        data_args=data_args,
    )

    metrics: dict[str, float] = {}
    if training_args.do_train:
        metrics.update(train_and_save(trainer, training_args, evaluate=False, use_cache=True))
    if training_args.do_eval and "validation" in datasets_:
        metrics.update(trainer.evaluate(metric_key_prefix="eval"))
    if training_args.do_predict:
        test = datasets_["test"]
        if splits["test"].targets is None:
            test = test.remove_columns([c for c in ("labels",) if c in test.column_names])
        output = trainer.predict(test, metric_key_prefix="test")
        metrics.update(output.metrics)
        if trainer.is_world_process_zero():
            if training_args.predict_with_generate:
                texts = decode_generations(tokenizer, output.predictions)
                atomic_write_text(Path(training_args.output_dir) / PREDICTIONS_FILE, "".join(t + "\n" for t in texts))
            else:
                logger.warning("--do_predict without --predict_with_generate: no %s written", PREDICTIONS_FILE)
    languages = [lang for lang in (data_args.source_lang, data_args.target_lang) if lang] or None
    train_tokens = int(sum(datasets_["train"]["length"])) if training_args.do_train else 0
    finish_run(trainer, training_args, metrics, (model_args, data_args), "tokenizer", publish=training_args.do_train,
               language=languages, extra={"train_tokens": train_tokens})  # fmt: skip
    return metrics


def main(argv: list[str] | None = None) -> int:
    """`hf-bigmodel pretrain transformer ...`: 0 on success, 2 with a message on bad input."""

    def run(*arguments) -> None:
        metrics = run_seq2seq(*arguments)
        wanted = ("_bleu", "_chrf", "_bleu_lc", "_bleu_lc_tok", "_rouge1", "_rouge2", "_rougeL", "_loss")
        shown = {k: v for k, v in metrics.items() if k.endswith(wanted)}
        if shown:
            print(" ".join(f"{k}={v:.4g}" for k, v in sorted(shown.items())))

    return run_cli(f"hf-bigmodel pretrain {ARCH}", ARGUMENTS, run, argv)


__all__ = [
    "Seq2SeqDataArguments",
    "Seq2SeqModelArguments",
    "TranslationTrainer",
    "main",
    "parse_args",
    "run_seq2seq",
]
