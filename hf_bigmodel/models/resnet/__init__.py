"""ResNet image classifiers. Importing this package registers `bigmodel_resnet` with transformers' Auto classes
(AutoConfig, AutoModel, AutoModelForImageClassification, AutoImageProcessor) and marks the classes for
`save_pretrained` to copy their code next to the weights and the processor config (for `trust_remote_code=True`)."""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

from .configuration_resnet import BigModelResNetConfig
from .image_processing_resnet import BigModelResNetImageProcessor
from .modeling_resnet import (
    BigModelResNetForImageClassification,
    BigModelResNetModel,
    BigModelResNetPreTrainedModel,
)

AUTO_CLASSES = {
    AutoModel: BigModelResNetModel,
    AutoModelForImageClassification: BigModelResNetForImageClassification,
}

AutoConfig.register(BigModelResNetConfig.model_type, BigModelResNetConfig)
BigModelResNetConfig.register_for_auto_class()
for auto_class, model_class in AUTO_CLASSES.items():
    auto_class.register(BigModelResNetConfig, model_class)
    model_class.register_for_auto_class(auto_class.__name__)
# One implementation (Pillow + NumPy) serves both backend names: there is no torchvision variant, and registering it
# for "torchvision" too spares users who have torchvision a "falling back to pil" warning.
AutoImageProcessor.register(
    BigModelResNetConfig,
    image_processor_classes={"torchvision": BigModelResNetImageProcessor, "pil": BigModelResNetImageProcessor},
)
BigModelResNetImageProcessor.register_for_auto_class()

__all__ = [
    "BigModelResNetConfig",
    "BigModelResNetImageProcessor",
    "BigModelResNetPreTrainedModel",
    "BigModelResNetModel",
    "BigModelResNetForImageClassification",
]
