"""The architectures of the zoo. Importing this package registers each with transformers' Auto classes.

An architecture is its folder: `configuration_<arch>.py` holds its config class, its `PRESETS` and its `AUTO_MAP`
(the one list of its heads, also written into every config.json for `trust_remote_code=True`), and
`modeling_<arch>.py` holds the classes that `AUTO_MAP` names. One `register(...)` line below turns the two modules
into an `Architecture` row; the registry, the CLI, the model cards and the tests all read that row.
"""

import importlib.util
import warnings
from types import ModuleType
from typing import NamedTuple

import transformers
from transformers import PreTrainedConfig, PreTrainedModel

from .bert import configuration_bert, configuration_bert4rec, modeling_bert, modeling_bert4rec
from .gpt import configuration_gpt, configuration_sasrec, modeling_gpt, modeling_sasrec
from .resnet import configuration_resnet, image_processing_resnet, modeling_resnet
from .transformer import configuration_transformer, modeling_transformer

# Auto class -> (task name, used by `create_model` and the CLI; pipeline tag, used on the Hub and in model cards).
# A head whose Auto class is missing here cannot be registered, so a new kind of head starts with a row here.
TASKS: dict[str, tuple[str, str]] = {
    "AutoModel": ("base", "feature-extraction"),
    "AutoModelForCausalLM": ("causal-lm", "text-generation"),
    "AutoModelForPreTraining": ("pretraining", "fill-mask"),
    "AutoModelForMaskedLM": ("masked-lm", "fill-mask"),
    "AutoModelForNextSentencePrediction": ("next-sentence-prediction", "text-classification"),
    "AutoModelForSeq2SeqLM": ("seq2seq-lm", "translation"),
    "AutoModelForSequenceClassification": ("sequence-classification", "text-classification"),
    "AutoModelForTokenClassification": ("token-classification", "token-classification"),
    "AutoModelForQuestionAnswering": ("question-answering", "question-answering"),
    "AutoModelForMultipleChoice": ("multiple-choice", "multiple-choice"),
    "AutoModelForImageClassification": ("image-classification", "image-classification"),
}


class Architecture(NamedTuple):
    """One row of `ARCHITECTURES`: everything the rest of the package needs to know about an architecture."""

    config_class: type[PreTrainedConfig]
    presets: dict[str, dict]  # preset name -> config fields (`config_class.from_preset(name)`)
    heads: dict[str, type[PreTrainedModel]]  # task name (see TASKS) -> model class, in AUTO_MAP's order
    image_processor: type | None = None  # for image models: the processor saved next to the weights
    pretrainer: str | None = None  # the module that `hf-bigmodel pretrain <arch>` runs (its `main(argv)`)

    @property
    def model_type(self) -> str:
        return self.config_class.model_type

    def auto_class_of(self, task: str) -> str:
        """The Auto class name that loads the `task` head, e.g. "AutoModelForCausalLM" for "causal-lm"."""
        for auto_name, (task_name, _) in TASKS.items():
            if task_name == task and task in self.heads:
                return auto_name
        raise ValueError(f"{self.model_type} has no {task!r} head; choose from {', '.join(self.heads)}.")


def register(
    configuration: ModuleType,
    modeling: ModuleType,
    *,
    image_processor: type | None = None,
    pretrainer: str | None = None,
) -> Architecture:
    """Register an architecture with transformers' Auto classes from its `AUTO_MAP`, and return its row.

    Each class is also marked for `save_pretrained` to copy its code next to the weights (for
    `trust_remote_code=True`)."""
    auto_map: dict[str, str] = configuration.AUTO_MAP
    config_class = getattr(configuration, auto_map["AutoConfig"].rsplit(".", 1)[1])
    transformers.AutoConfig.register(config_class.model_type, config_class)
    config_class.register_for_auto_class()
    heads = {}
    for auto_name, reference in auto_map.items():
        if auto_name == "AutoConfig":
            continue
        if auto_name not in TASKS:
            raise ValueError(f"{config_class.__name__}.AUTO_MAP names {auto_name}, which has no row in models.TASKS.")
        model_class = getattr(modeling, reference.rsplit(".", 1)[1])
        getattr(transformers, auto_name).register(config_class, model_class)
        model_class.register_for_auto_class(auto_name)
        heads[TASKS[auto_name][0]] = model_class
    if image_processor is not None:
        # One implementation (Pillow + NumPy) serves both backend names: there is no torchvision variant, and
        # registering it for "torchvision" too spares users who have torchvision a "falling back to pil" warning.
        transformers.AutoImageProcessor.register(
            config_class,
            image_processor_classes={"torchvision": image_processor, "pil": image_processor},
        )
        image_processor.register_for_auto_class()
    _register_peft_targets(config_class.model_type, getattr(configuration, "PEFT_TARGET_MODULES", None))
    return Architecture(config_class, configuration.PRESETS, heads, image_processor, pretrainer)


def _register_peft_targets(model_type: str, modules: list[str] | None) -> None:
    """Add the architecture's default target modules to PEFT's tables (when PEFT is installed), so that a PEFT
    config without `target_modules` works as it does for the stock models. PEFT keeps one table per method; the
    ones that adapt attention projections are those that give Llama LoRA's entry (`q_proj`, `v_proj`): only those
    get our attention projections."""
    if modules is None or importlib.util.find_spec("peft") is None:
        return
    try:
        from peft.utils import constants
    except Exception as error:  # a PEFT that does not import with this transformers must not break hf_bigmodel
        warnings.warn(
            f"PEFT is installed but does not import ({error}); its default target modules are not set.", stacklevel=3
        )
        return

    lora_llama = constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get("llama")
    for name in dir(constants):
        table = getattr(constants, name)
        if name.endswith("_TARGET_MODULES_MAPPING") and isinstance(table, dict) and table.get("llama") == lora_llama:
            table.setdefault(model_type, list(modules))


# The zoo, one line per architecture. Every test and CLI command loops over this table.
ARCHITECTURES: dict[str, Architecture] = {
    "gpt": register(configuration_gpt, modeling_gpt, pretrainer="hf_bigmodel.training.pretrain_gpt"),
    "bert": register(configuration_bert, modeling_bert, pretrainer="hf_bigmodel.training.pretrain_bert"),
    "transformer": register(
        configuration_transformer, modeling_transformer, pretrainer="hf_bigmodel.training.pretrain_seq2seq"
    ),
    "resnet": register(
        configuration_resnet,
        modeling_resnet,
        image_processor=image_processing_resnet.BigModelResNetImageProcessor,
        pretrainer="hf_bigmodel.training.pretrain_images",
    ),
}


# Sequential recommenders: heads over item ids on the GPT and BERT bodies, with their own config classes (a config
# that holds the catalogue and its raw-id map) in the backbone's folder, so that remote code finds the body through
# a single-dot import. They are registered like the architectures (for `AutoModelForCausalLM` and
# `AutoModelForMaskedLM`: next-item prediction is causal LM over items, BERT4Rec's cloze task is masked LM), but
# are kept out of ARCHITECTURES, whose generic tests, converters and commands feed text and images; their own tests
# are tests/test_seqrec_*.py. See docs/recommendation.md.
RECOMMENDERS: dict[str, Architecture] = {
    "sasrec": register(
        configuration_sasrec, modeling_sasrec, pretrainer="hf_bigmodel.training.pretrain_seqrec:main_sasrec"
    ),
    "bert4rec": register(
        configuration_bert4rec, modeling_bert4rec, pretrainer="hf_bigmodel.training.pretrain_seqrec:main_bert4rec"
    ),
}


def architecture_of(model_type: str) -> tuple[str, Architecture]:
    """(name, row) of the architecture whose config has this `model_type`, e.g. "bigmodel_gpt" -> ("gpt", ...)."""
    for name, arch in ARCHITECTURES.items():
        if arch.model_type == model_type:
            return name, arch
    known = ", ".join(arch.model_type for arch in ARCHITECTURES.values())
    raise KeyError(f"hf_bigmodel defines no model_type {model_type!r} (it defines {known}).")


__all__ = ["ARCHITECTURES", "RECOMMENDERS", "TASKS", "Architecture", "architecture_of", "register"]
