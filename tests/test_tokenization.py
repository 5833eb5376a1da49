"""Tokenizer training for the GPT kinds (bpe, char; wordpiece has test_tokenization_wordpiece.py): exact round
trips, reload through AutoTokenizer, config sync, input errors, CLI."""

import json
from pathlib import Path

import datasets
import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from hf_bigmodel import cli
from hf_bigmodel.data import DataError
from hf_bigmodel.models.gpt import BigModelGPTConfig
from hf_bigmodel.testing import shared_data
from hf_bigmodel.tokenization import (
    KINDS,
    SPECIAL_TOKENS,
    check_tokenizer_matches_config,
    save_tokenizer,
    sync_config_with_tokenizer,
    train_tokenizer,
)

SHAKESPEARE = shared_data("tiny_shakespeare") / "input.txt"

# Written for these tests. Repetition gives BPE pairs to merge; the odd lines cover tabs, CRLF and accents.
OWN_TEXT = (
    "The little model reads the little book, and the little book reads the model back.\n"
    "A tokenizer turns text into numbers; the numbers turn back into the same text.\n"
    "  Indented lines keep their spaces,\tand tabs stay tabs.\n"
    "Windows lines end like this.\r\n"
    "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, na\u00efve fa\u00e7ade.\n"
    "\n"
    "Numbers: 0 1 2 3 12 123 1234 3.14159 and 2718.\n"
) * 20

TRICKY = [
    "",
    " ",
    "   leading spaces",
    "trailing spaces   ",
    "multiple    spaces   inside",
    "tabs\tand\t\tmore\ttabs",
    "line one\nline two\n\n\nafter blank lines\n",
    "windows\r\nline\r\nendings\r\n",
    "lone\rcarriage return",
    "emoji \U0001f600\U0001f680 family \U0001f468\u200d\U0001f469\u200d\U0001f467 flag \U0001f1eb\U0001f1f7",
    "CJK \u65e5\u672c\u8a9e \u4e2d\u6587 \ud55c\uad6d\uc5b4",
    "combining e\u0301 a\u0308 n\u0303 vs precomposed \u00e9 \u00e4 \u00f1",
    "never seen in training: \u0416\u0417 \u05d0\u05d1 \u0e01\u0e02 \U00010348 \u2603 \ufffd \x00 \x7f",
    "special token text <|endoftext|> inside <|pad|> text",
    "byte-token lookalikes <0x41> <0xFF>",
    "space before punctuation , . ! ? and do n't , I 'm , it 's",
    " \u00a0non-breaking\u2009thin\u3000ideographic spaces ",
]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    text = OWN_TEXT
    if SHAKESPEARE.is_file():
        text += SHAKESPEARE.read_text(encoding="utf-8")[:50_000]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_bytes(text.encode("utf-8"))  # bytes: keep "\r\n" exactly as written
    return path


# The GPT-style kinds; wordpiece and unigram have their own conventions and test files.
@pytest.fixture(scope="module", params=[kind for kind in KINDS if KINDS[kind].special_tokens is SPECIAL_TOKENS])
def trained(request, corpus_file, tmp_path_factory) -> tuple[str, PreTrainedTokenizerFast, Path]:
    out = tmp_path_factory.mktemp(f"tok_{request.param}") / "tokenizer"
    tokenizer = train_tokenizer(
        request.param, files=[corpus_file], vocab_size=600, model_max_length=128, output_dir=out, show_progress=False
    )
    return request.param, tokenizer, out


def test_saved_tokenizer_reloads_with_auto_tokenizer_and_encodes_identically(trained, corpus_file):
    kind, tokenizer, out = trained
    assert sorted(p.name for p in out.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    # The atomic save leaves no temporary folder next to the output.
    assert [p.name for p in out.parent.iterdir()] == ["tokenizer"]

    reloaded = AutoTokenizer.from_pretrained(out)
    assert isinstance(reloaded, PreTrainedTokenizerFast)
    assert len(reloaded) == len(tokenizer)
    assert reloaded.get_vocab() == tokenizer.get_vocab()
    assert reloaded.model_max_length == 128
    assert reloaded.clean_up_tokenization_spaces is False
    texts = [*TRICKY, corpus_file.read_bytes().decode("utf-8")[:5000]]
    for text in texts:
        assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"], text
    batch = reloaded(texts[1:5], padding=True)
    assert batch["input_ids"] == tokenizer(texts[1:5], padding=True)["input_ids"]


def test_round_trip_is_exact_for_any_utf8(trained):
    kind, tokenizer, out = trained
    reloaded = AutoTokenizer.from_pretrained(out)
    for tok in (tokenizer, reloaded):
        for text in TRICKY:
            ids = tok(text)["input_ids"]
            assert tok.decode(ids) == text, (kind, text)
            # Same through the batch API, which the pretraining data pipeline uses.
        batch = tok(TRICKY)["input_ids"]
        assert tok.batch_decode(batch) == TRICKY


def test_special_tokens_are_fixed_and_never_inserted(trained):
    kind, tokenizer, _ = trained
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("<|pad|>", 0)
    assert (tokenizer.bos_token, tokenizer.bos_token_id) == ("<|endoftext|>", 1)
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|endoftext|>", 1)
    ids = tokenizer("The little model")["input_ids"]
    assert ids and 0 not in ids and 1 not in ids  # GPT-2 behaviour: no bos/eos added
    # The separator written in text is the special token (one id), as packing code produces it.
    assert tokenizer("a<|endoftext|>b")["input_ids"] == [*tokenizer("a")["input_ids"], 1, *tokenizer("b")["input_ids"]]


def test_padding_is_left_with_the_pad_id(trained):
    _, tokenizer, out = trained
    reloaded = AutoTokenizer.from_pretrained(out)
    assert reloaded.padding_side == "left"
    short, long = "the", "the little model reads the little book"
    batch = reloaded([short, long], padding=True)
    n_short = len(reloaded(short)["input_ids"])
    n_long = len(reloaded(long)["input_ids"])
    assert n_long > n_short
    assert batch["input_ids"][0] == [0] * (n_long - n_short) + reloaded(short)["input_ids"]
    assert batch["attention_mask"][0] == [0] * (n_long - n_short) + [1] * n_short
    assert batch["input_ids"][1] == reloaded(long)["input_ids"]


def test_bpe_learns_merges_and_respects_vocab_size(corpus_file):
    tokenizer = train_tokenizer("bpe", files=[corpus_file], vocab_size=400, show_progress=False)
    assert 2 + 256 < len(tokenizer) <= 400
    text = corpus_file.read_bytes().decode("utf-8")[:3000]
    # Without merges there would be one token per byte.
    assert len(tokenizer(text)["input_ids"]) < 0.6 * len(text.encode("utf-8"))
    with pytest.raises(ValueError, match=r"vocab_size=100 is too small .* Use vocab_size >= 258"):
        train_tokenizer("bpe", files=[corpus_file], vocab_size=100, show_progress=False)


def test_char_vocab_is_every_character_seen_then_byte_fallback(corpus_file):
    tokenizer = train_tokenizer("char", files=[corpus_file], vocab_size=10, show_progress=False)  # vocab_size ignored
    chars = sorted(set(corpus_file.read_bytes().decode("utf-8")))
    assert "\r" in chars and "\t" in chars and "\u00e9" in chars
    assert tokenizer.convert_ids_to_tokens(list(range(2, 2 + len(chars)))) == chars
    assert len(tokenizer) == 2 + len(chars) + 256
    assert tokenizer("\r\n\t")["input_ids"] == tokenizer.convert_tokens_to_ids(["\r", "\n", "\t"])
    # An unseen character becomes its UTF-8 bytes and still decodes.
    ids = tokenizer("\u2603")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["<0xE2>", "<0x98>", "<0x83>"]
    assert tokenizer.decode(ids) == "\u2603"


def test_sync_config_writes_the_tokenizer_ids_and_check_accepts_it(trained, tmp_path):
    _, tokenizer, out = trained
    config = BigModelGPTConfig.from_preset("gpt-tiny", vocab_size=128)
    with pytest.raises(ValueError, match=rf"has {len(tokenizer)} tokens but config.vocab_size is 128"):
        check_tokenizer_matches_config(tokenizer, config)

    assert sync_config_with_tokenizer(config, tokenizer) is config
    assert config.vocab_size == len(tokenizer)
    check_tokenizer_matches_config(tokenizer, config)
    config.save_pretrained(tmp_path)
    saved = BigModelGPTConfig.from_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(out)
    assert (saved.pad_token_id, saved.bos_token_id, saved.eos_token_id) == (
        reloaded.pad_token_id,
        reloaded.bos_token_id,
        reloaded.eos_token_id,
    )
    assert (saved.pad_token_id, saved.bos_token_id, saved.eos_token_id) == (0, 1, 1)

    padded = sync_config_with_tokenizer(BigModelGPTConfig.from_preset("gpt-tiny"), tokenizer, pad_to_multiple_of=64)
    assert padded.vocab_size % 64 == 0 and len(tokenizer) <= padded.vocab_size < len(tokenizer) + 64
    check_tokenizer_matches_config(tokenizer, padded)
    with pytest.raises(ValueError, match="pad_to_multiple_of must be a positive integer"):
        sync_config_with_tokenizer(config, tokenizer, pad_to_multiple_of=0)


def test_check_rejects_a_tokenizer_bigger_than_the_model_vocab(trained):
    _, tokenizer, _ = trained
    config = BigModelGPTConfig.from_preset("gpt-tiny", vocab_size=len(tokenizer) - 1)
    n = len(tokenizer)
    with pytest.raises(ValueError, match=rf"(?s)has {n} tokens but config.vocab_size is {n - 1}.*vocab_size >= {n}"):
        check_tokenizer_matches_config(tokenizer, config)
    # The GPT-2 defaults (bos = eos = 50256) do not match this tokenizer's ids.
    with pytest.raises(ValueError, match=r"config.bos_token_id is 50256 but the tokenizer has '<\|endoftext\|>' = 1"):
        check_tokenizer_matches_config(tokenizer, BigModelGPTConfig(vocab_size=50304))
    with pytest.raises(ValueError, match=r"config.pad_token_id is 3 but the tokenizer has '<\|pad\|>' = 0"):
        check_tokenizer_matches_config(tokenizer, BigModelGPTConfig(vocab_size=n, pad_token_id=3, bos_token_id=None))


def test_training_from_a_dataset_matches_training_from_the_file(corpus_file):
    lines = corpus_file.read_bytes().decode("utf-8").splitlines(keepends=True)
    dataset = datasets.Dataset.from_dict({"label": list(range(len(lines))), "content": lines})
    from_file = train_tokenizer("bpe", files=[corpus_file], vocab_size=500, show_progress=False)
    from_dataset = train_tokenizer("bpe", dataset=dataset, text_column="content", vocab_size=500, show_progress=False)
    assert from_dataset.get_vocab() == from_file.get_vocab()
    streamed = train_tokenizer(
        "bpe", dataset=dataset.to_iterable_dataset(), text_column="content", vocab_size=500, show_progress=False
    )
    assert streamed.get_vocab() == from_file.get_vocab()
    char = train_tokenizer("char", dataset=dataset.add_column("x", [None] * len(lines)), text_column="content")
    assert char.decode(char(OWN_TEXT)["input_ids"]) == OWN_TEXT

    with pytest.raises(ValueError, match=r"no column 'text'; its columns are \['label', 'content'\]"):
        train_tokenizer("bpe", dataset=dataset, show_progress=False)
    with pytest.raises(ValueError, match="Column 'label' holds int values, not text"):
        train_tokenizer("char", dataset=dataset, text_column="label", show_progress=False)
    blank = datasets.Dataset.from_dict({"text": ["", "  \n", None]})
    with pytest.raises(ValueError, match="No training text found in column 'text'"):
        train_tokenizer("bpe", dataset=blank, show_progress=False)


def test_bad_arguments_raise_clear_errors(corpus_file):
    with pytest.raises(ValueError, match=r"Unknown tokenizer kind 'sentencepiece'. Available kinds: bpe, char"):
        train_tokenizer("sentencepiece", files=[corpus_file])
    with pytest.raises(ValueError, match="Pass exactly one of `files`"):
        train_tokenizer("bpe")
    with pytest.raises(ValueError, match="Pass exactly one of `files`"):
        train_tokenizer("bpe", files=[corpus_file], dataset=datasets.Dataset.from_dict({"text": ["a"]}))


def test_empty_missing_and_non_utf8_files_are_rejected_before_training(tmp_path, corpus_file):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.txt is empty \(0 bytes\)"):
        train_tokenizer("bpe", files=[corpus_file, empty], show_progress=False)

    blank = tmp_path / "blank.txt"
    blank.write_bytes(b" \n\t\r\n  \n")
    with pytest.raises(ValueError, match=r"blank\.txt contains only whitespace \(8 bytes\)"):
        train_tokenizer("char", files=[blank], show_progress=False)

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("first line\nun caf\u00e9 cr\u00e8me\n".encode("latin-1"))
    offset = len(b"first line\nun caf")
    with pytest.raises(DataError) as error:
        train_tokenizer("bpe", files=[latin1], show_progress=False)
    message = str(error.value)
    assert "latin1.txt is not valid UTF-8" in message
    assert f"byte b'\\xe9' at byte offset {offset} (line 2)" in message
    assert f"iconv -f latin1 -t utf-8 {latin1}" in message

    # A multi-byte character cut across the 1 MiB read chunks is fine; a truncated one at the very end is not.
    straddling = tmp_path / "straddling.txt"
    straddling.write_bytes(b"a" * ((1 << 20) - 1) + "\u00e9 ok".encode())
    train_tokenizer("char", files=[straddling], show_progress=False)
    truncated = tmp_path / "truncated.txt"
    truncated.write_bytes(b"ok " + "\u20ac".encode()[:2])
    with pytest.raises(ValueError, match=r"truncated\.txt is not valid UTF-8: byte b'\\xe2\\x82' at byte offset 3"):
        train_tokenizer("char", files=[truncated], show_progress=False)

    with pytest.raises(FileNotFoundError, match=r"Training file not found: .*missing\.txt"):
        train_tokenizer("bpe", files=[tmp_path / "missing.txt"], show_progress=False)
    with pytest.raises(ValueError, match="is a directory, not a text file"):
        train_tokenizer("bpe", files=[tmp_path], show_progress=False)


def test_save_into_an_existing_model_folder_keeps_its_files(trained, tmp_path):
    _, tokenizer, _ = trained
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"model_type": "bigmodel_gpt"}')
    (model_dir / "tokenizer.json").write_text("stale")
    save_tokenizer(tokenizer, model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json", "tokenizer.json", "tokenizer_config.json"]
    assert (model_dir / "config.json").read_text() == '{"model_type": "bigmodel_gpt"}'
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert PreTrainedTokenizerFast.from_pretrained(model_dir).get_vocab() == tokenizer.get_vocab()


def test_cli_trains_saves_and_reports(corpus_file, tmp_path, capsys):
    out = tmp_path / "bpe"
    args = ["train-tokenizer", "--files", str(corpus_file), "--vocab_size", "400", "--output_dir", str(out)]
    assert cli.main([*args, "--model_max_length", "64", "--no_progress"]) == 0
    stdout = capsys.readouterr().out
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert f"Saved a bpe tokenizer with {len(tokenizer)} tokens" in stdout
    assert "pad_token_id = 0 ('<|pad|>')" in stdout and "eos_token_id = 1 ('<|endoftext|>')" in stdout
    assert len(tokenizer) <= 400 and tokenizer.model_max_length == 64 and tokenizer.padding_side == "left"
    assert tokenizer.decode(tokenizer(TRICKY[9])["input_ids"]) == TRICKY[9]


def test_cli_trains_from_local_datasets(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets_cache")
    # A folder of .txt files goes through `datasets`' text loader, which must keep the line breaks.
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("first file\nsecond line\n", encoding="utf-8")
    (folder / "b.txt").write_text("another\nfile\n", encoding="utf-8")
    out = tmp_path / "from_folder"
    argv = ["train-tokenizer", "--kind", "char", "--dataset", str(folder), "--output_dir", str(out), "--no_progress"]
    assert cli.main(argv) == 0
    assert set(AutoTokenizer.from_pretrained(out).get_vocab()) >= set("first filesecond lineanother\n")

    # JSON lines with another column name; "\r\n" inside the strings survives.
    jsonl = tmp_path / "rows.jsonl"
    rows = [{"id": i, "body": f"row {i}\r\nsecond \u00e9 line\n"} for i in range(30)]
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    out = tmp_path / "from_jsonl"
    argv = ["train-tokenizer", "--kind", "char", "--dataset", str(jsonl), "--text_column", "body"]
    assert cli.main([*argv, "--output_dir", str(out), "--no_progress"]) == 0
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert f"Saved a char tokenizer with {len(tokenizer)} tokens" in capsys.readouterr().out
    seen = set("".join(row["body"] for row in rows))
    assert "\r" in seen and tokenizer.convert_ids_to_tokens(list(range(2, 2 + len(seen)))) == sorted(seen)
    text = rows[3]["body"]
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_cli_user_errors_print_a_message_and_return_2(tmp_path, capsys):
    latin1 = tmp_path / "notes.txt"
    latin1.write_bytes("na\u00efve\n".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    out = str(tmp_path / "out")
    cases = {
        "notes.txt is not valid UTF-8: byte b'\\xef' at byte offset 2": ["--files", str(latin1)],
        "empty.txt is empty (0 bytes)": ["--files", str(empty)],
        "Training file not found": ["--files", str(tmp_path / "nope.txt")],
        "Dataset path not found": ["--dataset", str(tmp_path / "nope")],
    }
    for expected, args in cases.items():
        assert cli.main(["train-tokenizer", *args, "--output_dir", out, "--no_progress"]) == 2
        stderr = capsys.readouterr().err
        assert expected in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()


def test_load_dataset_any_reads_saved_folders_data_files_and_folders(tmp_path, monkeypatch):
    """The one dataset loader behind every trainer's --dataset_name and train-tokenizer's --dataset."""
    from hf_bigmodel.data import load_dataset_any

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets_cache")
    # A save_to_disk folder: its "valid" split is renamed "validation", "test" only when asked.
    saved = tmp_path / "saved"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["a", "b"]}),
        "valid": datasets.Dataset.from_dict({"text": ["c"]}),
        "test": datasets.Dataset.from_dict({"text": ["d"]}),
    }).save_to_disk(str(saved))  # fmt: skip
    raw = load_dataset_any(saved)
    assert sorted(raw) == ["test", "train", "validation"]
    assert raw["validation"]["text"] == ["c"] and raw["test"]["text"] == ["d"]
    only_test = tmp_path / "only_test"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["a"]}), "test": datasets.Dataset.from_dict({"text": ["t"]}),
    }).save_to_disk(str(only_test))  # fmt: skip
    assert "validation" not in load_dataset_any(only_test)
    assert load_dataset_any(only_test, validation_aliases=("valid", "val", "test"))["validation"]["text"] == ["t"]

    # A data file is the "train" split; tab-separated text keeps bare quotes (SST-2 has them).
    tsv = tmp_path / "rows.tsv"
    tsv.write_text('sentence\tlabel\nhe said "hi\t1\nplain\t0\n', encoding="utf-8")
    rows = load_dataset_any(tsv)
    assert list(rows) == ["train"] and rows["train"]["sentence"] == ['he said "hi', "plain"]
    # Plain text: one row per line, with its line break only when asked.
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("one\ntwo\n", encoding="utf-8")
    assert load_dataset_any(folder)["train"]["text"] == ["one", "two"]
    assert load_dataset_any(folder, keep_linebreaks=True)["train"]["text"] == ["one\n", "two\n"]
    assert load_dataset_any(folder / "a.txt", keep_linebreaks=True)["train"]["text"] == ["one\n", "two\n"]

    with pytest.raises(FileNotFoundError, match=r"Dataset path not found: .*missing\.jsonl"):
        load_dataset_any(tmp_path / "missing.jsonl")
    odd = tmp_path / "table.xlsx"
    odd.write_bytes(b"PK")
    with pytest.raises(DataError, match=r"Cannot tell the format of .*table\.xlsx from its extension"):
        load_dataset_any(odd)


def test_select_split_reads_names_aliases_and_slices(tmp_path):
    """`--dataset_split` takes `datasets`' split syntax, as `load_dataset(split=...)` did before the shared loader."""
    import datasets

    from hf_bigmodel.data import DataError, load_dataset_any, select_split

    rows = {"text": [f"line {i}" for i in range(20)]}
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(rows), "valid": datasets.Dataset.from_dict({"text": ["v0", "v1"]})}
    ).save_to_disk(str(tmp_path / "saved"))
    raw = load_dataset_any(tmp_path / "saved")
    assert select_split(raw, "train", "saved")["text"] == rows["text"]
    assert select_split(raw, "valid", "saved")["text"] == ["v0", "v1"]  # renamed to "validation" by the loader
    assert select_split(raw, "train[:10%]", "saved")["text"] == ["line 0", "line 1"]
    assert select_split(raw, "train[5:7]+train[-1:]", "saved")["text"] == ["line 5", "line 6", "line 19"]
    with pytest.raises(DataError, match=r"has no 'test' split \(it has train, validation\)"):
        select_split(raw, "test[:5]", "saved")
    with pytest.raises(DataError, match=r"Cannot read the split 'train\[:5\]\+validation' of saved .*train\[:10%\]"):
        select_split(raw, "train[:5]+validation", "saved")


def test_train_tokenizer_dataset_split_slice_and_unknown_format(tmp_path, capsys):
    """train-tokenizer reads a slice of a data file, and an unknown extension points at --files."""
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"text": "word{i} word{i % 3}"}}\n' for i in range(40)))
    code = cli.main(
        [
            "train-tokenizer",
            "--kind",
            "char",
            "--dataset",
            str(tmp_path / "rows.jsonl"),
            "--dataset_split",
            "train[:5]",
            "--output_dir",
            str(tmp_path / "tok"),
        ]  # fmt: skip
    )
    assert code == 0
    vocab = AutoTokenizer.from_pretrained(tmp_path / "tok").get_vocab()
    assert "5" not in vocab and "4" in vocab  # only word0..word4 were read
    (tmp_path / "notes.md").write_text("text\n")
    code = cli.main(["train-tokenizer", "--dataset", str(tmp_path / "notes.md"), "--output_dir", str(tmp_path / "t")])
    assert code == 2
    assert f"For plain text use --files {tmp_path / 'notes.md'}." in capsys.readouterr().err
