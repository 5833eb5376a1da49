"""The hf_bigmodel decoder-only GPT: GPT-2 by default, with switches for rotary positions, RMSNorm, SwiGLU and
grouped-query attention.

Standalone on purpose (transformers' single-model-file policy): `save_pretrained` copies this file and
`configuration_gpt.py` next to the weights, so that `trust_remote_code=True` loads the model without hf_bigmodel
installed. Only `torch`, `transformers` (with its own dependencies `safetensors` and
`huggingface_hub`) and the sibling files may be imported here: the sibling
`cpu_kernels_gpt.py` holds the CPU fast paths (dropout, few-row products, blockwise attention, chunked loss) and is
copied along, since transformers follows single-dot relative imports.

Parameter names follow Llama (`embed_tokens`, `layers.N.self_attn.qkv_proj`, `mlp.up_proj`, `norm`, `lm_head`), so
conversion to GPT-2 or Llama checkpoints is a plain key map (plus a transpose for GPT-2's Conv1D and a split of the
fused qkv projection for Llama).
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
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .configuration_gpt import BigModelGPTConfig
from .cpu_kernels_gpt import (
    BigModelGPTDropout,
    blockwise_causal_attention,
    causal_lm_loss,
    drop_thread_blocks,
    fast_linear,
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
        self.qkv_proj = nn.Linear(config.hidden_size, sum(self.qkv_split), bias=config.bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=config.bias)

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
        query, key, value = fast_linear(self.qkv_proj, hidden_states).split(self.qkv_split, dim=-1)
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
        return fast_linear(self.o_proj, attn_output), attn_weights


class BigModelGPTMLP(nn.Module):
    """GPT-2's MLP (`down(act(up(x)))`) or, with `mlp_type="swiglu"`, Llama's gated `down(silu(gate(x)) * up(x))`."""

    def __init__(self, config: BigModelGPTConfig):
        super().__init__()
        self.gated = config.mlp_type == "swiglu"
        if self.gated:
            self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.bias)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.bias)
        self.act_fn = ACT2FN["silu" if self.gated else config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            return fast_linear(
                self.down_proj, self.act_fn(fast_linear(self.gate_proj, x)) * fast_linear(self.up_proj, x)
            )
        return fast_linear(self.down_proj, self.act_fn(fast_linear(self.up_proj, x)))


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

    def init_parallel_plans(self) -> None:
        super().init_parallel_plans()
        if self.config.mlp_type != "swiglu":  # no gate_proj: its rule would be reported as matching nothing
            self._tp_plan = {name: style for name, style in self._tp_plan.items() if not name.endswith("gate_proj")}

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
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
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
        if self.config.position_embedding_type == "learned" and (
            isinstance(self.norm, nn.Identity) or any(isinstance(layer, nn.Identity) for layer in self.layers)
        ):
            # transformers' pipeline parallelism replaces the layers of other stages by identities and hands each
            # stage the previous one's hidden states as `inputs_embeds`: learned positions would be added again.
            raise ValueError(
                "Pipeline parallelism (DistributedConfig(pp_size=...)) passes each stage's hidden states on as "
                "inputs_embeds, to which this GPT's learned absolute positions would be added a second time. Use a "
                'GPT with position_embedding_type="rope" for pipeline stages, or shard with tensor parallelism / FSDP.'
            )
        if inputs_embeds is None:
            check_ids_in_range(input_ids, self.config.vocab_size, "input_ids", "vocab_size", TOKENIZER_MISMATCH)
            inputs_embeds = self.embed_tokens(input_ids)  # (batch, seq, hidden)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)

        seq_len = inputs_embeds.shape[1]
        past_seen_tokens = cache.get_seq_length() if cache is not None else 0
        fresh = isinstance(past_seen_tokens, int) and past_seen_tokens == 0  # a static cache counts on the device
        if position_ids is not None and fresh and not torch.compiler.is_compiling():
            # Padding-free packed rows (TRL's `packing=True`, DataCollatorWithFlattening) restart `position_ids` at
            # each sequence: the row may be longer than max_position_embeddings, as GPT-2 allows, while every
            # position stays inside it.
            largest = int(position_ids.max()) if position_ids.numel() else 0
            if largest >= self.config.max_position_embeddings:
                raise ValueError(
                    f"position_ids go up to {largest}, beyond max_position_embeddings="
                    f"{self.config.max_position_embeddings}. Truncate each sequence to at most "
                    f"{self.config.max_position_embeddings} tokens, or restart position_ids at 0 for each packed one."
                )
        elif isinstance(past_seen_tokens, int) and past_seen_tokens + seq_len > self.config.max_position_embeddings:
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


class BigModelGPTForCausalLM(BigModelGPTPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}

    def __init__(self, config: BigModelGPTConfig):
        super().__init__(config)
        self.model = BigModelGPTModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
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
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
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
        logits = fast_linear(self.lm_head, hidden_states)  # (batch, kept positions, vocab)

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
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
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
        use_cache: bool | None = None,  # accepted as GPT2ForTokenClassification does; the output holds no cache
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
