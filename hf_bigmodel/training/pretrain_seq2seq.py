"""`hf-bigmodel pretrain transformer`: train an encoder-decoder model with `Seq2SeqTrainer`, for translation
(parallel text) or as a denoising autoencoder (monolingual text).

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

Denoising (`--objective denoising`, monolingual `--train_file` text, one document per line): BART text infilling
(`--noise infilling`, default: spans with Poisson(`--poisson_lambda` 3) lengths covering `--mask_ratio` 30% of the
tokens, each replaced by one `<mask>`; `--permute_sentences` shuffles sentences first, off by default), the
target being the original text; or T5 span corruption (`--noise t5`: `--noise_density` 15% of the tokens in spans
of mean length `--mean_noise_span_length` 3, each replaced by a sentinel `<extra_id_N>`; the target is the dropped
spans, each after its sentinel, as T5).
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import transformers
from torch.utils.data import SequentialSampler
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    HfArgumentParser,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    set_seed,
)

from .. import registry
from .._io import atomic_write_text
from ..data import DataError
from ..models import ARCHITECTURES
from ..tokenization import check_tokenizer_matches_config, sync_config_with_tokenizer, train_tokenizer
from .pretrain import _parse_overrides, finish_run, resolve_checkpoint

logger = logging.getLogger("hf_bigmodel.pretrain_seq2seq")

ARCH = "transformer"
PREDICTIONS_FILE = "generated_predictions.txt"
MASK_TOKEN = "<mask>"
NUM_SENTINELS = 100
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")


@dataclass
class Seq2SeqModelArguments:
    preset: str = field(
        default="transformer-multi30k",
        metadata={"help": "Config preset to train from scratch (see `hf_bigmodel.list_presets('transformer')`)."},
    )
    config_overrides: str | None = field(
        default=None, metadata={"help": "Override preset fields, e.g. 'num_hidden_layers=3,label_smoothing=0.1'."}
    )
    config_name: str | None = field(
        default=None,
        metadata={"help": "Build from this saved config (folder or config.json) instead of a preset, e.g. Marian."},
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Continue training a saved model folder instead of starting from scratch."}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Use this saved tokenizer instead of training one on the training data."}
    )
    tokenizer_kind: str = field(
        default="unigram",
        metadata={"help": "Joint tokenizer to train if none is given: unigram or bpe.", "choices": ["unigram", "bpe"]},
    )
    tokenizer_vocab_size: int = field(default=8000, metadata={"help": "Vocabulary size of the trained tokenizer."})
    attn_implementation: str | None = field(default=None, metadata={"help": "Attention backend: sdpa or eager."})


@dataclass
class Seq2SeqDataArguments:
    objective: str = field(
        default="translation",
        metadata={
            "help": "translation (parallel text) or denoising (plain text).",
            "choices": ["translation", "denoising"],
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


def parse_args(argv: list[str]) -> tuple[Seq2SeqModelArguments, Seq2SeqDataArguments, Seq2SeqTrainingArguments]:
    """Parse the command line (or one .json/.yaml file) into the three argument dataclasses."""
    parser = HfArgumentParser((Seq2SeqModelArguments, Seq2SeqDataArguments, Seq2SeqTrainingArguments))
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        loader = parser.parse_json_file if argv[0].endswith(".json") else parser.parse_yaml_file
        return loader(os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


# ----------------------------------------------------------------------------------------------------------------
# Reading parallel text


def read_lines(path: str | os.PathLike) -> list[str]:
    """Lines of a UTF-8 text file (`.gz` is decompressed), without their line breaks.

    Raises `FileNotFoundError` or `DataError` naming the file and the line of the first invalid byte.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"Data file not found: {path}. Check the path (and the current directory).")
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a text file.")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path} is not valid UTF-8: byte {data[err.start : err.start + 1]!r} at line {line}. Convert it to "
            f"UTF-8 first (e.g. `iconv -f latin1 -t utf-8`)."
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final line break ends the last line; it does not start an empty one
    return [line.removesuffix("\r") for line in lines]


def _resolve_prefix(prefix: str, lang: str) -> Path:
    for candidate in (Path(f"{prefix}.{lang}"), Path(f"{prefix}.{lang}.gz")):
        if candidate.expanduser().exists():
            return candidate.expanduser()
    raise FileNotFoundError(
        f"No file {prefix}.{lang} (or {prefix}.{lang}.gz) for language {lang!r}. --train_file/--validation_file/"
        f"--test_file take a PREFIX such that PREFIX.<source_lang> and PREFIX.<target_lang> exist; or name the files "
        f"with --<split>_source_file and --<split>_target_file."
    )


def read_parallel(
    source_path: str | os.PathLike, target_path: str | os.PathLike | None, skip_empty: bool = False
) -> tuple[list[str], list[str] | None, list[int]]:
    """(sources, targets, line numbers) of two line-aligned files; `target_path` may be None (sources only).

    Raises `DataError` if the line counts differ (naming both files and counts) or a pair has an empty side
    (naming the file and line), unless `skip_empty` drops such pairs (with a warning).
    """
    sources = read_lines(source_path)
    targets = read_lines(target_path) if target_path is not None else None
    if targets is not None and len(sources) != len(targets):
        raise DataError(
            f"Parallel files have different line counts: {source_path} has {len(sources)} lines but {target_path} "
            f"has {len(targets)}. Line i of one must be the translation of line i of the other; check that the "
            f"files belong together and that no text contains a stray line break."
        )
    keep_src, keep_tgt, numbers = [], [] if targets is not None else None, []
    skipped = 0
    for index, source in enumerate(sources):
        target = targets[index] if targets is not None else None
        empty = [
            (path, text)
            for path, text in ((source_path, source), (target_path, target))
            if path is not None and not text.strip()
        ]
        if empty:
            if skip_empty:
                skipped += 1
                continue
            path = empty[0][0]
            raise DataError(
                f"Empty line pair: line {index + 1} of {path} is empty. Remove the pair from both files or pass "
                f"--skip_empty_pairs to drop pairs with an empty side."
            )
        keep_src.append(source)
        if keep_tgt is not None:
            keep_tgt.append(target)
        numbers.append(index + 1)
    if skipped:
        logger.warning("Skipped %d pair(s) with an empty side in %s", skipped, source_path)
    if not keep_src:
        raise DataError(f"{source_path} holds no usable line (every pair has an empty side).")
    return keep_src, keep_tgt, numbers


@dataclass
class Split:
    """One split of raw text: sources, targets (None for a source-only test set), and where each row came from."""

    sources: list[str]
    targets: list[str] | None
    origins: list[str]  # "FILE line N" or "row N of split S", for error messages

    def head(self, n: int | None) -> Split:
        if n is None:
            return self
        return Split(self.sources[:n], None if self.targets is None else self.targets[:n], self.origins[:n])


def _split_files(data_args: Seq2SeqDataArguments, split: str) -> tuple[Path | None, Path | None]:
    prefix = getattr(data_args, f"{split}_file")
    source = getattr(data_args, f"{split}_source_file")
    target = getattr(data_args, f"{split}_target_file")
    if prefix:
        if source or target:
            raise DataError(f"Give either --{split}_file or --{split}_source_file/--{split}_target_file, not both.")
        if len(prefix) != 1:
            raise DataError(f"--{split}_file takes one PREFIX for translation, got {len(prefix)}: {prefix}.")
        if not data_args.source_lang or not data_args.target_lang:
            raise DataError(f"--{split}_file PREFIX needs --source_lang and --target_lang (e.g. de and en).")
        return _resolve_prefix(prefix[0], data_args.source_lang), _resolve_prefix(prefix[0], data_args.target_lang)
    if target and not source:
        raise DataError(f"--{split}_target_file needs --{split}_source_file.")
    if source and not target and split != "test":
        raise DataError(f"--{split}_source_file needs --{split}_target_file (only test sources may come alone).")
    return (Path(source) if source else None), (Path(target) if target else None)


def load_translation_splits(data_args: Seq2SeqDataArguments) -> dict[str, Split]:
    """The train/validation/test splits given on the command line (files or a `datasets` dataset)."""
    splits: dict[str, Split] = {}
    if data_args.dataset_name is not None:
        if any(_split_files(data_args, s)[0] for s in ("train", "validation", "test")):
            raise DataError("Give either text files or --dataset_name, not both.")
        return _load_dataset_splits(data_args)
    for split in ("train", "validation", "test"):
        source, target = _split_files(data_args, split)
        if source is None:
            continue
        sources, targets, numbers = read_parallel(source, target, data_args.skip_empty_pairs)
        splits[split] = Split(sources, targets, [f"{source} line {n}" for n in numbers])
    return splits


def _load_dataset_splits(data_args: Seq2SeqDataArguments) -> dict[str, Split]:
    import datasets

    if not data_args.source_lang or not data_args.target_lang:
        raise DataError("--dataset_name needs --source_lang and --target_lang (keys of the translation column).")
    path = Path(data_args.dataset_name).expanduser()
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        raw = datasets.load_from_disk(str(path))
    else:
        raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
    if not isinstance(raw, datasets.DatasetDict):
        raw = datasets.DatasetDict({"train": raw})
    names = {"train": "train", "validation": "validation" if "validation" in raw else "valid", "test": "test"}
    splits: dict[str, Split] = {}
    column = data_args.translation_column
    for split, name in names.items():
        if name not in raw:
            continue
        ds = raw[name]
        if column not in ds.column_names:
            raise DataError(
                f"Dataset split {name!r} has no column {column!r}; its columns are {ds.column_names}. Pass "
                f"--translation_column naming the column of {{lang: text}} rows."
            )
        sources, targets, origins = [], [], []
        for index, row in enumerate(ds[column]):
            pair = [row.get(lang) if isinstance(row, dict) else None for lang in (data_args.source_lang,
                                                                                data_args.target_lang)]  # fmt: skip
            for lang, text in zip((data_args.source_lang, data_args.target_lang), pair):
                if not isinstance(text, str):
                    raise DataError(
                        f"Row {index} of split {name!r}: {column!r} has no {lang!r} text (got {row!r}). Rows must "
                        f"be {{{data_args.source_lang!r}: ..., {data_args.target_lang!r}: ...}}."
                    )
            if not pair[0].strip() or not pair[1].strip():
                if data_args.skip_empty_pairs:
                    continue
                raise DataError(
                    f"Empty line pair: row {index} of split {name!r} has an empty side. Remove it or pass "
                    f"--skip_empty_pairs."
                )
            sources.append(pair[0])
            targets.append(pair[1])
            origins.append(f"row {index} of split {name!r}")
        splits[split] = Split(sources, targets, origins)
    return splits


def load_denoising_splits(data_args: Seq2SeqDataArguments) -> dict[str, Split]:
    """Monolingual text files: each non-empty line is one document (input and target before noising)."""
    splits = {}
    for split in ("train", "validation"):
        files = getattr(data_args, f"{split}_file")
        if not files:
            continue
        texts, origins = [], []
        for file in files:
            for number, line in enumerate(read_lines(file), start=1):
                if line.strip():
                    texts.append(line)
                    origins.append(f"{file} line {number}")
        if not texts:
            raise DataError(f"The {split} files {files} hold no text.")
        splits[split] = Split(texts, None, origins)
    if "train" not in splits:
        raise DataError("--objective denoising needs --train_file with plain text (one document per line).")
    return splits


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer, model, features


def build_tokenizer(model_args: Seq2SeqModelArguments, train: Split, training_args: Seq2SeqTrainingArguments):
    """A saved tokenizer, or a joint one trained on both sides of the training split (saved in output_dir)."""
    source = model_args.tokenizer_name_or_path or model_args.model_name_or_path
    if source is not None:
        return AutoTokenizer.from_pretrained(source)
    import datasets

    tokenizer_dir = Path(training_args.output_dir) / "tokenizer"
    with training_args.main_process_first(desc="tokenizer training"):
        if (tokenizer_dir / "tokenizer.json").is_file():
            return AutoTokenizer.from_pretrained(tokenizer_dir)
        texts = train.sources + (train.targets or [])
        return train_tokenizer(
            kind=model_args.tokenizer_kind,
            dataset=datasets.Dataset.from_dict({"text": texts}),
            vocab_size=model_args.tokenizer_vocab_size,
            output_dir=tokenizer_dir,
            seq2seq=True,
            show_progress=False,
        )


def add_denoising_tokens(tokenizer, noise: str) -> None:
    """Add `<mask>` (infilling) or the sentinels `<extra_id_0..99>` (t5) as special tokens if missing."""
    if noise == "infilling" and tokenizer.mask_token is None:
        tokenizer.add_special_tokens({"mask_token": MASK_TOKEN})
    elif noise == "t5":
        missing = [f"<extra_id_{i}>" for i in range(NUM_SENTINELS) if f"<extra_id_{i}>" not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)


def build_model(model_args: Seq2SeqModelArguments, tokenizer, training_args: Seq2SeqTrainingArguments):
    """The model: from a saved folder, a saved config, or a preset; vocabulary and special ids from the tokenizer."""
    extra = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    if model_args.model_name_or_path is not None:
        config = AutoConfig.from_pretrained(model_args.model_name_or_path)
        check_tokenizer_matches_config(tokenizer, config)
        return AutoModelForSeq2SeqLM.from_pretrained(model_args.model_name_or_path, **extra)
    ids = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id") for name in ("pad", "bos", "eos")}
    # Marian convention: the decoder starts from the pad token; any special id works if the config says so.
    overrides = {"vocab_size": len(tokenizer), **ids, "decoder_start_token_id": tokenizer.pad_token_id}
    overrides.update(_parse_overrides(model_args.config_overrides))
    if model_args.config_name is not None:
        config = AutoConfig.from_pretrained(model_args.config_name, **overrides)
    else:
        presets = registry.list_presets(ARCH) if ARCH in ARCHITECTURES else []
        if model_args.preset not in presets:
            raise DataError(
                f"--preset {model_args.preset!r} is not a {ARCH} preset; choose from {', '.join(presets) or 'none'} "
                f"(or pass --config_name / --model_name_or_path)."
            )
        config = registry.create_config(model_args.preset, **overrides)
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
    return AutoModelForSeq2SeqLM.from_config(config, **extra)


def _max_positions(config) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "max_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def tokenize_split(
    split: Split, tokenizer, data_args: Seq2SeqDataArguments, name: str, max_positions: int | None = None
) -> list[dict[str, list[int]]]:
    """Token ids of every pair (`input_ids`, and `labels` when the split has targets), checked against the
    maximum lengths: an error names the first row that is too long, unless --truncate_long_sequences."""
    features = [{"input_ids": ids} for ids in tokenizer(split.sources, add_special_tokens=True)["input_ids"]]
    sides = [("input_ids", "source", data_args.max_source_length, "--max_source_length")]
    if split.targets is not None:
        for feature, ids in zip(features, tokenizer(text_target=split.targets)["input_ids"]):
            feature["labels"] = ids
        sides.append(("labels", "target", data_args.max_target_length, "--max_target_length"))
    eos = tokenizer.eos_token_id
    room = f" (up to the model's max_position_embeddings, {max_positions})" if max_positions else ""
    for key, side, limit, flag in sides:
        for index, feature in enumerate(features):
            ids = feature[key]
            if len(ids) <= limit:
                continue
            if not data_args.truncate_long_sequences:
                raise DataError(
                    f"The {name} {side} at {split.origins[index]} has {len(ids)} tokens, more than the maximum "
                    f"{flag} {limit}. Raise {flag}{room} or pass "
                    f"--truncate_long_sequences to cut such {side}s to {limit} tokens."
                )
            feature[key] = [*ids[: limit - 1], eos] if ids[-1] == eos else ids[:limit]
    return features


def as_dataset(features: list[dict[str, list[int]]]):
    """A `datasets.Dataset` (with a "length" column for `--train_sampling_strategy group_by_length`)."""
    import datasets

    columns = {key: [f[key] for f in features] for key in features[0]}
    columns["length"] = [len(f["input_ids"]) + len(f.get("labels", ())) for f in features]
    return datasets.Dataset.from_dict(columns)


# ----------------------------------------------------------------------------------------------------------------
# Denoising


def infilling_noise(
    ids: Sequence[int],
    mask_id: int,
    rng: np.random.Generator,
    mask_ratio: float = 0.3,
    poisson_lambda: float = 3.0,
) -> tuple[list[int], list[int]]:
    """BART text infilling on one sequence (without its final eos): exactly round(mask_ratio * n) tokens are
    removed in spans whose lengths are drawn from Poisson(poisson_lambda); each span becomes one `mask_id`, and a
    span of length 0 inserts a `mask_id`. Returns (noised ids, span lengths)."""
    n = len(ids)
    to_mask = int(round(n * mask_ratio))
    if n == 0 or to_mask == 0:
        return list(ids), []
    lengths: list[int] = []
    while sum(lengths) < to_mask:
        lengths.append(int(rng.poisson(poisson_lambda)))
    lengths[-1] -= sum(lengths) - to_mask  # the last span is cut so that exactly to_mask tokens are masked
    kept = n - to_mask
    # Spans go into the gaps between kept tokens (kept + 1 gaps), in random order; spans landing in the same gap
    # merge into one run, which one mask covers.
    gaps = rng.integers(0, kept + 1, size=len(lengths))
    order = rng.permutation(len(lengths))
    masked = np.zeros(n, dtype=bool)
    plan: dict[int, list[int]] = {}
    for span in order:
        plan.setdefault(int(gaps[span]), []).append(lengths[span])
    out: list[int] = []
    position = 0
    for gap in range(kept + 1):
        for length in plan.get(gap, []):
            masked[position : position + length] = True
            position += length
        if gap in plan:
            out.append(mask_id)
        if gap < kept:
            out.append(ids[position])
            position += 1
    return out, lengths


def t5_span_corruption(
    ids: Sequence[int],
    sentinel_ids: Sequence[int],
    eos_id: int,
    rng: np.random.Generator,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
) -> tuple[list[int], list[int]]:
    """T5 span corruption on one sequence (without eos): round(noise_density * n) tokens in
    round(noise / mean_span) spans, each replaced by the next sentinel in the input; the target lists each
    sentinel followed by the tokens it replaced, then eos. Returns (input ids, target ids)."""
    n = len(ids)
    num_noise = min(max(int(round(n * noise_density)), 1), n - 1) if n > 1 else 0
    if num_noise == 0:
        return [*ids, eos_id], [eos_id]
    num_spans = max(1, min(int(round(num_noise / mean_noise_span_length)), num_noise, n - num_noise,
                           len(sentinel_ids)))  # fmt: skip

    def segment(total: int, parts: int) -> list[int]:  # random split of `total` items into `parts` non-empty runs
        cuts = np.sort(rng.choice(np.arange(1, total), size=parts - 1, replace=False)) if parts > 1 else []
        return np.diff([0, *cuts, total]).tolist()

    noise_lengths = segment(num_noise, num_spans)
    keep_lengths = segment(n - num_noise, num_spans)
    inputs, targets, position = [], [], 0
    for span, (keep, noise) in enumerate(zip(keep_lengths, noise_lengths)):
        inputs.extend(ids[position : position + keep])
        position += keep
        inputs.append(sentinel_ids[span])
        targets.append(sentinel_ids[span])
        targets.extend(ids[position : position + noise])
        position += noise
    return [*inputs, eos_id], [*targets, eos_id]


def permute_sentences(ids: Sequence[int], sentence_end: np.ndarray, rng: np.random.Generator) -> list[int]:
    """Shuffle the sentences of `ids` (a sentence ends after a token whose `sentence_end` entry is True)."""
    sentences, start = [], 0
    for i, token in enumerate(ids):
        if sentence_end[token]:
            sentences.append(list(ids[start : i + 1]))
            start = i + 1
    if start < len(ids):
        sentences.append(list(ids[start:]))
    return [token for index in rng.permutation(len(sentences)) for token in sentences[index]]


class DenoisingCollator:
    """Noises each example on the fly (new noise every epoch), then pads like `DataCollatorForSeq2Seq`.

    Examples hold the clean `input_ids` (ending with eos). Infilling: labels = the clean ids, input = infilled
    (optionally sentence-permuted first). t5: input and labels from `t5_span_corruption`.
    """

    def __init__(self, tokenizer, model, data_args: Seq2SeqDataArguments, seed: int):
        self.tokenizer = tokenizer
        self.args = data_args
        self.rng = np.random.default_rng(seed)
        self.pad = DataCollatorForSeq2Seq(tokenizer, model=model)
        self.eos = tokenizer.eos_token_id
        vocab = tokenizer.get_vocab()
        self.mask_id = tokenizer.mask_token_id
        self.sentinels = [vocab[f"<extra_id_{i}>"] for i in range(NUM_SENTINELS)] if data_args.noise == "t5" else []
        self.sentence_end = np.zeros(len(tokenizer), dtype=bool)
        if data_args.permute_sentences:
            for token, index in vocab.items():
                self.sentence_end[index] = bool(_SENTENCE_END.search(tokenizer.convert_tokens_to_string([token])))

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        noised = []
        for feature in features:
            clean = list(feature["input_ids"])
            body = clean[:-1] if clean and clean[-1] == self.eos else clean
            if self.args.noise == "t5":
                inputs, labels = t5_span_corruption(body, self.sentinels, self.eos, self.rng,
                                                    self.args.noise_density, self.args.mean_noise_span_length)  # fmt: skip
            else:
                source = permute_sentences(body, self.sentence_end, self.rng) if self.args.permute_sentences else body
                masked, _ = infilling_noise(source, self.mask_id, self.rng, self.args.mask_ratio,
                                            self.args.poisson_lambda)  # fmt: skip
                inputs, labels = [*masked, self.eos], [*body, self.eos]
            noised.append({"input_ids": inputs, "attention_mask": [1] * len(inputs), "labels": labels})
        return self.pad(noised)


class _WithoutNoneLabels:
    """DataCollatorForSeq2Seq sets `labels=None` for a source-only batch; Seq2SeqTrainer would then see "labels" in
    the inputs and run a loss forward without decoder inputs. Dropping the key makes it only generate."""

    def __init__(self, collator: DataCollatorForSeq2Seq):
        self.collator = collator

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        return {key: value for key, value in self.collator(features).items() if value is not None}


# ----------------------------------------------------------------------------------------------------------------
# Metrics


def _moses_lowercase_tokenize(texts: list[str], lang: str) -> list[str]:
    try:
        from sacremoses import MosesPunctNormalizer, MosesTokenizer
    except ImportError as err:  # pragma: no cover - sacremoses is a dependency
        raise DataError("--lowercase_bleu moses needs sacremoses: pip install sacremoses") from err
    normalizer, tokenizer = MosesPunctNormalizer(lang=lang), MosesTokenizer(lang=lang)
    return [tokenizer.tokenize(normalizer.normalize(t.lower()), escape=True, return_str=True) for t in texts]


def translation_scores(
    hypotheses: list[str],
    references: list[str],
    bleu_tokenize: str = "13a",
    lowercase_bleu: str = "none",
    lang: str = "en",
) -> dict[str, float]:
    """sacreBLEU BLEU and chrF of detokenized hypotheses, plus the lower-cased variants (see the module docstring)."""
    import sacrebleu

    scores = {
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references], tokenize=bleu_tokenize).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
    }
    if lowercase_bleu == "sacrebleu":
        scores["bleu_lc"] = sacrebleu.corpus_bleu(
            hypotheses, [references], tokenize=bleu_tokenize, lowercase=True
        ).score
    elif lowercase_bleu == "moses":
        hyps, refs = _moses_lowercase_tokenize(hypotheses, lang), _moses_lowercase_tokenize(references, lang)
        # force: the text is tokenized on purpose (sacreBLEU would warn that it looks tokenized).
        scores["bleu_lc_tok"] = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True).score
    return scores


def decode_generations(tokenizer, ids: np.ndarray) -> list[str]:
    """Text of generated (or label) ids: -100 padding dropped, special tokens skipped, whitespace stripped."""
    ids = np.where(np.asarray(ids) < 0, tokenizer.pad_token_id, ids)
    return [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]


class TokenBudgetBatchSampler:
    """Batches by tokens, as fairseq's --max-tokens: pairs sorted by (source, target) length (ties in a seeded
    random order) are cut greedily into batches whose padded size, rows x (longest source + longest target), stays
    within `max_tokens`; the batch order is shuffled each epoch (`set_epoch`, called by Trainer), so resuming
    replays the same batches. Batches are fixed across epochs, so the number of steps per epoch is constant."""

    def __init__(self, source_lengths: Sequence[int], target_lengths: Sequence[int], max_tokens: int, seed: int = 0):
        longest = max(s + t for s, t in zip(source_lengths, target_lengths))
        if max_tokens < longest:
            raise DataError(
                f"--max_tokens_per_batch {max_tokens} is smaller than the longest training pair ({longest} source + "
                f"target tokens). Raise it (a few thousand is usual) or lower --max_source_length/--max_target_length."
            )
        self.seed, self.epoch = seed, 0
        tie_break = np.random.default_rng(seed).permutation(len(source_lengths))
        order = np.lexsort((tie_break, np.asarray(target_lengths), np.asarray(source_lengths)))
        self.batches: list[list[int]] = []
        current: list[int] = []
        longest_source = longest_target = 0
        for index in order.tolist():
            source, target = max(longest_source, source_lengths[index]), max(longest_target, target_lengths[index])
            if current and (len(current) + 1) * (source + target) > max_tokens:
                self.batches.append(current)
                current, source, target = [], source_lengths[index], target_lengths[index]
            current.append(index)
            longest_source, longest_target = source, target
        if current:
            self.batches.append(current)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for index in np.random.default_rng((self.seed, self.epoch)).permutation(len(self.batches)):
            yield self.batches[index]


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
        sources = [len(ids) for ids in data["input_ids"]]
        # Denoising makes its labels in the collator: the target is as long as the clean source.
        targets = [len(ids) for ids in data["labels"]] if "labels" in data.column_names else sources
        sampler = TokenBudgetBatchSampler(sources, targets, max_tokens, self.args.seed)
        loader = DataLoader(
            self._remove_unused_columns(data, description="Training"),
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
    splits = load_denoising_splits(data_args) if denoising else load_translation_splits(data_args)
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
    generation.max_length = training_args.generation_max_length or data_args.max_target_length
    generation.decoder_start_token_id = model.config.decoder_start_token_id
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(generation, name, getattr(tokenizer, name))

    datasets_, references = {}, {}
    with training_args.main_process_first(desc="tokenizing"):
        for name, split in splits.items():
            if split is None:
                continue
            features = tokenize_split(split, tokenizer, data_args, name, limit)
            datasets_[name] = as_dataset(features)
            if split.targets is not None:
                references[id(datasets_[name])] = split.targets
    if denoising:
        collator = DenoisingCollator(tokenizer, model, data_args, training_args.seed)
    else:
        collator = _WithoutNoneLabels(DataCollatorForSeq2Seq(tokenizer, model=model))
    logger.info(
        "%s; model has %.2fM parameters",
        ", ".join(f"{len(ds)} {name} rows" for name, ds in datasets_.items()),
        model.num_parameters() / 1e6,
    )

    training_args.remove_unused_columns = True  # drops the "length" column before the model sees a batch
    trainer = TranslationTrainer(
        model=model,
        args=training_args,
        train_dataset=datasets_.get("train"),
        eval_dataset=datasets_.get("validation"),
        data_collator=collator,
        processing_class=tokenizer,
        references=references,
        data_args=data_args,
    )

    metrics: dict[str, float] = {}
    if training_args.do_train:
        checkpoint = resolve_checkpoint(training_args)
        metrics.update(trainer.train(resume_from_checkpoint=checkpoint).metrics)
        model.config.use_cache = True  # Trainer turned it off for training; generation wants it on.
        trainer.save_model()
        trainer.save_state()
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
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    model_args, data_args, training_args = parse_args(argv)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    try:
        metrics = run_seq2seq(model_args, data_args, training_args)
    except (DataError, FileNotFoundError) as err:
        print(f"hf-bigmodel pretrain {ARCH}: error: {err}", file=sys.stderr)
        return 2
    shown = {k: v for k, v in metrics.items() if k.endswith(("_bleu", "_chrf", "_bleu_lc", "_bleu_lc_tok", "_loss"))}
    if shown:
        print(" ".join(f"{k}={v:.4g}" for k, v in sorted(shown.items())))
    return 0


__all__ = [
    "DenoisingCollator",
    "Seq2SeqDataArguments",
    "Seq2SeqModelArguments",
    "TranslationTrainer",
    "infilling_noise",
    "main",
    "read_lines",
    "read_parallel",
    "run_seq2seq",
    "t5_span_corruption",
    "translation_scores",
]
