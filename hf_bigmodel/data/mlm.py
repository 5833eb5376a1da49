"""Masked-language-model data for BERT: documents -> sentences -> sentence pairs (NSP) or packed sequences -> masks.

The recipe follows Google's `create_pretraining_data.py` (BERT):

* **Documents.** Text files: blank lines separate documents (the BERT input format; in WikiText a paragraph or a
  heading is a document). A `datasets` dataset: one document per row of its text column.
* **Sentences.** Each line of a document is split after ``.``, ``!`` or ``?`` followed by a space and an upper-case
  letter, digit or opening quote/bracket (`split_sentences`), then tokenized without special tokens.
* **Pairs (objective ``mlm_nsp``).** Per document, sentences are gathered until a target length of
  ``max_seq_length - 3`` tokens (with probability ``short_seq_prob`` a random shorter target in
  ``[2, max_seq_length - 3]``, so that the model also sees short inputs). The chunk is cut at a random sentence
  boundary into A and B; half of the time (always when the chunk has one sentence) B is replaced by text from
  another document starting at a random sentence (``next_sentence_label = 1``, transformers' convention; 0 means B
  really follows A) and the unused sentences go back to the pool. The longer side is truncated one token at a time,
  from the front or the back at random, until ``[CLS] A [SEP] B [SEP]`` fits ``max_seq_length``. The random
  document is drawn among the other documents of the same `datasets.map` batch (1000 documents by default; the
  documents are shuffled first, so a batch is a random sample), which lets the work run with ``num_proc``.
  Unlike BERT, one-sentence documents (WikiText headings, for instance) give no pair of their own, since their B
  would always be random; they still serve as random B text. About half the pairs are random (a bit more: a
  chunk of a single long sentence always gets a random B, as in BERT).
* **Packed sequences (objective ``mlm``, RoBERTa style).** Each document's tokens are concatenated and cut into
  ``[CLS] ... [SEP]`` sequences of up to ``max_seq_length`` tokens (no NSP, segment ids all 0); the last piece of
  a document is kept, shorter.
* **Masking** (`BertMasker`): ``mlm_probability`` (15%) of the non-special tokens of each sequence are chosen
  (exactly ``round(n * p)``, at least 1, as BERT), of which 80% become ``[MASK]``, 10% a random non-special token
  and 10% stay unchanged; ``labels`` hold the original ids at the chosen positions and -100 elsewhere. Special
  tokens ([CLS], [SEP], [PAD], ...) are never chosen. With ``whole_word_mask`` the units are words: a token and its
  ``##`` continuations are masked together (each token of the word still gets its own 80/10/10 draw, as BERT).
  Chinese has no ``##`` pieces: BERT's tokenizer makes every CJK character a token of its own. With a
  ``chinese_word_segmenter`` (`hf_bigmodel.data.zh.ChineseWordSegmenter`: jieba's shipped dictionary, offline)
  the runs of Chinese characters are cut into words and the characters of a word are masked together, the
  whole-word masking of Chinese BERT-wwm (Cui et al., 2019; transformers' `run_chinese_ref.py` marks the same
  positions as ``##`` ahead of time). Words are found at masking time from the tokens themselves, so the dataset
  needs no extra column; a run is segmented as a whole, so words never cross a [SEP] or a non-Chinese token.
  * *Static* masking (`apply_static_masking`, BERT's way; ``dupe_factor`` copies with different masks) is used for
    ``mlm_nsp`` training data and for every evaluation set, so evaluation metrics are comparable between runs.
  * *Dynamic* masking (RoBERTa's way) draws new masks every epoch; it is used for ``mlm`` training data.
    `hf-bigmodel pretrain bert` wraps the data in `PerExampleRandom(dataset, masker.mask_example, seed)`, which
    seeds each example's masks by (seed, epoch, index), so one process with batch 8 and two with batch 4 (DDP,
    FSDP) mask the same tokens, and a resumed run masks as the uninterrupted one.
    `DataCollatorForBertPretraining` with ``mask=True`` masks at batching time instead, from one generator per
    process and worker (masks then depend on how batches are split). Both are our own rather than transformers'
    `DataCollatorForLanguageModeling`, whose whole-word masking is based on character offsets and drops the 10%
    random / 10% unchanged replacement.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .common import DataError, load_dataset_any, require_split
from .text import open_text, validate_text_files
from .zh import is_cjk_character

__all__ = [
    "BertMasker",
    "DataCollatorForBertPretraining",
    "apply_static_masking",
    "build_pretraining_dataset",
    "create_nsp_pairs",
    "create_packed_sequences",
    "load_documents",
    "read_documents",
    "split_sentences",
    "tokenize_documents",
]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9\u00c0-\u00de])")
_MAP_BATCH = 1000


def split_sentences(text: str) -> list[str]:
    """Split a document into sentences: at line breaks, and after . ! ? followed by space and a capital/digit."""
    sentences = []
    for line in text.splitlines():
        sentences.extend(piece.strip() for piece in _SENTENCE_END.split(line) if piece.strip())
    return sentences


def read_documents(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Documents of UTF-8 text files, where whitespace-only lines separate documents (BERT's input format)."""
    documents: list[str] = []
    for path in validate_text_files(paths):
        current: list[str] = []
        with open_text(path) as f:
            for line in f:
                if line.strip():
                    current.append(line.rstrip("\n"))
                elif current:
                    documents.append("\n".join(current))
                    current = []
        if current:
            documents.append("\n".join(current))
    return documents


def load_documents(
    train_files: Sequence[str] | None = None,
    validation_files: Sequence[str] | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    text_column: str = "text",
    validation_split_percentage: float = 5.0,
    seed: int = 0,
):
    """A `datasets.DatasetDict` with "train" and "validation" splits of documents (column "text", one per row).

    Without validation data, `validation_split_percentage` % of the documents (at least one) are held out at
    random (seeded)."""
    import datasets

    if (train_files is None) == (dataset_name is None):
        raise DataError("Give either --train_file (text files) or --dataset_name (a `datasets` dataset), not both.")
    if train_files is not None:
        splits = {"train": datasets.Dataset.from_dict({"text": read_documents(train_files)})}
        if validation_files:
            splits["validation"] = datasets.Dataset.from_dict({"text": read_documents(validation_files)})
        raw = datasets.DatasetDict(splits)
    else:
        raw = load_dataset_any(dataset_name, dataset_config_name)
        require_split(raw, "train", dataset_name)
        for split in list(raw):
            if split not in ("train", "validation"):
                del raw[split]
                continue
            if text_column not in raw[split].column_names:
                raise DataError(
                    f"Dataset {dataset_name} split {split!r} has no column {text_column!r}; its columns are "
                    f"{raw[split].column_names}. Pass --text_column with the name of the text column."
                )
            ds = raw[split].select_columns([text_column])
            raw[split] = ds.rename_column(text_column, "text") if text_column != "text" else ds
    raw = raw.filter(lambda batch: [bool(t and t.strip()) for t in batch["text"]], batched=True)
    if len(raw["train"]) == 0:
        raise DataError("The training data holds no text: every document is empty.")
    if "validation" not in raw:
        if len(raw["train"]) < 2:
            raise DataError("Only one document: give --validation_file, or more documents separated by blank lines.")
        held_out = max(1, int(len(raw["train"]) * validation_split_percentage / 100))
        split = raw["train"].train_test_split(test_size=held_out, seed=seed, shuffle=True)
        raw = datasets.DatasetDict({"train": split["train"], "validation": split["test"]})
    return raw


def tokenize_documents(dataset, tokenizer, num_proc: int | None = None):
    """Split each document into sentences and tokenize them (no special tokens): column "sentences" of id lists."""

    def tokenize(batch):
        per_doc = [split_sentences(text) for text in batch["text"]]
        flat = [s for sentences in per_doc for s in sentences]
        ids = tokenizer(flat, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False)
        ids = ids["input_ids"]
        out, start = [], 0
        for sentences in per_doc:
            doc = [s for s in ids[start : start + len(sentences)] if s]
            start += len(sentences)
            out.append(doc)
        return {"sentences": out}

    tokenized = dataset.map(
        tokenize, batched=True, num_proc=num_proc, remove_columns=dataset.column_names, desc="Tokenizing sentences"
    )
    return tokenized.filter(lambda batch: [len(d) > 0 for d in batch["sentences"]], batched=True)


def _truncate_pair(tokens_a: list[int], tokens_b: list[int], max_tokens: int, rng: np.random.Generator) -> None:
    while len(tokens_a) + len(tokens_b) > max_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        # From the front or the back at random, so the model does not learn that text always ends at a boundary.
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def _pairs_from_document(
    doc_index: int, documents: list[list[list[int]]], max_seq_length: int, short_seq_prob: float, rng
) -> list[tuple[list[int], list[int], int]]:
    document = documents[doc_index]
    max_tokens = max_seq_length - 3  # [CLS] A [SEP] B [SEP]
    target = max_tokens
    if rng.random() < short_seq_prob:
        target = int(rng.integers(2, max_tokens + 1))
    pairs = []
    chunk: list[list[int]] = []
    length = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
            tokens_a = [t for s in chunk[:a_end] for t in s]
            if len(chunk) == 1 or rng.random() < 0.5:
                is_random = 1
                if len(documents) > 1:
                    j = int(rng.integers(len(documents) - 1))
                    other = documents[j + (j >= doc_index)]
                else:  # a single document: BERT's fallback, a random place in the same one
                    other = document
                start = int(rng.integers(len(other)))
                tokens_b: list[int] = []
                for sentence in other[start:]:
                    tokens_b.extend(sentence)
                    if len(tokens_b) >= target - len(tokens_a):
                        break
                i -= len(chunk) - a_end  # the sentences not used go back into the pool
            else:
                is_random = 0
                tokens_b = [t for s in chunk[a_end:] for t in s]
            _truncate_pair(tokens_a, tokens_b, max_tokens, rng)
            if tokens_a and tokens_b:
                pairs.append((tokens_a, tokens_b, is_random))
            chunk, length = [], 0
        i += 1
    return pairs


def create_nsp_pairs(
    tokenized,
    tokenizer,
    max_seq_length: int,
    short_seq_prob: float = 0.1,
    seed: int = 0,
    num_proc: int | None = None,
):
    """Sentence pairs `[CLS] A [SEP] B [SEP]` with token_type_ids and next_sentence_label (1 = B is random)."""
    _check_lengths(max_seq_length, 5, "sentence pairs ([CLS] A [SEP] B [SEP])")
    if not 0.0 <= short_seq_prob <= 1.0:
        raise DataError(f"short_seq_prob must be between 0 and 1, got {short_seq_prob}.")
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None or sep_id is None:
        raise DataError("The tokenizer has no [CLS]/[SEP] tokens: train one with --tokenizer_kind wordpiece.")

    def build(batch, indices):
        rng = np.random.default_rng([seed, indices[0]])
        documents = batch["sentences"]
        out = {"input_ids": [], "token_type_ids": [], "next_sentence_label": []}
        for d in range(len(documents)):
            if len(documents[d]) < 2:
                continue  # a one-sentence document (a heading, say) has no next sentence: only a random-B source
            for tokens_a, tokens_b, is_random in _pairs_from_document(
                d, documents, max_seq_length, short_seq_prob, rng
            ):
                out["input_ids"].append([cls_id, *tokens_a, sep_id, *tokens_b, sep_id])
                out["token_type_ids"].append([0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1))
                out["next_sentence_label"].append(is_random)
        return out

    shuffled = tokenized.shuffle(seed=seed).flatten_indices()
    return shuffled.map(
        build, batched=True, batch_size=_MAP_BATCH, with_indices=True, num_proc=num_proc,
        remove_columns=shuffled.column_names, desc="Building sentence pairs",
    )  # fmt: skip


def create_packed_sequences(tokenized, tokenizer, max_seq_length: int, num_proc: int | None = None):
    """RoBERTa-style MLM sequences: each document's tokens cut into `[CLS] ... [SEP]` pieces of max_seq_length."""
    _check_lengths(max_seq_length, 3, "sequences ([CLS] ... [SEP])")
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None or sep_id is None:
        raise DataError("The tokenizer has no [CLS]/[SEP] tokens: train one with --tokenizer_kind wordpiece.")
    size = max_seq_length - 2

    def pack(batch):
        out = {"input_ids": [], "token_type_ids": []}
        for document in batch["sentences"]:
            tokens = [t for s in document for t in s]
            for start in range(0, len(tokens), size):
                piece = [cls_id, *tokens[start : start + size], sep_id]
                out["input_ids"].append(piece)
                out["token_type_ids"].append([0] * len(piece))
        return out

    return tokenized.map(
        pack, batched=True, num_proc=num_proc, remove_columns=tokenized.column_names, desc="Packing sequences"
    )


def _check_lengths(max_seq_length: int, minimum: int, what: str) -> None:
    if max_seq_length < minimum:
        raise DataError(f"--max_seq_length {max_seq_length} is too short for {what}: use at least {minimum}.")


class BertMasker:
    """BERT's masking of one sequence (see the module docstring); picklable, so it runs inside `datasets.map`."""

    def __init__(
        self,
        tokenizer,
        mlm_probability: float = 0.15,
        whole_word_mask: bool = False,
        chinese_word_segmenter: Callable[[str], list[str]] | None = None,
    ):
        """`chinese_word_segmenter`: text -> its words (concatenating to the text), e.g.
        `hf_bigmodel.data.zh.ChineseWordSegmenter()`; given, it turns whole-word masking on and joins the characters
        of each Chinese word into one unit."""
        if not 0.0 < mlm_probability < 1.0:
            raise DataError(f"mlm_probability must be between 0 and 1 (exclusive), got {mlm_probability}.")
        if tokenizer.mask_token_id is None:
            raise DataError("The tokenizer has no mask token: train one with --tokenizer_kind wordpiece.")
        self.mlm_probability = mlm_probability
        self.whole_word_mask = whole_word_mask or chinese_word_segmenter is not None
        self.chinese_word_segmenter = chinese_word_segmenter
        self.mask_id = tokenizer.mask_token_id
        size = max(len(tokenizer), max(tokenizer.get_vocab().values()) + 1)
        self.special = np.zeros(size, dtype=bool)
        self.special[list(tokenizer.all_special_ids)] = True
        self.continuation = np.zeros(size, dtype=bool)
        self.chinese_character = np.zeros(size, dtype=bool)  # tokens that are one CJK ideograph
        self.token_text = [""] * size
        for token, index in tokenizer.get_vocab().items():
            self.continuation[index] = token.startswith("##")
            if chinese_word_segmenter is not None and is_cjk_character(token):
                self.chinese_character[index] = True
                self.token_text[index] = token
        self.random_ids = np.flatnonzero(~self.special)  # random replacements are ordinary tokens only

    def mask(self, input_ids: Sequence[int], rng: np.random.Generator) -> tuple[list[int], list[int]]:
        """(masked input_ids, labels) for one sequence."""
        ids = np.asarray(input_ids, dtype=np.int64)
        special = self.special[ids]
        candidates = np.flatnonzero(~special)
        labels = np.full(len(ids), -100, dtype=np.int64)
        if len(candidates) == 0:
            return ids.tolist(), labels.tolist()
        if self.whole_word_mask:
            continuation = self.continuation[ids[candidates]]
            if self.chinese_word_segmenter is not None:
                continuation |= self._inside_chinese_words(ids, candidates)
            starts = ~continuation
            starts[0] = True
            starts[1:] |= np.diff(candidates) != 1  # a continuation right after [SEP] starts a new unit
            units = np.split(candidates, np.flatnonzero(starts)[1:])
        else:
            units = [candidates[i : i + 1] for i in range(len(candidates))]
        budget = max(1, int(round(len(candidates) * self.mlm_probability)))
        chosen: list[int] = []
        for u in rng.permutation(len(units)):
            unit = units[u]
            if len(chosen) + len(unit) > budget:
                continue  # as BERT: skip a word that would overshoot, a later shorter one may fit
            chosen.extend(unit.tolist())
            if len(chosen) == budget:
                break
        positions = np.asarray(sorted(chosen), dtype=np.int64)
        labels[positions] = ids[positions]
        draw = rng.random(len(positions))
        masked = ids.copy()
        masked[positions[draw < 0.8]] = self.mask_id
        random_positions = positions[draw >= 0.9]
        masked[random_positions] = self.random_ids[rng.integers(len(self.random_ids), size=len(random_positions))]
        return masked.tolist(), labels.tolist()

    def _inside_chinese_words(self, ids: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """For each candidate position: whether it is a Chinese character that continues a word (not its first)."""
        inside = np.zeros(len(candidates), dtype=bool)
        chinese = self.chinese_character[ids[candidates]]
        # Runs of adjacent candidate positions that are all Chinese characters.
        breaks = np.flatnonzero(~chinese[1:] | ~chinese[:-1] | (np.diff(candidates) != 1)) + 1
        for run in np.split(np.arange(len(candidates)), breaks):
            if len(run) < 2 or not chinese[run[0]]:
                continue
            text = "".join(self.token_text[i] for i in ids[candidates[run]])
            position = run[0]
            for word in self.chinese_word_segmenter(text):
                inside[position + 1 : position + len(word)] = True
                position += len(word)
            if position != run[-1] + 1:
                raise ValueError(f"The Chinese word segmenter's words do not add up to the text {text!r}.")
        return inside

    def mask_example(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """`example` with masked input_ids and their labels: the transform of `PerExampleRandom` (dynamic masking
        drawn per example, whatever the processes and batch size)."""
        masked, labels = self.mask(example["input_ids"], rng)
        return {**example, "input_ids": masked, "labels": labels}


def apply_static_masking(dataset, masker: BertMasker, seed: int = 0, num_proc: int | None = None):
    """Mask every sequence once (seeded per map batch, so the same seed and `num_proc` give the same masks); adds a
    "labels" column."""

    def mask(batch, indices):
        rng = np.random.default_rng([seed, 1, indices[0]])
        masked = [masker.mask(ids, rng) for ids in batch["input_ids"]]
        return {"input_ids": [m[0] for m in masked], "labels": [m[1] for m in masked]}

    return dataset.map(mask, batched=True, batch_size=_MAP_BATCH, with_indices=True, num_proc=num_proc, desc="Masking")


@dataclass
class DataCollatorForBertPretraining:
    """Pads input_ids / token_type_ids (0) / attention_mask / labels (-100) on the right; passes
    next_sentence_label through. With `mask=True` it masks each sequence at batching time (dynamic masking, new
    masks every epoch) instead of using the static "labels" of the dataset."""

    tokenizer: Any
    masker: BertMasker | None = None
    mask: bool = False
    seed: int | None = None
    pad_to_multiple_of: int | None = None

    def __post_init__(self):
        if self.mask and self.masker is None:
            raise ValueError("mask=True needs a masker (BertMasker).")
        self._rng = None
        self._rng_pid = None

    def _generator(self) -> np.random.Generator:
        if self._rng is None or self._rng_pid != os.getpid():
            worker = torch.utils.data.get_worker_info()
            offset = worker.id if worker is not None else 0
            # Unseeded: derive from torch's RNG, which Trainer seeds, so runs are still reproducible.
            base = self.seed if self.seed is not None else int(torch.randint(0, 2**31 - 1, (1,)).item())
            self._rng = np.random.default_rng([base, offset])
            self._rng_pid = os.getpid()
        return self._rng

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [list(e["input_ids"]) for e in examples]
        labels = [list(e["labels"]) if "labels" in e else None for e in examples]
        if self.mask:
            rng = self._generator()
            masked = [self.masker.mask(row, rng) for row in rows]
            rows, labels = [m[0] for m in masked], [m[1] for m in masked]
        length = max(len(r) for r in rows)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        pad_id = self.tokenizer.pad_token_id
        batch = {
            "input_ids": torch.tensor([r + [pad_id] * (length - len(r)) for r in rows]),
            "attention_mask": torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows]),
            "token_type_ids": torch.tensor(
                [list(e.get("token_type_ids", [0] * len(r))) + [0] * (length - len(r)) for e, r in zip(examples, rows)]
            ),
        }
        if labels[0] is not None:
            batch["labels"] = torch.tensor([lab + [-100] * (length - len(lab)) for lab in labels])
        if "next_sentence_label" in examples[0]:
            batch["next_sentence_label"] = torch.tensor([e["next_sentence_label"] for e in examples])
        return batch


def build_pretraining_dataset(
    documents,
    tokenizer,
    objective: str = "mlm_nsp",
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    masker: BertMasker | None = None,
    static_masking: bool = True,
    dupe_factor: int = 1,
    seed: int = 0,
    num_proc: int | None = None,
):
    """Documents (column "text") -> training examples for `objective` ("mlm_nsp" or "mlm").

    With `static_masking` (and a `masker`) the examples carry masked input_ids and labels, `dupe_factor` copies
    with different masks (and, for mlm_nsp, different pairs); otherwise they are unmasked, for
    `DataCollatorForBertPretraining(mask=True)`."""
    import datasets

    if objective not in ("mlm_nsp", "mlm"):
        raise DataError(f"--objective must be mlm_nsp or mlm, got {objective!r}.")
    if dupe_factor < 1:
        raise DataError(f"dupe_factor must be >= 1, got {dupe_factor}.")
    tokenized = tokenize_documents(documents, tokenizer, num_proc)
    copies = []
    for copy in range(dupe_factor if static_masking else 1):
        if objective == "mlm_nsp":
            built = create_nsp_pairs(tokenized, tokenizer, max_seq_length, short_seq_prob, seed + copy, num_proc)
        else:
            built = create_packed_sequences(tokenized, tokenizer, max_seq_length, num_proc)
        if static_masking:
            if masker is None:
                raise ValueError("static_masking needs a masker (BertMasker).")
            built = apply_static_masking(built, masker, seed + copy, num_proc)
        copies.append(built)
    result = copies[0] if len(copies) == 1 else datasets.concatenate_datasets(copies)
    if len(result) == 0:
        raise DataError(
            "No examples could be built from these documents: they hold no text, or (for mlm_nsp) no document "
            "has two sentences. Give more text (documents are separated by blank lines) or use --objective mlm."
        )
    return result
