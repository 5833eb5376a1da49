"""Seq2seq data: line-aligned parallel text (files or a `datasets` translation column), monolingual text for
denoising, token-id features checked against the maximum lengths, the denoising noises (BART text infilling, T5 span
corruption, sentence permutation) applied on the fly by `DenoisingCollator`, and token-budget batching.

Everything takes plain parameters, so that `hf-bigmodel pretrain transformer` and other code (an evaluation, a
notebook) read the data the same way.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from transformers import DataCollatorForSeq2Seq

from .common import DataError, load_dataset_any

logger = logging.getLogger("hf_bigmodel.data.seq2seq")

MASK_TOKEN = "<mask>"
NUM_SENTINELS = 100
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")

__all__ = [
    "MASK_TOKEN",
    "NUM_SENTINELS",
    "DenoisingCollator",
    "ParallelFiles",
    "Split",
    "TokenBudgetBatchSampler",
    "WithoutNoneLabels",
    "add_denoising_tokens",
    "as_dataset",
    "infilling_noise",
    "load_dataset_splits",
    "load_denoising_splits",
    "load_summarization_splits",
    "load_translation_splits",
    "permute_sentences",
    "read_lines",
    "read_parallel",
    "resolve_prefix",
    "t5_span_corruption",
    "tokenize_split",
    "wikitext_heading_pairs",
]


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


def resolve_prefix(prefix: str, lang: str) -> Path:
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


class ParallelFiles(NamedTuple):
    """Where one split's parallel text is: a PREFIX (of PREFIX.<lang> files; the command line's --<split>_file
    takes a list, of which translation accepts one), or the source and target files by name."""

    prefix: Sequence[str] | None = None
    source: str | None = None
    target: str | None = None


def _split_files(
    files: ParallelFiles, split: str, source_lang: str | None, target_lang: str | None
) -> tuple[Path | None, Path | None]:
    prefix, source, target = files
    if prefix:
        if source or target:
            raise DataError(f"Give either --{split}_file or --{split}_source_file/--{split}_target_file, not both.")
        if len(prefix) != 1:
            raise DataError(f"--{split}_file takes one PREFIX for translation, got {len(prefix)}: {prefix}.")
        if not source_lang or not target_lang:
            raise DataError(f"--{split}_file PREFIX needs --source_lang and --target_lang (e.g. de and en).")
        return resolve_prefix(prefix[0], source_lang), resolve_prefix(prefix[0], target_lang)
    if target and not source:
        raise DataError(f"--{split}_target_file needs --{split}_source_file.")
    if source and not target and split != "test":
        raise DataError(f"--{split}_source_file needs --{split}_target_file (only test sources may come alone).")
    return (Path(source) if source else None), (Path(target) if target else None)


def load_translation_splits(
    files: Mapping[str, ParallelFiles],
    source_lang: str | None,
    target_lang: str | None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    translation_column: str = "translation",
    skip_empty_pairs: bool = False,
) -> dict[str, Split]:
    """The train/validation/test splits: parallel files (`files`: split -> `ParallelFiles`) or a `datasets`
    dataset with a translation column of {lang: text} rows."""
    names = ("train", "validation", "test")
    paths = {
        split: _split_files(files.get(split, ParallelFiles()), split, source_lang, target_lang) for split in names
    }
    if dataset_name is not None:
        if any(source for source, _ in paths.values()):
            raise DataError("Give either text files or --dataset_name, not both.")
        return load_dataset_splits(dataset_name, dataset_config_name, source_lang, target_lang, translation_column,
                                    skip_empty_pairs)  # fmt: skip
    splits: dict[str, Split] = {}
    for split in names:
        source, target = paths[split]
        if source is None:
            continue
        sources, targets, numbers = read_parallel(source, target, skip_empty_pairs)
        splits[split] = Split(sources, targets, [f"{source} line {n}" for n in numbers])
    return splits


def load_dataset_splits(
    dataset_name: str,
    dataset_config_name: str | None,
    source_lang: str | None,
    target_lang: str | None,
    column: str,
    skip_empty_pairs: bool,
) -> dict[str, Split]:
    if not source_lang or not target_lang:
        raise DataError("--dataset_name needs --source_lang and --target_lang (keys of the translation column).")
    raw = load_dataset_any(dataset_name, dataset_config_name)
    splits: dict[str, Split] = {}
    for split in ("train", "validation", "test"):
        if split not in raw:
            continue
        ds, name = raw[split], split
        if column not in ds.column_names:
            raise DataError(
                f"Dataset split {name!r} has no column {column!r}; its columns are {ds.column_names}. Pass "
                f"--translation_column naming the column of {{lang: text}} rows."
            )
        sources, targets, origins = [], [], []
        for index, row in enumerate(ds[column]):
            pair = [row.get(lang) if isinstance(row, dict) else None for lang in (source_lang, target_lang)]
            for lang, text in zip((source_lang, target_lang), pair):
                if not isinstance(text, str):
                    raise DataError(
                        f"Row {index} of split {name!r}: {column!r} has no {lang!r} text (got {row!r}). Rows must "
                        f"be {{{source_lang!r}: ..., {target_lang!r}: ...}}."
                    )
            if not pair[0].strip() or not pair[1].strip():
                if skip_empty_pairs:
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


def _pairs_of(ds, name: str, text_column: str, summary_column: str, skip_empty_pairs: bool) -> Split:
    for column, flag in ((text_column, "--text_column"), (summary_column, "--summary_column")):
        if column not in ds.column_names:
            raise DataError(
                f"The {name} data has no column {column!r} (set it with {flag}); its columns: "
                f"{', '.join(ds.column_names)}."
            )
    sources, targets, origins = [], [], []
    for index, (text, summary) in enumerate(zip(ds[text_column], ds[summary_column])):
        if not isinstance(text, str) or not isinstance(summary, str) or not text.strip() or not summary.strip():
            if skip_empty_pairs:
                continue
            raise DataError(
                f"Row {index} of the {name} data has an empty or missing {text_column!r} or {summary_column!r}. "
                f"Remove it or pass --skip_empty_pairs."
            )
        sources.append(text)
        targets.append(summary)
        origins.append(f"row {index} of {name}")
    if not sources:
        raise DataError(f"The {name} data holds no document/summary pair.")
    return Split(sources, targets, origins)


def load_summarization_splits(
    files: Mapping[str, Sequence[str] | None],
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    text_column: str = "document",
    summary_column: str = "summary",
    skip_empty_pairs: bool = False,
) -> dict[str, Split]:
    """Document/summary pairs: a data file per split (`files`: split -> [file]; csv/tsv/json/jsonl/parquet, one
    pair a row) or a `datasets` dataset (save_to_disk folder or name) with its train/validation/test splits; the
    columns are `text_column` (the document) and `summary_column`."""
    given = {split: names for split, names in files.items() if names}
    if dataset_name is not None and given:
        raise DataError("Give either data files or --dataset_name, not both.")
    if dataset_name is not None:
        raw = load_dataset_any(dataset_name, dataset_config_name)
        return {
            split: _pairs_of(
                raw[split], f"{dataset_name} split {split!r}", text_column, summary_column, skip_empty_pairs
            )  # fmt: skip
            for split in ("train", "validation", "test")
            if split in raw
        }
    splits = {}
    for split, names in given.items():
        if len(names) != 1:
            raise DataError(f"--{split}_file takes one data file of document/summary pairs, got {len(names)}.")
        splits[split] = _pairs_of(load_dataset_any(names[0])["train"], names[0], text_column, summary_column,
                                  skip_empty_pairs)  # fmt: skip
    return splits


# A WikiText section heading: " = = Heading = = " (level 2) or " = = = Heading = = = " (level 3); " = Title = " is
# an article's title.
_WIKITEXT_HEADING = re.compile(r"^ (=(?: =)+) (.+?) \1 $")


def wikitext_heading_pairs(
    path: str | Path, max_words: int | None = 100, stride: int | None = None, article: bool = False
) -> list[dict[str, str]]:
    """The offline summarization task: each section of a WikiText file (tokenized v1: `<unk>`, ` @-@ `) as
    {"document": the section's text up to the next heading, its first `max_words` words, "summary": its heading}.
    Sections without text are left out, and so are headings with an `<unk>` in them: WikiText replaced a rare word
    there, and no model can write the word back (the metric's tokenizer would score the letters "unk" instead).

    With `stride`, a section gives one pair per window of `max_words` words, starting every `stride` words until a
    window reaches the section's end: more training pairs from the few sections a split has. Scored sets keep the
    default, one pair per section. With `article`, each pair also names its article's title ("article"), to tell
    pairs of one article from another's (a retrieval that must not find its own article)."""
    if stride is not None and (max_words is None or not 0 < stride <= max_words):
        raise ValueError(f"stride must be between 1 and max_words ({max_words}), got {stride}.")
    pairs: list[dict[str, str]] = []
    title, heading, lines = "", None, []

    def flush() -> None:
        words = " ".join(lines).split()
        if not heading or "<unk>" in heading.split() or not words:
            return
        starts = [0]
        while stride is not None and starts[-1] + max_words < len(words):
            starts.append(starts[-1] + stride)
        for start in starts:
            window = words[start : start + max_words] if max_words else words
            pairs.append({"document": " ".join(window), "summary": heading, **({"article": title} if article else {})})

    for line in Path(path).read_text(encoding="utf-8").splitlines():
        match = _WIKITEXT_HEADING.match(line)
        if match or re.match(r"^ = [^=].* = $", line):  # a heading or an article title ends the section
            flush()
            heading, lines = (match.group(2).strip() if match else None), []
            if not match:
                title = line.strip(" =")
        elif line.strip():
            lines.append(line.strip())
    flush()
    return pairs


def load_denoising_splits(
    train_files: Sequence[str] | None, validation_files: Sequence[str] | None = None
) -> dict[str, Split]:
    """Monolingual text files: each non-empty line is one document (input and target before noising)."""
    splits = {}
    for split, files in (("train", train_files), ("validation", validation_files)):
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
# Tokens


def add_denoising_tokens(tokenizer, noise: str) -> None:
    """Add `<mask>` (infilling) or the sentinels `<extra_id_0..99>` (t5) as special tokens if missing."""
    if noise == "infilling" and tokenizer.mask_token is None:
        tokenizer.add_special_tokens({"mask_token": MASK_TOKEN})
    elif noise == "t5":
        missing = [f"<extra_id_{i}>" for i in range(NUM_SENTINELS) if f"<extra_id_{i}>" not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)


def tokenize_split(
    split: Split,
    tokenizer,
    name: str,
    max_source_length: int,
    max_target_length: int,
    truncate_long_sequences: bool = False,
    max_positions: int | None = None,
) -> list[dict[str, list[int]]]:
    """Token ids of every pair (`input_ids`, and `labels` when the split has targets), checked against the
    maximum lengths: an error names the first row that is too long, unless --truncate_long_sequences."""
    features = [{"input_ids": ids} for ids in tokenizer(split.sources, add_special_tokens=True)["input_ids"]]
    sides = [("input_ids", "source", max_source_length, "--max_source_length")]
    if split.targets is not None:
        for feature, ids in zip(features, tokenizer(text_target=split.targets)["input_ids"]):
            feature["labels"] = ids
        sides.append(("labels", "target", max_target_length, "--max_target_length"))
    eos = tokenizer.eos_token_id
    room = f" (up to the model's max_position_embeddings, {max_positions})" if max_positions else ""
    for key, side, limit, flag in sides:
        for index, feature in enumerate(features):
            ids = feature[key]
            if len(ids) <= limit:
                continue
            if not truncate_long_sequences:
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
    """Noises each example on the fly (new noise every epoch), then pads like `DataCollatorForSeq2Seq`. Rows that
    already hold labels (noised by `PerExampleRandom` with `noise_example`) are only padded.

    Examples hold the clean `input_ids` (ending with eos). Infilling: labels = the clean ids, input = infilled
    (optionally sentence-permuted first). t5: input and labels from `t5_span_corruption`.
    """

    def __init__(
        self,
        tokenizer,
        model,
        seed: int,
        noise: str = "infilling",
        mask_ratio: float = 0.3,
        poisson_lambda: float = 3.0,
        permute_sentences: bool = False,
        noise_density: float = 0.15,
        mean_noise_span_length: float = 3.0,
    ):
        self.tokenizer = tokenizer
        self.noise, self.mask_ratio, self.poisson_lambda = noise, mask_ratio, poisson_lambda
        self.permute = permute_sentences
        self.noise_density, self.mean_noise_span_length = noise_density, mean_noise_span_length
        self.rng = np.random.default_rng(seed)
        self.pad = DataCollatorForSeq2Seq(tokenizer, model=model)
        self.eos = tokenizer.eos_token_id
        vocab = tokenizer.get_vocab()
        self.mask_id = tokenizer.mask_token_id
        self.sentinels = [vocab[f"<extra_id_{i}>"] for i in range(NUM_SENTINELS)] if noise == "t5" else []
        self.sentence_end = np.zeros(len(tokenizer), dtype=bool)
        if permute_sentences:
            for token, index in vocab.items():
                self.sentence_end[index] = bool(_SENTENCE_END.search(tokenizer.convert_tokens_to_string([token])))

    def noise_example(self, feature: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """One clean example -> its noised input_ids, attention_mask and labels, drawn from `rng`."""
        clean = list(feature["input_ids"])
        body = clean[:-1] if clean and clean[-1] == self.eos else clean
        if self.noise == "t5":
            inputs, labels = t5_span_corruption(body, self.sentinels, self.eos, rng, self.noise_density,
                                                self.mean_noise_span_length)  # fmt: skip
        else:
            source = permute_sentences(body, self.sentence_end, rng) if self.permute else body
            masked, _ = infilling_noise(source, self.mask_id, rng, self.mask_ratio, self.poisson_lambda)
            inputs, labels = [*masked, self.eos], [*body, self.eos]
        return {"input_ids": inputs, "attention_mask": [1] * len(inputs), "labels": labels}

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        # Training rows come noised already, per example (`PerExampleRandom(dataset, collator.noise_example, seed)`,
        # so that any number of processes noises as one); clean rows (evaluation) are noised here.
        return self.pad([f if "labels" in f else self.noise_example(f, self.rng) for f in features])


class WithoutNoneLabels:
    """DataCollatorForSeq2Seq sets `labels=None` for a source-only batch; Seq2SeqTrainer would then see "labels" in
    the inputs and run a loss forward without decoder inputs. Dropping the key makes it only generate."""

    def __init__(self, collator: DataCollatorForSeq2Seq):
        self.collator = collator

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        return {key: value for key, value in self.collator(features).items() if value is not None}


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
