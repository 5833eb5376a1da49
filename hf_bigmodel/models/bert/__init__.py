"""BERT encoder. Importing this package registers `bigmodel_bert` with transformers' Auto classes and marks the
classes for `save_pretrained` to copy their code next to the weights (for `trust_remote_code=True`)."""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForNextSentencePrediction,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration_bert import PRESETS, BigModelBertConfig
from .modeling_bert import (
    BigModelBertForMaskedLM,
    BigModelBertForMultipleChoice,
    BigModelBertForNextSentencePrediction,
    BigModelBertForPreTraining,
    BigModelBertForPreTrainingOutput,
    BigModelBertForQuestionAnswering,
    BigModelBertForSequenceClassification,
    BigModelBertForTokenClassification,
    BigModelBertModel,
    BigModelBertPreTrainedModel,
)

AUTO_CLASSES = {
    AutoModel: BigModelBertModel,
    AutoModelForPreTraining: BigModelBertForPreTraining,
    AutoModelForMaskedLM: BigModelBertForMaskedLM,
    AutoModelForNextSentencePrediction: BigModelBertForNextSentencePrediction,
    AutoModelForSequenceClassification: BigModelBertForSequenceClassification,
    AutoModelForTokenClassification: BigModelBertForTokenClassification,
    AutoModelForQuestionAnswering: BigModelBertForQuestionAnswering,
    AutoModelForMultipleChoice: BigModelBertForMultipleChoice,
}

AutoConfig.register(BigModelBertConfig.model_type, BigModelBertConfig)
BigModelBertConfig.register_for_auto_class()
for auto_class, model_class in AUTO_CLASSES.items():
    auto_class.register(BigModelBertConfig, model_class)
    model_class.register_for_auto_class(auto_class.__name__)

__all__ = [
    "PRESETS",
    "BigModelBertConfig",
    "BigModelBertPreTrainedModel",
    "BigModelBertModel",
    "BigModelBertForPreTraining",
    "BigModelBertForPreTrainingOutput",
    "BigModelBertForMaskedLM",
    "BigModelBertForNextSentencePrediction",
    "BigModelBertForSequenceClassification",
    "BigModelBertForTokenClassification",
    "BigModelBertForQuestionAnswering",
    "BigModelBertForMultipleChoice",
]
