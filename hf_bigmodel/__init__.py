"""hf_bigmodel: GPT, BERT, the encoder-decoder Transformer and ResNet, written from scratch as Hugging Face-native
models. `import hf_bigmodel` registers every architecture with transformers' Auto classes and the pipelines that
transformers 5 removed (translation, question answering).

Every config, model and image-processor class of `ARCHITECTURES` is importable from here by its name
(`from hf_bigmodel import BigModelGPTForCausalLM`): the list is each architecture's `AUTO_MAP`, not restated here.
"""

from importlib.metadata import PackageNotFoundError, version

from . import pipelines  # noqa: F401  (registers the translation and question-answering pipelines)
from .explanation import Explanation, explain  # captum is imported only when explain() runs
from .models import ARCHITECTURES, RECOMMENDERS, TASKS, Architecture
from .registry import create_config, create_model, list_presets

try:
    __version__ = version("hf_bigmodel")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"

_CLASSES = {
    cls.__name__: cls
    for arch in (*ARCHITECTURES.values(), *RECOMMENDERS.values())
    for cls in (arch.config_class, *arch.heads.values(), arch.image_processor)
    if cls is not None
}
globals().update(_CLASSES)

__all__ = [
    "ARCHITECTURES",
    "RECOMMENDERS",
    "TASKS",
    "Architecture",
    *_CLASSES,
    "create_config",
    "create_model",
    "explain",
    "Explanation",
    "list_presets",
    "__version__",
]
