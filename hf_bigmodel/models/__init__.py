"""The architectures of the zoo. Importing this package registers each with transformers' Auto classes."""

from . import bert, gpt, resnet, transformer

# model_type -> (config class, {task name: model class}). Every test and CLI command loops over this table, so a new
# architecture is wired in by adding one line here.
ARCHITECTURES = {
    "gpt": (
        gpt.BigModelGPTConfig,
        gpt.configuration_gpt.PRESETS,
        {
            "base": gpt.BigModelGPTModel,
            "causal-lm": gpt.BigModelGPTForCausalLM,
            "sequence-classification": gpt.BigModelGPTForSequenceClassification,
            "token-classification": gpt.BigModelGPTForTokenClassification,
        },
    ),
    "bert": (
        bert.BigModelBertConfig,
        bert.configuration_bert.PRESETS,
        {
            "base": bert.BigModelBertModel,
            "pretraining": bert.BigModelBertForPreTraining,
            "masked-lm": bert.BigModelBertForMaskedLM,
            "next-sentence-prediction": bert.BigModelBertForNextSentencePrediction,
            "sequence-classification": bert.BigModelBertForSequenceClassification,
            "token-classification": bert.BigModelBertForTokenClassification,
            "question-answering": bert.BigModelBertForQuestionAnswering,
            "multiple-choice": bert.BigModelBertForMultipleChoice,
        },
    ),
    "transformer": (
        transformer.BigModelTransformerConfig,
        transformer.PRESETS,
        {
            "base": transformer.BigModelTransformerModel,
            "seq2seq-lm": transformer.BigModelTransformerForConditionalGeneration,
        },
    ),
    "resnet": (
        resnet.BigModelResNetConfig,
        resnet.configuration_resnet.PRESETS,
        {
            "base": resnet.BigModelResNetModel,
            "image-classification": resnet.BigModelResNetForImageClassification,
        },
    ),
}
