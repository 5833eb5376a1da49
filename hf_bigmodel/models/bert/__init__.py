"""BERT encoder (MLM + NSP): its config (with `PRESETS` and `AUTO_MAP`, the list of its heads) and its models.
Registration with transformers' Auto classes is done once for every architecture, by `hf_bigmodel.models.register`
from `AUTO_MAP`."""

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
