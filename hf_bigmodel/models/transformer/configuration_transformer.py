"""Configuration of the hf_bigmodel encoder-decoder Transformer ("Attention Is All You Need", Vaswani et al. 2017).

Standalone on purpose (transformers' single-model-file policy): this file is copied next to the weights on
`save_pretrained`, so it may only import `transformers`, `huggingface_hub`, `torch` and the standard library.
"""

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import PreTrainedConfig

POSITION_EMBEDDING_TYPES = ("sinusoidal", "learned")
SINUSOIDAL_LAYOUTS = ("split", "interleaved")

# Written into every config.json so that `trust_remote_code=True` resolves every auto class from the code files
# saved next to the weights (transformers itself only records the class being saved).
AUTO_MAP = {
    "AutoConfig": "configuration_transformer.BigModelTransformerConfig",
    "AutoModel": "modeling_transformer.BigModelTransformerModel",
    "AutoModelForSeq2SeqLM": "modeling_transformer.BigModelTransformerForConditionalGeneration",
}

# The modules that PEFT adapts when a config names no `target_modules` (e.g. `LoraConfig(task_type=...)`): the
# attention's query and value projections, as PEFT's own table has for the stock model (Marian's `q_proj` and `v_proj`, in self- and cross-attention).
# `hf_bigmodel.models` adds them to PEFT's table at import.
PEFT_TARGET_MODULES = ["qkv_proj", "q_proj", "kv_proj"]

# Named sizes. Token ids stay the config defaults (pad 0, bos 1, eos 2); the tokenizer you train decides them.
PRESETS: dict[str, dict] = {
    # For unit tests: a few thousand parameters.
    "transformer-tiny": dict(
        vocab_size=128,
        hidden_size=32,
        encoder_layers=2,
        decoder_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        dropout=0.0,
        label_smoothing=0.0,
    ),
    # Multi30k (about 29k sentence pairs, 30-word sentences) on a CPU: 3 + 3 layers, 256 wide.
    "transformer-multi30k": dict(
        vocab_size=8000,
        hidden_size=256,
        encoder_layers=3,
        decoder_layers=3,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=128,
        dropout=0.1,
    ),
    # The paper's base model (Table 3): 6 + 6 layers, d_model 512, 8 heads, d_ff 2048, dropout 0.1, 37k shared BPE.
    "transformer-base": dict(),
    # The paper's big model: d_model 1024, 16 heads, d_ff 4096, dropout 0.3.
    "transformer-big": dict(hidden_size=1024, num_attention_heads=16, intermediate_size=4096, dropout=0.3),
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
class BigModelTransformerConfig(PreTrainedConfig):
    r"""
    Configuration of the encoder-decoder Transformer of "Attention Is All You Need". The defaults are the paper's
    base model (post-norm, sinusoidal positions, embeddings scaled by sqrt(d_model), shared source/target embeddings
    tied to the output projection, label smoothing 0.1).

    Args:
        vocab_size: number of token ids (one vocabulary for source and target).
        hidden_size: d_model, the width of the residual stream.
        encoder_layers, decoder_layers: number of encoder and decoder blocks. `num_hidden_layers` reads and writes
            `decoder_layers` (what the generation caches need).
        num_attention_heads: heads of every attention layer; `hidden_size` must be a multiple of it.
        intermediate_size: d_ff, the width of the position-wise feed-forward layers.
        max_position_embeddings: longest source or target sequence the model accepts.
        position_embedding_type: `"sinusoidal"` (fixed, the paper's) or `"learned"` absolute positions.
        sinusoidal_layout: channel order of the sinusoidal table. `"split"` puts all sines first and all cosines
            second (tensor2tensor, fairseq and Marian, so converted Marian models match exactly); `"interleaved"`
            alternates sin/cos channels as the paper's formula is written. Same functions, permuted channels.
        pre_norm: normalise the input of each sub-layer (and the stack outputs) instead of the paper's post-norm
            `LayerNorm(x + sublayer(x))`. Pre-norm trains more stably in deep stacks and without warm-up.
        scale_embedding: multiply token embeddings by sqrt(hidden_size), as the paper does.
        tie_word_embeddings: use the decoder input embedding as the output projection.
        share_encoder_decoder_embeddings: one embedding matrix for source and target tokens.
        lm_head_bias: add a learned bias to the output logits (Marian's `final_logits_bias`).
        activation_function: activation of the feed-forward layers (`"relu"` in the paper).
        dropout: dropout on the embeddings + positions and on each sub-layer output (P_drop in the paper).
        attention_dropout, activation_dropout: dropout on attention probabilities and inside the feed-forward layer.
        label_smoothing: epsilon of the label-smoothed cross-entropy of the model's own loss while training (0.1 in
            the paper); evaluation losses are plain cross-entropy.
        layer_norm_eps, initializer_range: LayerNorm epsilon, standard deviation of the normal initialisation.
    """

    model_type = "bigmodel_transformer"
    keys_to_ignore_at_inference = ["cache", "encoder_last_hidden_state"]
    attribute_map = {"num_hidden_layers": "decoder_layers"}
    # Tensor parallelism: the feed-forward split Megatron-style (fc1 by columns, fc2 by rows). The fused [q | k | v]
    # and [k | v] projections cannot be cut into whole heads by a column split, so their weights are sharded with
    # their outputs gathered (as Phi-3 does), q_proj likewise so that its heads meet whole keys, and out_proj splits
    # its replicated input.
    base_model_tp_plan = {
        "encoder.layers.*.self_attn.qkv_proj": "colwise_gather_output",
        "encoder.layers.*.self_attn.out_proj": "rowwise_split_input",
        "encoder.layers.*.fc1": "colwise",
        "encoder.layers.*.fc2": "rowwise",
        "decoder.layers.*.self_attn.qkv_proj": "colwise_gather_output",
        "decoder.layers.*.self_attn.out_proj": "rowwise_split_input",
        "decoder.layers.*.encoder_attn.q_proj": "colwise_gather_output",
        "decoder.layers.*.encoder_attn.kv_proj": "colwise_gather_output",
        "decoder.layers.*.encoder_attn.out_proj": "rowwise_split_input",
        "decoder.layers.*.fc1": "colwise",
        "decoder.layers.*.fc2": "rowwise",
    }
    # Pipeline stages: module -> (its inputs, its outputs), as Llama declares them; the decoder's layers also read
    # the encoder's output.
    base_model_pp_plan = {
        "encoder.embed_tokens": (["input_ids"], ["inputs_embeds"]),
        "encoder.layers": (["hidden_states", "attention_mask"], ["hidden_states"]),
        "decoder.embed_tokens": (["decoder_input_ids"], ["inputs_embeds"]),
        "decoder.layers": (
            ["hidden_states", "attention_mask", "encoder_hidden_states", "encoder_attention_mask"],
            ["hidden_states"],
        ),
    }

    vocab_size: int = 37000
    hidden_size: int = 512
    encoder_layers: int = 6
    decoder_layers: int = 6
    num_attention_heads: int = 8
    intermediate_size: int = 2048
    max_position_embeddings: int = 512
    position_embedding_type: str = "sinusoidal"
    sinusoidal_layout: str = "split"
    pre_norm: bool = False
    scale_embedding: bool = True
    tie_word_embeddings: bool = True
    share_encoder_decoder_embeddings: bool = True
    lm_head_bias: bool = False
    activation_function: str = "relu"
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    label_smoothing: float = 0.1
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    use_cache: bool = True
    is_encoder_decoder: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    decoder_start_token_id: int | None = 1

    def __post_init__(self, **kwargs):
        kwargs["auto_map"] = {**AUTO_MAP, **(kwargs.get("auto_map") or {})}
        super().__post_init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "BigModelTransformerConfig":
        """`BigModelTransformerConfig.from_preset("transformer-base", vocab_size=8000)`: a named size, with any field
        overridden."""
        if name not in PRESETS:
            raise ValueError(f"Unknown Transformer preset {name!r}. Available presets: {', '.join(PRESETS)}.")
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
                "encoder_layers",
                "decoder_layers",
                "num_attention_heads",
                "intermediate_size",
                "max_position_embeddings",
            ),
        )
        _check_heads_divide_hidden_size(self)
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"`position_embedding_type` must be one of {POSITION_EMBEDDING_TYPES}, got "
                f"{self.position_embedding_type!r}."
            )
        if self.sinusoidal_layout not in SINUSOIDAL_LAYOUTS:
            raise ValueError(
                f"`sinusoidal_layout` must be one of {SINUSOIDAL_LAYOUTS}, got {self.sinusoidal_layout!r}."
            )
        if self.position_embedding_type == "sinusoidal" and self.hidden_size % 2 != 0:
            raise ValueError(
                f"Sinusoidal positions pair a sine and a cosine per frequency, so `hidden_size` must be even, got "
                f"{self.hidden_size}. Use an even hidden_size or position_embedding_type='learned'."
            )
        _check_probabilities(self, ("dropout", "attention_dropout", "activation_dropout", "label_smoothing"))
        if self.decoder_start_token_id is None:
            raise ValueError(
                "`decoder_start_token_id` is required: it is the first decoder input of every translation. Set it to "
                "the tokenizer's bos (or pad, as Marian does) token id."
            )
        for name in ("pad_token_id", "bos_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"`{name}` ({value}) must be a token id in [0, vocab_size={self.vocab_size}). Use the ids of "
                    f"your tokenizer, or enlarge vocab_size."
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


# lm-evaluation-harness picks its seq2seq backend from this table (see the GPT configuration's note).
# Copied from hf_bigmodel.models.gpt.configuration_gpt._list_with_builtin_model_types
def _list_with_builtin_model_types(model_type: str, auto_map: dict[str, str]) -> None:
    from transformers.models.auto import modeling_auto

    tables = {
        "AutoModelForCausalLM": modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        "AutoModelForSeq2SeqLM": modeling_auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    }
    for auto_name, table in tables.items():
        if auto_name in auto_map:
            table.setdefault(model_type, auto_map[auto_name].rsplit(".", 1)[1])


_list_with_builtin_model_types(BigModelTransformerConfig.model_type, AUTO_MAP)

__all__ = ["BigModelTransformerConfig", "PRESETS"]
