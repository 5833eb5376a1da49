"""Decoder-only GPT: its config (with `PRESETS` and `AUTO_MAP`, the list of its heads) and its models. Registration
with transformers' Auto classes is done once for every architecture, by `hf_bigmodel.models.register` from
`AUTO_MAP`."""

from .configuration_gpt import PRESETS, BigModelGPTConfig
from .modeling_gpt import (
    BigModelGPTForCausalLM,
    BigModelGPTForSequenceClassification,
    BigModelGPTForTokenClassification,
    BigModelGPTModel,
    BigModelGPTPreTrainedModel,
)

__all__ = [
    "PRESETS",
    "BigModelGPTConfig",
    "BigModelGPTPreTrainedModel",
    "BigModelGPTModel",
    "BigModelGPTForCausalLM",
    "BigModelGPTForSequenceClassification",
    "BigModelGPTForTokenClassification",
]
