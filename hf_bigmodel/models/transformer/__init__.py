"""The encoder-decoder Transformer: its config (with `PRESETS` and `AUTO_MAP`, the list of its heads) and its models.
Registration with transformers' Auto classes is done once for every architecture, by `hf_bigmodel.models.register`
from `AUTO_MAP`."""

from .configuration_transformer import PRESETS, BigModelTransformerConfig
from .modeling_transformer import (
    BigModelTransformerForConditionalGeneration,
    BigModelTransformerModel,
    BigModelTransformerPreTrainedModel,
)

__all__ = [
    "PRESETS",
    "BigModelTransformerConfig",
    "BigModelTransformerPreTrainedModel",
    "BigModelTransformerModel",
    "BigModelTransformerForConditionalGeneration",
]
