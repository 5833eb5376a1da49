"""Data for every kind of model, one module per kind: `text` (language-model text), `mlm` (BERT pretraining data),
`seq2seq` (parallel and denoising text), `images` (image classification). `common` holds `DataError` and
`load_dataset_any`, the one loader of saved folders, data files and dataset names. A new kind of data (e.g.
recommendation sequences) gets a module of its own beside these."""

from .common import DataError, load_dataset_any, require_split, select_split
from .text import (
    PackedBlocks,
    check_text_file,
    load_raw_text,
    open_text,
    pack_token_stream,
    tokenize_to_stream,
    validate_text_files,
)

__all__ = [
    "DataError",
    "PackedBlocks",
    "check_text_file",
    "load_dataset_any",
    "load_raw_text",
    "open_text",
    "pack_token_stream",
    "require_split",
    "select_split",
    "tokenize_to_stream",
    "validate_text_files",
]
