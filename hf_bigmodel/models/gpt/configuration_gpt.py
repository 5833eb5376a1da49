"""Configuration of the hf_bigmodel decoder-only GPT.

Standalone on purpose (transformers' single-model-file policy): this file is copied next to the weights on
`save_pretrained`, so it may only import `transformers`, `huggingface_hub`, `torch` and the standard library.
"""

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import PreTrainedConfig
from transformers.modeling_rope_utils import RopeParameters

POSITION_EMBEDDING_TYPES = ("learned", "rope")
NORM_TYPES = ("layernorm", "rmsnorm")
MLP_TYPES = ("gelu", "swiglu")

# Written into every config.json so that `trust_remote_code=True` resolves every auto class from the code files
# saved next to the weights (transformers itself only records the class being saved).
AUTO_MAP = {
    "AutoConfig": "configuration_gpt.BigModelGPTConfig",
    "AutoModel": "modeling_gpt.BigModelGPTModel",
    "AutoModelForCausalLM": "modeling_gpt.BigModelGPTForCausalLM",
    "AutoModelForSequenceClassification": "modeling_gpt.BigModelGPTForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_gpt.BigModelGPTForTokenClassification",
}

# The modules that PEFT adapts when a config names no `target_modules` (e.g. `LoraConfig(task_type=...)`): the
# attention's query and value projections, as PEFT's own table has for the stock model (GPT-2's `c_attn`).
# `hf_bigmodel.models` adds them to PEFT's table at import.
PEFT_TARGET_MODULES = ["qkv_proj"]


# Named sizes, as timm names its models. Token ids stay the config defaults unless a preset needs otherwise; the
# tokenizer you train decides them (`hf-bigmodel pretrain` copies its ids into the config).
PRESETS: dict[str, dict] = {
    # For unit tests: a few thousand parameters, still exercising GQA-capable shapes.
    "gpt-tiny": dict(
        vocab_size=256,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        embedding_dropout=0.0,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    # nanoGPT's CPU recipe (README "I only have a macbook"): 4 layers, 4 heads, 128 wide, context 64, no dropout,
    # no biases.
    "nanogpt-cpu": dict(
        vocab_size=65,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=64,
        embedding_dropout=0.0,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        bias=False,
        bos_token_id=None,
        eos_token_id=None,
    ),
    # The default job of `hf-bigmodel demo`: sized so that pretraining on the built-in corpus (about 130k BPE
    # tokens) takes a few minutes on 2 CPU cores. Dropout, because the corpus is seen several times.
    "gpt-small-cpu": dict(
        vocab_size=2048,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=128,
        embedding_dropout=0.1,
        hidden_dropout=0.1,
        attention_dropout=0.1,
        pad_token_id=0,  # the ids of `hf-bigmodel train-tokenizer`: <|pad|> = 0, <|endoftext|> = 1
        bos_token_id=1,
        eos_token_id=1,
    ),
    # OpenAI GPT-2 small, 124M parameters: exactly the shapes of the `gpt2` checkpoint.
    "gpt2-124m": dict(),
    # GPT-2 width and depth with the Llama recipe: rotary positions, RMSNorm, SwiGLU, GQA, no biases, untied.
    "llama-style-124m": dict(
        position_embedding_type="rope",
        norm_type="rmsnorm",
        mlp_type="swiglu",
        num_key_value_heads=4,
        bias=False,
        tie_word_embeddings=False,
        embedding_dropout=0.0,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        max_position_embeddings=2048,
    ),
}


class ConfigValidationError(StrictDataclassClassValidationError, ValueError):
    """A config with invalid or inconsistent fields. huggingface_hub's `@strict` wraps the `ValueError` of
    `validate_architecture` in `StrictDataclassClassValidationError`, which is not a `ValueError`; this is both, so
    `except ValueError` (what a bad argument is elsewhere in Python) and `except StrictDataclassError` (what
    transformers' own configs raise) both catch it, with the same message."""

    def __init__(self, message: str):
        Exception.__init__(self, message)  # the parent's __init__ builds the message from (validator, cause)


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
class BigModelGPTConfig(PreTrainedConfig):
    r"""
    Configuration of a decoder-only GPT. The defaults are GPT-2 small (124M); switches select the modern variants.

    Args:
        vocab_size: number of token ids the embedding accepts.
        hidden_size: width of the residual stream.
        num_hidden_layers: number of transformer blocks.
        num_attention_heads: number of query heads; `hidden_size` must be a multiple of it.
        num_key_value_heads: number of key/value heads (grouped-query attention). `None` means as many as query
            heads (plain multi-head attention); 1 is multi-query attention.
        intermediate_size: width of the feed-forward layer. `None` means `4 * hidden_size` for the GELU MLP and
            the Llama-style `8/3 * hidden_size` rounded up to a multiple of 64 for SwiGLU.
        max_position_embeddings: longest sequence the model accepts.
        position_embedding_type: `"learned"` absolute positions (GPT-2) or `"rope"` rotary positions.
        norm_type: `"layernorm"` (GPT-2) or `"rmsnorm"`.
        mlp_type: `"gelu"` two-layer MLP (GPT-2) or `"swiglu"` gated MLP.
        hidden_act: activation of the GELU MLP (`"gelu_pytorch_tanh"` is GPT-2's `gelu_new`, as one fused kernel).
        bias: add biases to the linear and LayerNorm layers, as GPT-2 does (`False` as in nanoGPT and Llama).
        embedding_dropout, hidden_dropout, attention_dropout: dropout on the embeddings, on each residual branch
            and on the attention probabilities.
        layer_norm_eps: epsilon of the normalisation layers.
        initializer_range: standard deviation of the normal initialisation.
        rope_parameters: RoPE settings (`rope_type`, `rope_theta`, scaling), used when
            `position_embedding_type="rope"`.
        tie_word_embeddings: share the input embedding with the output projection.
        use_cache: return the key/value cache for fast generation.
    """

    model_type = "bigmodel_gpt"
    keys_to_ignore_at_inference = ["cache"]
    # Tensor parallelism (`from_pretrained(distributed_config=DistributedConfig(tp_plan="auto"))`): the MLP is split
    # Megatron-style (up/gate by columns, down by rows). The attention's fused [q | k | v] rows cannot be cut into
    # whole heads by a column split (a shard would hold all of q and part of k), so, as Phi-3 does with its fused
    # projection, its weight is sharded but its output gathered, and o_proj splits its replicated input.
    base_model_tp_plan = {
        "layers.*.self_attn.qkv_proj": "colwise_gather_output",
        "layers.*.self_attn.o_proj": "rowwise_split_input",
        "layers.*.mlp.gate_proj": "colwise",  # mlp_type="swiglu" only
        "layers.*.mlp.up_proj": "colwise",
        "layers.*.mlp.down_proj": "rowwise",
    }
    base_model_pp_plan = {
        "embed_tokens": (["input_ids"], ["inputs_embeds"]),
        "layers": (["hidden_states", "attention_mask"], ["hidden_states"]),
        "norm": (["hidden_states"], ["hidden_states"]),
    }

    vocab_size: int = 50257
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_key_value_heads: int | None = None
    intermediate_size: int | None = None
    max_position_embeddings: int = 1024
    position_embedding_type: str = "learned"
    norm_type: str = "layernorm"
    mlp_type: str = "gelu"
    hidden_act: str = "gelu_pytorch_tanh"
    bias: bool = True
    embedding_dropout: float = 0.1
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    rope_parameters: RopeParameters | dict | None = None
    tie_word_embeddings: bool = True
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = 50256
    eos_token_id: int | list[int] | None = 50256

    def __post_init__(self, **kwargs):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.intermediate_size is None:
            if self.mlp_type == "swiglu":
                self.intermediate_size = 64 * ((8 * self.hidden_size // 3 + 63) // 64)
            else:
                self.intermediate_size = 4 * self.hidden_size
        kwargs["auto_map"] = {**AUTO_MAP, **(kwargs.get("auto_map") or {})}
        super().__post_init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "BigModelGPTConfig":
        """`BigModelGPTConfig.from_preset("gpt2-124m", vocab_size=8192)`: a named size, with any field overridden."""
        if name not in PRESETS:
            raise ValueError(f"Unknown GPT preset {name!r}. Available presets: {', '.join(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

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
                "num_key_value_heads",
                "intermediate_size",
                "max_position_embeddings",
            ),
        )
        _check_heads_divide_hidden_size(self)
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise ValueError(
                f"`num_attention_heads` ({self.num_attention_heads}) must be a multiple of `num_key_value_heads` "
                f"({self.num_key_value_heads}): each key/value head serves a whole group of query heads."
            )
        for name, allowed in (
            ("position_embedding_type", POSITION_EMBEDDING_TYPES),
            ("norm_type", NORM_TYPES),
            ("mlp_type", MLP_TYPES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(self, name)!r}.")
        if self.position_embedding_type == "rope" and self.head_dim % 2 != 0:
            raise ValueError(
                f"Rotary positions need an even head size, got hidden_size / num_attention_heads = {self.head_dim}."
            )
        _check_probabilities(self, ("embedding_dropout", "hidden_dropout", "attention_dropout"))


# The checks every architecture's `validate_architecture` shares (copied into each configuration file, which must
# stay standalone), with messages that say how to fix the value.
def _check_positive_ints(config: PreTrainedConfig, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise ValueError(f"`{name}` must be a positive integer, got {getattr(config, name)}.")


def _check_heads_divide_hidden_size(config: PreTrainedConfig) -> None:
    if config.hidden_size % config.num_attention_heads != 0:
        raise ValueError(
            f"`hidden_size` ({config.hidden_size}) must be divisible by `num_attention_heads` "
            f"({config.num_attention_heads}): each head gets hidden_size / num_attention_heads channels. "
            f"Pick a head count that divides {config.hidden_size}, e.g. "
            f"{_divisor_near(config.hidden_size, config.num_attention_heads)}."
        )


def _check_probabilities(config: PreTrainedConfig, names: tuple[str, ...]) -> None:
    for name in names:
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ValueError(f"`{name}` must be in [0, 1), got {getattr(config, name)}.")


def _divisor_near(n: int, target: int) -> int:
    """The divisor of `n` closest to `target` (the smaller one on a tie): the head count to suggest."""
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: abs(d - target))


# Tools outside transformers tell a decoder-only model from an encoder-decoder by transformers' tables of built-in
# model types (lm-evaluation-harness's `--model hf` picks its causal or seq2seq backend so). Listing this model type
# there when the configuration is imported (by hf_bigmodel, or from a folder with trust_remote_code=True) makes them
# treat it as its built-in counterpart; the Auto classes themselves resolve it through their registry, not here.
def _list_with_builtin_model_types(model_type: str, auto_map: dict[str, str]) -> None:
    from transformers.models.auto import modeling_auto

    tables = {
        "AutoModelForCausalLM": modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        "AutoModelForSeq2SeqLM": modeling_auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    }
    for auto_name, table in tables.items():
        if auto_name in auto_map:
            table.setdefault(model_type, auto_map[auto_name].rsplit(".", 1)[1])


_list_with_builtin_model_types(BigModelGPTConfig.model_type, AUTO_MAP)

__all__ = ["BigModelGPTConfig", "PRESETS"]
