"""The hf_bigmodel decoder-only GPT: GPT-2 by default, with switches for rotary positions, RMSNorm, SwiGLU and
grouped-query attention.

Standalone on purpose (transformers' single-model-file policy): `save_pretrained` copies this file and
`configuration_gpt.py` next to the weights, so that `trust_remote_code=True` loads the model without hf_bigmodel
installed. Only `torch`, `transformers` and the sibling configuration may be imported here.

Parameter names follow Llama (`embed_tokens`, `layers.N.self_attn.qkv_proj`, `mlp.up_proj`, `norm`, `lm_head`), so
conversion to GPT-2 or Llama checkpoints is a plain key map (plus a transpose for GPT-2's Conv1D and a split of the
fused qkv projection for Llama).
"""

import json
import math
import os
from collections.abc import Callable
from typing import NamedTuple

import torch
from huggingface_hub import try_to_load_from_cache
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.generation import GenerationMixin
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    SequenceClassifierOutputWithPast,
    TokenClassifierOutput,
)
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel, slice_logits_to_keep
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .configuration_gpt import BigModelGPTConfig


def make_norm(config: BigModelGPTConfig) -> nn.Module:
    if config.norm_type == "rmsnorm":
        return nn.RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
    return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.bias)


class BigModelGPTRotaryEmbedding(nn.Module):
    """Rotary position embedding. `inv_freq` is a non-persistent buffer: `PreTrainedModel._init_weights` rebuilds it
    after meta-device loading from `compute_default_rope_parameters` (or a scaled RoPE type)."""

    def __init__(self, config: BigModelGPTConfig):
        super().__init__()
        self.config = config
        self.rope_type = config.rope_parameters.get("rope_type", "default")
        rope_init_fn: Callable = self.compute_default_rope_parameters
        if self.rope_type != "default":
            rope_init_fn = ROPE_INIT_FUNCTIONS[self.rope_type]
        inv_freq, self.attention_scaling = rope_init_fn(config)
        self.inv_freq = nn.Buffer(inv_freq, persistent=False)
        self.original_inv_freq = nn.Buffer(inv_freq.clone(), persistent=False)

    @staticmethod
    def compute_default_rope_parameters(config: BigModelGPTConfig, **kwargs) -> tuple[torch.Tensor, float]:
        base = config.rope_parameters["rope_theta"]
        dim = config.hidden_size // config.num_attention_heads
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))  # (head_dim / 2,)
        return inv_freq, 1.0

    @torch.no_grad()
    @dynamic_rope_update
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(x.device)  # (batch, seq, head_dim / 2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (batch, seq, head_dim)
        cos = emb.cos() * self.attention_scaling
        sin = emb.sin() * self.attention_scaling
        return cos.to(x.dtype), sin.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    # q: (batch, heads, seq, head_dim); cos, sin: (batch, seq, head_dim) -> broadcast over heads
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(batch, kv_heads, seq, head_dim) -> (batch, kv_heads * n_rep, seq, head_dim), for grouped-query attention."""
    if n_rep == 1:
        return hidden_states
    batch, kv_heads, seq_len, head_dim = hidden_states.shape
    hidden_states = hidden_states[:, :, None].expand(batch, kv_heads, n_rep, seq_len, head_dim)
    return hidden_states.reshape(batch, kv_heads * n_rep, seq_len, head_dim)


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
    # query: (batch, heads, q_len, head_dim); key/value: (batch, kv_heads, kv_len, head_dim)
    key = repeat_kv(key, module.num_key_value_groups)
    value = repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (batch, heads, q_len, kv_len)
    if attention_mask is not None:  # additive float mask: 0 where allowed, -inf (dtype min) elsewhere
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()  # (batch, q_len, heads, head_dim)
    return attn_output, attn_weights


def dropout_training(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout: zero each element with probability `p` and scale the rest by 1 / (1 - p), as
    `nn.functional.dropout` does. On CPU the keep mask comes from `torch.rand` (one float32 per element, so `p` is
    exact to 2**-24) and a multiply, about 40% cheaper forward + backward than the `bernoulli_`-based kernel."""
    if p == 0.0:
        return x
    if x.device.type != "cpu":
        return nn.functional.dropout(x, p=p)
    keep = torch.rand(x.shape, device=x.device).ge_(p).mul_(1.0 / (1.0 - p))  # 0 or 1 / (1 - p)
    return x * keep.to(x.dtype)


class BigModelGPTDropout(nn.Dropout):
    """`nn.Dropout` computed by `dropout_training` (same distribution, cheaper on CPU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout_training(x, self.p) if self.training else x


# Most input rows for which `BigModelGPTLinear` uses `few_rows_linear`: decoding steps (one row per sequence or beam).
# Larger inputs are matrix products that the BLAS library already runs well on every thread.
FEW_ROWS = 16


class ThreadBlocks(NamedTuple):
    """A linear layer's weight as views for `few_rows_linear`: `parts` blocks of output rows, and the rows beyond a
    multiple of `parts` (an odd vocabulary), which go through `linear()`."""

    weight: torch.Tensor  # (parts, out // parts, in): row blocks of the weight
    bias: torch.Tensor | None  # (parts, out // parts, 1)
    rest_weight: torch.Tensor | None  # (out % parts, in)
    rest_bias: torch.Tensor | None


def split_for_threads(weight: torch.Tensor, bias: torch.Tensor | None, parts: int) -> ThreadBlocks:
    out_features, in_features = weight.shape
    split = out_features - out_features % parts
    blocks = weight[:split].view(parts, split // parts, in_features)
    bias_blocks = None if bias is None else bias[:split].view(parts, -1, 1)
    if split == out_features:
        return ThreadBlocks(blocks, bias_blocks, None, None)
    return ThreadBlocks(blocks, bias_blocks, weight[split:], None if bias is None else bias[split:])


def few_rows_linear(x: torch.Tensor, blocks: ThreadBlocks) -> torch.Tensor:
    """`nn.functional.linear(x, weight, bias)` for an input of a few rows, computed as one batched product
    `weight_block @ x.T` over the weight's row blocks (`split_for_threads`).

    A decoding step at batch 1 is a matrix-vector product, which is bound by how fast the weight streams from memory.
    MKL's `linear()` runs it on one thread at about 10 GB/s on this project's CPUs; the same bytes as a batched
    product with the weight on the left stream at about 20 GB/s per thread, and the batch entries (one block of
    weight rows each) run on parallel threads: the products of a decoding step take about 1/3 of `linear()`'s time on 2
    cores (1/2 on one). Nothing is copied: the blocks are views of the weight.
    """
    parts, block, in_features = blocks.weight.shape
    columns = x.reshape(-1, in_features).t().expand(parts, -1, -1)  # (parts, in, rows)
    if blocks.bias is None:
        out = torch.bmm(blocks.weight, columns)
    else:
        out = torch.baddbmm(blocks.bias, blocks.weight, columns)  # (parts, block, rows)
    shape = x.shape[:-1] + (parts * block,)
    # (parts, block, rows) -> (rows, parts * block); with one row that order is already the memory order
    out = out.view(shape) if columns.shape[2] == 1 else out.permute(2, 0, 1).reshape(shape)
    if blocks.rest_weight is not None:
        out = torch.cat([out, nn.functional.linear(x, blocks.rest_weight, blocks.rest_bias)], dim=-1)
    return out


class BigModelGPTLinear(nn.Linear):
    """`nn.Linear` (same parameters, same results up to float rounding) whose float32 inference on a few CPU rows,
    the decoding steps of `generate`, goes through the faster `few_rows_linear`. Training, large inputs, other
    dtypes, autocast, other devices, compiled graphs and tensor subclasses (DTensor, quantized weights) go through
    `nn.functional.linear` unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            not torch.compiler.is_compiling()  # compiled graphs fuse their own kernels; the thread count is not traceable
            and x.is_cpu
            and x.dtype == torch.float32  # bfloat16 products (and autocast) already use every thread in oneDNN
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")
            and x.shape[-1] == self.in_features  # (a wrong size gets linear()'s error)
            and x.numel() <= FEW_ROWS * self.in_features
        ):
            blocks = self._thread_blocks()
            if blocks is not None:
                return few_rows_linear(x, blocks)
        return nn.functional.linear(x, self.weight, self.bias)

    def _thread_blocks(self) -> ThreadBlocks | None:
        """The weight split in one block per thread (at least 2: even on one thread, MKL's batched product streams
        the weight twice as fast as its matrix-vector product), or None where that does not apply. Cached, because
        a decoding step is short enough for building the views to show: the cache key is the thread count and the
        tensors' storage, so a new thread count, `model.to(...)` or replaced weights rebuild it (in-place updates
        keep the views valid)."""
        weight, bias = self.weight, self.bias
        parts = max(2, torch.get_num_threads())
        key = (parts, weight.data_ptr(), None if bias is None else bias.data_ptr())
        cached = self.__dict__.get("_thread_blocks_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        usable = (
            weight.shape[0] >= parts
            and weight.dtype == torch.float32
            and type(weight) is nn.Parameter
            and weight.is_contiguous()
            and (bias is None or bias.is_contiguous())
        )
        blocks = split_for_threads(weight, bias, parts) if usable else None
        self.__dict__["_thread_blocks_cache"] = (key, blocks)
        return blocks

    def _apply(self, fn, recurse: bool = True):
        self.__dict__.pop("_thread_blocks_cache", None)  # holds views of the old tensors: let them go
        return super()._apply(fn, recurse)


# Query rows per block of `blockwise_causal_attention`: big enough for efficient matmuls, small enough to skip most
# of the masked upper triangle (at 256 tokens, 2 blocks do 3/4 of the full work; at 1024, 8 blocks do 9/16).
CAUSAL_BLOCK_SIZE = 128


def blockwise_causal_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float, dropout: float
) -> torch.Tensor:
    """Exact causal attention over a whole sequence (no cache, no padding), for training on CPU.

    PyTorch has no fused CPU attention kernel with dropout: sdpa then falls back to its math path, which computes
    the full seq x seq scores (half of them masked) and upcasts bfloat16 inputs to float32 everywhere. Here each
    block of query rows only multiplies the keys it may see; scores and softmax are float32 (as in sdpa's kernels),
    the probabilities are cast to the value dtype for dropout and the second matmul. Returns
    (batch, seq, heads, head_dim) like the attention interfaces.
    """
    batch, heads, seq_len, head_dim = query.shape
    n_rep = heads // key.shape[1]
    value = repeat_kv(value, n_rep).flatten(0, 1)  # (batch * heads, seq, head_dim)
    with torch.autocast(query.device.type, enabled=False):
        query = query.float().flatten(0, 1)
        key_t = repeat_kv(key.float(), n_rep).flatten(0, 1).transpose(1, 2)  # (batch * heads, head_dim, seq)
        mask = torch.full((seq_len, seq_len), float("-inf"), device=query.device).triu_(1)
        blocks = []
        for start in range(0, seq_len, CAUSAL_BLOCK_SIZE):
            end = min(start + CAUSAL_BLOCK_SIZE, seq_len)
            scores = torch.baddbmm(mask[start:end, :end], query[:, start:end], key_t[:, :, :end], alpha=scaling)
            probs = scores.softmax(dim=-1).to(value.dtype)
            probs = dropout_training(probs, dropout)
            blocks.append(torch.bmm(probs, value[:, :end]))  # (batch * heads, block, head_dim)
    attn_output = torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0]
    return attn_output.view(batch, heads, seq_len, head_dim).transpose(1, 2)


class BigModelGPTAttention(nn.Module):
    """Causal self-attention with one fused q/k/v projection (GPT-2's `c_attn`), grouped-query when
    `num_key_value_heads < num_attention_heads`."""

    def __init__(self, config: BigModelGPTConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_key_value_heads = config.num_key_value_heads
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = True
        self.qkv_split = [self.num_heads * self.head_dim, *[self.num_key_value_heads * self.head_dim] * 2]
        self.qkv_proj = BigModelGPTLinear(config.hidden_size, sum(self.qkv_split), bias=config.bias)
        self.o_proj = BigModelGPTLinear(self.num_heads * self.head_dim, config.hidden_size, bias=config.bias)

    def _use_blockwise_causal(self, query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None) -> bool:
        """Whether `sdpa` is better served by `blockwise_causal_attention`: only where that computes exactly sdpa's
        plain causal attention (training on whole sequences: no padding mask, no cached prefix) and where sdpa's CPU
        kernels are slower, i.e. with attention dropout or bfloat16/float16 inputs."""
        return (
            self.training
            and self.config._attn_implementation == "sdpa"
            and mask is None
            and query.device.type == "cpu"
            and query.shape[2] == key.shape[2]
            and (self.attention_dropout > 0.0 or query.dtype != torch.float32)
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]  # (batch, seq)
        query, key, value = self.qkv_proj(hidden_states).split(self.qkv_split, dim=-1)
        query = query.view(*input_shape, -1, self.head_dim).transpose(1, 2)  # (batch, heads, seq, head_dim)
        key = key.view(*input_shape, -1, self.head_dim).transpose(1, 2)  # (batch, kv_heads, seq, head_dim)
        value = value.view(*input_shape, -1, self.head_dim).transpose(1, 2)

        if position_embeddings is not None:
            query, key = apply_rotary_pos_emb(query, key, *position_embeddings)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)  # (batch, kv_heads, past + seq, head_dim)

        if self._use_blockwise_causal(query, key, attention_mask):
            attn_output = blockwise_causal_attention(query, key, value, self.scaling, self.attention_dropout)
            attn_weights = None  # sdpa returns no weights either
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
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()  # (batch, seq, hidden)
        return self.o_proj(attn_output), attn_weights


class BigModelGPTMLP(nn.Module):
    """GPT-2's MLP (`down(act(up(x)))`) or, with `mlp_type="swiglu"`, Llama's gated `down(silu(gate(x)) * up(x))`."""

    def __init__(self, config: BigModelGPTConfig):
        super().__init__()
        self.gated = config.mlp_type == "swiglu"
        if self.gated:
            self.gate_proj = BigModelGPTLinear(config.hidden_size, config.intermediate_size, bias=config.bias)
        self.up_proj = BigModelGPTLinear(config.hidden_size, config.intermediate_size, bias=config.bias)
        self.down_proj = BigModelGPTLinear(config.intermediate_size, config.hidden_size, bias=config.bias)
        self.act_fn = ACT2FN["silu" if self.gated else config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(self.act_fn(self.up_proj(x)))


class BigModelGPTBlock(GradientCheckpointingLayer):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: BigModelGPTConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = make_norm(config)
        self.self_attn = BigModelGPTAttention(config, layer_idx)
        self.post_attention_layernorm = make_norm(config)
        self.mlp = BigModelGPTMLP(config)
        self.dropout = BigModelGPTDropout(config.hidden_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attn_output, _ = self.self_attn(
            self.input_layernorm(hidden_states),
            position_embeddings=position_embeddings,
            attention_mask=attention_mask,
            cache=cache,
            **kwargs,
        )
        hidden_states = hidden_states + self.dropout(attn_output)
        hidden_states = hidden_states + self.dropout(self.mlp(self.post_attention_layernorm(hidden_states)))
        return hidden_states  # (batch, seq, hidden)


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


class BigModelGPTPreTrainedModel(PreTrainedModel):
    config: BigModelGPTConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["BigModelGPTBlock"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    _can_record_outputs = {"hidden_states": BigModelGPTBlock, "attentions": BigModelGPTAttention}

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

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        # GPT-2 / nanoGPT: scale the projections that write into the residual stream by 1/sqrt(2 * n_layers), so
        # the variance of the residual stream does not grow with depth. Modules are visited children first, so this
        # overrides the plain normal init of o_proj / down_proj (and skips weights loaded from a checkpoint).
        std = self.config.initializer_range / math.sqrt(2 * self.config.num_hidden_layers)
        if isinstance(module, BigModelGPTAttention):
            init.normal_(module.o_proj.weight, mean=0.0, std=std)
        elif isinstance(module, BigModelGPTMLP):
            init.normal_(module.down_proj.weight, mean=0.0, std=std)


class BigModelGPTModel(BigModelGPTPreTrainedModel):
    """The GPT body: token (+ learned position) embeddings, the blocks and the final norm."""

    def __init__(self, config: BigModelGPTConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        if config.position_embedding_type == "learned":
            self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        else:
            self.rotary_emb = BigModelGPTRotaryEmbedding(config)
        self.dropout = BigModelGPTDropout(config.embedding_dropout)
        self.layers = nn.ModuleList([BigModelGPTBlock(config, i) for i in range(config.num_hidden_layers)])
        self.norm = make_norm(config)
        self.gradient_checkpointing = False
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # (batch, seq, hidden)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)

        seq_len = inputs_embeds.shape[1]
        past_seen_tokens = cache.get_seq_length() if cache is not None else 0
        if isinstance(past_seen_tokens, int) and past_seen_tokens + seq_len > self.config.max_position_embeddings:
            raise ValueError(
                f"Sequence length {past_seen_tokens + seq_len} (cached {past_seen_tokens} + new {seq_len}) exceeds "
                f"max_position_embeddings={self.config.max_position_embeddings}. Truncate the input, e.g. "
                f"tokenizer(..., truncation=True, max_length={self.config.max_position_embeddings}), or generate "
                f"fewer new tokens."
            )
        if not isinstance(past_seen_tokens, int) and cache.get_max_length() > self.config.max_position_embeddings:
            # A static cache counts tokens on the device (no sync here); its fixed capacity bounds the positions.
            raise ValueError(
                f"The static cache holds up to {cache.get_max_length()} tokens, more than "
                f"max_position_embeddings={self.config.max_position_embeddings}. Generate fewer new tokens (prompt "
                f"length + max_new_tokens <= {self.config.max_position_embeddings}) or shorten the prompt."
            )
        if position_ids is None:
            if attention_mask is not None and attention_mask.dim() == 2:
                # Left padding: count positions from each row's first real token, as it would be alone.
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -seq_len:]
            else:
                position_ids = torch.arange(seq_len, device=inputs_embeds.device).unsqueeze(0) + past_seen_tokens

        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )

        hidden_states = inputs_embeds
        position_embeddings = None
        if self.config.position_embedding_type == "learned":
            hidden_states = hidden_states + self.embed_positions(position_ids)
        else:
            position_embeddings = self.rotary_emb(hidden_states, position_ids)
        hidden_states = self.dropout(hidden_states)

        for layer in self.layers:
            hidden_states = layer(
                hidden_states,
                attention_mask=causal_mask,
                position_embeddings=position_embeddings,
                cache=cache,
                use_cache=use_cache,
                **kwargs,
            )
        hidden_states = self.norm(hidden_states)
        return BaseModelOutputWithPast(last_hidden_state=hidden_states, cache=cache)


# Logits per chunk of the loss (8 MiB in float32): the softmax, the gradient and its cast then run on data that is
# still in the CPU caches, instead of as several passes over the whole (tokens, vocab) matrix.
LOSS_CHUNK_ELEMENTS = 2**21


class ChunkedCrossEntropySum(torch.autograd.Function):
    """Summed cross-entropy of `logits` (rows, vocab) against `targets` (rows,), skipping `ignore_index`, in float32
    whatever the logits dtype. Forward and backward work through row chunks and the backward writes
    `softmax - one_hot` straight into the gradient, so no (rows, vocab) log-probabilities are stored in between."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
        ctx.save_for_backward(logits, targets)
        ctx.ignore_index = ignore_index
        ctx.chunk_rows = max(1, LOSS_CHUNK_ELEMENTS // logits.shape[1])
        total = logits.new_zeros((), dtype=torch.float32)
        for start in range(0, logits.shape[0], ctx.chunk_rows):
            rows = slice(start, start + ctx.chunk_rows)
            total += nn.functional.cross_entropy(
                logits[rows].float(), targets[rows], ignore_index=ignore_index, reduction="sum"
            )
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        logits, targets = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[0], ctx.chunk_rows):
            rows = slice(start, start + ctx.chunk_rows)
            keep = targets[rows] != ctx.ignore_index
            weight = (keep * grad_total).unsqueeze(1)  # (chunk, 1): 0 on ignored rows
            target = torch.where(keep, targets[rows], 0).unsqueeze(1)
            if logits.dtype == torch.float32:  # compute in place in the gradient, no copy
                torch.softmax(logits[rows], dim=-1, out=grad[rows]).mul_(weight).scatter_add_(1, target, -weight)
            else:
                grad[rows] = torch.softmax(logits[rows].float(), dim=-1).mul_(weight).scatter_add_(1, target, -weight)
        return grad, None, None


def causal_lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    vocab_size: int,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = -100,
    shift_labels: torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor:
    """transformers' `ForCausalLMLoss` (same arguments and value: labels shifted left, `ignore_index` skipped, the
    sum divided by `num_items_in_batch` when given, else the mean), computed by `ChunkedCrossEntropySum`, which
    is faster and keeps no float32 copy of the logits."""
    if shift_labels is None:
        shift_labels = nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    shift_labels = shift_labels.reshape(-1).to(logits.device)
    total = ChunkedCrossEntropySum.apply(logits.reshape(-1, vocab_size), shift_labels, ignore_index)
    if num_items_in_batch is None:
        return total / (shift_labels != ignore_index).sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


class BigModelGPTForCausalLM(BigModelGPTPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}

    def __init__(self, config: BigModelGPTConfig):
        super().__init__(config)
        self.model = BigModelGPTModel(config)
        self.lm_head = BigModelGPTLinear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @property
    def loss_function(self) -> Callable:
        """`causal_lm_loss`, unless replaced (`model.loss_function = fn`) or `loss_type` names another loss."""
        if hasattr(self, "_loss_function") or self.loss_type != "ForCausalLM":
            return super().loss_function
        return causal_lm_loss

    @loss_function.setter
    def loss_function(self, value: Callable) -> None:
        self._loss_function = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CausalLMOutputWithPast:
        r"""
        labels: token ids, `-100` where no loss is wanted. They are shifted inside (predict token t+1 from <= t), so
            `labels=input_ids` trains a language model. `num_items_in_batch` (passed by `Trainer`) makes the loss
            a sum over the whole accumulated batch divided by its token count, so gradient accumulation is exact.
        logits_to_keep: compute logits only for the last N positions (generation needs just the last one).
        """
        outputs: BaseModelOutputWithPast = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states)  # (batch, kept positions, vocab)

        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class BigModelGPTForSequenceClassification(BigModelGPTPreTrainedModel):
    """Classifies a sequence from the hidden state of its last non-padding token (the only one that has seen the
    whole text in a causal model). Works with left and right padding."""

    # The loss is a mean per micro-batch (MSE/BCE cannot take `num_items_in_batch`): tell Trainer, so that it divides
    # by gradient_accumulation_steps itself instead of passing the count and logging/training on GA x the loss.
    accepts_loss_kwargs = False

    def __init__(self, config: BigModelGPTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = BigModelGPTModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutputWithPast:
        outputs: BaseModelOutputWithPast = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        logits = self.score(outputs.last_hidden_state)  # (batch, seq, num_labels)
        batch_size, seq_len = logits.shape[:2]

        if attention_mask is not None and attention_mask.dim() == 2:
            non_pad = attention_mask.to(logits.device, torch.int32)
        elif input_ids is not None and self.config.pad_token_id is not None:
            non_pad = (input_ids != self.config.pad_token_id).to(logits.device, torch.int32)
        elif batch_size == 1 or input_ids is None:
            non_pad = torch.ones(batch_size, seq_len, dtype=torch.int32, device=logits.device)
        else:
            raise ValueError(
                "Cannot find the last token of each row of a batch without an `attention_mask` or a "
                "`config.pad_token_id`. Pass the tokenizer's attention_mask, or set config.pad_token_id."
            )
        # Index of the last real token: the largest position whose mask is 1 (left or right padding alike).
        positions = torch.arange(seq_len, device=logits.device, dtype=torch.int32)
        last_token = (positions * non_pad).argmax(-1)
        pooled_logits = logits[torch.arange(batch_size, device=logits.device), last_token]  # (batch, num_labels)

        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, pooled_logits=pooled_logits, config=self.config)
        return SequenceClassifierOutputWithPast(
            loss=loss,
            logits=pooled_logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class BigModelGPTForTokenClassification(BigModelGPTPreTrainedModel):
    """One label per token (NER, tagging) from each position's hidden state."""

    def __init__(self, config: BigModelGPTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = BigModelGPTModel(config)
        self.dropout = BigModelGPTDropout(config.hidden_dropout)
        self.score = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput:
        outputs: BaseModelOutputWithPast = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=False,
            **kwargs,
        )
        logits = self.score(self.dropout(outputs.last_hidden_state))  # (batch, seq, num_labels)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, self.config, **kwargs)
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = [
    "BigModelGPTPreTrainedModel",
    "BigModelGPTModel",
    "BigModelGPTForCausalLM",
    "BigModelGPTForSequenceClassification",
    "BigModelGPTForTokenClassification",
]
