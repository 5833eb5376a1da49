"""One API across the zoo, as timm has: list the named presets, build a config or a model from a preset name."""

import difflib

from transformers import PreTrainedConfig, PreTrainedModel

from .models import ARCHITECTURES


def list_presets(arch: str | None = None) -> list[str]:
    """Names of the config presets, e.g. `list_presets("gpt")` -> ["gpt-tiny", "nanogpt-cpu", ...]."""
    archs = [arch] if arch else list(ARCHITECTURES)
    for name in archs:
        if name not in ARCHITECTURES:
            raise ValueError(f"Unknown architecture {name!r}; choose from {', '.join(ARCHITECTURES)}.")
    return [preset for name in archs for preset in ARCHITECTURES[name].presets]


def _find_preset(preset: str) -> str:
    for arch, row in ARCHITECTURES.items():
        if preset in row.presets:
            return arch
    raise ValueError(f"Unknown preset {preset!r}. Available presets: {', '.join(list_presets())}.")


def create_config(preset: str, **overrides) -> PreTrainedConfig:
    """The config of a named preset, with any field overridden: `create_config("gpt-tiny", vocab_size=512)`."""
    config_class = ARCHITECTURES[_find_preset(preset)].config_class
    if overrides:
        check_config_keys(config_class.from_preset(preset), overrides, f"preset {preset!r}")
    return config_class.from_preset(preset, **overrides)


def check_config_keys(config: PreTrainedConfig, overrides: dict, where: str) -> None:
    """A config stores any keyword it does not know and ignores it: refuse those, so that a typo
    (`hiden_size=256`) is not trained past without a word. `where` names the config in the message."""
    known = set(config.to_dict()) | set(getattr(config, "attribute_map", {}))
    unknown = [key for key in overrides if key not in known and not hasattr(config, key)]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, sorted(known), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"{type(config).__name__} has no field {key!r} ({where}).{hint}")


def create_model(preset: str, task: str = "base", **overrides) -> PreTrainedModel:
    """A freshly initialised model: `create_model("gpt2-124m", task="causal-lm")`."""
    arch = _find_preset(preset)
    heads = ARCHITECTURES[arch].heads
    if task not in heads:
        raise ValueError(f"{arch} has no {task!r} head; choose from {', '.join(heads)}.")
    return heads[task](create_config(preset, **overrides))
