"""hf_bigmodel: GPT, BERT, the encoder-decoder Transformer and ResNet, written from scratch as Hugging Face-native
models. `import hf_bigmodel` registers every architecture with transformers' Auto classes and the pipelines that
transformers 5 removed (translation, question answering).

Every config, model and image-processor class of `ARCHITECTURES` is importable from here by its name
(`from hf_bigmodel import BigModelGPTForCausalLM`): the list is each architecture's `AUTO_MAP`, not restated here.

Importing the package is cheap: the names below are imported on first use (PEP 562), and the registration with
transformers happens when transformers itself is imported, or at once if it already is (`_registration.py`), so that
`hf-bigmodel --help` answers without loading torch.
"""

import importlib

from ._registration import register_when_transformers_is_imported

register_when_transformers_is_imported()

# public name -> the submodule that defines it, imported when the name is first used
_LAZY_NAMES = {
    "ARCHITECTURES": ".models",
    "RECOMMENDERS": ".models",
    "TASKS": ".models",
    "Architecture": ".models",
    "create_config": ".registry",
    "create_model": ".registry",
    "list_presets": ".registry",
    "explain": ".explanation",  # captum is imported only when explain() runs
    "Explanation": ".explanation",
}


def _classes() -> dict[str, type]:
    """Every config, model and image-processor class of `ARCHITECTURES` and `RECOMMENDERS`, by name."""
    from .models import ARCHITECTURES, RECOMMENDERS

    return {
        cls.__name__: cls
        for arch in (*ARCHITECTURES.values(), *RECOMMENDERS.values())
        for cls in (arch.config_class, *arch.heads.values(), arch.image_processor)
        if cls is not None
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hf_bigmodel")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.0.0+local"


def __getattr__(name: str):
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name], __name__), name)
    elif name == "__version__":
        value = _version()
    elif name == "__all__":
        value = [*_LAZY_NAMES, *_classes(), "__version__"]
    else:
        classes = _classes()
        if name not in classes:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = classes[name]
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES, *_classes(), "__version__"})
