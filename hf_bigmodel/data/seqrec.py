"""Sequential-recommendation data: interaction files, the raw-id item map, leave-one-out splits and the training
examples of SASRec (next item at every position) and BERT4Rec (masked items).

    from hf_bigmodel.data.seqrec import read_interactions, leave_one_out, ItemMap
    data = read_interactions("../shared/data/seqrec/Video.txt")     # `user item` lines, grouped by user, in time order
    data = read_interactions("ratings.csv", user_column="user_id", item_column="movie", time_column="ts")
    items = ItemMap.from_sequences(data.sequences)                   # raw item id <-> model id 1..N (0 is padding)
    split = leave_one_out(data, items)                               # last item: test; the one before: validation

Item ids are whatever the data holds (integers or strings); the model stores `items.item_ids` in its config, so a
saved model answers in raw ids.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .common import DataError, load_dataset_any

logger = logging.getLogger("hf_bigmodel.data.seqrec")

__all__ = [
    "MIN_EVAL_INTERACTIONS",
    "CausalItemDataset",
    "Interactions",
    "ItemMap",
    "LeaveOneOut",
    "MaskedItemCollator",
    "MaskedItemDataset",
    "causal_item_collator",
    "file_sha256",
    "leave_one_out",
    "left_pad",
    "read_interactions",
]

PAD_ID = 0
IGNORE_INDEX = -100
# A user needs a training item, a validation item and a test item to be evaluated.
MIN_EVAL_INTERACTIONS = 3


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Interactions:
    """Every user's items in time order. `users[i]` is the raw id of the user whose items are `sequences[i]`."""

    users: list[Any]
    sequences: list[list[Any]]
    source: str = "<memory>"
    sha256: str | None = None  # of the file read, for the model card

    @property
    def num_interactions(self) -> int:
        return sum(len(s) for s in self.sequences)

    def __repr__(self) -> str:
        return (
            f"Interactions({len(self.users)} users, {self.num_interactions} interactions, "
            f"{len({i for s in self.sequences for i in s})} items, source={self.source!r})"
        )


def _raw_id(token: str) -> int | str:
    return int(token) if token.isdigit() else token


def _read_user_item_file(path: Path) -> Interactions:
    """The SASRec/BERT4Rec format: `user item` per line, each user's lines together and in time order."""
    users: list[Any] = []
    sequences: list[list[Any]] = []
    where: dict[Any, int] = {}  # user -> line where their block started
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise DataError(
                    f"{path}, line {number}: expected `user item` (two ids separated by a space), got "
                    f"{line.rstrip()!r}. Fix or delete that line; a table with more columns reads with "
                    f"read_interactions(path, user_column=..., item_column=..., time_column=...) from a .csv file."
                )
            user, item = _raw_id(fields[0]), _raw_id(fields[1])
            if not users or users[-1] != user:
                if user in where:
                    raise DataError(
                        f"{path}, line {number}: user {user!r} appears again after other users (first at line "
                        f"{where[user]}). The format needs each user's lines together, in time order: sort the file "
                        f"by user, keeping each user's lines in their order (e.g. `sort -s -n -k1,1`)."
                    )
                where[user] = number
                users.append(user)
                sequences.append([])
            sequences[-1].append(item)
    if not users:
        raise DataError(f"{path} holds no `user item` line.")
    return Interactions(users, sequences, str(path), file_sha256(path))


def _read_table(table, user_column: str, item_column: str, time_column: str | None, source: str) -> Interactions:
    names = list(table.column_names)
    wanted = [user_column, item_column] + ([time_column] if time_column else [])
    missing = [name for name in wanted if name not in names]
    if missing:
        raise DataError(
            f"{source} has no column {missing[0]!r} (it has {', '.join(names)}). Name the columns with "
            f"user_column=, item_column= and time_column= (--user_column/--item_column/--time_column)."
        )
    users_col = table[user_column]
    items_col = table[item_column]
    times_col = table[time_column] if time_column else range(len(users_col))
    rows: dict[Any, list[tuple[Any, int, Any]]] = {}
    for row, (user, item, time) in enumerate(zip(users_col, items_col, times_col)):
        if user is None or item is None or time is None:
            what = "user" if user is None else "item" if item is None else "time"
            raise DataError(f"{source}, row {row}: the {what} is empty. Drop or fill rows without a {what}.")
        rows.setdefault(user, []).append((time, row, item))
    if not rows:
        raise DataError(f"{source} holds no rows.")
    users = list(rows)
    try:  # stable: equal timestamps keep the table's order
        sequences = [[item for _, _, item in sorted(rows[u], key=lambda r: (r[0], r[1]))] for u in users]
    except TypeError as error:
        raise DataError(
            f"{source}: the {time_column!r} column mixes types that cannot be ordered ({error}). Give it one type "
            f"(numbers, or ISO dates as strings)."
        ) from error
    return Interactions(users, sequences, source)


def read_interactions(
    source: str | Path | Any,
    *,
    user_column: str = "user",
    item_column: str = "item",
    time_column: str | None = "timestamp",
) -> Interactions:
    """Read interactions from a `user item` text file (SASRec/BERT4Rec format, `.txt`), a table file (`.csv`,
    `.tsv`, `.json`/`.jsonl`, `.parquet`), a `datasets` folder or a `datasets.Dataset`. Tables are grouped by user
    and sorted by `time_column` within each user (ties keep the table's order; `time_column=None`: the table's
    order). Raises `DataError` naming the line or row of a malformed entry."""
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"Interaction file not found: {source}. Check the path.")
        if path.is_file() and path.suffix.lower() in (".txt", ".text", ""):
            return _read_user_item_file(path)
        raw = load_dataset_any(path)
        interactions = _read_table(raw["train"], user_column, item_column, time_column, str(path))
        if path.is_file():
            interactions.sha256 = file_sha256(path)
        return interactions
    if hasattr(source, "column_names") and not isinstance(source.column_names, dict):
        return _read_table(source, user_column, item_column, time_column, "the dataset")
    raise DataError(
        f"Cannot read interactions from a {type(source).__name__}: give a file path or a datasets.Dataset "
        f"(a DatasetDict: pick a split, e.g. dataset['train'])."
    )


class ItemMap:
    """Raw item ids <-> model ids. Model id 0 is padding; items are 1..N; BERT4Rec's mask is N + 1.

    Integer ids are sorted (so a file with ids 1..N keeps them); other ids keep their order of first appearance.
    A history may name an id as an int or as its string ("6393" and 6393 are the same item)."""

    def __init__(self, item_ids: Sequence[Any]):
        self.item_ids = list(item_ids)
        self.index = {str(item): i + 1 for i, item in enumerate(self.item_ids)}
        if len(self.index) != len(self.item_ids):
            raise DataError("The item map lists an item twice: each raw id must appear once.")

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[Any]]) -> ItemMap:
        seen = dict.fromkeys(item for sequence in sequences for item in sequence)
        ids = list(seen)
        if all(isinstance(i, int) for i in ids):
            ids.sort()
        return cls(ids)

    @classmethod
    def from_config(cls, config) -> ItemMap:
        if not getattr(config, "item_ids", None):
            raise DataError("This model's config has no item map (`item_ids`); train it with hf_bigmodel, or set one.")
        return cls(config.item_ids)

    def __len__(self) -> int:
        return len(self.item_ids)

    def encode(self, items: Sequence[Any]) -> list[int]:
        """Model ids of `items`; an unknown id is a `DataError` naming it."""
        try:
            return [self.index[str(item)] for item in items]
        except KeyError as error:
            raise DataError(f"Item {error.args[0]!r} is not in the item map.") from None

    def decode(self, ids: Iterable[int]) -> list[Any]:
        return [self.item_ids[i - 1] for i in ids]


@dataclass
class LeaveOneOut:
    """Leave-one-out split (both papers): per user, `train` is every item but the last two, `valid_target` the
    second-to-last, `test_target` the last. Sequences are model ids. Users with fewer than 3 interactions train on
    all their items and are not evaluated (`evaluated` is False; `skipped` counts them)."""

    users: list[Any]
    sequences: list[list[int]]  # every item of each user, model ids
    item_map: ItemMap
    source: str = "<memory>"
    sha256: str | None = None
    evaluated: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def num_items(self) -> int:
        return len(self.item_map)

    @property
    def skipped(self) -> int:
        return int((~self.evaluated).sum())

    def train_sequences(self) -> list[list[int]]:
        return [s[:-2] if ok else s for s, ok in zip(self.sequences, self.evaluated)]

    def history(self, stage: str) -> list[list[int]]:
        """Inputs of the evaluated users at `stage`: "valid" (train items) or "test" (train + validation items)."""
        cut = {"valid": -2, "test": -1}[stage]
        return [s[:cut] for s, ok in zip(self.sequences, self.evaluated) if ok]

    def targets(self, stage: str) -> np.ndarray:
        pos = {"valid": -2, "test": -1}[stage]
        return np.array([s[pos] for s, ok in zip(self.sequences, self.evaluated) if ok], dtype=np.int64)

    def seen(self) -> list[list[int]]:
        """Every item each evaluated user touched (for sampling negatives they never touched)."""
        return [s for s, ok in zip(self.sequences, self.evaluated) if ok]

    def popularity(self) -> np.ndarray:
        """Interaction count of every model id (index 0, padding, is 0)."""
        counts = np.zeros(self.num_items + 1, dtype=np.int64)
        for s in self.sequences:
            np.add.at(counts, s, 1)
        return counts


def leave_one_out(interactions: Interactions, item_map: ItemMap | None = None) -> LeaveOneOut:
    """Split every user leave-one-out; logs how many users have too few interactions to be evaluated."""
    item_map = item_map or ItemMap.from_sequences(interactions.sequences)
    sequences = [item_map.encode(s) for s in interactions.sequences]
    evaluated = np.array([len(s) >= MIN_EVAL_INTERACTIONS for s in sequences], dtype=bool)
    split = LeaveOneOut(interactions.users, sequences, item_map, interactions.source, interactions.sha256, evaluated)
    if split.skipped:
        logger.warning(
            "%d of %d users have fewer than %d interactions: they train on all their items and are not evaluated "
            "(leave-one-out needs a train, a validation and a test item).",
            split.skipped,
            len(sequences),
            MIN_EVAL_INTERACTIONS,
        )
    return split


def left_pad(sequences: Sequence[Sequence[int]], length: int, pad: int = PAD_ID) -> torch.Tensor:
    """(batch, length) tensor of each sequence's last `length` ids, padded on the left (the newest item last)."""
    out = torch.full((len(sequences), length), pad, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        tail = list(sequence[-length:]) if length else []
        if tail:
            out[row, length - len(tail) :] = torch.tensor(tail, dtype=torch.long)
    return out


def causal_item_collator(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack `CausalItemDataset` examples and drop the left columns that are padding in every row. The models count
    positions from each row's first item, so the cut changes no score; with batches of similar lengths
    (`lengths` for transformers' `LengthGroupedSampler`) most of the padding of short histories goes."""
    batch = torch.utils.data.default_collate(examples)
    real = batch["attention_mask"].any(dim=0)
    first = int(real.int().argmax()) if bool(real.any()) else batch["input_ids"].shape[1] - 1
    return {name: value[:, first:] for name, value in batch.items()}


class CausalItemDataset(torch.utils.data.Dataset):
    """SASRec examples: each user's training sequence (its last `max_length` items, the model's
    max_position_embeddings, so `max_length - 1` next-item targets), left-padded. `labels` equal `input_ids` with
    -100 on padding; the model shifts them, as a causal LM does."""

    def __init__(self, sequences: Sequence[Sequence[int]], max_length: int):
        self.sequences = [s for s in sequences if len(s) >= 2]
        self.max_length = max_length
        self.lengths = [min(len(s), max_length) for s in self.sequences]  # for LengthGroupedSampler

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = left_pad([self.sequences[index]], self.max_length)[0]
        labels = ids.masked_fill(ids == PAD_ID, IGNORE_INDEX)
        return {"input_ids": ids, "attention_mask": (ids != PAD_ID).long(), "labels": labels}


class MaskedItemDataset(torch.utils.data.Dataset):
    """BERT4Rec examples: each user's last `max_length` training items as `input_ids`, unmasked and unpadded
    (`MaskedItemCollator` masks and pads)."""

    def __init__(self, sequences: Sequence[Sequence[int]], max_length: int):
        self.sequences = [list(s[-max_length:]) for s in sequences if len(s) >= 1]
        self.max_length = max_length
        self.lengths = [len(s) for s in self.sequences]  # for LengthGroupedSampler

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        # Named like the model input it becomes, so that Trainer's unused-column filter keeps it.
        return {"input_ids": self.sequences[index]}


class MaskedItemCollator:
    """BERT4Rec's cloze task: each item becomes the mask id with probability `mask_probability` (at least one per
    sequence), and with probability `last_item_probability` only the last item is masked, which is the task the
    model meets at prediction time (the mask appended after the history). Left padding, to `max_length`, or with
    `pad_to_longest` to the batch's longest sequence (the models count positions from each row's first item, so the
    scores are the same, and short batches cost less)."""

    def __init__(self, mask_token_id: int, max_length: int, mask_probability: float = 0.2,
                 last_item_probability: float = 0.1, seed: int | None = None,
                 pad_to_longest: bool = False):  # fmt: skip
        self.mask_token_id = mask_token_id
        self.pad_to_longest = pad_to_longest
        self.max_length = max_length
        self.mask_probability = mask_probability
        self.last_item_probability = last_item_probability
        self.rng = random.Random(seed)

    def __call__(self, examples: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        sequences = [e["input_ids"] for e in examples]
        length = min(max(map(len, sequences)), self.max_length) if self.pad_to_longest else self.max_length
        ids = left_pad(sequences, length)
        real = ids != PAD_ID
        if self.rng.random() < self.last_item_probability:
            masked = torch.zeros_like(real)
            masked[:, -1] = True
        else:
            generator = torch.Generator().manual_seed(self.rng.getrandbits(63))
            masked = (torch.rand(ids.shape, generator=generator) < self.mask_probability) & real
            none = ~masked.any(dim=1)
            masked[none, -1] = True  # the last position is always a real item
        labels = torch.where(masked, ids, torch.full_like(ids, IGNORE_INDEX))
        input_ids = ids.masked_fill(masked, self.mask_token_id)
        return {"input_ids": input_ids, "attention_mask": real.long(), "labels": labels}
