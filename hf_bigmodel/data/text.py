"""Text data for language-model training: checked loading of text files or `datasets` datasets, tokenization with
`datasets.map`, and packing into fixed-length blocks (as nanoGPT's `train.bin` and transformers' `run_clm.py` do).

Packing keeps the token stream in one flat numpy array, so a validation split can be "the last N% of the text",
exactly nanoGPT's split, and a block is a slice rather than a Python list.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch

from .common import DataError, load_dataset_any, require_split

_READ_CHUNK_BYTES = 1 << 20  # validate files in 1 MiB pieces, never holding a whole corpus in memory

# Compressed text is read as it is, as `datasets` does: the format comes from the first bytes, not the file name.
_COMPRESSED_OPENERS = {b"\x1f\x8b": ("gzip", gzip.open), b"BZh": ("bzip2", bz2.open), b"\xfd7zXZ": ("xz", lzma.open)}
_DECOMPRESSION_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError)

__all__ = [
    "PackedBlocks",
    "check_text_file",
    "load_raw_text",
    "open_text",
    "pack_token_stream",
    "tokenize_to_stream",
    "validate_text_files",
]


def validate_text_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Check every file before any long job starts: it exists, is not empty and is valid UTF-8.

    Raises `FileNotFoundError` or `DataError` naming the file (and the offset of the first invalid byte).
    """
    checked = [Path(path) for path in paths]
    for path in checked:
        check_text_file(path)
    return checked


def check_text_file(path: Path) -> None:
    """Decode `path` strictly as UTF-8 and require some non-whitespace text, without holding the file in memory."""
    if not path.exists():
        raise FileNotFoundError(f"Training file not found: {path}. Check the path (and the current directory).")
    if path.is_dir():
        raise DataError(
            f"{path} is a directory, not a text file. Pass the text files inside it instead (e.g. {path}/*.txt)."
        )
    magic = _magic(path)
    if magic.startswith(b"PK\x03\x04"):
        raise DataError(f"{path} is a zip archive, not text. Unpack it first (`unzip {path}`) and pass the text "
                        "files inside it.")  # fmt: skip
    kind = _compression_of(magic)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    position = 0  # (decompressed) bytes read so far
    has_text = False
    with _open_bytes(path, magic) as f:
        while True:
            try:
                chunk = f.read(_READ_CHUNK_BYTES)
            except _DECOMPRESSION_ERRORS as err:
                raise DataError(
                    f"{path} is a corrupt or truncated {kind} file ({type(err).__name__}: {err}). Copy or download "
                    f"it again."
                ) from None
            pending = decoder.getstate()[0]  # bytes of a character split across chunks
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                offset = position - len(pending) + e.start
                raise DataError(_not_utf8_message(path, offset, e, kind)) from None
            has_text = has_text or bool(text.strip())
            position += len(chunk)
            if not chunk:
                break
    if position == 0:
        raise DataError(
            f"Training file {path} is empty (0 bytes). Remove it from the training files or put text in it."
        )
    if not has_text:
        raise DataError(
            f"Training file {path} contains only whitespace ({position} bytes). Remove it from the training files "
            f"or put text in it."
        )


def _magic(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(6)


def _compression_of(magic: bytes) -> str | None:
    for signature, (kind, _) in _COMPRESSED_OPENERS.items():
        if magic.startswith(signature):
            return kind
    return None


def _open_bytes(path: Path, magic: bytes) -> IO[bytes]:
    for signature, (_, opener) in _COMPRESSED_OPENERS.items():
        if magic.startswith(signature):
            return opener(path, "rb")
    return open(path, "rb")


def open_text(path: str | os.PathLike, **kwargs) -> IO[str]:
    """Open a UTF-8 text file for reading, decompressing gzip, bzip2 and xz files (told apart by their first bytes).

    `kwargs` go to `io.TextIOWrapper` (e.g. `newline=""`); the encoding is "utf-8-sig", so a byte-order mark is
    dropped instead of being read as text."""
    path = Path(path)
    return io.TextIOWrapper(_open_bytes(path, _magic(path)), encoding="utf-8-sig", **kwargs)


def _not_utf8_message(path: Path, offset: int, error: UnicodeDecodeError, kind: str | None = None) -> str:
    if kind is not None:  # the offset is in the decompressed text; show the line there
        with _open_bytes(path, _magic(path)) as f:
            head = f.read(offset + 4)
        line, bad = head[:offset].count(b"\n") + 1, head[offset : offset + max(1, error.end - error.start)]
        return (
            f"Training file {path} ({kind}-compressed) is not valid UTF-8 once decompressed: byte {bad!r} at offset "
            f"{offset} of the decompressed text (line {line}) ({error.reason}). Convert the text to UTF-8 first."
        )
    with open(path, "rb") as f:
        line = f.read(offset).count(b"\n") + 1
        bad = f.read(min(4, error.end - error.start) or 1)
    return (
        f"Training file {path} is not valid UTF-8: byte {bad!r} at byte offset {offset} (line {line}) "
        f"({error.reason}). Convert it to UTF-8 first, e.g. `iconv -f latin1 -t utf-8 {path} > {path}.utf8` "
        f"(replace latin1 with the file's real encoding; `file -i {path}` often tells it)."
    )


def load_raw_text(
    train_files: Sequence[str] | None = None,
    validation_files: Sequence[str] | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    text_column: str = "text",
    cache_dir: str | None = None,
):
    """Load raw text as a `datasets.DatasetDict` with a "train" and possibly a "validation" split.

    Text files are read line by line with their line breaks kept, so concatenating the rows gives back the file
    exactly. A `dataset_name` is a `save_to_disk` folder or anything `datasets.load_dataset` accepts (a folder of
    text/json/csv/parquet files, or a dataset already in the cache); its `text_column` is renamed to "text".
    """
    import datasets

    if (train_files is None) == (dataset_name is None):
        raise DataError("Give either --train_file (text files) or --dataset_name (a `datasets` dataset), not both.")
    if train_files is not None:
        for path in [*train_files, *(validation_files or [])]:
            suffix = Path(path).suffix.lower()
            if suffix in (".json", ".jsonl", ".csv", ".tsv", ".parquet", ".arrow"):
                # read line by line, its JSON or CSV syntax would become the training text without a word
                raise DataError(
                    f"{path} is a {suffix[1:]} file, and --train_file / --validation_file read plain text line by "
                    f"line. Load it as a dataset instead: --dataset_name {path} --text_column COLUMN."
                )
        files = {"train": [str(p) for p in validate_text_files(train_files)]}
        if validation_files:
            files["validation"] = [str(p) for p in validate_text_files(validation_files)]
        raw = datasets.load_dataset("text", data_files=files, keep_linebreaks=True, cache_dir=cache_dir)
    else:
        raw = load_dataset_any(dataset_name, dataset_config_name, cache_dir=cache_dir)
        require_split(raw, "train", dataset_name)
        for split, ds in raw.items():
            if text_column not in ds.column_names:
                raise DataError(
                    f"Dataset {dataset_name} split {split!r} has no column {text_column!r}; its columns are "
                    f"{ds.column_names}. Pass --text_column with the name of the text column."
                )
        raw = datasets.DatasetDict(
            {
                split: ds.select_columns([text_column]).rename_column(text_column, "text")
                if text_column != "text"
                else ds.select_columns(["text"])
                for split, ds in raw.items()
                if split in ("train", "validation")
            }
        )
    for split, ds in raw.items():
        if len(ds) == 0:
            raise DataError(f"The {split} split is empty: there is no text to learn from.")
    return raw


def tokenize_to_stream(
    dataset, tokenizer, append_eos: bool, num_proc: int | None = None, desc: str = "Tokenizing"
) -> np.ndarray:
    """Tokenize every row of `dataset["text"]` and return the concatenated token ids as one 1-D array.

    With `append_eos` each row is a separate document and gets the tokenizer's eos token after it (GPT-2's
    `<|endoftext|>` convention); text-file lines are not documents and are joined as they are.
    """
    import pyarrow.compute as pc

    eos = [tokenizer.eos_token_id] if append_eos and tokenizer.eos_token_id is not None else []

    def tokenize(batch):
        ids = tokenizer(batch["text"], add_special_tokens=False, return_attention_mask=False)["input_ids"]
        return {"input_ids": [row + eos for row in ids]}

    tokenized = dataset.map(tokenize, batched=True, num_proc=num_proc, remove_columns=dataset.column_names, desc=desc)
    flat = pc.list_flatten(tokenized.data.column("input_ids")).to_numpy()
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max else np.int32  # halves memory, as nanoGPT
    return flat.astype(dtype, copy=False)


def pack_token_stream(tokens: np.ndarray, block_size: int, split: str = "train") -> PackedBlocks:
    """Cut the token stream into non-overlapping blocks of `block_size`; the tail shorter than a block is dropped."""
    if len(tokens) < block_size:
        raise DataError(
            f"The {split} text has {len(tokens)} tokens, fewer than one block of {block_size}. Give more text or a "
            f"smaller --block_size."
        )
    return PackedBlocks(tokens, block_size)


class PackedBlocks(torch.utils.data.Dataset):
    """Fixed-length blocks of a token stream, for causal LM training: `labels` are the `input_ids` (the model
    shifts them to predict the next token)."""

    def __init__(self, tokens: np.ndarray, block_size: int):
        self.tokens = tokens
        self.block_size = block_size

    def __len__(self) -> int:
        return len(self.tokens) // self.block_size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.block_size
        block = torch.from_numpy(self.tokens[start : start + self.block_size].astype(np.int64))
        return {"input_ids": block, "labels": block}
