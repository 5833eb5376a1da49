"""Data for every kind of model, one module per kind: `text` (language-model text), `mlm` (BERT pretraining data),
`images` (image classification). A new kind of data (e.g. recommendation sequences) gets a module of its own beside
these."""

from .text import (
    DataError,
    PackedBlocks,
    check_text_file,
    load_raw_text,
    pack_token_stream,
    tokenize_to_stream,
    validate_text_files,
)

__all__ = [
    "DataError",
    "PackedBlocks",
    "check_text_file",
    "load_raw_text",
    "pack_token_stream",
    "tokenize_to_stream",
    "validate_text_files",
]
