"""Checkpoint conversion of the BERT: stock transformers BERT (every head) <-> bigmodel_bert. Every route is checked on
outputs (hidden states and logits to 1e-5), on exact round trips of the weights, on the copied WordPiece tokenizer,
and the stock exports in a fresh interpreter that never imports hf_bigmodel."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertLMHeadModel, BertTokenizer

from hf_bigmodel.cli import main as cli_main
from hf_bigmodel.conversion.common import ConversionError
from hf_bigmodel.conversion.convert_bert import HEAD_CLASSES, convert_bert_to_bigmodel, convert_bigmodel_to_bert
from hf_bigmodel.convert import convert, resolve_route
from hf_bigmodel.testing import randomize_

VOCAB_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog", "##s", "big"]


pytestmark = pytest.mark.usefixtures("single_thread")


def stock_config(**overrides) -> BertConfig:
    sizes = dict(
        vocab_size=97,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=40,
        max_position_embeddings=48,
        num_labels=3,
    )
    return BertConfig(**{**sizes, **overrides})


def inputs(vocab: int = 97, batch: int = 3, seq: int = 10) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (batch, seq), generator=gen)
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    types = (torch.arange(seq) >= 5).long().expand(batch, seq).contiguous()
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def outputs(model, batch: dict, **kwargs) -> dict[str, torch.Tensor]:
    if "MultipleChoice" in type(model).__name__:
        batch = {k: torch.stack([v, v.flip(0)], dim=1) for k, v in batch.items()}
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True, **kwargs)
    tensors = {k: v for k, v in out.items() if torch.is_tensor(v)}
    tensors.update({f"hidden_states.{i}": h for i, h in enumerate(out.hidden_states)})
    return tensors


def assert_same(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-5, msg=name)


def save_stock(model, folder: Path, tokenizer: bool = True) -> Path:
    model.save_pretrained(folder)
    if tokenizer:
        BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB_WORDS)}).save_pretrained(folder)
    return folder


def load(folder: Path, auto: str = "AutoModel", **kwargs):
    import transformers

    return getattr(transformers, auto).from_pretrained(folder, trust_remote_code=False, **kwargs).eval()


# Auto class of each stock class (ours registers the same Auto classes).
AUTO = {
    "BertModel": "AutoModel",
    "BertForPreTraining": "AutoModelForPreTraining",
    "BertForMaskedLM": "AutoModelForMaskedLM",
    "BertForNextSentencePrediction": "AutoModelForNextSentencePrediction",
    "BertForSequenceClassification": "AutoModelForSequenceClassification",
    "BertForTokenClassification": "AutoModelForTokenClassification",
    "BertForQuestionAnswering": "AutoModelForQuestionAnswering",
    "BertForMultipleChoice": "AutoModelForMultipleChoice",
}


# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stock_name", list(HEAD_CLASSES))
def test_stock_to_ours_and_back(stock_name, tmp_path):
    stock_class, our_class = HEAD_CLASSES[stock_name]
    config = stock_config(num_labels=2) if stock_name == "BertForQuestionAnswering" else stock_config()
    stock = randomize_(stock_class(config)).eval()
    save_stock(stock, tmp_path / "stock")
    assert resolve_route(tmp_path / "stock").target == "bigmodel_bert"
    convert(tmp_path / "stock", tmp_path / "ours")
    ours = load(tmp_path / "ours", AUTO[stock_name])
    assert type(ours) is our_class
    batch = inputs()
    assert_same(outputs(ours, batch), outputs(stock, batch))

    convert(tmp_path / "ours", tmp_path / "back")  # default target of bigmodel_bert: stock BERT
    back = load(tmp_path / "back", AUTO[stock_name])
    assert type(back) is stock_class
    assert not list((tmp_path / "back").glob("*.py"))
    assert "auto_map" not in json.loads((tmp_path / "back" / "config.json").read_text())
    expected, got = stock.state_dict(), back.state_dict()
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


def test_tokenizer_files_are_copied_and_give_identical_ids(tmp_path):
    save_stock(randomize_(BertForMaskedLM(stock_config())).eval(), tmp_path / "stock")
    cli_main(["convert", str(tmp_path / "stock"), str(tmp_path / "ours")])
    text = ("the big cats sat", "on the mat")
    original = AutoTokenizer.from_pretrained(tmp_path / "stock")(*text)
    converted = AutoTokenizer.from_pretrained(tmp_path / "ours", trust_remote_code=False)(*text)
    assert converted == original
    assert original["input_ids"] == [2, 5, 12, 6, 11, 7, 3, 8, 5, 9, 3]  # WordPiece split "cats" -> cat ##s
    assert original["token_type_ids"] == [0] * 7 + [1] * 4


def test_minilm_shape(tmp_path):
    """MiniLM-like width (384 wide, 12 heads of 32, intermediate 1536) at small depth, relu activation."""
    config = BertConfig(
        vocab_size=500,
        hidden_size=384,
        num_hidden_layers=2,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=64,
        hidden_act="relu",
    )
    stock = randomize_(HEAD_CLASSES["BertModel"][0](config)).eval()
    with torch.no_grad():  # LayerNorm weights near 1 keep the activations in a range where 1e-5 is meaningful
        for name, param in stock.named_parameters():
            if "LayerNorm" not in name:
                param.mul_(0.25)
    save_stock(stock, tmp_path / "stock", tokenizer=False)
    convert_bert_to_bigmodel(tmp_path / "stock", tmp_path / "ours")
    ours = load(tmp_path / "ours")
    assert ours.config.hidden_act == "relu" and ours.config.head_dim == 32
    batch = inputs(vocab=500)
    assert_same(outputs(ours, batch), outputs(stock, batch))


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_mlm_bias_and_legacy_keys(tmp_path, tied):
    """Untied stock BERT adds the decoder's own bias (not `cls.predictions.bias`); old checkpoints also carry the
    decoder copies and the `position_ids` buffer. The converted model must use what stock uses."""
    stock = randomize_(BertForMaskedLM(stock_config(tie_word_embeddings=tied))).eval()
    if not tied:
        assert stock.cls.predictions.decoder.bias is not stock.cls.predictions.bias
    save_stock(stock, tmp_path / "stock", tokenizer=False)
    tensors = load_file(tmp_path / "stock" / "model.safetensors")
    tensors["bert.embeddings.position_ids"] = torch.arange(48)[None]
    tensors["cls.predictions.decoder.weight"] = stock.cls.predictions.decoder.weight.detach().clone()
    tensors["cls.predictions.decoder.bias"] = stock.cls.predictions.decoder.bias.detach().clone()
    save_file(tensors, tmp_path / "stock" / "model.safetensors")
    convert_bert_to_bigmodel(tmp_path / "stock", tmp_path / "ours")
    ours = load(tmp_path / "ours", "AutoModelForMaskedLM")
    assert (ours.cls.decoder.weight is ours.bert.embeddings.word_embeddings.weight) == tied
    batch = inputs()
    assert_same(outputs(ours, batch), outputs(stock, batch))
    convert_bigmodel_to_bert(tmp_path / "ours", tmp_path / "back")
    assert_same(outputs(load(tmp_path / "back", "AutoModelForMaskedLM"), batch), outputs(stock, batch))


def test_head_detected_from_keys_without_architectures(tmp_path):
    stock = randomize_(HEAD_CLASSES["BertForPreTraining"][0](stock_config())).eval()
    save_stock(stock, tmp_path / "stock", tokenizer=False)
    config_path = tmp_path / "stock" / "config.json"
    raw = json.loads(config_path.read_text())
    del raw["architectures"]
    config_path.write_text(json.dumps(raw))
    convert_bert_to_bigmodel(tmp_path / "stock", tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["architectures"] == [
        "BigModelBertForPreTraining"
    ]


STOCK_LOADER = r"""
import json, sys, torch
import transformers
from safetensors.torch import load_file
cases = json.loads(sys.argv[1])
diffs = {}
for folder, (auto, expected) in cases.items():
    model = getattr(transformers, auto).from_pretrained(folder, trust_remote_code=False).eval()
    assert type(model).__name__ == expected and type(model).__module__.startswith("transformers.models.bert"), type(model)
    ref = load_file(folder + "/reference.safetensors")
    with torch.no_grad():
        out = model(**{k: v for k, v in ref.items() if k != "out"})
    got = out.logits if hasattr(out, "logits") else out.prediction_logits
    # the difference less assert_same's relative tolerance (rtol 1e-5): within it when <= its atol (1e-5)
    diffs[folder] = ((got - ref["out"]).abs() - 1e-5 * ref["out"].abs()).max().item()
leaked = sorted(m for m in sys.modules if m.split(".")[0] == "hf_bigmodel")
assert not leaked, leaked
print("RESULTS" + json.dumps(diffs))
"""


def test_exports_load_in_stock_transformers_without_hf_bigmodel(tmp_path, capsys):
    """Models made with hf_bigmodel (not converted from stock) export to stock BERT classes that a clean interpreter
    loads and runs with the same outputs."""
    import hf_bigmodel

    cases = {}
    batch = inputs()
    for seed, (task, expected) in enumerate(
        (("pretraining", "BertForPreTraining"), ("sequence-classification", "BertForSequenceClassification"))
    ):
        torch.manual_seed(seed)
        model = hf_bigmodel.create_model("bert-tiny", task, vocab_size=97, num_labels=3, initializer_range=0.3).eval()
        model.save_pretrained(tmp_path / task)
        assert cli_main(["convert", str(tmp_path / task), str(tmp_path / f"{task}-stock")]) == 0
        assert f"Load it with {AUTO[expected]}.from_pretrained(" in capsys.readouterr().out
        with torch.no_grad():
            out = model(**batch)
        logits = out.logits if hasattr(out, "logits") else out.prediction_logits
        save_file({**batch, "out": logits.contiguous()}, tmp_path / f"{task}-stock" / "reference.safetensors")
        cases[str(tmp_path / f"{task}-stock")] = (AUTO[expected], expected)
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")}
    result = subprocess.run(
        [sys.executable, "-c", STOCK_LOADER, json.dumps(cases)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    diffs = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULTS"))[7:])
    assert diffs.keys() == cases.keys() and all(d <= 1e-5 for d in diffs.values()), diffs


def test_cli_dtype_overwrite_and_errors(tmp_path, capsys):
    save_stock(randomize_(BertForMaskedLM(stock_config())).eval(), tmp_path / "stock")
    assert cli_main(["convert", str(tmp_path / "stock"), str(tmp_path / "ours"), "--dtype", "bfloat16"]) == 0
    assert "bigmodel_bert" in capsys.readouterr().out
    assert load(tmp_path / "ours", "AutoModelForMaskedLM").dtype == torch.bfloat16
    assert cli_main(["convert", str(tmp_path / "stock"), str(tmp_path / "ours")]) == 2
    assert "not empty; pass --overwrite" in capsys.readouterr().err
    assert cli_main(["convert", str(tmp_path / "stock"), str(tmp_path / "ours"), "--overwrite"]) == 0
    assert load(tmp_path / "ours", "AutoModelForMaskedLM").dtype == torch.float32
    assert cli_main(["convert", str(tmp_path / "stock"), str(tmp_path / "x"), "--to", "gpt2"]) == 2
    assert (
        "Cannot convert a 'bert' checkpoint to 'gpt2': possible targets are bigmodel_bert" in capsys.readouterr().err
    )


def _stock_folder(tmp_path: Path, model, name: str) -> Path:
    return save_stock(model, tmp_path / name, tokenizer=False)


@pytest.mark.parametrize(
    "make, edit, message",
    [
        (
            lambda: BertLMHeadModel(stock_config(is_decoder=True)),
            None,
            r"is_decoder=True or add_cross_attention=True.*encoder only",
        ),
        (
            lambda: BertForMaskedLM(stock_config()),
            {"position_embedding_type": "relative_key"},
            r"position_embedding_type='relative_key'.*absolute positions only",
        ),
        (
            lambda: HEAD_CLASSES["BertForSequenceClassification"][0](stock_config()),
            {"architectures": None},
            r"classifier head is ambiguous.*\"architectures\": \[\"BertForSequenceClassification\"\]",
        ),
        (
            lambda: HEAD_CLASSES["BertModel"][0](stock_config(), add_pooling_layer=False),
            None,
            r"has no pooler weights \(saved with add_pooling_layer=False\)",
        ),
    ],
    ids=["decoder", "relative-positions", "ambiguous-head", "no-pooler"],
)
def test_unsupported_checkpoints_are_refused(tmp_path, make, edit, message):
    folder = _stock_folder(tmp_path, make(), "stock")
    if edit is not None:
        raw = json.loads((folder / "config.json").read_text())
        raw.update(edit)
        (folder / "config.json").write_text(json.dumps({k: v for k, v in raw.items() if v is not None}))
    with pytest.raises(ConversionError, match=message):
        convert_bert_to_bigmodel(folder, tmp_path / "ours")
    assert not (tmp_path / "ours").exists()  # nothing half-written
