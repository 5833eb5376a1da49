"""Seq2seq tokenizers: unigram (SentencePiece-style) and byte-level BPE trained jointly on parallel text, with
<pad> <s> </s> <unk>, </s> appended to sources and targets, exact UTF-8 round trips (up to NFKC for unigram)."""

import gzip
import itertools
import unicodedata
from pathlib import Path

import datasets
import pytest
from transformers import AutoTokenizer

from hf_bigmodel import cli
from hf_bigmodel.testing import shared_data
from hf_bigmodel.tokenization import SEQ2SEQ_KINDS, train_seq2seq_tokenizer, train_tokenizer

MULTI30K = shared_data("multi30k_de_en") / "raw"

# Written for these tests: a small German/English parallel text (repetition gives the trainers something to learn).
GERMAN = [
    "Ein Mann mit einem roten Hut sitzt auf einer Bank.",
    "Zwei Kinder spielen im Garten mit einem Ball.",
    "Eine Frau liest ein Buch neben dem Fenster.",
    "Der Hund läuft über die grüne Wiese.",
    'Straßenmusiker spielen Gitarre vor dem Café <b> & "Größe".',
]
ENGLISH = [
    "A man in a red hat sits on a bench.",
    "Two children play with a ball in the garden.",
    "A woman reads a book next to the window.",
    "The dog runs across the green meadow.",
    'Street musicians play guitar in front of the café <b> & "size".',
]

TRICKY = [
    "",
    " ",
    "   leading spaces",
    "trailing spaces   ",
    "multiple    spaces   inside",
    "tabs\tand\t\tmore\ttabs",
    "line one\nline two\n\n\nafter blank lines\n",
    "windows\r\nline\r\nendings\r\n",
    "emoji \U0001f600\U0001f680 family \U0001f468\u200d\U0001f469\u200d\U0001f467 flag \U0001f1eb\U0001f1f7",
    "CJK \u65e5\u672c\u8a9e \u4e2d\u6587 \ud55c\uad6d\uc5b4",
    "combining e\u0301 a\u0308 vs precomposed \u00e9 \u00e4, ligature \ufb01 and \u00bd (NFKC changes these)",
    "never seen in training: \u0416\u0417 \u05d0\u05d1 \u0e01\u0e02 \U00010348 \u2603 \ufffd \x00 \x7f",
    "Straßenmusiker spielen Gitarre.",
]


@pytest.fixture(scope="module")
def parallel(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("parallel")
    src, tgt = directory / "train.de", directory / "train.en"
    src.write_text("".join(line + "\n" for line in GERMAN * 40), encoding="utf-8")
    tgt.write_text("".join(line + "\n" for line in ENGLISH * 40), encoding="utf-8")
    return src, tgt


@pytest.fixture(scope="module", params=list(SEQ2SEQ_KINDS))
def trained(request, parallel, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"tok_{request.param}") / "tokenizer"
    tokenizer = train_seq2seq_tokenizer(request.param, [parallel[0]], [parallel[1]], vocab_size=700,
                                        model_max_length=128, output_dir=out, show_progress=False)  # fmt: skip
    return request.param, tokenizer, out


def test_special_tokens_ids_and_eos_appended_to_sources_and_targets(trained):
    kind, tokenizer, out = trained
    reloaded = AutoTokenizer.from_pretrained(out)
    for tok in (tokenizer, reloaded):
        specials = [(tok.pad_token, tok.pad_token_id), (tok.bos_token, tok.bos_token_id),
                    (tok.eos_token, tok.eos_token_id), (tok.unk_token, tok.unk_token_id)]  # fmt: skip
        assert specials == [("<pad>", 0), ("<s>", 1), ("</s>", 2), ("<unk>", 3)]
        assert tok.padding_side == "right" and tok.model_max_length == 128
        batch = tok(GERMAN[:2], text_target=ENGLISH[:2])
        for ids in (*batch["input_ids"], *batch["labels"]):
            assert ids[-1] == 2 and 2 not in ids[:-1] and 1 not in ids and 0 not in ids
        assert tok.decode(batch["input_ids"][0], skip_special_tokens=True) == GERMAN[0]
        assert tok.decode(batch["labels"][1], skip_special_tokens=True) == ENGLISH[1]
        padded = tok(GERMAN[:2], text_target=ENGLISH[:2], padding=True)
        short = len(batch["input_ids"][0])
        assert padded["input_ids"][0][:short] == batch["input_ids"][0]
        assert set(padded["input_ids"][0][short:]) <= {0} and padded["attention_mask"][0][short:] == [0] * (
            len(padded["input_ids"][0]) - short
        )
    assert reloaded.get_vocab() == tokenizer.get_vocab()


def _joint_vs_german_only(kind: str, de: Path, en: Path, vocab_size: int) -> tuple[float, float]:
    joint = train_seq2seq_tokenizer(kind, [de], [en], vocab_size=vocab_size, show_progress=False)
    german_only = train_seq2seq_tokenizer(kind, [de], vocab_size=vocab_size, show_progress=False)
    english, german = en.read_text(encoding="utf-8")[:20_000], de.read_text(encoding="utf-8")[:20_000]

    def ratio(text: str) -> float:
        return len(joint(text)["input_ids"]) / len(german_only(text)["input_ids"])

    return ratio(english), ratio(german)


def test_bpe_vocabulary_is_joint(parallel):
    """Both sides feed one trainer: English encodes far more compactly than with a German-only vocabulary."""
    english, german = _joint_vs_german_only("bpe", *parallel, vocab_size=700)
    assert english < 0.7 and german < 1.3


@pytest.mark.skipif(not MULTI30K.is_dir(), reason="Multi30k not available")
def test_unigram_vocabulary_is_joint_on_multi30k(tmp_path):
    # The unigram trainer needs real text to learn word pieces (on a few template sentences it keeps characters).
    de, en = tmp_path / "train.de", tmp_path / "train.en"
    for lang, path in (("de", de), ("en", en)):
        with gzip.open(MULTI30K / f"train.{lang}.gz", "rt", encoding="utf-8") as f:
            path.write_text("".join(itertools.islice(f, 3000)), encoding="utf-8")
    english, german = _joint_vs_german_only("unigram", de, en, vocab_size=2000)
    assert english < 0.8 and german < 1.3
    tokenizer = train_seq2seq_tokenizer("unigram", [de], [en], vocab_size=2000, show_progress=False)
    assert tokenizer.tokenize("A man in an orange hat.") == ["\u2581A", "\u2581man", "\u2581in", "\u2581an",
                                                             "\u2581orange", "\u2581hat", "."]  # fmt: skip


def test_round_trip_of_any_utf8(trained):
    kind, tokenizer, out = trained
    reloaded = AutoTokenizer.from_pretrained(out)
    for text in TRICKY:
        ids = reloaded(text)["input_ids"]
        decoded = reloaded.decode(ids, skip_special_tokens=True)
        # unigram normalizes with NFKC (as SentencePiece); byte-level BPE keeps the bytes exactly.
        expected = unicodedata.normalize("NFKC", text) if kind == "unigram" else text
        assert decoded == expected, (kind, text)
        assert tokenizer(text)["input_ids"] == ids
    if kind == "unigram":
        assert unicodedata.normalize("NFKC", TRICKY[10]) != TRICKY[10]  # the NFKC case is a real one
        # An unseen character falls back to its UTF-8 bytes instead of <unk>.
        ids = reloaded("\u2603", add_special_tokens=False)["input_ids"]
        assert reloaded.convert_ids_to_tokens(ids)[-3:] == ["<0xE2>", "<0x98>", "<0x83>"]
        assert reloaded.unk_token_id not in reloaded(TRICKY[11])["input_ids"]


def test_unigram_uses_nfkc_metaspace_and_unigram_model(trained):
    kind, _, out = trained
    import json

    data = json.loads((out / "tokenizer.json").read_text())
    if kind == "unigram":
        assert data["model"]["type"] == "Unigram" and data["model"]["byte_fallback"] is True
        assert data["normalizer"]["normalizers"][0]["type"] == "NFKC"
        assert data["pre_tokenizer"]["type"] == "Metaspace"
    else:
        assert data["model"]["type"] == "BPE" and data["pre_tokenizer"]["type"] == "ByteLevel"


def test_joint_training_from_a_translation_dataset_matches_the_files(parallel):
    rows = [{"de": de, "en": en} for de, en in zip(GERMAN * 40, ENGLISH * 40)]
    dataset = datasets.Dataset.from_dict({"translation": rows})
    from_dataset = train_seq2seq_tokenizer("bpe", dataset=dataset, vocab_size=350, show_progress=False)
    # The dataset interleaves the languages row by row, the files give all German first: BPE counts are equal.
    from_files = train_seq2seq_tokenizer("bpe", [parallel[0]], [parallel[1]], vocab_size=350, show_progress=False)
    assert from_dataset.get_vocab() == from_files.get_vocab()
    unigram = train_seq2seq_tokenizer("unigram", dataset=dataset, vocab_size=350, show_progress=False)
    assert unigram.decode(unigram(ENGLISH[0])["input_ids"], skip_special_tokens=True) == ENGLISH[0]


def test_seq2seq_errors(parallel):
    with pytest.raises(ValueError, match=r"Tokenizer kind 'char' has no seq2seq variant; use one of unigram, bpe"):
        train_tokenizer("char", files=[parallel[0]], seq2seq=True)
    with pytest.raises(ValueError, match=r"vocab_size=100 is too small for a unigram tokenizer.*vocab_size >= 262"):
        train_seq2seq_tokenizer("unigram", [parallel[0]], [parallel[1]], vocab_size=100, show_progress=False)
    with pytest.raises(ValueError, match="Pass source_files and target_files"):
        train_seq2seq_tokenizer("unigram")
    with pytest.raises(ValueError, match="either parallel files or a dataset"):
        train_seq2seq_tokenizer("bpe", [parallel[0]], dataset=datasets.Dataset.from_dict({"translation": []}))


def test_cli_trains_a_joint_unigram_tokenizer(parallel, tmp_path, capsys):
    out = tmp_path / "uni"
    argv = ["train-tokenizer", "--kind", "unigram", "--files", *map(str, parallel), "--vocab_size", "400"]
    assert cli.main([*argv, "--output_dir", str(out), "--no_progress"]) == 0
    stdout = capsys.readouterr().out
    assert "eos_token_id = 2 ('</s>')" in stdout and "unk_token_id = 3 ('<unk>')" in stdout
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer(GERMAN[0], text_target=ENGLISH[0])["labels"][-1] == 2
    bpe = tmp_path / "bpe"
    assert cli.main(["train-tokenizer", "--kind", "bpe", "--seq2seq", "--files", *map(str, parallel),
                     "--vocab_size", "400", "--output_dir", str(bpe), "--no_progress"]) == 0  # fmt: skip
    assert AutoTokenizer.from_pretrained(bpe)(ENGLISH[0])["input_ids"][-1] == 2
