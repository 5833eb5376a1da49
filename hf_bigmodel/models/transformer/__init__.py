"""The encoder-decoder Transformer of "Attention Is All You Need". Importing this package registers
`bigmodel_transformer` with transformers' Auto classes, marks the classes for `save_pretrained` to copy their code
next to the weights (for `trust_remote_code=True`), and registers the `translation` and `text2text-generation`
pipelines (removed from transformers 5) for every `AutoModelForSeq2SeqLM` model."""

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

from . import pipeline_transformer
from .configuration_transformer import PRESETS, BigModelTransformerConfig
from .modeling_transformer import (
    BigModelTransformerForConditionalGeneration,
    BigModelTransformerModel,
    BigModelTransformerPreTrainedModel,
)
from .pipeline_transformer import TranslationPipeline

AUTO_CLASSES = {
    AutoModel: BigModelTransformerModel,
    AutoModelForSeq2SeqLM: BigModelTransformerForConditionalGeneration,
}

AutoConfig.register(BigModelTransformerConfig.model_type, BigModelTransformerConfig)
BigModelTransformerConfig.register_for_auto_class()
for auto_class, model_class in AUTO_CLASSES.items():
    auto_class.register(BigModelTransformerConfig, model_class)
    model_class.register_for_auto_class(auto_class.__name__)
pipeline_transformer.register_pipelines()

__all__ = [
    "PRESETS",
    "BigModelTransformerConfig",
    "BigModelTransformerPreTrainedModel",
    "BigModelTransformerModel",
    "BigModelTransformerForConditionalGeneration",
    "TranslationPipeline",
]
