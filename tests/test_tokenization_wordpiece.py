"""WordPiece (BERT) tokenizer training: special-token ids, BERT normalisation options, CJK splitting, pair template
with token_type_ids, `##` continuations, reload through AutoTokenizer, config sync and the CLI flags."""

import json

import datasets
import pytest
from transformers import AutoTokenizer, BertConfig, BertTokenizer

from hf_bigmodel import cli
from hf_bigmodel.tokenization import (
    WORDPIECE_SPECIAL_TOKENS,
    check_tokenizer_matches_config,
    sync_config_with_tokenizer,
    train_tokenizer,
)

# Written for these tests: repeated words so that WordPiece learns whole words and shared pieces.
TEXT = (
    "The unbelievable tokenizer splits unbelievably long words into pieces.\n"
    "Caf\u00e9 cr\u00e8me and na\u00efve fa\u00e7ade keep or lose their accents.\n"
    "Tokenizers tokenize tokens; tokenizing is what a tokenizer does.\n"
    "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0 and \u4e2d\u6587 characters are split one per token.\n"
    "\n"
) * 40


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("wp") / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def uncased(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("wp_uncased") / "tok"
    train_tokenizer("wordpiece", files=[corpus], vocab_size=200, model_max_length=64, output_dir=out,
                    show_progress=False)  # fmt: skip
    return out


def test_special_tokens_have_ids_0_to_4_and_reload_as_a_bert_tokenizer(uncased):
    tokenizer = AutoTokenizer.from_pretrained(uncased)
    assert isinstance(tokenizer, BertTokenizer)
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id) == (0, 1, 2)
    assert (tokenizer.sep_token_id, tokenizer.mask_token_id) == (3, 4)
    assert list(WORDPIECE_SPECIAL_TOKENS.values()) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tokenizer.padding_side == "right" and tokenizer.model_max_length == 64
    assert tokenizer.model_input_names == ["input_ids", "token_type_ids", "attention_mask"]
    config = json.loads((uncased / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "BertTokenizer" and config["do_lower_case"] is True


def test_pairs_get_cls_sep_template_and_token_type_ids(uncased):
    tokenizer = AutoTokenizer.from_pretrained(uncased)
    single = tokenizer("the tokenizer")
    assert tokenizer.convert_ids_to_tokens(single["input_ids"]) == ["[CLS]", "the", "tokenizer", "[SEP]"]
    assert single["token_type_ids"] == [0, 0, 0, 0]
    pair = tokenizer("the tokenizer", "long words")
    assert tokenizer.convert_ids_to_tokens(pair["input_ids"]) == [
        "[CLS]", "the", "tokenizer", "[SEP]", "long", "words", "[SEP]",
    ]  # fmt: skip
    assert pair["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]
    batch = tokenizer(["the", "the tokenizer splits"], ["words", "long words"], padding=True)
    assert batch["input_ids"][0][-2:] == [0, 0] and batch["attention_mask"][0][-2:] == [0, 0]  # right padding
    assert tokenizer.decode(pair["input_ids"], skip_special_tokens=True) == "the tokenizer long words"


def test_uncased_lowercases_strips_accents_and_splits_cjk_characters(uncased):
    tokenizer = AutoTokenizer.from_pretrained(uncased)
    tokens = tokenizer.tokenize("THE Caf\u00e9 \u65e5\u672c")
    assert tokens == ["the", "cafe", "\u65e5", "\u672c"]
    # An unseen word is built from "##" continuation pieces and decodes back to the (normalised) word.
    pieces = tokenizer.tokenize("untokenizable")
    assert len(pieces) > 1 and all(p.startswith("##") for p in pieces[1:])
    assert tokenizer.convert_tokens_to_string(pieces) == "untokenizable"
    assert tokenizer.tokenize("\u2603") == ["[UNK]"]  # a character never seen


def test_cased_and_accent_options(corpus, tmp_path):
    cased = train_tokenizer("wordpiece", files=[corpus], vocab_size=220, lowercase=False, output_dir=tmp_path / "c",
                            show_progress=False)  # fmt: skip
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "c")
    for tok in (cased, reloaded):
        assert tok.tokenize("The Caf\u00e9")[0] == "The"
        assert "\u00e9" in "".join(tok.tokenize("Caf\u00e9"))  # cased BERT keeps accents by default
    stripped = train_tokenizer("wordpiece", files=[corpus], vocab_size=220, lowercase=False, strip_accents=True,
                               output_dir=tmp_path / "s", show_progress=False)  # fmt: skip
    assert AutoTokenizer.from_pretrained(tmp_path / "s").tokenize("Caf\u00e9") == stripped.tokenize("Cafe")
    kept = train_tokenizer("wordpiece", files=[corpus], vocab_size=220, strip_accents=False, show_progress=False)
    assert kept.tokenize("CAF\u00c9")[0].startswith("caf") and "\u00e9" in "".join(kept.tokenize("CAF\u00c9"))


def test_dataset_input_and_config_sync(corpus):
    rows = [t for t in TEXT.split("\n") if t]
    tokenizer = train_tokenizer("wordpiece", dataset=datasets.Dataset.from_dict({"text": rows}), vocab_size=200,
                                show_progress=False)  # fmt: skip
    # (WordPiece breaks ties between equally frequent pairs in no fixed order, so vocabularies are not compared.)
    assert tokenizer.tokenize("The tokenizer") == ["the", "tokenizer"]
    assert tokenizer.convert_ids_to_tokens([0, 4]) == ["[PAD]", "[MASK]"]
    config = BertConfig(vocab_size=30, pad_token_id=5)
    with pytest.raises(ValueError, match=rf"has {len(tokenizer)} tokens but config.vocab_size is 30"):
        check_tokenizer_matches_config(tokenizer, config)
    sync_config_with_tokenizer(config, tokenizer)
    assert config.vocab_size == len(tokenizer) and config.pad_token_id == 0
    check_tokenizer_matches_config(tokenizer, config)


def test_bad_options_are_rejected(corpus):
    with pytest.raises(ValueError, match="lowercase= only applies to --kind wordpiece, not 'bpe'"):
        train_tokenizer("bpe", files=[corpus], lowercase=False)
    with pytest.raises(ValueError, match=r"vocab_size=5 is too small for a WordPiece tokenizer"):
        train_tokenizer("wordpiece", files=[corpus], vocab_size=5)


def test_cli_flags(corpus, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["train-tokenizer", "--kind", "wordpiece", "--files", str(corpus), "--vocab_size", "200",
            "--no_lowercase", "--strip_accents", "--output_dir", str(out), "--no_progress"]  # fmt: skip
    assert cli.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "Saved a wordpiece tokenizer" in stdout and "cls_token_id = 2 ('[CLS]')" in stdout
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.tokenize("Caf\u00e9")[0].startswith("Caf") and "\u00e9" not in "".join(
        tokenizer.tokenize("Caf\u00e9")
    )
    assert cli.main(["train-tokenizer", "--kind", "bpe", "--files", str(corpus), "--no_lowercase", "--output_dir",
                     str(tmp_path / "x"), "--no_progress"]) == 2  # fmt: skip
    assert "only applies to --kind wordpiece" in capsys.readouterr().err
