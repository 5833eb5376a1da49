"""Conversion between transformers' ResNet (microsoft/resnet-* layout) and bigmodel_resnet: both directions, with
random BatchNorm running statistics so that eval-mode logits are a real check, the image processor config translated
to identical pixels, and the key map complete at ResNet-50 size."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    ResNetConfig,
    ResNetForImageClassification,
    ResNetModel,
)

from hf_bigmodel import convert as convert_cli
from hf_bigmodel.conversion.common import ConversionError
from hf_bigmodel.conversion.convert_resnet import (
    convert_bigmodel_to_resnet,
    convert_resnet_to_bigmodel,
    resnet_key_map,
)
from hf_bigmodel.models.resnet import (
    BigModelResNetConfig,
    BigModelResNetForImageClassification,
    BigModelResNetImageProcessor,
    BigModelResNetModel,
)
from hf_bigmodel.testing import randomize_batch_norm_

# microsoft/resnet-50's preprocessor_config.json (values as published): ConvNeXT processor, size 224, crop_pct 0.875.
MICROSOFT_PROCESSOR = {
    "crop_pct": 0.875,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "ConvNextFeatureExtractor",
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "resample": 3,
    "size": 224,
}


def _tiny_stock(layer_type: str, head: bool = True, **overrides):
    sizes = [16, 32] if layer_type == "bottleneck" else [8, 16]
    config = ResNetConfig(
        embedding_size=8, hidden_sizes=sizes, depths=[2, 1], layer_type=layer_type, num_labels=4, **overrides
    )
    model = (ResNetForImageClassification if head else ResNetModel)(config).eval()
    randomize_batch_norm_(model)
    return model


@pytest.mark.parametrize("layer_type", ["basic", "bottleneck"])
@pytest.mark.parametrize("downsample", [False, True])
def test_stock_to_ours_and_back_matches_logits(layer_type, downsample, tmp_path):
    stock = _tiny_stock(layer_type, downsample_in_first_stage=downsample, downsample_in_bottleneck=downsample)
    stock.config.id2label = {0: "cat", 1: "dog", 2: "fox", 3: "owl"}
    stock.config.label2id = {v: k for k, v in stock.config.id2label.items()}
    stock.save_pretrained(tmp_path / "stock")
    (tmp_path / "stock" / "preprocessor_config.json").write_text(json.dumps(MICROSOFT_PROCESSOR))

    convert_resnet_to_bigmodel(tmp_path / "stock", tmp_path / "ours")
    ours = AutoModelForImageClassification.from_pretrained(tmp_path / "ours").eval()
    assert isinstance(ours, BigModelResNetForImageClassification)
    assert ours.config.id2label == {0: "cat", 1: "dog", 2: "fox", 3: "owl"}
    pixels = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = stock(pixels).logits
        torch.testing.assert_close(ours(pixels).logits, expected, rtol=1e-5, atol=1e-5)
    # BatchNorm running statistics came over exactly (they are what the eval-mode check depends on).
    assert torch.equal(ours.resnet.embedder.norm.running_var, stock.resnet.embedder.embedder.normalization.running_var)

    convert_bigmodel_to_resnet(tmp_path / "ours", tmp_path / "back")
    back = AutoModelForImageClassification.from_pretrained(tmp_path / "back").eval()
    assert type(back) is ResNetForImageClassification
    for key, tensor in stock.state_dict().items():
        assert torch.equal(back.state_dict()[key], tensor), key
    assert not list((tmp_path / "back").glob("*.py"))  # plain transformers, no remote code


def test_processor_config_is_translated_to_identical_pixels(tmp_path):
    stock = _tiny_stock("basic")
    stock.save_pretrained(tmp_path / "stock")
    (tmp_path / "stock" / "preprocessor_config.json").write_text(json.dumps(MICROSOFT_PROCESSOR))
    convert_resnet_to_bigmodel(tmp_path / "stock", tmp_path / "ours")

    ours = AutoImageProcessor.from_pretrained(tmp_path / "ours", trust_remote_code=False)
    assert isinstance(ours, BigModelResNetImageProcessor)
    assert dict(ours.size) == {"shortest_edge": 256} and dict(ours.crop_size) == {"height": 224, "width": 224}
    saved = json.loads((tmp_path / "ours" / "preprocessor_config.json").read_text())
    assert saved["auto_map"]["AutoImageProcessor"] == "image_processing_resnet.BigModelResNetImageProcessor"
    assert (tmp_path / "ours" / "image_processing_resnet.py").is_file()

    stock_processor = AutoImageProcessor.from_pretrained(tmp_path / "stock", backend="pil")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 410, 3), dtype=np.uint8))
    expected = stock_processor(image, return_tensors="pt").pixel_values
    np.testing.assert_array_equal(ours(image, return_tensors="pt").pixel_values.numpy(), expected.numpy())

    convert_bigmodel_to_resnet(tmp_path / "ours", tmp_path / "back")
    back = AutoImageProcessor.from_pretrained(tmp_path / "back", backend="pil")
    assert type(back).__name__.startswith("ConvNextImageProcessor")
    np.testing.assert_array_equal(back(image, return_tensors="pt").pixel_values.numpy(), expected.numpy())


def test_backbone_checkpoints_convert_both_ways(tmp_path):
    stock = _tiny_stock("bottleneck", head=False)
    stock.save_pretrained(tmp_path / "stock")
    convert_resnet_to_bigmodel(tmp_path / "stock", tmp_path / "ours")
    ours = AutoModel.from_pretrained(tmp_path / "ours").eval()
    assert isinstance(ours, BigModelResNetModel)
    pixels = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(pixels).pooler_output, stock(pixels).pooler_output, rtol=1e-5, atol=1e-5)
    convert_bigmodel_to_resnet(tmp_path / "ours", tmp_path / "back")
    assert type(AutoModel.from_pretrained(tmp_path / "back")) is ResNetModel


def test_cli_route_and_message(tmp_path, capsys):
    _tiny_stock("basic").save_pretrained(tmp_path / "stock")
    assert convert_cli.main([str(tmp_path / "stock"), str(tmp_path / "ours")]) == 0
    assert "(resnet) -> " in capsys.readouterr().out
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["model_type"] == "bigmodel_resnet"
    assert convert_cli.resolve_route(tmp_path / "ours").target == "resnet"


def test_conversion_script_converts_and_the_output_loads(tmp_path):
    """`python conversion_scripts/convert_resnet.py SRC DST` runs as a plain script (conversion_scripts/ is not a
    package) and keeps to the ResNet routes."""
    stock = _tiny_stock("basic")
    stock.save_pretrained(tmp_path / "stock")
    script = Path(__file__).resolve().parents[1] / "conversion_scripts" / "convert_resnet.py"
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "stock"), str(tmp_path / "ours")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "(resnet) -> " in result.stdout and "(bigmodel_resnet)" in result.stdout
    ours = AutoModelForImageClassification.from_pretrained(tmp_path / "ours").eval()
    assert isinstance(ours, BigModelResNetForImageClassification)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(pixels).logits, stock(pixels).logits, rtol=1e-5, atol=1e-5)
    # A BERT folder is not this script's business: the error names the routes it has.
    bert = transformers.BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2)
    transformers.BertModel(bert).save_pretrained(tmp_path / "bert")
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "bert"), str(tmp_path / "nope")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert "convert_resnet.py: error: No converter for 'bert' checkpoints" in result.stderr
    assert "bigmodel_resnet, resnet" in result.stderr


def test_key_map_covers_resnet50_both_ways():
    with torch.device("meta"):
        stock = ResNetForImageClassification(ResNetConfig(num_labels=1000))
        ours = BigModelResNetForImageClassification(BigModelResNetConfig.from_preset("resnet-50"))
    key_map = resnet_key_map(4)
    theirs = key_map.to_theirs(ours.state_dict())
    assert set(theirs) == set(stock.state_dict())
    assert all(theirs[k].shape == v.shape for k, v in stock.state_dict().items())
    assert set(key_map.to_ours(stock.state_dict())) == set(ours.state_dict())


def test_refusals_name_the_problem(tmp_path):
    BigModelResNetForImageClassification(BigModelResNetConfig.from_preset("resnet-20")).save_pretrained(tmp_path / "c")
    with pytest.raises(ConversionError, match=r"stem_type='cifar' \(transformers' ResNet always has the 7x7"):
        convert_bigmodel_to_resnet(tmp_path / "c", tmp_path / "out")
    stock = _tiny_stock("basic", hidden_act="gelu")
    stock.save_pretrained(tmp_path / "gelu")
    with pytest.raises(ConversionError, match=r"hidden_act='gelu'.*Only hidden_act='relu' checkpoints"):
        convert_resnet_to_bigmodel(tmp_path / "gelu", tmp_path / "out")
    with pytest.raises(ConversionError, match=r"--tokenizer does not apply to image models"):
        convert_resnet_to_bigmodel(tmp_path / "gelu", tmp_path / "out", tokenizer=tmp_path)
    assert not (tmp_path / "out").exists()


def test_a_plain_network_is_refused_for_export_naming_the_field(tmp_path):
    """transformers' ResNet always adds the shortcut: a plain network (no shortcut weights at all) has no stock
    equivalent, and the refusal names the field instead of failing on the missing shortcut keys."""
    plain = BigModelResNetConfig.from_preset("resnet-tiny", use_residual_connection=False)
    BigModelResNetForImageClassification(plain).save_pretrained(tmp_path / "plain")
    with pytest.raises(ConversionError, match=r"use_residual_connection=False \(a plain network without shortcuts"):
        convert_bigmodel_to_resnet(tmp_path / "plain", tmp_path / "out")
    assert not (tmp_path / "out").exists()
