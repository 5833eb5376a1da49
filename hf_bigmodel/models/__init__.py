"""The architectures of the zoo. Importing this package registers each with transformers' Auto classes."""

from . import gpt, resnet

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
    "resnet": (
        resnet.BigModelResNetConfig,
        resnet.configuration_resnet.PRESETS,
        {
            "base": resnet.BigModelResNetModel,
            "image-classification": resnet.BigModelResNetForImageClassification,
        },
    ),
}
