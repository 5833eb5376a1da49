"""Documents and scores of the offline lm-evaluation-harness tasks in this folder.

lm-eval imports this file by path (`!function documents.NAME` in a task YAML), not as part of hf_bigmodel, so it
imports only the standard library and lm_eval. The WikiText-2 detokenizer and word/byte accounting are lm-eval's
own (`lm_eval.tasks.wikitext`), so the numbers follow its `wikitext` task exactly.
"""

from __future__ import annotations

import re

from lm_eval.tasks.wikitext.preprocess_wikitext import process_results, wikitext_detokenizer

__all__ = ["process_results", "shakespeare_validation", "text_results", "wikitext_articles", "wikitext_detokenizer"]

# A WikiText article starts at its title line, " = Title = " (sections are " = = Section = = ").
_TITLE = re.compile(r"^ = [^=].* = $")


def split_articles(text: str) -> list[str]:
    """The articles of a WikiText file, each from its title line to the line before the next title, line breaks
    kept (the layout of EleutherAI/wikitext_document_level, which lm-eval's `wikitext` task reads)."""
    articles: list[list[str]] = []
    for line in text.splitlines(keepends=True):
        if _TITLE.match(line.rstrip("\n")) or not articles:
            articles.append([])
        articles[-1].append(line)
    return [page for page in ("".join(lines) for lines in articles) if page.strip()]


def wikitext_articles(dataset):
    """A WikiText file read whole (`text` builder, `sample_by: document`) -> one row per article, in a "page"
    column as lm-eval's `wikitext` task expects."""
    import datasets

    pages = [page for text in dataset["text"] for page in split_articles(text)]
    return datasets.Dataset.from_dict({"page": pages})


def shakespeare_validation(dataset):
    """tiny-shakespeare read by speech (`sample_by: paragraph`) -> the speeches of nanoGPT's validation split (the
    last 10% of the characters), those that start at or after the 90% mark."""
    lengths = [len(text) + 2 for text in dataset["text"]]  # each speech and the blank line after it
    cut, start, first = 0.9 * sum(lengths), 0, len(lengths)
    for index, length in enumerate(lengths):
        if start >= cut:
            first = index
            break
        start += length
    return dataset.select(range(first, len(lengths)))


def text_results(doc: dict, results: tuple[float]) -> dict[str, tuple[float, int]]:
    """Word and byte perplexity and bits per byte of a plain "text" document, with the definitions of lm-eval's
    `wikitext` task (words: pieces of `re.split(r"\\s+", text)`; bytes: UTF-8)."""
    (loglikelihood,) = results
    text = doc["text"]
    words, num_bytes = len(re.split(r"\s+", text)), len(text.encode("utf-8"))
    return {
        "word_perplexity": (loglikelihood, words),
        "byte_perplexity": (loglikelihood, num_bytes),
        "bits_per_byte": (loglikelihood, num_bytes),
    }
