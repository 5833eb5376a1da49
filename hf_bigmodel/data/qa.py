"""Extractive question-answering data: SQuAD's nested JSON layout and the answers cell of a row. Used by
`hf-bigmodel finetune --task question-answering` and `hf-bigmodel evaluate --task question-answering`."""

from __future__ import annotations

import json

from .common import DataError

__all__ = ["check_answers", "squad_file_rows"]


def squad_file_rows(path: str) -> list[dict] | None:
    """Rows of a file in the original SQuAD layout ({"data": [{"title", "paragraphs": [{"context", "qas"}]}]}),
    or None if the file is not in that layout (then it is read as plain JSON rows)."""
    with open(path, encoding="utf-8") as f:
        head = f.read(1)
        while head.isspace():
            head = f.read(1)
        if head != "{":
            return None
        f.seek(0)
        try:
            data = json.load(f)
        except json.JSONDecodeError:
            return None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        return None
    rows = []
    for article in data["data"]:
        for paragraph in article.get("paragraphs", []):
            for qa in paragraph.get("qas", []):
                answers = qa.get("answers", [])
                rows.append({
                    "id": str(qa.get("id", len(rows))),
                    "title": article.get("title", ""),
                    "question": qa["question"],
                    "context": paragraph["context"],
                    "answers": {"text": [a["text"] for a in answers],
                                "answer_start": [int(a["answer_start"]) for a in answers]},
                })  # fmt: skip
    return rows


def check_answers(value, row: int, column: str) -> tuple[list[str], list[int]]:
    """(answer texts, answer starts) of one row's answers cell; `DataError` naming the row if it is not SQuAD's
    `{"text": [...], "answer_start": [...]}`."""
    if not isinstance(value, dict) or "text" not in value or "answer_start" not in value:
        raise DataError(
            f"Row {row}: column {column!r} must hold {{'text': [...], 'answer_start': [...]}} (SQuAD format), got "
            f"{value!r}."
        )
    texts, starts = list(value["text"]), list(value["answer_start"])
    if len(texts) != len(starts):
        raise DataError(f"Row {row}: {column!r} has {len(texts)} texts but {len(starts)} answer_start values.")
    return texts, starts
