"""A default corpus that needs no download and no file of the user's: the Python language reference topics that
every CPython install carries (`pydoc_data.topics`, the text behind `help("if")`), about 460k characters of
English prose and code. Being part of the interpreter, it is not copied into this repository."""

from __future__ import annotations

from pathlib import Path

from ._io import atomic_write_text


def builtin_corpus_text() -> str:
    """All pydoc topics, sorted by name so the text (and the train/validation split) is the same on every run."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name].strip() for name in sorted(topics)) + "\n"


def write_builtin_corpus(directory: str | Path, validation_fraction: float = 0.05) -> tuple[Path, Path]:
    """Write train.txt and validation.txt (the last `validation_fraction` of the text, cut at a line break)."""
    return write_text_corpus(builtin_corpus_text(), directory, validation_fraction)


def write_text_corpus(text: str, directory: str | Path, validation_fraction: float = 0.05) -> tuple[Path, Path]:
    """Write `text` as train.txt and validation.txt (its last `validation_fraction`, cut at a line break)."""
    cut = text.rfind("\n", 0, int(len(text) * (1 - validation_fraction))) + 1
    directory = Path(directory)
    train, validation = directory / "train.txt", directory / "validation.txt"
    atomic_write_text(train, text[:cut])
    atomic_write_text(validation, text[cut:])
    return train, validation
