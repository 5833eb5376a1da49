"""What every kind of data shares: the error users see, and the one loader of "a saved folder, a data file or a
dataset name" that every trainer and `train-tokenizer` use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "DATA_FILE_BUILDERS",
    "VALIDATION_ALIASES",
    "DataError",
    "PerExampleRandom",
    "builder_options",
    "load_dataset_any",
    "require_split",
    "select_split",
]


class DataError(ValueError):
    """A user's data cannot be used as given; the message says what is wrong and how to fix it."""


class PerExampleRandom(torch.utils.data.Dataset):
    """`dataset[index]` passed through `transform(example, rng)`, with `rng` seeded by (seed, epoch, index).

    Random data work done at batching time (dynamic masking, say) with one generator per process or dataloader
    worker draws differently when the same batch is split over two processes, or cut at another step on resume.
    Seeding by the example instead makes every draw a function of (seed, epoch, example): one process with batch 8
    and two with batch 4 see the same masks, and a new epoch draws new ones. The epoch lives in shared memory, so
    dataloader workers (persistent ones too) see `set_epoch` from the main process; Trainer calls it through
    `training.common.SetEpochCallback`.
    """

    def __init__(self, dataset, transform: Callable[[dict[str, Any], np.random.Generator], dict[str, Any]], seed: int):
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, int(self._epoch[0]), int(index)])
        return self.transform(self.dataset[int(index)], rng)


# Data file extension -> the `datasets` builder that reads it.
DATA_FILE_BUILDERS = {
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".txt": "text",
    ".text": "text",
}
# Split names that stand for "validation" when a dataset has no split of that name.
VALIDATION_ALIASES = ("valid", "val")


def builder_options(builder: str, suffix: str, keep_linebreaks: bool = False) -> dict[str, Any]:
    """Extra `load_dataset` arguments of a builder: tab-separated files are read without quote handling (SST-2 has
    bare quotes in its text); plain text keeps its line breaks when asked (a tokenizer must learn them)."""
    if suffix == ".tsv":
        return {"delimiter": "\t", "quoting": 3}
    if builder == "text" and keep_linebreaks:
        return {"keep_linebreaks": True}
    return {}


def load_dataset_any(
    name_or_path: str | Path,
    config_name: str | None = None,
    *,
    validation_aliases: Sequence[str] = VALIDATION_ALIASES,
    keep_linebreaks: bool = False,
    cache_dir: str | None = None,
):
    """A `datasets.DatasetDict` from a `save_to_disk` folder, a data file (by extension: csv/tsv/json/jsonl/
    parquet/arrow/txt; it becomes the "train" split), a folder of data files, or a dataset name (cached, or on the
    Hub). A single `Dataset` becomes the "train" split; the first of `validation_aliases` present is renamed
    "validation" when the dataset has no split of that name. Plain-text rows (one per line) keep their "\n" with
    `keep_linebreaks`.

    Raises `FileNotFoundError` for a path that does not exist and `DataError` for a file of unknown format.
    """
    import datasets

    path = Path(name_or_path).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        builder = DATA_FILE_BUILDERS.get(suffix)
        if builder is None:
            raise DataError(
                f"Cannot tell the format of {path} from its extension (known: {', '.join(DATA_FILE_BUILDERS)})."
            )
        raw = datasets.load_dataset(builder, data_files={"train": str(path)}, cache_dir=cache_dir,
                                    **builder_options(builder, suffix, keep_linebreaks))  # fmt: skip
    elif path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        raw = datasets.load_from_disk(str(path))  # written by save_to_disk
    elif path.is_dir():
        options = {}
        if keep_linebreaks and datasets.load_dataset_builder(str(path), config_name).name == "text":
            options["keep_linebreaks"] = True
        raw = datasets.load_dataset(str(path), config_name, cache_dir=cache_dir, **options)
    elif str(name_or_path).startswith((".", "/", "~")) or path.suffix.lower() in DATA_FILE_BUILDERS:
        raise FileNotFoundError(f"Dataset path not found: {name_or_path}. Check the path.")
    else:
        # A Hub name: works offline once cached (set HF_DATASETS_OFFLINE=1 to skip the network lookups).
        raw = datasets.load_dataset(str(name_or_path), config_name, cache_dir=cache_dir)
    if not isinstance(raw, datasets.DatasetDict):
        raw = datasets.DatasetDict({"train": raw})
    for alias in validation_aliases:
        if "validation" not in raw and alias in raw:
            raw["validation"] = raw.pop(alias)  # renamed, not copied: a split is never processed twice
    return raw


def require_split(raw, split: str, name: str) -> None:
    """`DataError` naming the splits that `name` has when it lacks `split`."""
    if split not in raw:
        raise DataError(f"Dataset {name} has no {split!r} split (it has {', '.join(raw)}).")


def select_split(raw, split: str, name: str):
    """The `split` of `raw`, in `datasets`' split syntax: a name (`"valid"` also finds a split renamed to
    "validation" by `load_dataset_any`), a slice (`"train[:10%]"`, `"train[100:200]"`) or a sum of slices."""
    import datasets

    base = split.split("[", 1)[0].split("+", 1)[0]
    if base not in raw and base in VALIDATION_ALIASES and "validation" in raw:
        raw = {**raw, base: raw["validation"]}
    require_split(raw, base, name)
    if split == base:
        return raw[base]
    try:  # a split other than `base` in the expression is refused here too
        parts = datasets.ReadInstruction.from_spec(split).to_absolute({base: len(raw[base])})
    except (ValueError, AssertionError) as err:
        raise DataError(f"Cannot read the split {split!r} of {name} ({str(err).rstrip('.')}); write one split or "
                        f"slices of it, e.g. {base}, {base}[:10%] or {base}[100:200].") from err  # fmt: skip
    return datasets.concatenate_datasets([raw[base].select(range(part.from_, part.to)) for part in parts])
