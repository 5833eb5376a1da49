"""Folders saved by an earlier hf_bigmodel load with today's code and compute the same outputs.

`tests/fixtures/saved_d00b1a2/<arch>/` holds one tiny model per architecture saved at commit d00b1a2, before the
package was reshaped, with that code's inputs and outputs. Parameter names are the checkpoint format users hold, so
a renamed parameter, a dropped buffer or a changed computation fails here, naming the folder.
"""

import json
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

import hf_bigmodel  # noqa: F401  (registers the architectures)
from hf_bigmodel.models import ARCHITECTURES

FIXTURES = Path(__file__).parent / "fixtures" / "saved_d00b1a2"


def _auto_class(config: dict):
    """The Auto class of the head the folder was saved with (config.json's `architectures`)."""
    arch = next(row for row in ARCHITECTURES.values() if row.model_type == config["model_type"])
    [name] = config["architectures"]
    [task] = [task for task, cls in arch.heads.items() if cls.__name__ == name]
    return getattr(transformers, arch.auto_class_of(task))


def test_every_architecture_has_a_saved_folder():
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == sorted(ARCHITECTURES)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_a_folder_saved_before_the_reshaping_loads_with_the_same_outputs(arch):
    folder = FIXTURES / arch
    config = json.loads((folder / "config.json").read_text())
    model, info = _auto_class(config).from_pretrained(folder, output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set(), (arch, info)
    assert type(model).__name__ == config["architectures"][0]
    reference = load_file(folder / "reference.safetensors")
    inputs = {k[3:]: v for k, v in reference.items() if k.startswith("in.")}
    with torch.no_grad():
        outputs = model.eval()(**inputs)
    expected = {k[4:]: v for k, v in reference.items() if k.startswith("out.")}
    assert expected, arch
    for key, value in expected.items():
        torch.testing.assert_close(
            outputs[key], value, atol=1e-5, rtol=1e-5, msg=lambda m, key=key: f"{arch}.{key}: {m}"
        )
