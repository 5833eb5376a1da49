"""hf_bigmodel: GPT, BERT, the encoder-decoder Transformer and ResNet, written from scratch as Hugging Face-native
models. `import hf_bigmodel` registers every architecture with transformers' Auto classes."""

from importlib.metadata import PackageNotFoundError, version

from . import pipelines  # noqa: F401  (registers the question-answering pipeline)
from .models import ARCHITECTURES
from .models.bert import (
    BigModelBertConfig,
    BigModelBertForMaskedLM,
    BigModelBertForMultipleChoice,
    BigModelBertForNextSentencePrediction,
    BigModelBertForPreTraining,
    BigModelBertForQuestionAnswering,
    BigModelBertForSequenceClassification,
    BigModelBertForTokenClassification,
    BigModelBertModel,
)
from .models.gpt import (
    BigModelGPTConfig,
    BigModelGPTForCausalLM,
    BigModelGPTForSequenceClassification,
    BigModelGPTForTokenClassification,
    BigModelGPTModel,
)
from .models.resnet import (
    BigModelResNetConfig,
    BigModelResNetForImageClassification,
    BigModelResNetImageProcessor,
    BigModelResNetModel,
)
from .models.transformer import (
    BigModelTransformerConfig,
    BigModelTransformerForConditionalGeneration,
    BigModelTransformerModel,
)
from .registry import create_config, create_model, list_presets

try:
    __version__ = version("hf_bigmodel")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"

__all__ = [
    "ARCHITECTURES",
    "BigModelGPTConfig",
    "BigModelGPTModel",
    "BigModelGPTForCausalLM",
    "BigModelGPTForSequenceClassification",
    "BigModelGPTForTokenClassification",
    "BigModelBertConfig",
    "BigModelBertModel",
    "BigModelBertForPreTraining",
    "BigModelBertForMaskedLM",
    "BigModelBertForNextSentencePrediction",
    "BigModelBertForSequenceClassification",
    "BigModelBertForTokenClassification",
    "BigModelBertForQuestionAnswering",
    "BigModelBertForMultipleChoice",
    "BigModelTransformerConfig",
    "BigModelTransformerModel",
    "BigModelTransformerForConditionalGeneration",
    "BigModelResNetConfig",
    "BigModelResNetModel",
    "BigModelResNetForImageClassification",
    "BigModelResNetImageProcessor",
    "create_config",
    "create_model",
    "list_presets",
    "__version__",
]
