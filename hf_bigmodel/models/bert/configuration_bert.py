"""Configuration of the hf_bigmodel BERT encoder.

Standalone on purpose (transformers' single-model-file policy): this file is copied next to the weights on
`save_pretrained`, so it may only import `transformers`, `huggingface_hub`, `torch` and the standard library.
"""

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

# Written into every config.json so that `trust_remote_code=True` resolves every auto class from the code files
# saved next to the weights (transformers itself only records the class being saved).
AUTO_MAP = {
    "AutoConfig": "configuration_bert.BigModelBertConfig",
    "AutoModel": "modeling_bert.BigModelBertModel",
    "AutoModelForPreTraining": "modeling_bert.BigModelBertForPreTraining",
    "AutoModelForMaskedLM": "modeling_bert.BigModelBertForMaskedLM",
    "AutoModelForNextSentencePrediction": "modeling_bert.BigModelBertForNextSentencePrediction",
    "AutoModelForSequenceClassification": "modeling_bert.BigModelBertForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_bert.BigModelBertForTokenClassification",
    "AutoModelForQuestionAnswering": "modeling_bert.BigModelBertForQuestionAnswering",
    "AutoModelForMultipleChoice": "modeling_bert.BigModelBertForMultipleChoice",
}

# The modules that PEFT adapts when a config names no `target_modules` (e.g. `LoraConfig(task_type=...)`): the
# attention's query and value projections, as PEFT's own table has for the stock model (BERT's `query` and `value`).
# `hf_bigmodel.models` adds them to PEFT's table at import.
PEFT_TARGET_MODULES = ["qkv_proj"]

# Named sizes. The non-test sizes are Google's BERT miniatures (Turc et al., 2019) and BERT-base, with the 30522-token
# uncased WordPiece vocabulary; the tokenizer you train decides the real vocabulary (override `vocab_size`).
PRESETS: dict[str, dict] = {
    # For unit tests: a few thousand parameters, no dropout.
    "bert-tiny": dict(
        vocab_size=256,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    ),
    "bert-mini": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "bert-small": dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048),
    "bert-medium": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=2048),
    # BERT-base (110M parameters): exactly the shapes of `bert-base-uncased`.
    "bert-base": dict(),
}


# Copied from hf_bigmodel.models.gpt.configuration_gpt.ConfigValidationError
class ConfigValidationError(StrictDataclassClassValidationError, ValueError):
    """A config with invalid or inconsistent fields. huggingface_hub's `@strict` wraps the `ValueError` of
    `validate_architecture` in `StrictDataclassClassValidationError`, which is not a `ValueError`; this is both, so
    `except ValueError` (what a bad argument is elsewhere in Python) and `except StrictDataclassError` (what
    transformers' own configs raise) both catch it, with the same message."""

    def __init__(self, message: str):
        Exception.__init__(self, message)  # the parent's __init__ builds the message from (validator, cause)


# Copied from hf_bigmodel.models.gpt.configuration_gpt.raise_value_errors
def raise_value_errors(config_class: type) -> type:
    """Class decorator, above `@strict`: `validate()` (run by `__init__` and `save_pretrained`) raises
    `ConfigValidationError` instead of a bare `StrictDataclassClassValidationError`."""
    strict_validate = config_class.validate

    def validate(self) -> None:
        try:
            strict_validate(self)
        except StrictDataclassClassValidationError as error:
            raise ConfigValidationError(str(error)) from error.__cause__

    validate.__is_defined_by_strict_decorator__ = True  # lets a `@strict` subclass replace it, as `@strict` allows
    config_class.validate = validate
    return config_class


@raise_value_errors
@strict
class BigModelBertConfig(PreTrainedConfig):
    r"""
    Configuration of a BERT encoder (post-norm Transformer with learned absolute positions and segment embeddings).
    The defaults are BERT-base; field names and meanings are those of transformers' `BertConfig`.

    Args:
        vocab_size: number of token ids the embedding accepts.
        hidden_size: width of the hidden states.
        num_hidden_layers: number of encoder layers.
        num_attention_heads: number of attention heads; `hidden_size` must be a multiple of it.
        intermediate_size: width of the feed-forward layer. `None` means `4 * hidden_size`.
        hidden_act: activation of the feed-forward layer and of the MLM head transform (BERT: exact `"gelu"`).
        hidden_dropout_prob: dropout on the embeddings and on each residual branch.
        attention_probs_dropout_prob: dropout on the attention probabilities.
        max_position_embeddings: longest sequence the model accepts.
        type_vocab_size: number of segment (token type) ids: 2 for sentence A / sentence B.
        initializer_range: standard deviation of the normal initialisation.
        layer_norm_eps: epsilon of the LayerNorms.
        pad_token_id: id of the padding token (its embedding row gets no gradient, as in BERT).
        classifier_dropout: dropout before the classification heads; `None` means `hidden_dropout_prob`.
        tie_word_embeddings: share the input embedding with the MLM decoder.
    """

    model_type = "bigmodel_bert"
    keys_to_ignore_at_inference = ["cache"]
    # Tensor parallelism: the MLP split Megatron-style; the fused [q | k | v] projection sharded with its output
    # gathered (a column split would not cut it into whole heads), o_proj splitting its replicated input.
    base_model_tp_plan = {
        "layers.*.attention.qkv_proj": "colwise_gather_output",
        "layers.*.attention.o_proj": "rowwise_split_input",
        "layers.*.mlp.up_proj": "colwise",
        "layers.*.mlp.down_proj": "rowwise",
    }
    # Pipeline stages: module -> (its inputs, its outputs), as Llama declares them.
    base_model_pp_plan = {
        "embeddings": (["input_ids"], ["hidden_states"]),
        "layers": (["hidden_states", "attention_mask"], ["hidden_states"]),
    }

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int | None = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float | int = 0.02
    layer_norm_eps: float | int = 1e-12
    pad_token_id: int | None = 0
    classifier_dropout: float | int | None = None
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        # Accept ints for the float fields (e.g. `hidden_dropout_prob=0` from a hand-written config.json).
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, float(value))
        kwargs["auto_map"] = {**AUTO_MAP, **(kwargs.get("auto_map") or {})}
        super().__post_init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "BigModelBertConfig":
        """`BigModelBertConfig.from_preset("bert-mini", vocab_size=8192)`: a named size, with any field overridden."""
        if name not in PRESETS:
            raise ValueError(f"Unknown BERT preset {name!r}. Available presets: {', '.join(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    # Copied from hf_bigmodel.models.gpt.configuration_gpt.BigModelGPTConfig.head_dim
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def validate_architecture(self):
        """Part of `@strict` validation: runs at init and again before `save_pretrained`."""
        _check_positive_ints(
            self,
            (
                "vocab_size",
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
                "max_position_embeddings",
                "type_vocab_size",
            ),
        )
        _check_heads_divide_hidden_size(self)
        if self.hidden_act not in ACT2FN:
            raise ValueError(
                f"`hidden_act` must be the name of a transformers activation (transformers.activations.ACT2FN, e.g. "
                f"'gelu', 'gelu_new', 'relu'), got {self.hidden_act!r}."
            )
        _check_probabilities(self, ("hidden_dropout_prob", "attention_probs_dropout_prob"))
        if self.classifier_dropout is not None and not 0.0 <= self.classifier_dropout < 1.0:
            raise ValueError(
                f"`classifier_dropout` must be in [0, 1) or None (= hidden_dropout_prob), got {self.classifier_dropout}."
            )
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"`pad_token_id` ({self.pad_token_id}) must be a token id in [0, vocab_size={self.vocab_size}), or "
                f"None. Use the tokenizer's pad id (`tokenizer.pad_token_id`) or make vocab_size cover it."
            )


# Copied from hf_bigmodel.models.gpt.configuration_gpt._check_positive_ints
def _check_positive_ints(config: PreTrainedConfig, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise ValueError(f"`{name}` must be a positive integer, got {getattr(config, name)}.")


# Copied from hf_bigmodel.models.gpt.configuration_gpt._check_heads_divide_hidden_size
def _check_heads_divide_hidden_size(config: PreTrainedConfig) -> None:
    if config.hidden_size % config.num_attention_heads != 0:
        raise ValueError(
            f"`hidden_size` ({config.hidden_size}) must be divisible by `num_attention_heads` "
            f"({config.num_attention_heads}): each head gets hidden_size / num_attention_heads channels. "
            f"Pick a head count that divides {config.hidden_size}, e.g. "
            f"{_divisor_near(config.hidden_size, config.num_attention_heads)}."
        )


# Copied from hf_bigmodel.models.gpt.configuration_gpt._check_probabilities
def _check_probabilities(config: PreTrainedConfig, names: tuple[str, ...]) -> None:
    for name in names:
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ValueError(f"`{name}` must be in [0, 1), got {getattr(config, name)}.")


# Copied from hf_bigmodel.models.gpt.configuration_gpt._divisor_near
def _divisor_near(n: int, target: int) -> int:
    """The divisor of `n` closest to `target` (the smaller one on a tie): the head count to suggest."""
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: abs(d - target))


__all__ = ["BigModelBertConfig", "PRESETS"]
