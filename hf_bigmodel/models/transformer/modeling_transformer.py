"""The hf_bigmodel encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017).

Post-norm by default (`LayerNorm(x + Sublayer(x))`, as the paper), with a pre-norm switch; sinusoidal or learned
absolute positions; token embeddings scaled by sqrt(d_model); source/target embeddings shared and tied to the output
projection (each can be turned off); label-smoothed cross-entropy as the model's own loss.

Standalone on purpose (transformers' single-model-file policy): `save_pretrained` copies this file and
`configuration_transformer.py` next to the weights, so that `trust_remote_code=True` loads the model without
hf_bigmodel installed. Only `torch`, `transformers` (with its own dependencies `safetensors` and
`huggingface_hub`) and the sibling files may be imported here: the sibling
`cpu_kernels_transformer.py` holds the CPU fast paths (dropout, threaded few-row products for decoding, math
attention, chunked label-smoothed loss) and is copied along, since transformers follows single-dot relative imports.

Parameter names follow Marian/BART (`model.shared`, `encoder.layers.N.self_attn`, `self_attn_layer_norm`, `fc1`,
`fc2`, `final_layer_norm`, `decoder.layers.N.encoder_attn`, `lm_head`), with the attention input projections fused
(`qkv_proj` for self-attention, `q_proj` + `kv_proj` for cross-attention), so conversion to and from `MarianMTModel`
is a key map plus a split/concatenation of those projections.
"""

import json
import math
import os
from collections.abc import Callable

import torch
from huggingface_hub import try_to_load_from_cache
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.generation import GenerationMixin
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel, slice_logits_to_keep
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_transformer import BigModelTransformerConfig
from .cpu_kernels_transformer import (
    MATH_ATTENTION_MAX_SCORES,
    BigModelTransformerDropout,
    drop_thread_blocks,
    fast_linear,
    label_smoothed_loss,
    math_attention,
)


# Copied from hf_bigmodel.models.bert.modeling_bert._is_tracing
def _is_tracing() -> bool:
    """Inside torch.compile / torch.export / jit tracing the data-dependent input checks are skipped."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


# Copied from hf_bigmodel.models.bert.modeling_bert.check_ids_in_range
def check_ids_in_range(ids: torch.Tensor, limit: int, name: str, field: str, fix: str) -> None:
    """Raise a ValueError naming `name` if any id is negative or >= `limit` (an out-of-range embedding index
    otherwise fails deep inside torch with "index out of range in self", or a CUDA device-side assert)."""
    if _is_tracing() or ids.numel() == 0:
        return
    low, high = torch.aminmax(ids)
    low, high = int(low), int(high)
    if low < 0 or high >= limit:
        bad = low if low < 0 else high
        raise ValueError(f"`{name}` contains {bad}, outside [0, {field}={limit}). {fix}")


TOKENIZER_MISMATCH = (
    "The tokenizer does not match the model: use the tokenizer saved with it, or resize the embeddings with "
    "model.resize_token_embeddings(len(tokenizer))."
)


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs for teacher forcing: `labels` shifted one position right, starting with
    `decoder_start_token_id`; `-100` (ignored label positions) becomes `pad_token_id`."""
    if pad_token_id is None:
        raise ValueError(
            "config.pad_token_id is None, but it is needed to turn -100 label positions into decoder inputs. Set "
            "config.pad_token_id to the tokenizer's pad token id."
        )
    shifted = labels.new_empty(labels.shape)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


def _target_mask(labels: torch.Tensor) -> torch.Tensor | None:
    """1 up to each row's last labelled position (at least the first position), 0 after; None if nothing is cut."""
    positions = torch.arange(labels.shape[1], device=labels.device)
    last = torch.where(labels != -100, positions, 0).amax(dim=1, keepdim=True)  # (batch, 1)
    mask = (positions <= last).long()
    return None if bool(mask.all()) else mask


def sinusoidal_table(num_positions: int, dim: int, layout: str = "split") -> torch.Tensor:
    """The fixed position table of the paper: sin(pos / 10000^(2i/d)) and cos(pos / 10000^(2i/d)) for i < d/2.

    `layout="split"` stores the d/2 sines then the d/2 cosines (tensor2tensor, fairseq, Marian); `"interleaved"`
    alternates them (channel 2i = sin, 2i+1 = cos, as the formula is written). Computed in float64 and rounded
    once, so the table equals Marian's (numpy float64) bit for bit in float32.
    """
    positions = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)  # (positions, 1)
    frequencies = torch.pow(10000.0, torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim / 2,)
    angles = positions / frequencies  # (positions, dim / 2)
    if layout == "interleaved":
        table = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)
    else:
        table = torch.cat((angles.sin(), angles.cos()), dim=-1)
    return table.float()


class BigModelTransformerSinusoidalEmbedding(nn.Module):
    """Fixed sinusoidal positions. The table is a non-persistent buffer (never saved), rebuilt by `_init_weights`
    after meta-device loading."""

    def __init__(self, config: BigModelTransformerConfig):
        super().__init__()
        self.num_positions = config.max_position_embeddings
        self.dim = config.hidden_size
        self.layout = config.sinusoidal_layout
        self.weight = nn.Buffer(sinusoidal_table(self.num_positions, self.dim, self.layout), persistent=False)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(position_ids, self.weight)


def _check_length(length: int, config: BigModelTransformerConfig, side: str) -> None:
    if length > config.max_position_embeddings:
        raise ValueError(
            f"The {side} is {length} tokens long, more than max_position_embeddings={config.max_position_embeddings}. "
            f"Truncate it, e.g. tokenizer(..., truncation=True, max_length={config.max_position_embeddings})"
            + (", or generate fewer new tokens (max_new_tokens)." if side == "target" else ".")
        )


def _make_position_embedding(config: BigModelTransformerConfig) -> nn.Module:
    if config.position_embedding_type == "learned":
        return nn.Embedding(config.max_position_embeddings, config.hidden_size)
    return BigModelTransformerSinusoidalEmbedding(config)


class TokenPacking:
    """The real (non-padding) tokens of a padded batch, for training without the padding.

    Every per-token layer (projections, feed-forward, LayerNorm, dropout) then runs on the `N` real tokens only,
    as a (1, N, hidden) tensor; attention unpacks its projections into the padded (batch, seq) layout, where the
    padding mask applies as usual, and packs its output back. Padding positions contribute nothing to real tokens
    (they are masked keys), so the real tokens' values are exactly those of the padded computation, at
    (real tokens / all positions) of the cost.
    """

    def __init__(self, mask: torch.Tensor):
        self.batch, self.seq = mask.shape
        self.index = mask.reshape(-1).nonzero().squeeze(1)  # (N,) flat positions of the real tokens

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq, ...) -> (1, N, ...)."""
        return x.reshape(self.batch * self.seq, *x.shape[2:]).index_select(0, self.index).unsqueeze(0)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(1, N, ...) -> (batch, seq, ...), zeros at padding positions."""
        out = x.new_zeros(self.batch * self.seq, *x.shape[2:]).index_copy(0, self.index, x[0])
        return out.view(self.batch, self.seq, *x.shape[2:])


def _token_packing(module: nn.Module, mask: torch.Tensor | None, kwargs: dict) -> TokenPacking | None:
    """Packing for a training forward over a padded batch; None when there is no padding to skip, outside
    training (generation, evaluation: outputs keep their padded layout), or when layer outputs are captured."""
    if not module.training or mask is None or mask.dim() != 2 or bool(mask.all()):
        return None
    config = module.config
    if kwargs.get("output_hidden_states", config.output_hidden_states) or kwargs.get(
        "output_attentions", config.output_attentions
    ):
        return None
    return TokenPacking(mask.bool())


# Copied from hf_bigmodel.models.bert.modeling_bert.eager_attention_forward
def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Unpack[TransformersKwargs],
) -> tuple[torch.Tensor, torch.Tensor]:
    # query: (batch, heads, q_len, head_dim); key/value: (batch, heads, kv_len, head_dim)
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (batch, heads, q_len, kv_len)
    if attention_mask is not None:  # additive float mask: 0 where allowed, dtype min elsewhere
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()  # (batch, q_len, heads, head_dim)
    return attn_output, attn_weights


class BigModelTransformerAttention(nn.Module):
    """Multi-head attention. Self-attention projects q, k, v with one fused `qkv_proj`; cross-attention projects
    the decoder state with `q_proj` and the encoder output with one fused `kv_proj` (computed once per generation
    and kept in the cross-attention cache)."""

    def __init__(self, config: BigModelTransformerConfig, layer_idx: int | None, is_cross: bool, is_causal: bool):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.is_cross = is_cross
        self.is_causal = is_causal
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        hidden = config.hidden_size
        if is_cross:
            self.q_proj = nn.Linear(hidden, hidden)
            self.kv_proj = nn.Linear(hidden, 2 * hidden)
        else:
            self.qkv_proj = nn.Linear(hidden, 3 * hidden)
        self.out_proj = nn.Linear(hidden, hidden)

    def _use_math_attention(self, query: torch.Tensor, key: torch.Tensor) -> bool:
        """Whether sdpa is better served by `math_attention`: training on CPU with a moderate score tensor."""
        return (
            self.training
            and self.config._attn_implementation == "sdpa"
            and query.device.type == "cpu"
            and query.shape[0] * query.shape[1] * query.shape[2] * key.shape[2] <= MATH_ATTENTION_MAX_SCORES
        )

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], -1, self.head_dim).transpose(1, 2)  # (batch, heads, seq, head_dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        packing: TokenPacking | None = None,
        kv_packing: TokenPacking | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # With `packing`, hidden_states holds the real tokens only (1, N, hidden); see TokenPacking.
        unpack = packing.unpack if packing is not None else (lambda x: x)
        layer_cache = cache
        if isinstance(cache, EncoderDecoderCache):
            layer_cache = cache.cross_attention_cache if self.is_cross else cache.self_attention_cache

        if self.is_cross:
            query = self._heads(unpack(fast_linear(self.q_proj, hidden_states)))
            if cache is not None and cache.is_updated.get(self.layer_idx):
                key = layer_cache.layers[self.layer_idx].keys  # the encoder keys/values of an earlier step
                value = layer_cache.layers[self.layer_idx].values
            else:
                key_value = fast_linear(self.kv_proj, key_value_states)
                if kv_packing is not None:
                    key_value = kv_packing.unpack(key_value)
                key, value = key_value.chunk(2, dim=-1)
                key, value = self._heads(key), self._heads(value)
                if cache is not None:
                    key, value = layer_cache.update(key, value, self.layer_idx)
                    cache.is_updated[self.layer_idx] = True
        else:
            qkv = unpack(fast_linear(self.qkv_proj, hidden_states))
            query, key, value = (self._heads(x) for x in qkv.chunk(3, dim=-1))
            if layer_cache is not None:
                key, value = layer_cache.update(key, value, self.layer_idx)  # (batch, heads, past + q_len, head_dim)

        if self._use_math_attention(query, key):
            is_causal = self.is_causal and attention_mask is None and query.shape[2] > 1
            attn_output = math_attention(
                query, key, value, attention_mask, self.scaling, self.attention_dropout, is_causal
            )
            attn_weights = None  # sdpa returns none either
        else:
            attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
                self.config._attn_implementation, eager_attention_forward
            )
            attn_output, attn_weights = attention_interface(
                self,
                query,
                key,
                value,
                attention_mask,
                dropout=self.attention_dropout if self.training else 0.0,
                scaling=self.scaling,
                **kwargs,
            )
        attn_output = attn_output.reshape(*attn_output.shape[:2], -1)  # (batch, q_len, hidden)
        if packing is not None:
            attn_output = packing.pack(attn_output)  # (1, N, hidden)
        return fast_linear(self.out_proj, attn_output.contiguous()), attn_weights


class BigModelTransformerEncoderLayer(GradientCheckpointingLayer):
    """Self-attention then feed-forward, each wrapped as `LayerNorm(x + dropout(sublayer(x)))` (post-norm) or
    `x + dropout(sublayer(LayerNorm(x)))` (pre-norm)."""

    def __init__(self, config: BigModelTransformerConfig, layer_idx: int):
        super().__init__()
        self.pre_norm = config.pre_norm
        self.dropout = BigModelTransformerDropout(config.dropout)
        self.activation_dropout = BigModelTransformerDropout(config.activation_dropout)
        self.self_attn = BigModelTransformerAttention(config, layer_idx, is_cross=False, is_causal=False)
        self.self_attn_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.activation_fn = ACT2FN[config.activation_function]
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation_dropout(self.activation_fn(fast_linear(self.fc1, x)))
        return fast_linear(self.fc2, x)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        residual = hidden_states
        x = self.self_attn_layer_norm(hidden_states) if self.pre_norm else hidden_states
        x, _ = self.self_attn(x, attention_mask=attention_mask, **kwargs)
        hidden_states = residual + self.dropout(x)
        if not self.pre_norm:
            hidden_states = self.self_attn_layer_norm(hidden_states)

        residual = hidden_states
        x = self.final_layer_norm(hidden_states) if self.pre_norm else hidden_states
        hidden_states = residual + self.dropout(self._feed_forward(x))
        if not self.pre_norm:
            hidden_states = self.final_layer_norm(hidden_states)
        return hidden_states  # (batch, src_len, hidden)


class BigModelTransformerDecoderLayer(GradientCheckpointingLayer):
    """Masked self-attention, attention over the encoder output, feed-forward; each sub-layer wrapped as in the
    encoder layer."""

    def __init__(self, config: BigModelTransformerConfig, layer_idx: int):
        super().__init__()
        self.pre_norm = config.pre_norm
        self.dropout = BigModelTransformerDropout(config.dropout)
        self.activation_dropout = BigModelTransformerDropout(config.activation_dropout)
        self.self_attn = BigModelTransformerAttention(config, layer_idx, is_cross=False, is_causal=True)
        self.self_attn_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.encoder_attn = BigModelTransformerAttention(config, layer_idx, is_cross=True, is_causal=False)
        self.encoder_attn_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.activation_fn = ACT2FN[config.activation_function]
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def _sublayer(self, hidden_states: torch.Tensor, norm: nn.LayerNorm, fn: Callable) -> torch.Tensor:
        x = fn(norm(hidden_states) if self.pre_norm else hidden_states)
        hidden_states = hidden_states + self.dropout(x)
        return hidden_states if self.pre_norm else norm(hidden_states)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        hidden_states = self._sublayer(
            hidden_states,
            self.self_attn_layer_norm,
            lambda x: self.self_attn(x, attention_mask=attention_mask, cache=cache, **kwargs)[0],
        )
        hidden_states = self._sublayer(
            hidden_states,
            self.encoder_attn_layer_norm,
            lambda x: self.encoder_attn(
                x,
                key_value_states=encoder_hidden_states,
                attention_mask=encoder_attention_mask,
                cache=cache,
                **kwargs,
            )[0],
        )
        return self._sublayer(
            hidden_states,
            self.final_layer_norm,
            lambda x: fast_linear(self.fc2, self.activation_dropout(self.activation_fn(fast_linear(self.fc1, x)))),
        )  # (batch, tgt_len, hidden)


# Copied from hf_bigmodel.models.gpt.modeling_gpt._unreadable_safetensors_files
def _unreadable_safetensors_files(name_or_path: str | os.PathLike, kwargs: dict) -> list[str]:
    """The safetensors files of a local folder or of a cached Hub repo whose header safetensors cannot read."""
    subfolder = kwargs.get("subfolder") or ""
    folder = os.path.join(str(name_or_path), subfolder)
    if os.path.isdir(folder):
        candidates = sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".safetensors"))
    else:

        def cached(filename: str) -> str | None:
            try:
                path = try_to_load_from_cache(
                    str(name_or_path),
                    f"{subfolder}/{filename}" if subfolder else filename,
                    cache_dir=kwargs.get("cache_dir"),
                    revision=kwargs.get("revision"),
                )
            except Exception:  # not a valid repo id: nothing to point at
                return None
            return path if isinstance(path, str) else None

        names = ["model.safetensors"]
        index = cached("model.safetensors.index.json")
        if index is not None:
            try:
                with open(index, encoding="utf-8") as f:
                    names += sorted(set(json.load(f).get("weight_map", {}).values()))
            except (OSError, ValueError):  # a damaged index: fall back to the single-file name
                pass
        candidates = [path for path in map(cached, names) if path is not None]
    bad_files = []
    for path in candidates:
        try:
            with safe_open(path, framework="pt"):
                pass
        except (SafetensorError, OSError):
            bad_files.append(path)
    return bad_files


class BigModelTransformerPreTrainedModel(PreTrainedModel):
    config: BigModelTransformerConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["BigModelTransformerEncoderLayer", "BigModelTransformerDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True

    # Copied from hf_bigmodel.models.gpt.modeling_gpt.BigModelGPTPreTrainedModel.from_pretrained
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, except that a damaged safetensors file gives an error that names the
        file and says what to do (safetensors alone says e.g. "Error while deserializing header: header too large")."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except SafetensorError as error:
            bad_files = _unreadable_safetensors_files(pretrained_model_name_or_path, kwargs)
            if len(bad_files) == 1:
                what = f"The checkpoint file {bad_files[0]} is"
            elif bad_files:
                what = f"The checkpoint files {', '.join(bad_files)} are"
            else:
                what = f"A safetensors file of {pretrained_model_name_or_path} is"
            raise OSError(
                f"{what} corrupt or truncated ({error}), probably by an interrupted save or download. Re-save the "
                f"model with `save_pretrained`, or re-download it, e.g. `from_pretrained(..., force_download=True)`."
            ) from error

    def _apply(self, fn, recurse: bool = True):
        drop_thread_blocks(self)  # `fast_linear`'s cached weight views hold the old tensors: let them go
        return super()._apply(fn, recurse)

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict:
        """The tied parameters of this model. transformers ties only when `tie_word_embeddings` is true; here the
        mapping (built in `__init__`) also covers `share_encoder_decoder_embeddings` on its own, so the source and
        target embeddings stay one matrix when the output projection is untied."""
        if all_submodels:
            return super().get_expanded_tied_weights_keys(all_submodels=True)
        return dict(self._tied_weights_keys or {})

    def init_parallel_plans(self) -> None:
        super().init_parallel_plans()
        if hasattr(self, "layers"):
            # An encoder or decoder stack: the config's plans name its modules from BigModelTransformerModel
            # ("encoder.layers.*"), which applies them. Read here they would name nothing, and transformers' default
            # sharding of a base model's `embed_tokens` would split a weight the stack shares with `model.shared`.
            self._tp_plan, self._pp_plan = {}, {}

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, BigModelTransformerSinusoidalEmbedding):
            init.copy_(module.weight, sinusoidal_table(module.num_positions, module.dim, module.layout))
        elif isinstance(module, nn.Embedding) and self.config.scale_embedding:
            # fairseq's recipe: N(0, d^-1/2), so the embedding scaled by sqrt(d) has unit variance, like the
            # sinusoids it is added to.
            init.normal_(module.weight, mean=0.0, std=self.config.hidden_size**-0.5)

    @property
    def dummy_inputs(self) -> dict[str, torch.Tensor]:
        """A padded source batch and decoder inputs, valid for every head."""
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else 0
        top = self.config.vocab_size - 1
        ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, pad, pad]], device=self.device).clamp(max=top)
        mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], device=self.device)
        decoder_ids = torch.tensor([[self.config.decoder_start_token_id, 5, 6]] * 2, device=self.device).clamp(max=top)
        return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": decoder_ids}


class BigModelTransformerEncoder(BigModelTransformerPreTrainedModel):
    """The encoder stack: scaled token embeddings + positions, then the encoder layers."""

    _can_record_outputs = {
        "hidden_states": BigModelTransformerEncoderLayer,
        "attentions": BigModelTransformerAttention,
    }

    def __init__(self, config: BigModelTransformerConfig):
        super().__init__(config)
        self.embed_scale = math.sqrt(config.hidden_size) if config.scale_embedding else 1.0
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = _make_position_embedding(config)
        self.dropout = BigModelTransformerDropout(config.dropout)
        self.layers = nn.ModuleList([BigModelTransformerEncoderLayer(config, i) for i in range(config.encoder_layers)])
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.pre_norm else None
        self.gradient_checkpointing = False
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds` to the encoder.")
        if inputs_embeds is None:
            check_ids_in_range(input_ids, self.config.vocab_size, "input_ids", "vocab_size", TOKENIZER_MISMATCH)
            inputs_embeds = self.embed_tokens(input_ids) * self.embed_scale  # (batch, src_len, hidden)
        seq_len = inputs_embeds.shape[1]
        _check_length(seq_len, self.config, "source")
        positions = torch.arange(seq_len, device=inputs_embeds.device)
        # The sinusoidal table stays float32 (built after loading, whatever `dtype=` said): cast the rows it gives, so
        # a bfloat16 model adds bfloat16 positions.
        hidden_states = inputs_embeds + self.embed_positions(positions).to(inputs_embeds.dtype)
        mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask
        )
        packing = _token_packing(self, attention_mask, kwargs)
        if packing is not None:
            hidden_states = packing.pack(hidden_states)  # (1, real tokens, hidden)
        hidden_states = self.dropout(hidden_states)
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask, packing=packing, **kwargs)
        if self.layer_norm is not None:
            hidden_states = self.layer_norm(hidden_states)
        if packing is not None:
            hidden_states = packing.unpack(hidden_states)  # zeros at padding positions
        return BaseModelOutput(last_hidden_state=hidden_states)


class BigModelTransformerDecoder(BigModelTransformerPreTrainedModel):
    """The decoder stack: scaled token embeddings + positions, then the decoder layers (causal self-attention and
    attention over the encoder output)."""

    _can_record_outputs = {
        "hidden_states": BigModelTransformerDecoderLayer,
        "attentions": OutputRecorder(BigModelTransformerAttention, index=1, layer_name="self_attn"),
        "cross_attentions": OutputRecorder(BigModelTransformerAttention, index=1, layer_name="encoder_attn"),
    }

    def __init__(self, config: BigModelTransformerConfig):
        super().__init__(config)
        self.embed_scale = math.sqrt(config.hidden_size) if config.scale_embedding else 1.0
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = _make_position_embedding(config)
        self.dropout = BigModelTransformerDropout(config.dropout)
        self.layers = nn.ModuleList([BigModelTransformerDecoderLayer(config, i) for i in range(config.decoder_layers)])
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.pre_norm else None
        self.gradient_checkpointing = False
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `decoder_input_ids` or `decoder_inputs_embeds`.")
        if inputs_embeds is None:
            check_ids_in_range(
                input_ids, self.config.vocab_size, "decoder_input_ids", "vocab_size", TOKENIZER_MISMATCH
            )
            inputs_embeds = self.embed_tokens(input_ids)
        inputs_embeds = inputs_embeds * self.embed_scale  # (batch, tgt_len, hidden)
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        self_attn_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache

        seq_len = inputs_embeds.shape[1]
        past = cache.get_seq_length() if cache is not None else 0
        if isinstance(past, int):
            _check_length(past + seq_len, self.config, "target")
        elif cache.get_max_length() > self.config.max_position_embeddings:
            # A static cache counts tokens on the device (no sync here); its fixed capacity bounds the positions.
            _check_length(cache.get_max_length(), self.config, "target")
        position_ids = (torch.arange(seq_len, device=inputs_embeds.device) + past).unsqueeze(0)  # (1, tgt_len)

        # No `position_ids=`: the decoder's positions are always contiguous, and given positions make the mask look
        # for packed sequences with `torch.diff`, which the legacy ONNX exporter cannot export (Marian passes none).
        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=self_attn_cache,
        )
        cross_mask = create_bidirectional_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=encoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
        )
        hidden_states = inputs_embeds + self.embed_positions(position_ids).to(inputs_embeds.dtype)  # see the encoder
        packing = kv_packing = None
        if cache is None:
            packing = _token_packing(self, attention_mask, kwargs)
            kv_packing = _token_packing(self, encoder_attention_mask, kwargs)
        if packing is not None:
            hidden_states = packing.pack(hidden_states)  # (1, real tokens, hidden)
        if kv_packing is not None and encoder_hidden_states is not None:
            encoder_hidden_states = kv_packing.pack(encoder_hidden_states)
        hidden_states = self.dropout(hidden_states)
        for layer in self.layers:
            hidden_states = layer(
                hidden_states,
                causal_mask,
                encoder_hidden_states,  # positional: gradient checkpointing with use_reentrant needs it so
                encoder_attention_mask=cross_mask,
                cache=cache,
                use_cache=use_cache,
                packing=packing,
                kv_packing=kv_packing,
                **kwargs,
            )
        if self.layer_norm is not None:
            hidden_states = self.layer_norm(hidden_states)
        if packing is not None:
            hidden_states = packing.unpack(hidden_states)  # zeros at padding positions
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=hidden_states, cache=cache)


class BigModelTransformerModel(BigModelTransformerPreTrainedModel):
    """Encoder + decoder, without the output projection. `shared` is the one embedding matrix of source and target
    tokens when `share_encoder_decoder_embeddings` (absent otherwise)."""

    def __init__(self, config: BigModelTransformerConfig):
        super().__init__(config)
        if config.share_encoder_decoder_embeddings:
            self.shared = nn.Embedding(config.vocab_size, config.hidden_size)
            self._tied_weights_keys = {
                "encoder.embed_tokens.weight": "shared.weight",
                "decoder.embed_tokens.weight": "shared.weight",
            }
        else:
            self._tied_weights_keys = {}
        self.encoder = BigModelTransformerEncoder(config)
        self.decoder = BigModelTransformerDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared if self.config.share_encoder_decoder_embeddings else self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        if self.config.share_encoder_decoder_embeddings:
            self.shared = self.encoder.embed_tokens = self.decoder.embed_tokens = value
        else:
            self.encoder.embed_tokens = value

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: tuple[torch.Tensor] | BaseModelOutput | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqModelOutput:
        r"""
        input_ids, attention_mask: the source tokens (right-padded) and their padding mask.
        decoder_input_ids: the target tokens so far, starting with `config.decoder_start_token_id`.
        encoder_outputs: a `BaseModelOutput` or tuple from an earlier encoder call (generation encodes once).
        cache: an `EncoderDecoderCache` of the decoder's self- and cross-attention keys/values.
        """
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(
                last_hidden_state=encoder_outputs[0],
                hidden_states=encoder_outputs[1] if len(encoder_outputs) > 1 else None,
                attentions=encoder_outputs[2] if len(encoder_outputs) > 2 else None,
            )
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            cache=cache,
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            cache=decoder_outputs.cache,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class BigModelTransformerForConditionalGeneration(BigModelTransformerPreTrainedModel, GenerationMixin):
    """The Transformer with its output projection (`lm_head`, tied to the decoder embedding by default): translation
    and other sequence-to-sequence tasks, `generate` with greedy, beam or sampled decoding."""

    _tied_weights_keys = {"lm_head.weight": "model.shared.weight"}

    def __init__(self, config: BigModelTransformerConfig):
        super().__init__(config)
        self.model = BigModelTransformerModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=config.lm_head_bias)
        if not config.tie_word_embeddings:
            self._tied_weights_keys = {}
        elif config.share_encoder_decoder_embeddings:
            self._tied_weights_keys = {"lm_head.weight": "model.shared.weight"}
        else:
            self._tied_weights_keys = {"lm_head.weight": "model.decoder.embed_tokens.weight"}
        self.post_init()

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder inputs for `labels` (used by `DataCollatorForSeq2Seq(model=...)`)."""
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: tuple[torch.Tensor] | BaseModelOutput | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqLMOutput:
        r"""
        labels: target token ids, `-100` where no loss is wanted. They are NOT shifted: `labels[:, t]` is the target
            of `logits[:, t]`; without `decoder_input_ids` the decoder inputs are `labels` shifted right behind
            `decoder_start_token_id`. The loss is label-smoothed (`config.label_smoothing`) in training mode and
            plain cross-entropy in eval mode. `num_items_in_batch` (passed by Trainer) makes it a sum over the
            accumulated batch divided by its token count, so gradient accumulation is exact.
            In training mode with labels, logits are computed only for labelled positions, for the loss, and
            `logits` is returned as None (call the model in eval mode, or without labels, to get them).
        logits_to_keep: compute logits only for the last N positions (generation needs just the last one).
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
            if self.training and decoder_attention_mask is None:
                # Positions after a row's last label feed no labelled position (causal attention): mark them as
                # padding so that training skips them (TokenPacking). Labelled positions are computed unchanged.
                decoder_attention_mask = _target_mask(labels)
        outputs: Seq2SeqModelOutput = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state  # (batch, tgt_len, hidden)
        loss = logits = None
        if labels is not None and self.training:
            labels = labels.to(hidden_states.device)
            keep = labels != -100
            # Only labelled positions need logits: padding costs no (tokens x vocab) projection or softmax.
            selected = self.lm_head(hidden_states[keep])  # (labelled tokens, vocab)
            loss = label_smoothed_loss(selected, labels[keep], self.config.label_smoothing, num_items_in_batch)
        else:
            # (batch, kept, vocab); a decoding step's few rows (one per sequence or beam) on every thread
            logits = fast_linear(self.lm_head, slice_logits_to_keep(hidden_states, logits_to_keep))
            if labels is not None:
                loss = label_smoothed_loss(logits, labels, 0.0, num_items_in_batch)
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )

    def _reorder_cache(self, cache: Cache, beam_idx: torch.LongTensor) -> Cache:
        """Beam search's cache update after each step (`generate` calls this method where a model defines it):
        only the self-attention keys and values follow the beams. `beam_idx` moves beams within their own source
        sentence, whose cross-attention keys and values are the same on all of its beams (`generate` repeats the
        encoder output once per beam), so `EncoderDecoderCache.reorder_cache`, which gathers those too, would copy
        every layer's (batch * beams, heads, source length, head_dim) tensors at every step to no effect."""
        if isinstance(cache, EncoderDecoderCache):
            cache.self_attention_cache.reorder_cache(beam_idx)
        else:
            cache.reorder_cache(beam_idx)
        return cache


__all__ = [
    "BigModelTransformerPreTrainedModel",
    "BigModelTransformerEncoder",
    "BigModelTransformerDecoder",
    "BigModelTransformerModel",
    "BigModelTransformerForConditionalGeneration",
    "shift_tokens_right",
    "sinusoidal_table",
]
