"""One API across the zoo, as timm tests it: every architecture x preset x head of `ARCHITECTURES`.

Architecture-specific behaviour is tested in the per-architecture files; this file proves that a row added to
`ARCHITECTURES` works through the registry's entry points for every preset: `create_config`, `create_model` and the
config round trip through AutoConfig. The generic model checks of every head (save/load through its Auto class,
remote code, training, ...) run in test_models_common.py.
"""

import json

import pytest
import torch
from transformers import AutoConfig

import hf_bigmodel
from hf_bigmodel.models import ARCHITECTURES

PRESETS = [(arch, preset) for arch, row in ARCHITECTURES.items() for preset in row.presets]


def tiny_preset(arch: str) -> str:
    """Every architecture has a `<arch>-tiny` test preset: it is what the tests and the docs build first."""
    return f"{arch}-tiny"


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_architecture_has_a_tiny_preset(arch):
    assert tiny_preset(arch) in hf_bigmodel.list_presets(arch)


@pytest.mark.parametrize(("arch", "preset"), PRESETS)
def test_preset_config_round_trips_through_auto_config(arch, preset, tmp_path):
    config = hf_bigmodel.create_config(preset)
    assert isinstance(config, ARCHITECTURES[arch].config_class)
    config.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert type(reloaded) is type(config)
    ignore = {"_name_or_path"}  # where it was loaded from
    assert {k: v for k, v in reloaded.to_dict().items() if k not in ignore} == {
        k: v for k, v in config.to_dict().items() if k not in ignore
    }
    # config.json names the code files, so the folder also loads with trust_remote_code where hf_bigmodel is absent.
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert "AutoConfig" in auto_map


@pytest.mark.parametrize(("arch", "preset"), PRESETS)
def test_every_preset_builds_every_head(arch, preset):
    # On the meta device: the big presets (GPT-2 124M, BERT-base, ResNet-152, Transformer-big) build in
    # milliseconds without allocating their weights.
    with torch.device("meta"):
        for task, model_class in ARCHITECTURES[arch].heads.items():
            model = hf_bigmodel.create_model(preset, task=task)
            assert isinstance(model, model_class)
            assert model.num_parameters() > 0


def test_unknown_names_are_rejected_with_the_choices():
    with pytest.raises(ValueError, match=r"Unknown preset 'gpt-huge'\. Available presets: .*gpt-tiny"):
        hf_bigmodel.create_config("gpt-huge")
    with pytest.raises(ValueError, match=r"Unknown architecture 'lstm'; choose from gpt"):
        hf_bigmodel.list_presets("lstm")
    with pytest.raises(ValueError, match=r"gpt has no 'fill-mask' head; choose from base, causal-lm"):
        hf_bigmodel.create_model("gpt-tiny", task="fill-mask")
