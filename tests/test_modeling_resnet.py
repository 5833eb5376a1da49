"""What is ResNet's own: presets against transformers' own ResNet, parity with it in train and eval mode, the fast
paths (channels-last, folded BatchNorm) against the plain computation, zero-init residuals, losses and input errors,
and save/load with the image processor through the registry, through remote code in a clean process, and through the
image-classification pipeline. The generic checks that every architecture shares (Auto classes, config round trip,
invalid configs, save/load, sharded save, head from a base checkpoint, activation checkpointing with and without
reentrant recomputation, bf16, compile/export) run in test_models_common.py."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    ResNetConfig,
    ResNetForImageClassification,
    pipeline,
)

import hf_bigmodel
from hf_bigmodel.conversion.convert_resnet import resnet_key_map
from hf_bigmodel.models import ARCHITECTURES
from hf_bigmodel.models.resnet import (
    BigModelResNetConfig,
    BigModelResNetForImageClassification,
    BigModelResNetImageProcessor,
    BigModelResNetModel,
)
from hf_bigmodel.models.resnet.configuration_resnet import AUTO_MAP, PRESETS
from hf_bigmodel.testing import WITHOUT_HF_BIGMODEL, randomize_batch_norm_, run_python
from hf_bigmodel.testing.model_cases import resnet_config as tiny_config

HEADS = ARCHITECTURES["resnet"].heads
CODE_FILES = {"configuration_resnet.py", "modeling_resnet.py", "cpu_kernels_resnet.py", "image_processing_resnet.py"}


def stock_twin(model: BigModelResNetForImageClassification) -> ResNetForImageClassification:
    """transformers' ResNetForImageClassification with the same config and weights."""
    c = model.config
    stock = ResNetForImageClassification(
        ResNetConfig(
            num_channels=c.num_channels,
            embedding_size=c.embedding_size,
            hidden_sizes=c.hidden_sizes,
            depths=c.depths,
            layer_type=c.layer_type,
            downsample_in_first_stage=c.downsample_in_first_stage,
            downsample_in_bottleneck=c.downsample_in_bottleneck,
            num_labels=c.num_labels,
        )
    )
    stock.load_state_dict(resnet_key_map(c.num_stages).to_theirs(model.state_dict()))
    return stock


# --------------------------------------------------------------------------------------------------------------------
# Registration, config, presets


def test_preset_with_a_label_map_takes_its_class_count():
    config = BigModelResNetConfig.from_preset("resnet-20", id2label={0: "cat", 1: "dog"})
    assert config.num_labels == 2 and config.label2id == {"cat": 0, "dog": 1}


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"Unknown ResNet preset 'resnet-7'\. Available presets: resnet-tiny"):
        BigModelResNetConfig.from_preset("resnet-7")


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_builds(preset):
    config = hf_bigmodel.create_config(preset)
    with torch.device("meta"):
        model = BigModelResNetForImageClassification(config)
    assert len(model.resnet.stages) == len(config.depths)
    assert [len(stage.layers) for stage in model.resnet.stages] == config.depths
    assert model.classifier.weight.shape == (config.num_labels, config.hidden_sizes[-1])
    kernel = 7 if config.stem_type == "imagenet" else 3
    assert model.resnet.embedder.conv.weight.shape == (config.embedding_size, config.num_channels, kernel, kernel)


@pytest.mark.parametrize(
    ("preset", "stock_kwargs", "expected"),
    [
        ("resnet-18", dict(layer_type="basic", hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2]), 11_689_512),
        ("resnet-50", dict(), 25_557_032),  # ResNetConfig() is ResNet-50
    ],
)
def test_parameter_count_matches_stock(preset, stock_kwargs, expected):
    with torch.device("meta"):
        ours = BigModelResNetForImageClassification(BigModelResNetConfig.from_preset(preset))
        stock = ResNetForImageClassification(ResNetConfig(num_labels=1000, **stock_kwargs))
    # torchvision's resnet18 / resnet50 have the same counts.
    assert ours.num_parameters() == stock.num_parameters() == expected


def test_cifar_resnet20_is_the_paper_size():
    with torch.device("meta"):
        model = BigModelResNetForImageClassification(BigModelResNetConfig.from_preset("resnet-20"))
    # He et al.'s 0.27M network has 269,722 parameters with parameter-free (zero-padding) shortcuts; the two 1x1
    # projection shortcuts (16->32 and 32->64 channels, with their BatchNorms) add 512 + 64 + 2048 + 128.
    assert model.num_parameters() == 269_722 + 2_752
    assert model.resnet.embedder.pool is None


# --------------------------------------------------------------------------------------------------------------------
# Forward: shapes, parity with transformers' ResNet, fast paths


def test_backbone_hidden_states_per_stage():
    config = BigModelResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1])
    model = BigModelResNetModel(config).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64), output_hidden_states=True)
    shapes = [tuple(h.shape) for h in out.hidden_states]
    assert shapes == [(2, 8, 16, 16), (2, 8, 16, 16), (2, 16, 8, 8), (2, 24, 4, 4), (2, 32, 2, 2)]
    assert out.last_hidden_state.shape == (2, 32, 2, 2) and out.pooler_output.shape == (2, 32, 1, 1)
    torch.testing.assert_close(out.pooler_output, out.last_hidden_state.mean((2, 3), keepdim=True))
    as_tuple = model(torch.randn(2, 3, 64, 64), return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2


def test_cifar_stem_keeps_resolution():
    model = BigModelResNetModel(BigModelResNetConfig.from_preset("resnet-20", num_channels=1)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 28, 28), output_hidden_states=True)
    assert [h.shape[-1] for h in out.hidden_states] == [28, 28, 14, 7]


@pytest.mark.parametrize("layer_type", ["basic", "bottleneck"])
def test_parity_with_stock_in_train_and_eval(layer_type):
    sizes = [16, 32] if layer_type == "bottleneck" else [8, 16]
    model = BigModelResNetForImageClassification(tiny_config(layer_type=layer_type, hidden_sizes=sizes))
    randomize_batch_norm_(model)
    stock = stock_twin(model)
    pixels = torch.randn(4, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(pixels).logits, stock.eval()(pixels).logits, rtol=1e-5, atol=1e-5)
    # Training mode: batch statistics, and the same running-statistics update.
    out, expected = model.train()(pixels).logits, stock.train()(pixels).logits
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        model.resnet.stages[1].layers[0].norm1.running_mean,
        stock.resnet.encoder.stages[1].layers[0].layer[0].normalization.running_mean,
    )


def test_fast_paths_compute_the_same_function():
    """channels-last and folded BatchNorm (inference only) against the plain NCHW computation."""
    base = BigModelResNetForImageClassification(tiny_config(channels_last=False, fold_batch_norm=False))
    randomize_batch_norm_(base)
    fast = BigModelResNetForImageClassification(tiny_config())
    fast.load_state_dict(base.state_dict())
    pixels = torch.randn(3, 3, 40, 40)
    base.eval(), fast.eval()
    with torch.no_grad():
        expected = base(pixels, output_hidden_states=True)
        got = fast(pixels, output_hidden_states=True)
    torch.testing.assert_close(got.logits, expected.logits, rtol=1e-5, atol=1e-5)
    assert got.hidden_states[-1].is_contiguous(memory_format=torch.channels_last)
    # The folded copies live outside the state dict, which is unchanged.
    assert fast.state_dict().keys() == base.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(fast.state_dict().values(), base.state_dict().values()))


def test_folded_weights_follow_parameter_updates():
    model = BigModelResNetForImageClassification(tiny_config()).eval()
    pixels = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        before = model(pixels).logits
        model.resnet.stages[0].layers[0].norm2.running_var.mul_(4.0)  # e.g. a load_state_dict or a training step
        after = model(pixels).logits
    unfolded = model(pixels).logits  # gradients enabled: the plain path
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, unfolded.detach(), rtol=1e-5, atol=1e-5)
    model.train()
    assert not any(hasattr(m, "_bigmodel_folded") for m in model.modules())


def test_zero_init_residual():
    model = BigModelResNetForImageClassification(tiny_config(zero_init_residual=True))
    assert torch.count_nonzero(model.resnet.stages[0].layers[0].norm3.weight) == 0
    assert torch.count_nonzero(model.resnet.stages[0].layers[0].norm1.weight) > 0
    plain = BigModelResNetForImageClassification(tiny_config())
    assert torch.all(plain.resnet.stages[0].layers[0].norm3.weight == 1)


# --------------------------------------------------------------------------------------------------------------------
# The plain network (use_residual_connection=False)


def _main_branch(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A block's convolutions, BatchNorms and activations, recomputed module by module (no fused path), without the
    activation after the last BatchNorm: what the shortcut is added to."""
    pairs = [(block.conv1, block.norm1), (block.conv2, block.norm2)]
    if hasattr(block, "conv3"):
        pairs.append((block.conv3, block.norm3))
    for index, (conv, norm) in enumerate(pairs):
        x = norm(conv(x))
        if index < len(pairs) - 1:
            x = F.relu(x)
    return x


@pytest.mark.parametrize("layer_type", ["basic", "bottleneck"])
@pytest.mark.parametrize("fused", [False, True], ids=["plain-path", "fused-inference"])
def test_plain_network_differs_from_the_residual_one_only_by_the_shortcut(layer_type, fused):
    sizes = dict(hidden_sizes=[16, 32], embedding_size=8) if layer_type == "bottleneck" else {}
    residual = BigModelResNetForImageClassification(tiny_config(layer_type=layer_type, **sizes)).eval()
    randomize_batch_norm_(residual)
    plain = BigModelResNetForImageClassification(
        tiny_config(layer_type=layer_type, use_residual_connection=False, **sizes)
    ).eval()
    # The same weights: the plain network is the residual one minus its projection shortcuts.
    loaded = plain.load_state_dict(residual.state_dict(), strict=False)
    assert not loaded.missing_keys
    assert loaded.unexpected_keys and all(".shortcut." in key for key in loaded.unexpected_keys)
    assert not any("shortcut" in name for name, _ in plain.named_modules() if name)

    checked = 0
    for stage_r, stage_p in zip(residual.resnet.stages, plain.resnet.stages):
        for block_r, block_p in zip(stage_r.layers, stage_p.layers):
            x = torch.randn(2, block_r.conv1.in_channels, 10, 10).contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                main = _main_branch(block_r, x)
                shortcut = block_r.shortcut.norm(block_r.shortcut.conv(x)) if block_r.shortcut is not None else x
                with torch.set_grad_enabled(not fused):  # no gradients in eval: the folded, fused oneDNN path
                    got_r, got_p = block_r(x, fused=fused), block_p(x, fused=fused)
            torch.testing.assert_close(got_p, F.relu(main), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(got_r, F.relu(main + shortcut), rtol=1e-5, atol=1e-5)
            assert not torch.allclose(got_r, got_p, atol=1e-3)  # the shortcut made a difference
            checked += 1
    assert checked == sum(residual.config.depths)


def test_plain_network_fast_paths_and_save_load(tmp_path):
    plain = BigModelResNetForImageClassification(tiny_config(use_residual_connection=False)).eval()
    randomize_batch_norm_(plain)
    slow = BigModelResNetForImageClassification(
        tiny_config(use_residual_connection=False, channels_last=False, fold_batch_norm=False)
    ).eval()
    slow.load_state_dict(plain.state_dict())
    pixels = torch.randn(3, 3, 40, 40)
    with torch.no_grad():
        expected = slow(pixels).logits
        torch.testing.assert_close(plain(pixels).logits, expected, rtol=1e-5, atol=1e-5)

    plain.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["use_residual_connection"] is False
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config.use_residual_connection is False
    assert reloaded.state_dict().keys() == plain.state_dict().keys()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixels).logits, expected, rtol=1e-5, atol=1e-5)
    # A residual model does not silently load a plain checkpoint: its shortcut projections would be random.
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*shortcut"):
        BigModelResNetForImageClassification(tiny_config()).load_state_dict(plain.state_dict())


def test_zero_init_residual_is_refused_without_the_residual():
    with pytest.raises(ValueError, match=r"needs `use_residual_connection=True`.*every block would output zeros"):
        tiny_config(zero_init_residual=True, use_residual_connection=False)


# --------------------------------------------------------------------------------------------------------------------
# Losses and input errors


def test_losses_against_reference():
    model = BigModelResNetForImageClassification(tiny_config(num_labels=5, label_smoothing=0.1)).eval()
    pixels = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([0, 4, 2, 2])
    out = model(pixels, labels=labels)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels, label_smoothing=0.1))
    # Soft targets (mixup of two one-hot labels): cross-entropy against the distribution.
    soft = 0.7 * F.one_hot(labels, 5).float() + 0.3 * F.one_hot(labels.flip(0), 5).float()
    expected = -(soft * F.log_softmax(out.logits, -1)).sum(-1).mean()
    model.config.label_smoothing = 0.0
    torch.testing.assert_close(model(pixels, labels=soft).loss, expected)
    model.config.problem_type = "multi_label_classification"
    multi = torch.tensor([[1.0, 0, 1, 0, 0]] * 4)
    torch.testing.assert_close(model(pixels, labels=multi).loss, F.binary_cross_entropy_with_logits(out.logits, multi))


def test_label_and_input_errors():
    model = BigModelResNetForImageClassification(tiny_config(num_labels=3))
    pixels = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"Labels \[3\] are out of range: this model has 3 classes \(0 to 2"):
        model(pixels, labels=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"Labels \[-1\] are out of range"):
        model(pixels, labels=torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"soft targets .* shape \(batch, num_labels\) = \(2, 3\), got \(2, 4\)"):
        model(pixels, labels=torch.rand(2, 4))
    with pytest.raises(ValueError, match=r"`pixel_values` has 1 channels but this model expects 3"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"must have 4 dimensions .* got shape \(3, 32, 32\).*unsqueeze\(0\)"):
        model(torch.randn(3, 32, 32))


# --------------------------------------------------------------------------------------------------------------------
# Saving and loading: registry, remote code in a clean process, pipeline


def _save_folder(folder, num_channels: int = 3) -> dict:
    """A tiny classifier with a grayscale or RGB processor, plus reference outputs for the child process."""
    config = tiny_config(num_channels=num_channels, id2label={0: "circle", 1: "square", 2: "star"})
    model = BigModelResNetForImageClassification(config).eval()
    randomize_batch_norm_(model)
    model.save_pretrained(folder)
    processor = BigModelResNetImageProcessor(num_channels=num_channels, size={"shortest_edge": 40}, crop_size=32)
    processor.save_pretrained(folder)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 60, 3), dtype=np.uint8))
    image.save(folder / "image.png")
    pixels = processor(image, return_tensors="pt").pixel_values
    with torch.no_grad():
        logits = model(pixels).logits
        features = model.resnet(pixels).pooler_output
    save_file({"pixels": pixels, "logits": logits, "features": features}, str(folder / "reference.safetensors"))
    top = logits.softmax(-1)[0]
    return {"label": config.id2label[int(top.argmax())], "score": float(top.max())}


CHILD = """
import json, sys
import torch, transformers
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline

results = {}
trust = sys.argv[2] == "true"
for folder in json.loads(sys.argv[1]):
    ref = load_file(f"{folder}/reference.safetensors")
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=trust).eval()
    body = AutoModel.from_pretrained(folder, trust_remote_code=trust).eval()
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=trust)
    pixels = processor(f"{folder}/image.png", return_tensors="pt").pixel_values
    with torch.no_grad():
        logits = model(pixels).logits
        features = body(pixels).pooler_output
    classifier = pipeline("image-classification", model=folder, trust_remote_code=trust)
    results[folder] = {
        "modules": [type(o).__module__ for o in (model, body, processor)],
        "submodules": sorted({type(m).__module__ for m in model.modules() if not type(m).__module__.startswith(("torch.", "transformers."))}),
        "pixels_equal": torch.equal(pixels, ref["pixels"]),
        "logits_diff": (logits - ref["logits"]).abs().max().item(),
        "features_diff": (features - ref["features"]).abs().max().item(),
        "pipeline": classifier(f"{folder}/image.png", top_k=1)[0],
    }
print("RESULTS" + json.dumps(results))
"""


@pytest.mark.parametrize(
    ("prelude", "trust", "module_prefix"),
    [(WITHOUT_HF_BIGMODEL, "true", "transformers_modules."), ("import hf_bigmodel\n", "false", "hf_bigmodel.")],
    ids=["remote-code-without-hf_bigmodel", "registry"],
)
def test_fresh_process_loads_model_processor_and_pipeline(tmp_path, prelude, trust, module_prefix):
    expected = {}
    for channels in (3, 1):
        folder = tmp_path / f"resnet-{channels}ch"
        expected[str(folder)] = _save_folder(folder, channels)
        assert {p.name for p in folder.iterdir()} >= CODE_FILES
        assert json.loads((folder / "config.json").read_text())["auto_map"] == AUTO_MAP
        processor_config = json.loads((folder / "preprocessor_config.json").read_text())
        assert processor_config["auto_map"]["AutoImageProcessor"].startswith("image_processing_resnet.")
    results = run_python(
        prelude + CHILD,
        json.dumps(list(expected)),
        trust,
        cwd=tmp_path,
        env={"HF_HOME": str(tmp_path / "hf")},
        with_package=trust == "false",  # the registry child imports this checkout's hf_bigmodel
    )
    for folder, want in expected.items():
        got = results[folder]
        assert all(module.startswith(module_prefix) for module in got["modules"]), got["modules"]
        package = got["modules"][0].rsplit(".", 1)[0]  # the folder's code (remote) or hf_bigmodel's (registry)
        assert got["submodules"] == [f"{package}.cpu_kernels_resnet", f"{package}.modeling_resnet"]
        assert got["pixels_equal"]
        assert got["logits_diff"] < 1e-5 and got["features_diff"] < 1e-5
        assert got["pipeline"]["label"] == want["label"]
        assert got["pipeline"]["score"] == pytest.approx(want["score"], abs=1e-5)


def test_registry_load_and_pipeline(tmp_path):
    want = _save_folder(tmp_path, num_channels=1)
    model, info = AutoModelForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert type(model) is BigModelResNetForImageClassification
    assert not any(info.values())
    processor = AutoImageProcessor.from_pretrained(tmp_path, trust_remote_code=False)
    assert type(processor) is BigModelResNetImageProcessor and processor.num_channels == 1
    classifier = pipeline("image-classification", model=str(tmp_path), trust_remote_code=False)
    results = classifier([str(tmp_path / "image.png"), Image.open(tmp_path / "image.png").convert("RGBA")], top_k=3)
    assert [r["label"] for r in results[0]][0] == want["label"]
    assert {r["label"] for r in results[0]} == {"circle", "square", "star"}
    assert results[0][0]["score"] == pytest.approx(want["score"], abs=1e-5)
    assert sum(r["score"] for r in results[0]) == pytest.approx(1.0, abs=1e-5)
