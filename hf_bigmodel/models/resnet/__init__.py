"""ResNet: its config (with `PRESETS` and `AUTO_MAP`, the list of its heads), its models and its image processor.
Registration with transformers' Auto classes is done once for every architecture, by `hf_bigmodel.models.register`
from `AUTO_MAP`."""

from .configuration_resnet import PRESETS, BigModelResNetConfig
from .image_processing_resnet import BigModelResNetImageProcessor
from .modeling_resnet import (
    BigModelResNetForImageClassification,
    BigModelResNetModel,
    BigModelResNetPreTrainedModel,
)

__all__ = [
    "PRESETS",
    "BigModelResNetConfig",
    "BigModelResNetImageProcessor",
    "BigModelResNetPreTrainedModel",
    "BigModelResNetModel",
    "BigModelResNetForImageClassification",
]
