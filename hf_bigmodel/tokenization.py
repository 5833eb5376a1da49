"""Train tokenizers that `AutoTokenizer.from_pretrained` loads: `hf-bigmodel train-tokenizer` and `train_tokenizer`.

Kinds (a small dispatch table, `KINDS`, so that later kinds only add an entry):

* ``"bpe"``: byte-level BPE as in GPT-2. Text is split into bytes first, so every string encodes without an unknown
  token; merges are learned on top of the 256 byte symbols.
* ``"char"``: one token per character seen in training (sorted by code point, as nanoGPT's character model),
  followed by the 256 byte tokens ``<0x00>`` ... ``<0xFF>``. A character never seen in training is encoded as its
  UTF-8 bytes (byte fallback), so it still decodes back exactly.

* ``"unigram"``: SentencePiece-style Unigram for translation and other seq2seq models: NFKC normalization, spaces
  become ``\u2581`` (Metaspace), pieces are learned by the Unigram EM trainer, then the 256 byte tokens are added
  with byte fallback, so a character never seen in training still encodes (as its UTF-8 bytes) and decodes back.

Special tokens and ids of "bpe" and "char" (always at the start of the vocabulary)::

    0  <|pad|>        pad_token
    1  <|endoftext|>  bos_token and eos_token (one document separator, as GPT-2's <|endoftext|>)

GPT-2 has no pad token, and reusing eos as pad is a trap: `DataCollatorForLanguageModeling` masks the labels of
every pad id, so the model would never learn to emit eos. Hence a dedicated pad token that never appears in
training text.

``"wordpiece"`` (BERT) has its own special tokens, ids 0..4: ``[PAD] [UNK] [CLS] [SEP] [MASK]``. Its pipeline is
BERT's: `BertNormalizer` (control characters removed, spaces around CJK ideographs so each is one token, optional
lowercasing and accent stripping: ``lowercase=`` / ``strip_accents=``, CLI ``--no_lowercase`` / ``--strip_accents``),
`BertPreTokenizer` (whitespace and punctuation), WordPiece with ``##`` continuations, and a `TemplateProcessing`
post-processor: ``[CLS] a [SEP]`` and ``[CLS] a [SEP] b [SEP]`` with token_type_ids 0 for a and 1 for b. It is
saved as transformers' `BertTokenizer` (right padding), so `AutoTokenizer.from_pretrained` gives the usual BERT
behaviour. Decoding is lossy (lowercase, spacing around punctuation), as with any BERT tokenizer.

The bpe/char tokenizers insert no special tokens by themselves (GPT-2 behaviour): ``tokenizer(text)`` returns the text's tokens
only. Pretraining packs documents as ``doc_1 <|endoftext|> doc_2 <|endoftext|> ...`` by appending ``eos_token_id``
after each document; to generate "from the start of a document", prepend ``bos_token_id`` (the same token).
``padding_side="left"`` (a decoder-only model continues from the last position of each row) and
``clean_up_tokenization_spaces=False``, so ``tokenizer.decode(tokenizer(text)["input_ids"]) == text`` for any text.

Seq2seq (translation) tokenizers: ``kind="unigram"``, or ``"bpe"`` with ``seq2seq=True`` (``train_seq2seq_tokenizer``
trains one jointly on both sides of parallel data), use the Marian/BART-style special tokens and ids::

    0  <pad>   pad_token (also a fine decoder_start_token_id, as Marian)
    1  <s>     bos_token
    2  </s>    eos_token: appended to every source and target by the post-processor
    3  <unk>   unk_token (byte fallback makes it rare: only for text the model cannot represent at all)

``padding_side="right"``, and ``tokenizer(src, text_target=tgt)`` returns ``input_ids`` and ``labels`` that both end
with ``</s>``. For "unigram" the round trip is exact up to NFKC normalization:
``decode(encode(text), skip_special_tokens=True) == unicodedata.normalize("NFKC", text)``, spaces, tabs and line
breaks included. Exceptions (as for any tokenizer with these tokens): the special-token strings (``</s>``...) and
"\u2581" written in the text, and a literal byte-token name such as ``<0x41>`` when ``<`` or ``>`` never occurred in
training (it then decodes as its byte).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import shutil
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from ._cli import command
from .data import DataError, check_text_file, load_dataset_any, open_text, select_split

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast

PAD_TOKEN = "<|pad|>"
ENDOFTEXT_TOKEN = "<|endoftext|>"
# Order = ids: pad is 0, the document separator is 1.
SPECIAL_TOKENS = {"pad_token": PAD_TOKEN, "bos_token": ENDOFTEXT_TOKEN, "eos_token": ENDOFTEXT_TOKEN}
# Seq2seq (Marian/BART-style): pad 0, bos 1, eos 2, unk 3.
SEQ2SEQ_SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
_METASPACE = "\u2581"

# WordPiece (BERT) special tokens, in id order 0..4: the order of transformers 5's BertTokenizer defaults, with
# padding at id 0 so that a zero-initialised id tensor is all padding. (Google's BERT vocabularies put [PAD] at 0
# and [UNK] [CLS] [SEP] [MASK] at 100-103; the ids only have to agree with the model config, which
# `sync_config_with_tokenizer` ensures.)
WORDPIECE_SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}

_BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
_TEXT_BATCH_SIZE = 1000  # texts (lines or dataset rows) handed to the trainer at once
_MAX_LINE_CHARS = 1 << 20  # a file without newlines is still read in bounded pieces


class TokenizerTrainingError(DataError):
    """Bad training input or settings: the message says what is wrong and how to fix it (the CLI prints it)."""


# ----------------------------------------------------------------------------------------------------------------
# Kinds


def _special_token_list(special_tokens: dict[str, str]) -> list[str]:
    return list(dict.fromkeys(special_tokens.values()))


def _build_bpe(
    texts: Iterable[list[str]],
    vocab_size: int,
    min_frequency: int,
    show_progress: bool,
    special_tokens: dict[str, str] = SPECIAL_TOKENS,
) -> Tokenizer:
    specials = _special_token_list(special_tokens)
    smallest = len(specials) + 256
    if vocab_size < smallest:
        raise TokenizerTrainingError(
            f"vocab_size={vocab_size} is too small for a byte-level BPE tokenizer: it needs {len(specials)} special "
            f"tokens + 256 byte tokens = {smallest} before learning any merge. Use vocab_size >= {smallest} "
            f"(a few thousand for small corpora, 32000-50000 for large ones), or --kind char."
        )
    tokenizer = Tokenizer(models.BPE())
    # add_prefix_space=False: a prefix space would change the text, breaking exact round trips.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        # All 256 bytes, seen or not, so that any text encodes.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def _build_char(texts: Iterable[list[str]], vocab_size: int, min_frequency: int, show_progress: bool) -> Tokenizer:
    del vocab_size, min_frequency  # the vocabulary is every character seen
    counts: Counter[str] = Counter()
    progress = None
    if show_progress:
        from tqdm.auto import tqdm

        progress = tqdm(desc="Counting characters", unit=" texts")
    for batch in texts:
        for text in batch:
            counts.update(text)
        if progress is not None:
            progress.update(len(batch))
    if progress is not None:
        progress.close()

    vocab: dict[str, int] = {}
    for token in [*_special_token_list(SPECIAL_TOKENS), *sorted(counts), *_BYTE_TOKENS]:
        vocab.setdefault(token, len(vocab))
    # BPE without merges is a character lookup; byte_fallback maps a missing character to its <0xNN> byte tokens.
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True))
    tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    tokenizer.add_special_tokens(_special_token_list(SPECIAL_TOKENS))
    return tokenizer


def _build_wordpiece(
    texts: Iterable[list[str]],
    vocab_size: int,
    min_frequency: int,
    show_progress: bool,
    lowercase: bool = True,
    strip_accents: bool | None = None,
) -> Tokenizer:
    specials = list(WORDPIECE_SPECIAL_TOKENS.values())
    if vocab_size <= len(specials):
        raise TokenizerTrainingError(
            f"vocab_size={vocab_size} is too small for a WordPiece tokenizer: it needs the {len(specials)} special "
            f"tokens {', '.join(specials)} plus the characters of the text. Use a few thousand (BERT: 30522)."
        )
    tokenizer = Tokenizer(models.WordPiece(unk_token=WORDPIECE_SPECIAL_TOKENS["unk_token"]))
    # BERT's pipeline: clean control characters, put spaces around CJK ideographs (so each becomes one word),
    # optionally lowercase / strip accents, then split on whitespace and punctuation.
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        continuing_subword_prefix="##",
        show_progress=show_progress,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def _wrap_wordpiece(backend: Tokenizer, options: dict[str, Any], kwargs: dict[str, Any]) -> PreTrainedTokenizerFast:
    # transformers' own BertTokenizer rebuilt around the trained vocabulary: it sets the same normalizer,
    # pre-tokenizer, decoder and the [CLS] a [SEP] b [SEP] template with token_type_ids, and saves
    # "tokenizer_class": "BertTokenizer", so AutoTokenizer (and anything expecting a BERT tokenizer) loads it.
    from transformers import BertTokenizer

    # The trainer numbers tokens that tie in frequency in no fixed order (hash-map iteration), so the same text
    # would give other ids on every run. WordPiece only needs the set of pieces (longest match first), so ids
    # are reassigned: special tokens 0..4, then whole-word pieces, then "##" pieces, each sorted.
    specials = list(WORDPIECE_SPECIAL_TOKENS.values())
    pieces = sorted((t for t in backend.get_vocab() if t not in specials), key=lambda t: (t.startswith("##"), t))
    lowercase = options.get("lowercase", True)
    return BertTokenizer(
        vocab={token: index for index, token in enumerate([*specials, *pieces])},
        do_lower_case=lowercase,
        strip_accents=options.get("strip_accents"),
        tokenize_chinese_chars=True,
        **WORDPIECE_SPECIAL_TOKENS,
        padding_side="right",
        **kwargs,
    )


def _build_unigram(texts: Iterable[list[str]], vocab_size: int, min_frequency: int, show_progress: bool) -> Tokenizer:
    del min_frequency  # Unigram prunes by likelihood, not by pair counts
    specials = _special_token_list(SEQ2SEQ_SPECIAL_TOKENS)
    smallest = len(specials) + 256 + 2
    if vocab_size < smallest:
        raise TokenizerTrainingError(
            f"vocab_size={vocab_size} is too small for a unigram tokenizer: it needs {len(specials)} special tokens "
            f"+ 256 byte-fallback tokens + some pieces. Use vocab_size >= {smallest} (about 8000 for Multi30k-sized "
            f"data, 32000 for large corpora)."
        )
    tokenizer = Tokenizer(models.Unigram())
    # Spaces become "\u2581" in the normalizer (after NFKC), with one prepended so that a sentence's first word
    # looks like every other word; Metaspace then only splits before each "\u2581". Doing the replacement here
    # rather than with Metaspace's own prepend_scheme keeps leading spaces: "  a" -> "\u2581\u2581\u2581a".
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Prepend(_METASPACE), normalizers.Replace(" ", _METASPACE)]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="never", split=True)
    trainer = trainers.UnigramTrainer(
        # The byte tokens are added below, so the learned pieces leave room for them.
        vocab_size=vocab_size - 256,
        special_tokens=specials,
        unk_token=SEQ2SEQ_SPECIAL_TOKENS["unk_token"],
        show_progress=show_progress,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace(_METASPACE, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    # Byte fallback (as SentencePiece's --byte_fallback): the 256 <0xNN> pieces get a score far below any learned
    # piece, so the lattice never prefers them (not even for a literal "<0x41>" in the text); they are used only
    # for characters the vocabulary lacks.
    data = json.loads(tokenizer.to_str())
    pieces = data["model"]["vocab"]
    floor = min(score for _, score in pieces) - 1e4
    known = {piece for piece, _ in pieces}
    pieces.extend([byte, floor] for byte in _BYTE_TOKENS if byte not in known)
    data["model"]["byte_fallback"] = True
    return Tokenizer.from_str(json.dumps(data))


@dataclass(frozen=True)
class _Kind:
    build: Callable[..., Tokenizer]
    special_tokens: dict[str, str]
    padding_side: str
    help: str
    # Builds the transformers tokenizer from the trained backend; None: the GPT-style PreTrainedTokenizerFast.
    wrap: Callable[[Tokenizer, dict[str, Any], dict[str, Any]], PreTrainedTokenizerFast] | None = None
    options: tuple[str, ...] = ()  # extra keyword options of `train_tokenizer` this kind accepts
    add_eos: bool = False  # the post-processor appends eos to every sequence (seq2seq sources and targets)


KINDS: dict[str, _Kind] = {
    "bpe": _Kind(_build_bpe, SPECIAL_TOKENS, "left", "byte-level BPE (GPT-2)"),
    "char": _Kind(_build_char, SPECIAL_TOKENS, "left", "one token per character, byte fallback for unseen ones"),
    "wordpiece": _Kind(
        _build_wordpiece,
        WORDPIECE_SPECIAL_TOKENS,
        "right",
        "WordPiece (BERT): [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, pairs as [CLS] a [SEP] b [SEP]",
        wrap=_wrap_wordpiece,
        options=("lowercase", "strip_accents"),
    ),
    "unigram": _Kind(
        _build_unigram,
        SEQ2SEQ_SPECIAL_TOKENS,
        "right",
        "SentencePiece-style unigram (NFKC, metaspace, byte fallback) for seq2seq: <pad> <s> </s> <unk>, eos appended",
        add_eos=True,
    ),
}
# The same kinds with the seq2seq conventions (special tokens <pad> <s> </s> <unk>, eos appended, right padding).
SEQ2SEQ_KINDS: dict[str, _Kind] = {
    "unigram": KINDS["unigram"],
    "bpe": _Kind(
        functools.partial(_build_bpe, special_tokens=SEQ2SEQ_SPECIAL_TOKENS),
        SEQ2SEQ_SPECIAL_TOKENS,
        "right",
        "byte-level BPE with seq2seq special tokens",
        add_eos=True,
    ),
}


# ----------------------------------------------------------------------------------------------------------------
# Training input


def _batched(texts: Iterable[str], size: int = _TEXT_BATCH_SIZE) -> Iterator[list[str]]:
    iterator = iter(texts)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _file_texts(paths: Sequence[Path]) -> Iterator[str]:
    for path in paths:
        # newline="" keeps "\r\n" as written; open_text drops a byte-order mark instead of learning it as text.
        with open_text(path, newline="") as f:
            yield from iter(lambda f=f: f.readline(_MAX_LINE_CHARS), "")


def _dataset_texts(dataset: Any, text_column: str) -> Iterator[str]:
    columns = getattr(dataset, "column_names", None)
    if columns is not None and text_column not in columns:
        raise TokenizerTrainingError(
            f"The dataset has no column {text_column!r}; its columns are {columns}. "
            f"Pass text_column= (--text_column) naming the column that holds the text."
        )
    # Only the text column is read, batch by batch (Arrow-backed: nothing else is loaded into memory).
    return _column_texts(dataset.select_columns([text_column]), text_column)


def _column_texts(dataset: Any, text_column: str) -> Iterator[str]:
    for batch in dataset.iter(batch_size=_TEXT_BATCH_SIZE):
        for text in batch[text_column]:
            if text is None:
                continue
            if isinstance(text, dict):  # a "translation" column {lang: text}: every language feeds one tokenizer
                yield from (value for value in text.values() if isinstance(value, str))
                continue
            if not isinstance(text, str):
                raise TokenizerTrainingError(
                    f"Column {text_column!r} holds {type(text).__name__} values, not text. "
                    f"Pass text_column= (--text_column) naming a string column."
                )
            yield text


class _TextWatcher:
    """Passes batches through and remembers whether any of them held non-whitespace text."""

    def __init__(self, batches: Iterable[list[str]]):
        self.batches = batches
        self.has_text = False

    def __iter__(self) -> Iterator[list[str]]:
        for batch in self.batches:
            if not self.has_text:
                self.has_text = any(text.strip() for text in batch)
            yield batch


# ----------------------------------------------------------------------------------------------------------------
# Public API


def train_tokenizer(
    kind: str = "bpe",
    files: Sequence[str | Path] | None = None,
    dataset: datasets.Dataset | None = None,
    text_column: str = "text",
    vocab_size: int = 8192,
    min_frequency: int = 2,
    model_max_length: int | None = None,
    output_dir: str | Path | None = None,
    show_progress: bool = True,
    lowercase: bool | None = None,
    strip_accents: bool | None = None,
    seq2seq: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a `kind` tokenizer ("bpe", "char", "wordpiece" or "unigram") on text files or a `datasets` dataset and
    wrap it for transformers. All files (or every language of a "translation" column) feed one trainer: a joint
    vocabulary.

    Args:
        kind: "bpe" (byte-level BPE), "char" (characters with byte fallback), "wordpiece" (BERT) or "unigram"
            (SentencePiece-style, seq2seq); see the module docstring.
        files: UTF-8 text files. Each is checked up front (exists, valid UTF-8, not empty or whitespace only),
            then streamed line by line.
        dataset: a `datasets.Dataset` (or `IterableDataset`) whose `text_column` holds strings; read in batches.
            Pass exactly one of `files` and `dataset`.
        vocab_size: total tokens for "bpe", special and byte tokens included (a small corpus may yield fewer).
            Ignored for "char", whose vocabulary is every character seen + 256 byte tokens + the special tokens.
        min_frequency: "bpe" only: a pair must occur at least this often to be merged.
        model_max_length: longest input the model accepts (its `max_position_embeddings`); unset means no limit.
        output_dir: if given, `save_pretrained` there atomically (see `save_tokenizer`).
        show_progress: show the trainer's progress bars.
        lowercase: "wordpiece" only: lowercase the text (BERT "uncased"; default True).
        strip_accents: "wordpiece" only: remove accents (default: follow `lowercase`, as BERT does).
        seq2seq: use the seq2seq conventions ("bpe" or "unigram"; always on for "unigram"): special tokens
            <pad>=0 <s>=1 </s>=2 <unk>=3, </s> appended to every encoded sequence, right padding.

    Returns:
        "bpe"/"char": a `PreTrainedTokenizerFast` with pad id 0 and bos = eos id 1, left padding, no special tokens
        added by `__call__`, and exact `decode(encode(text)) == text`. "wordpiece": a `BertTokenizer` with
        [PAD] [UNK] [CLS] [SEP] [MASK] = 0..4, right padding, `[CLS] a [SEP] (b [SEP])` with token_type_ids.
        Seq2seq: see the module docstring.
    """
    if kind not in KINDS:
        raise TokenizerTrainingError(f"Unknown tokenizer kind {kind!r}. Available kinds: {', '.join(KINDS)}.")
    if seq2seq and kind not in SEQ2SEQ_KINDS:
        raise TokenizerTrainingError(
            f"Tokenizer kind {kind!r} has no seq2seq variant; use one of {', '.join(SEQ2SEQ_KINDS)}."
        )
    if (files is None) == (dataset is None):
        raise TokenizerTrainingError("Pass exactly one of `files` (text files) and `dataset` (a datasets.Dataset).")
    if min_frequency < 0:
        raise TokenizerTrainingError(f"min_frequency must be >= 0, got {min_frequency}.")
    if model_max_length is not None and model_max_length <= 0:
        raise TokenizerTrainingError(f"model_max_length must be a positive integer, got {model_max_length}.")
    spec = SEQ2SEQ_KINDS[kind] if seq2seq else KINDS[kind]
    options = {
        name: value
        for name, value in (("lowercase", lowercase), ("strip_accents", strip_accents))
        if value is not None
    }
    for name in options:
        if name not in spec.options:
            raise TokenizerTrainingError(f"{name}= only applies to --kind wordpiece, not {kind!r}.")

    if files is not None:
        paths = [Path(files)] if isinstance(files, (str, os.PathLike)) else [Path(f) for f in files]
        if not paths:
            raise TokenizerTrainingError("`files` is empty: pass at least one text file.")
        paths = [p.expanduser() for p in paths]
        for path in paths:
            check_text_file(path)
        texts: Iterable[str] = _file_texts(paths)
        source = f"{len(paths)} file(s)"
    else:
        texts = _dataset_texts(dataset, text_column)
        source = f"column {text_column!r} of the dataset"

    watcher = _TextWatcher(_batched(texts))
    backend = spec.build(watcher, vocab_size, min_frequency, show_progress, **options)
    if not watcher.has_text:
        raise TokenizerTrainingError(
            f"No training text found in {source}: every entry is empty or whitespace. Check the data "
            f"(and text_column / --text_column)."
        )

    from transformers import PreTrainedTokenizerFast

    kwargs: dict[str, Any] = {}
    if model_max_length is not None:
        kwargs["model_max_length"] = model_max_length
    if spec.wrap is not None:
        tokenizer = spec.wrap(backend, options, kwargs)
        if output_dir is not None:
            save_tokenizer(tokenizer, output_dir)
        return tokenizer
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        **spec.special_tokens,
        padding_side=spec.padding_side,
        clean_up_tokenization_spaces=False,
        # Explicit values: transformers then installs the matching post-processor (none, or "$A </s>" for seq2seq).
        add_bos_token=False,
        add_eos_token=spec.add_eos,
        model_input_names=["input_ids", "attention_mask"],
        **kwargs,
    )
    if output_dir is not None:
        save_tokenizer(tokenizer, output_dir)
    return tokenizer


def train_seq2seq_tokenizer(
    kind: str = "unigram",
    source_files: Sequence[str | Path] | None = None,
    target_files: Sequence[str | Path] | None = None,
    dataset: datasets.Dataset | None = None,
    translation_column: str = "translation",
    vocab_size: int = 8000,
    min_frequency: int = 2,
    model_max_length: int | None = None,
    output_dir: str | Path | None = None,
    show_progress: bool = True,
) -> PreTrainedTokenizerFast:
    """Train one joint source/target tokenizer for translation ("unigram" or "bpe", seq2seq conventions).

    Both sides go to one trainer: `source_files` + `target_files` (UTF-8 text), or the `translation_column` of a
    dataset whose rows are `{lang: text}` dicts (every language is used). A shared vocabulary lets the model tie
    its encoder, decoder and output embeddings, and copies names and numbers from source to target naturally.
    """
    if dataset is not None:
        if source_files or target_files:
            raise TokenizerTrainingError("Pass either parallel files or a dataset, not both.")
        return train_tokenizer(kind, dataset=dataset, text_column=translation_column, vocab_size=vocab_size,
                               min_frequency=min_frequency, model_max_length=model_max_length,
                               output_dir=output_dir, show_progress=show_progress, seq2seq=True)  # fmt: skip
    files = [*(source_files or []), *(target_files or [])]
    if not files:
        raise TokenizerTrainingError("Pass source_files and target_files (parallel text) or a dataset.")
    return train_tokenizer(kind, files=files, vocab_size=vocab_size, min_frequency=min_frequency,
                           model_max_length=model_max_length, output_dir=output_dir, show_progress=show_progress,
                           seq2seq=True)  # fmt: skip


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, output_dir: str | Path) -> Path:
    """`save_pretrained(output_dir)` without ever leaving a half-written tokenizer behind.

    The files are written to a temporary folder next to `output_dir`, then moved with `os.replace` (atomic on one
    filesystem): the whole folder when `output_dir` does not exist yet, else file by file, so that the weights and
    config of a model folder that already holds them are kept.
    """
    output_dir = Path(output_dir).expanduser().absolute()
    if output_dir.exists() and not output_dir.is_dir():
        raise TokenizerTrainingError(f"output_dir {output_dir} exists and is not a directory. Pick another path.")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = output_dir.parent / f".{output_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir()
    try:
        tokenizer.save_pretrained(tmp_dir)
        if output_dir.is_dir():
            for file in sorted(tmp_dir.iterdir()):
                os.replace(file, output_dir / file.name)
        else:
            os.replace(tmp_dir, output_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return output_dir


def _special_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int | None]:
    names = ["pad_token_id", "bos_token_id", "eos_token_id"]
    if tokenizer.bos_token is None and tokenizer.cls_token is not None:  # BERT: no bos/eos, [CLS] and [SEP] instead
        names = ["pad_token_id", "cls_token_id", "sep_token_id", "mask_token_id"]
    return {name: getattr(tokenizer, name) for name in names}


def check_tokenizer_matches_config(tokenizer: PreTrainedTokenizerFast, config: PreTrainedConfig) -> None:
    """Raise `ValueError` if the model cannot use `tokenizer`: a token id past the embedding matrix, or
    pad/bos/eos ids in the config (where set) that differ from the tokenizer's."""
    problems = []
    if len(tokenizer) > config.vocab_size:
        problems.append(
            f"The tokenizer has {len(tokenizer)} tokens but config.vocab_size is {config.vocab_size}, so token ids "
            f">= {config.vocab_size} would index past the embedding matrix. Set vocab_size >= {len(tokenizer)} in "
            f"the config (sync_config_with_tokenizer(config, tokenizer) does it) or retrain the tokenizer with "
            f"vocab_size <= {config.vocab_size}."
        )
    for name, token_id in _special_ids(tokenizer).items():
        config_id = getattr(config, name, None)
        if config_id is None:
            continue
        matches = token_id in config_id if isinstance(config_id, (list, tuple)) else token_id == config_id
        if not matches:
            token = getattr(tokenizer, name.removesuffix("_id"))
            has = f"has {token!r} = {token_id}" if token_id is not None else "has none"
            problems.append(
                f"config.{name} is {config_id} but the tokenizer {has}. Copy the tokenizer's ids into the config "
                f"(sync_config_with_tokenizer(config, tokenizer))."
            )
    if problems:
        raise DataError("The tokenizer does not match the model config:\n- " + "\n- ".join(problems))


def sync_config_with_tokenizer(
    config: PreTrainedConfig, tokenizer: PreTrainedTokenizerFast, *, pad_to_multiple_of: int = 1
) -> PreTrainedConfig:
    """Set `config.vocab_size` to `len(tokenizer)` and the config's pad/bos/eos ids to the tokenizer's; return it.

    `pad_to_multiple_of` rounds `vocab_size` up, e.g. 64: the embedding and output-projection matmuls then have a
    dimension that splits evenly into GPU tensor-core tiles, which is measurably faster (nanoGPT pads GPT-2's 50257
    to 50304 for this). The extra rows are never produced by the tokenizer; the model learns to give them
    near-zero probability.
    """
    if not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1:
        raise ValueError(f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r}.")
    config.vocab_size = math.ceil(len(tokenizer) / pad_to_multiple_of) * pad_to_multiple_of
    for name, token_id in _special_ids(tokenizer).items():
        if name in ("pad_token_id", "bos_token_id", "eos_token_id") or hasattr(config, name):
            setattr(config, name, token_id)
    return config


# ----------------------------------------------------------------------------------------------------------------
# Command line

# Plain-text files given as --dataset are read as --files (exact bytes, nothing written to the datasets cache).
_TEXT_SUFFIXES = (".txt", ".text")


def _dataset_split(name_or_path: str, config_name: str | None, split: str) -> Any:
    """One split of `--dataset` (a data file, a folder, a `save_to_disk` folder or a dataset name)."""
    # The default drops "\n", which the tokenizer must learn. (The text loader still turns "\r\n" into "\n";
    # --files keeps the bytes exactly.)
    try:
        raw = load_dataset_any(name_or_path, config_name, keep_linebreaks=True)
    except DataError as err:
        if "Cannot tell the format" in str(err):
            raise DataError(f"{err} For plain text use --files {name_or_path}.") from err
        raise
    if Path(name_or_path).expanduser().is_file():  # a single data file is one split, whatever it is called
        split = "train" + split[len(split.split("[", 1)[0]) :]
    return select_split(raw, split, name_or_path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-bigmodel train-tokenizer",
        description="Train a tokenizer that AutoTokenizer.from_pretrained(OUTPUT_DIR) loads. Special tokens: "
        f"{PAD_TOKEN} = 0 (padding), {ENDOFTEXT_TOKEN} = 1 (bos and eos); no bos/eos is added when encoding. "
        "With --kind unigram or --seq2seq: <pad> <s> </s> <unk> = 0 1 2 3 and </s> appended to every sequence.",
    )
    parser.add_argument(
        "--kind",
        choices=list(KINDS),
        default="bpe",
        help="; ".join(f"{name}: {kind.help}" for name, kind in KINDS.items()) + " (default: bpe)",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--files", nargs="+", metavar="FILE", help="UTF-8 text files to train on")
    source.add_argument(
        "--dataset",
        metavar="NAME_OR_PATH",
        help="datasets.load_dataset name (cached) or local file/folder (also save_to_disk folders)",
    )
    parser.add_argument("--dataset_config", default=None, help="dataset configuration name")
    parser.add_argument("--dataset_split", default="train", help="dataset split (default: train)")
    parser.add_argument("--text_column", default="text", help="dataset column holding the text (default: text)")
    parser.add_argument(
        "--vocab_size",
        type=int,
        default=None,
        help="bpe: total vocabulary size, special and byte tokens included (default: 8192); "
        "char: ignored, the vocabulary is every character seen",
    )
    parser.add_argument(
        "--min_frequency", type=int, default=2, help="bpe: minimum count of a merged pair (default: 2)"
    )
    parser.add_argument(
        "--model_max_length",
        type=int,
        default=None,
        help="longest input the model accepts, usually its max_position_embeddings",
    )
    case = parser.add_mutually_exclusive_group()
    case.add_argument(
        "--lowercase",
        dest="lowercase",
        action="store_true",
        default=None,
        help="wordpiece: lowercase the text (default, BERT uncased)",
    )
    case.add_argument(
        "--no_lowercase", dest="lowercase", action="store_false", help="wordpiece: keep the case (BERT cased)"
    )
    accents = parser.add_mutually_exclusive_group()
    accents.add_argument(
        "--strip_accents",
        dest="strip_accents",
        action="store_true",
        default=None,
        help="wordpiece: remove accents (default: when lowercasing, as BERT)",
    )
    accents.add_argument(
        "--no_strip_accents", dest="strip_accents", action="store_false", help="wordpiece: keep accents"
    )
    parser.add_argument(
        "--seq2seq",
        action="store_true",
        help="seq2seq conventions (bpe or unigram; always on for unigram): <pad> <s> </s> <unk> = 0 1 2 3, </s> "
        "appended to every sequence, right padding. Give the source and target files together for a joint vocabulary",
    )
    parser.add_argument("--output_dir", required=True, help="folder to save the tokenizer in (created if needed)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bars")
    return parser


@command("hf-bigmodel train-tokenizer")
def main(argv: list[str] | None = None) -> int:
    """`hf-bigmodel train-tokenizer`: returns 0 on success, 2 with a one-paragraph message on bad input."""
    args = _parser().parse_args(argv)
    if args.kind == "char" and args.vocab_size is not None:
        print(f"note: --vocab_size is ignored for --kind char (got {args.vocab_size}).", file=sys.stderr)
    try:
        files, dataset = args.files, None
        if args.dataset is not None and Path(args.dataset).suffix.lower() in _TEXT_SUFFIXES:
            files = [args.dataset]
        elif args.dataset is not None:
            dataset = _dataset_split(args.dataset, args.dataset_config, args.dataset_split)
        tokenizer = train_tokenizer(
            kind=args.kind,
            files=files,
            dataset=dataset,
            text_column=args.text_column,
            vocab_size=8192 if args.vocab_size is None else args.vocab_size,
            min_frequency=args.min_frequency,
            model_max_length=args.model_max_length,
            output_dir=args.output_dir,
            show_progress=not args.no_progress,
            lowercase=args.lowercase,
            strip_accents=args.strip_accents,
            seq2seq=args.seq2seq,
        )
    except ConnectionError as err:  # datasets' "cannot reach the Hub" for a name that is not a local file
        raise DataError(f"{err} (is --dataset a local file or folder? check its path)") from err
    print(f"Saved a {args.kind} tokenizer with {len(tokenizer)} tokens to {Path(args.output_dir).absolute()}")
    for name, token_id in _special_ids(tokenizer).items():
        print(f"  {name} = {token_id} ({getattr(tokenizer, name.removesuffix('_id'))!r})")
    if tokenizer.unk_token is not None:
        print(f"  unk_token_id = {tokenizer.unk_token_id} ({tokenizer.unk_token!r})")
    print(f"Load it with AutoTokenizer.from_pretrained({str(args.output_dir)!r}).")
    return 0


__all__ = [
    "KINDS",
    "SEQ2SEQ_KINDS",
    "SEQ2SEQ_SPECIAL_TOKENS",
    "SPECIAL_TOKENS",
    "TokenizerTrainingError",
    "WORDPIECE_SPECIAL_TOKENS",
    "check_tokenizer_matches_config",
    "main",
    "save_tokenizer",
    "sync_config_with_tokenizer",
    "train_seq2seq_tokenizer",
    "train_tokenizer",
]
