"""Sequential-recommendation data: both file formats, the raw-id item map, leave-one-out, the training examples,
and the errors for bad input (naming the line and the fix)."""

import json
import logging
from pathlib import Path

import datasets
import pytest
import torch

from hf_bigmodel import (
    BigModelBert4RecConfig,
    BigModelBert4RecForMaskedLM,
    BigModelSASRecConfig,
    BigModelSASRecForCausalLM,
)
from hf_bigmodel.data import DataError
from hf_bigmodel.data.seqrec import (
    CausalItemDataset,
    ItemMap,
    MaskedItemCollator,
    MaskedItemDataset,
    causal_item_collator,
    file_sha256,
    leave_one_out,
    left_pad,
    read_interactions,
)
from hf_bigmodel.testing import shared_data

SEQREC = shared_data("seqrec")
VIDEO = SEQREC / "Video.txt"


def write(tmp_path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_user_item_file_keeps_order_and_types(tmp_path):
    path = write(tmp_path, "toy.txt", "1 10\n1 30\n1 20\n\n2 30\n2 10\n")
    data = read_interactions(path)
    assert data.users == [1, 2]
    assert data.sequences == [[10, 30, 20], [30, 10]]
    assert data.sha256 == file_sha256(path) and len(data.sha256) == 64
    items = ItemMap.from_sequences(data.sequences)
    assert items.item_ids == [10, 20, 30]  # integer ids sorted: model id i is the i-th smallest raw id
    assert items.encode([30, "10"]) == [3, 1]  # an int or its string
    assert items.decode([1, 3]) == [10, 30]


def test_malformed_line_is_named(tmp_path):
    path = write(tmp_path, "bad.txt", "1 10\n1 11\n1 12 5\n")
    with pytest.raises(DataError, match=r"bad.txt, line 3: expected `user item`.*'1 12 5'.*Fix or delete that line"):
        read_interactions(path)


def test_user_lines_must_be_grouped(tmp_path):
    path = write(tmp_path, "split.txt", "1 10\n2 11\n1 12\n")
    with pytest.raises(DataError, match=r"line 3: user 1 appears again after other users \(first at line 1\).*sort"):
        read_interactions(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="Interaction file not found"):
        read_interactions(tmp_path / "nope.txt")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_table_sorted_by_time_per_user(tmp_path, suffix):
    rows = [("u1", "b", 3), ("u2", "a", 1), ("u1", "a", 1), ("u1", "c", 2), ("u2", "c", 5)]
    if suffix == ".csv":
        text = "user_id,item,ts\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows)
    else:
        text = "".join(json.dumps({"user_id": u, "item": i, "ts": t}) + "\n" for u, i, t in rows)
    data = read_interactions(write(tmp_path, "t" + suffix, text), user_column="user_id", time_column="ts")
    assert data.users == ["u1", "u2"]
    assert data.sequences == [["a", "c", "b"], ["a", "c"]]
    items = ItemMap.from_sequences(data.sequences)
    assert items.item_ids == ["a", "c", "b"]  # strings: order of first appearance


def test_datasets_table_and_missing_column():
    table = datasets.Dataset.from_dict({"user": [1, 1, 2], "item": [5, 6, 5], "timestamp": [2, 1, 0]})
    assert read_interactions(table).sequences == [[6, 5], [5]]
    with pytest.raises(DataError, match=r"has no column 'time' \(it has user, item, timestamp\).*time_column="):
        read_interactions(table, time_column="time")


def test_leave_one_out_and_skipped_users(caplog):
    data = read_interactions(datasets.Dataset.from_dict({"user": [1] * 5 + [2] * 2, "item": list("abcdeab")}),
                             time_column=None)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="hf_bigmodel.data.seqrec"):
        split = leave_one_out(data)
    assert "1 of 2 users have fewer than 3 interactions" in caplog.text
    assert split.skipped == 1 and split.num_items == 5
    a, b, c, d, e = split.item_map.encode(list("abcde"))
    assert split.train_sequences() == [[a, b, c], [a, b]]  # the short user trains on everything
    assert split.history("valid") == [[a, b, c]] and split.targets("valid").tolist() == [d]
    assert split.history("test") == [[a, b, c, d]] and split.targets("test").tolist() == [e]
    assert split.popularity().tolist() == [0, 2, 2, 1, 1, 1]


def test_causal_examples_left_padded():
    dataset = CausalItemDataset([[3, 4, 5], [7]], max_length=5)
    assert len(dataset) == 1  # a one-item sequence has no next item to learn
    row = dataset[0]
    assert row["input_ids"].tolist() == [0, 0, 3, 4, 5]
    assert row["labels"].tolist() == [-100, -100, 3, 4, 5]
    assert left_pad([[1, 2, 3, 4]], 2).tolist() == [[3, 4]]  # the newest items are kept


def test_masked_collator_masks_real_items_only():
    collator = MaskedItemCollator(mask_token_id=9, max_length=6, mask_probability=0.5, last_item_probability=0.0,
                                  seed=0)  # fmt: skip
    batch = collator([{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5, 6, 7, 8]}] * 20)
    masked = batch["input_ids"] == 9
    assert torch.equal(masked, batch["labels"] != -100)
    assert (batch["attention_mask"][masked] == 1).all()  # padding is never masked
    assert masked.any(dim=1).all()  # every sequence has something to predict
    original = torch.where(masked, batch["labels"], batch["input_ids"])
    assert original[0].tolist() == [0, 0, 0, 1, 2, 3]
    last_only = MaskedItemCollator(9, 6, last_item_probability=1.0)([{"input_ids": [1, 2, 3]}])
    assert last_only["input_ids"].tolist() == [[0, 0, 0, 1, 2, 9]] and last_only["labels"][0, -1] == 3


@pytest.mark.skipif(not VIDEO.exists(), reason="needs ../shared/data/seqrec/Video.txt")
def test_video_file_statistics():
    data = read_interactions(VIDEO)
    assert len(data.users) == 31013 and data.num_interactions == 287107
    assert len(ItemMap.from_sequences(data.sequences)) == 23715
    assert data.sha256 == "b7376fe24430743f411dc7f567285657b2adb3f74361cc7ba0aee94f3024b651"


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_cutting_shared_padding_changes_no_score(name):
    sequences = [[3, 4, 5], [7, 8], [1, 2, 3, 4]]
    if name == "sasrec":
        dataset = CausalItemDataset(sequences, max_length=8)
        assert dataset.lengths == [3, 2, 4]
        padded = torch.utils.data.default_collate([dataset[i] for i in range(3)])
        cut = causal_item_collator([dataset[i] for i in range(3)])
        assert cut["input_ids"].tolist() == [[0, 3, 4, 5], [0, 0, 7, 8], [1, 2, 3, 4]]
        config = BigModelSASRecConfig.from_preset("sasrec-tiny", max_position_embeddings=8)
        model = BigModelSASRecForCausalLM(config)
    else:
        dataset = MaskedItemDataset(sequences, max_length=8)
        assert dataset.lengths == [3, 2, 4]
        examples = [dataset[i] for i in range(3)]
        padded = MaskedItemCollator(21, 8, seed=0)(examples)
        cut = MaskedItemCollator(21, 8, seed=0, pad_to_longest=True)(examples)
        assert padded["input_ids"].shape == (3, 8) and cut["input_ids"].shape == (3, 4)
        assert torch.equal(padded["labels"][:, -4:], cut["labels"])  # the same masks, 4 columns fewer
        model = BigModelBert4RecForMaskedLM(BigModelBert4RecConfig.from_preset("bert4rec-tiny"))
    assert torch.equal(padded["input_ids"][:, -cut["input_ids"].shape[1] :], cut["input_ids"])
    torch.manual_seed(0)
    model.eval()
    with torch.no_grad():
        full, short = model(**padded), model(**cut)
    width = cut["input_ids"].shape[1]
    torch.testing.assert_close(full.logits[:, -width:], short.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(full.loss, short.loss, rtol=1e-5, atol=1e-5)
