"""Decoder-only GPT. Importing this package registers `bigmodel_gpt` with transformers' Auto classes and marks the
classes for `save_pretrained` to copy their code next to the weights (for `trust_remote_code=True`)."""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration_gpt import BigModelGPTConfig
from .modeling_gpt import (
    BigModelGPTForCausalLM,
    BigModelGPTForSequenceClassification,
    BigModelGPTForTokenClassification,
    BigModelGPTModel,
    BigModelGPTPreTrainedModel,
)

AUTO_CLASSES = {
    AutoModel: BigModelGPTModel,
    AutoModelForCausalLM: BigModelGPTForCausalLM,
    AutoModelForSequenceClassification: BigModelGPTForSequenceClassification,
    AutoModelForTokenClassification: BigModelGPTForTokenClassification,
}

AutoConfig.register(BigModelGPTConfig.model_type, BigModelGPTConfig)
BigModelGPTConfig.register_for_auto_class()
for auto_class, model_class in AUTO_CLASSES.items():
    auto_class.register(BigModelGPTConfig, model_class)
    model_class.register_for_auto_class(auto_class.__name__)

__all__ = [
    "BigModelGPTConfig",
    "BigModelGPTPreTrainedModel",
    "BigModelGPTModel",
    "BigModelGPTForCausalLM",
    "BigModelGPTForSequenceClassification",
    "BigModelGPTForTokenClassification",
]
