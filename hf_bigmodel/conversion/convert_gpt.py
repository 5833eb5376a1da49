"""Checkpoint conversion for the hf_bigmodel GPT (`bigmodel_gpt`).

Routes:
    stock GPT-2 (`GPT2LMHeadModel` folder)      -> bigmodel_gpt      convert_gpt2_to_bigmodel
    bigmodel_gpt at GPT-2 settings              -> stock GPT-2       convert_bigmodel_to_gpt2
    stock Llama (`LlamaForCausalLM` folder)     -> bigmodel_gpt      convert_llama_to_bigmodel
    bigmodel_gpt with rope + rmsnorm + swiglu   -> stock Llama       convert_bigmodel_to_llama
    nanoGPT `ckpt.pt` (karpathy/nanoGPT train.py) -> bigmodel_gpt    convert_nanogpt_to_bigmodel

Stock outputs load with plain `transformers` (no hf_bigmodel, no remote code). Every route is a key rename (plus a
transpose for GPT-2's `Conv1D` weights, and a split/fuse of our fused `qkv_proj` for Llama) and a config
translation that refuses, naming the field, whatever the target cannot express.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.activations import ACT2FN

from hf_bigmodel.models.gpt import BigModelGPTConfig, BigModelGPTForCausalLM

from .common import (
    NANOGPT,
    ConversionError,
    KeyMap,
    KeyRule,
    Route,
    build_model,
    check_inputs,
    expect_model_type,
    fuse_projections,
    load_config,
    load_folder_tensors,
    logger,
    read_config_json,
    resolve_dtype,
    split_projection,
    strip_prefix,
    torch_load_tensors_only,
    write_converted,
)

PathLike = str | os.PathLike

# GPT-2 names (nanoGPT uses the same ones). GPT-2 stores its projections as `Conv1D`, whose weight is the transpose
# of `nn.Linear`'s; nanoGPT uses `nn.Linear`, so it shares the table without the transposes.
GPT2_KEY_MAP = KeyMap(
    [
        KeyRule("model.embed_tokens.weight", "transformer.wte.weight"),
        KeyRule("model.embed_positions.weight", "transformer.wpe.weight"),
        KeyRule("model.layers.{i}.input_layernorm.{p}", "transformer.h.{i}.ln_1.{p}"),
        KeyRule("model.layers.{i}.self_attn.qkv_proj.{p}", "transformer.h.{i}.attn.c_attn.{p}", transpose=True),
        KeyRule("model.layers.{i}.self_attn.o_proj.{p}", "transformer.h.{i}.attn.c_proj.{p}", transpose=True),
        KeyRule("model.layers.{i}.post_attention_layernorm.{p}", "transformer.h.{i}.ln_2.{p}"),
        KeyRule("model.layers.{i}.mlp.up_proj.{p}", "transformer.h.{i}.mlp.c_fc.{p}", transpose=True),
        KeyRule("model.layers.{i}.mlp.down_proj.{p}", "transformer.h.{i}.mlp.c_proj.{p}", transpose=True),
        KeyRule("model.norm.{p}", "transformer.ln_f.{p}"),
        KeyRule("lm_head.weight", "lm_head.weight"),
    ]
)

# Llama names equal ours except for the attention input projection, which Llama keeps as three matrices
# (split/fused by `_split_qkv` / `_fuse_qkv` around this table).
_LLAMA_QKV = ("q_proj", "k_proj", "v_proj")
LLAMA_KEY_MAP = KeyMap(
    [
        KeyRule("model.embed_tokens.weight", "model.embed_tokens.weight"),
        KeyRule("model.layers.{i}.input_layernorm.weight", "model.layers.{i}.input_layernorm.weight"),
        *[
            KeyRule(f"model.layers.{{i}}.self_attn.{name}.{{p}}", f"model.layers.{{i}}.self_attn.{name}.{{p}}")
            for name in (*_LLAMA_QKV, "o_proj")
        ],
        KeyRule(
            "model.layers.{i}.post_attention_layernorm.weight", "model.layers.{i}.post_attention_layernorm.weight"
        ),
        *[
            KeyRule(f"model.layers.{{i}}.mlp.{name}.{{p}}", f"model.layers.{{i}}.mlp.{name}.{{p}}")
            for name in ("gate_proj", "up_proj", "down_proj")
        ],
        KeyRule("model.norm.weight", "model.norm.weight"),
        KeyRule("lm_head.weight", "lm_head.weight"),
    ]
)

# Causal-mask buffers that old GPT-2 checkpoints and non-flash nanoGPT checkpoints saved as `attn.bias` (not
# weights), and rotary frequencies some old Llama checkpoints persisted: recomputed by the model, never loaded.
_GPT2_BUFFER = re.compile(r"transformer\.h\.\d+\.attn\.(bias|masked_bias)")
_LLAMA_BUFFER = re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq|model\.rotary_emb\.inv_freq")

NANOGPT_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "bias", "dropout")
_GPT2_VOCAB_SIZES = (50257, 50304)  # GPT-2's BPE, and nanoGPT's padding of it to a multiple of 64
_GPT2_EOT = 50256


# ---------------------------------------------------------------------------------------------------------------
# Config translation


def gpt2_config_to_bigmodel(config: GPT2Config) -> BigModelGPTConfig:
    """Our config for a stock GPT-2 config; raises `ConversionError` for GPT-2 options we do not implement."""
    if config.add_cross_attention:
        raise ConversionError(
            "GPT-2 config has add_cross_attention=True (cross-attention to an encoder): bigmodel_gpt is "
            "decoder-only and has no cross-attention layers."
        )
    if not config.scale_attn_weights:
        raise ConversionError(
            "GPT-2 config has scale_attn_weights=False (attention scores not divided by sqrt(head_dim)): "
            "bigmodel_gpt always scales them, so the outputs would differ."
        )
    if config.scale_attn_by_inverse_layer_idx:
        raise ConversionError(
            "GPT-2 config has scale_attn_by_inverse_layer_idx=True (scores also divided by layer_idx + 1): "
            "bigmodel_gpt has no per-layer attention scaling, so the outputs would differ."
        )
    if config.activation_function not in ACT2FN:
        raise ConversionError(
            f"GPT-2 config has activation_function={config.activation_function!r}, which is not a transformers "
            f"activation (see transformers.activations.ACT2FN)."
        )
    if config.reorder_and_upcast_attn:
        logger.info(
            "GPT-2 config has reorder_and_upcast_attn=True, a mixed-precision detail of its eager attention: "
            "bigmodel_gpt computes the same function (and its softmax in float32), so it is dropped."
        )
    # `gelu_new` is the tanh approximation of GELU; `gelu_pytorch_tanh` computes it as one fused kernel.
    act = "gelu_pytorch_tanh" if config.activation_function == "gelu_new" else config.activation_function
    return BigModelGPTConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.n_embd,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        num_key_value_heads=config.n_head,
        intermediate_size=config.n_inner or 4 * config.n_embd,
        max_position_embeddings=config.n_positions,
        position_embedding_type="learned",
        norm_type="layernorm",
        mlp_type="gelu",
        hidden_act=act,
        bias=True,
        embedding_dropout=float(config.embd_pdrop),
        hidden_dropout=float(config.resid_pdrop),
        attention_dropout=float(config.attn_pdrop),
        layer_norm_eps=config.layer_norm_epsilon,
        initializer_range=config.initializer_range,
        tie_word_embeddings=config.tie_word_embeddings,
        use_cache=config.use_cache,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
    )


def gpt2_export_problems(config: BigModelGPTConfig) -> list[str]:
    """Why `config` cannot be written as a stock GPT-2 (empty when it can)."""
    problems = []
    if config.position_embedding_type != "learned":
        problems.append(
            f"position_embedding_type={config.position_embedding_type!r} (GPT-2 has learned absolute positions)"
        )
    if config.norm_type != "layernorm":
        problems.append(f"norm_type={config.norm_type!r} (GPT-2 uses LayerNorm)")
    if config.mlp_type != "gelu":
        problems.append(f"mlp_type={config.mlp_type!r} (GPT-2's MLP is not gated)")
    if config.num_key_value_heads != config.num_attention_heads:
        problems.append(
            f"num_key_value_heads={config.num_key_value_heads} != num_attention_heads="
            f"{config.num_attention_heads} (GPT-2 has no grouped-query attention)"
        )
    return problems


def llama_export_problems(config: BigModelGPTConfig) -> list[str]:
    """Why `config` cannot be written as a stock Llama (empty when it can)."""
    problems = []
    if config.position_embedding_type != "rope":
        problems.append(
            f"position_embedding_type={config.position_embedding_type!r} (Llama has rotary positions only)"
        )
    if config.norm_type != "rmsnorm":
        problems.append(f"norm_type={config.norm_type!r} (Llama uses RMSNorm)")
    if config.mlp_type != "swiglu":
        problems.append(f"mlp_type={config.mlp_type!r} (Llama's MLP is the gated SwiGLU)")
    return problems


def choose_export_target(config: BigModelGPTConfig) -> str:
    """ "gpt2" for a model at GPT-2 settings, "llama" for the Llama recipe; `ConversionError` for anything else."""
    gpt2, llama = gpt2_export_problems(config), llama_export_problems(config)
    if not gpt2:
        return "gpt2"
    if not llama:
        return "llama"
    raise ConversionError(
        "This bigmodel_gpt model has no stock transformers equivalent. As GPT-2 it would need: "
        f"{'; '.join(gpt2)}. As Llama it would need: {'; '.join(llama)}. It still loads with "
        "trust_remote_code=True (or with hf_bigmodel installed)."
    )


def _refuse_export(target: str, problems: list[str], config: BigModelGPTConfig) -> None:
    other = "llama" if target == "gpt2" else "gpt2"
    other_problems = llama_export_problems(config) if other == "llama" else gpt2_export_problems(config)
    hint = (
        f" Export it as {'Llama' if other == 'llama' else 'GPT-2'} instead (--to {other}), which can express it."
        if not other_problems
        else " It still loads with trust_remote_code=True (or with hf_bigmodel installed)."
    )
    name = "GPT-2" if target == "gpt2" else "Llama"
    raise ConversionError(f"Cannot export to stock {name}: {'; '.join(problems)}.{hint}")


def bigmodel_to_gpt2_config(config: BigModelGPTConfig) -> GPT2Config:
    """The stock GPT-2 config of a model at GPT-2 settings; raises `ConversionError` naming the fields otherwise."""
    problems = gpt2_export_problems(config)
    if problems:
        _refuse_export("gpt2", problems, config)
    act = "gelu_new" if config.hidden_act == "gelu_pytorch_tanh" else config.hidden_act
    return GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.max_position_embeddings,
        n_embd=config.hidden_size,
        n_layer=config.num_hidden_layers,
        n_head=config.num_attention_heads,
        n_inner=None if config.intermediate_size == 4 * config.hidden_size else config.intermediate_size,
        activation_function=act,
        resid_pdrop=config.hidden_dropout,
        embd_pdrop=config.embedding_dropout,
        attn_pdrop=config.attention_dropout,
        layer_norm_epsilon=config.layer_norm_eps,
        initializer_range=config.initializer_range,
        use_cache=config.use_cache,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        tie_word_embeddings=config.tie_word_embeddings,
    )


def llama_config_to_bigmodel(config: LlamaConfig) -> BigModelGPTConfig:
    """Our config for a stock Llama config; raises `ConversionError` for Llama options we do not implement."""
    if config.hidden_act != "silu":
        raise ConversionError(
            f"Llama config has hidden_act={config.hidden_act!r}: bigmodel_gpt's SwiGLU MLP uses silu only."
        )
    if config.head_dim != config.hidden_size // config.num_attention_heads:
        raise ConversionError(
            f"Llama config has head_dim={config.head_dim}, but bigmodel_gpt needs head_dim = hidden_size / "
            f"num_attention_heads = {config.hidden_size // config.num_attention_heads}."
        )
    if config.attention_bias != config.mlp_bias:
        raise ConversionError(
            f"Llama config has attention_bias={config.attention_bias} but mlp_bias={config.mlp_bias}: "
            f"bigmodel_gpt has one `bias` switch for every linear layer."
        )
    return BigModelGPTConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings,
        position_embedding_type="rope",
        norm_type="rmsnorm",
        mlp_type="swiglu",
        hidden_act="silu",
        bias=config.attention_bias,
        embedding_dropout=0.0,
        hidden_dropout=0.0,
        attention_dropout=float(config.attention_dropout or 0.0),
        layer_norm_eps=config.rms_norm_eps,
        initializer_range=config.initializer_range,
        rope_parameters=dict(config.rope_parameters),
        tie_word_embeddings=config.tie_word_embeddings,
        use_cache=config.use_cache,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
    )


def bigmodel_to_llama_config(config: BigModelGPTConfig) -> LlamaConfig:
    """The stock Llama config of a rope + rmsnorm + swiglu model; raises `ConversionError` naming the fields
    otherwise."""
    problems = llama_export_problems(config)
    if problems:
        _refuse_export("llama", problems, config)
    dropped = [f"{n}={getattr(config, n)}" for n in ("embedding_dropout", "hidden_dropout") if getattr(config, n)]
    if dropped:
        logger.info(
            f"{', '.join(dropped)} dropped: Llama has no dropout there. It only matters when training; "
            f"inference outputs are unchanged."
        )
    return LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        head_dim=config.head_dim,
        hidden_act="silu",
        max_position_embeddings=config.max_position_embeddings,
        initializer_range=config.initializer_range,
        rms_norm_eps=config.layer_norm_eps,
        use_cache=config.use_cache,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        tie_word_embeddings=config.tie_word_embeddings,
        rope_parameters=dict(config.rope_parameters),
        attention_bias=config.bias,
        attention_dropout=config.attention_dropout,
        mlp_bias=config.bias,
    )


def nanogpt_args_to_bigmodel(model_args: dict[str, Any]) -> BigModelGPTConfig:
    """Our config for nanoGPT's `model_args` (its `GPTConfig` fields)."""
    unknown = sorted(set(model_args) - set(NANOGPT_ARGS))
    if unknown:
        raise ConversionError(
            f"nanoGPT model_args has fields this converter does not know: {', '.join(unknown)} (expected "
            f"{', '.join(NANOGPT_ARGS)}). A modified nanoGPT architecture cannot be converted faithfully."
        )
    missing = [name for name in NANOGPT_ARGS[:5] if name not in model_args]
    if missing:
        raise ConversionError(f"nanoGPT model_args lacks {', '.join(missing)}.")
    for name in NANOGPT_ARGS[:5]:
        if not isinstance(model_args[name], int) or isinstance(model_args[name], bool):
            raise ConversionError(f"nanoGPT model_args[{name!r}] must be an int, got {model_args[name]!r}.")
    vocab_size, dropout = model_args["vocab_size"], float(model_args.get("dropout", 0.0))
    # nanoGPT's GPT-2 BPE runs separate documents with <|endoftext|> (50256); char-level models have no such token.
    eot = _GPT2_EOT if vocab_size in _GPT2_VOCAB_SIZES else None
    return BigModelGPTConfig(
        vocab_size=vocab_size,
        hidden_size=model_args["n_embd"],
        num_hidden_layers=model_args["n_layer"],
        num_attention_heads=model_args["n_head"],
        num_key_value_heads=model_args["n_head"],
        intermediate_size=4 * model_args["n_embd"],
        max_position_embeddings=model_args["block_size"],
        position_embedding_type="learned",
        norm_type="layernorm",
        mlp_type="gelu",
        hidden_act="gelu",  # nanoGPT's nn.GELU() is the exact erf GELU, not GPT-2's tanh approximation
        bias=bool(model_args.get("bias", True)),
        embedding_dropout=dropout,
        hidden_dropout=dropout,
        attention_dropout=dropout,
        layer_norm_eps=1e-5,
        tie_word_embeddings=True,
        pad_token_id=None,
        bos_token_id=eot,
        eos_token_id=eot,
    )


# ---------------------------------------------------------------------------------------------------------------
# Tensor translation


def _add_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Checkpoints of the bare body (`GPT2Model`, `LlamaModel`, `BigModelGPTModel`) lack the `transformer.` /
    `model.` prefix of the LM head class."""
    if any(k.startswith(prefix) for k in tensors):
        return tensors
    return {(k if k.startswith("lm_head.") else prefix + k): v for k, v in tensors.items()}


_LLAMA_ATTENTION = r"model\.layers\.\d+\.self_attn\."


def _split_qkv(tensors: dict[str, torch.Tensor], config: BigModelGPTConfig) -> dict[str, torch.Tensor]:
    sizes = [config.num_attention_heads * config.head_dim, *[config.num_key_value_heads * config.head_dim] * 2]
    return split_projection(tensors, _LLAMA_ATTENTION, "qkv_proj", _LLAMA_QKV, sizes)


def _fuse_qkv(tensors: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    return fuse_projections(tensors, _LLAMA_ATTENTION, _LLAMA_QKV, "qkv_proj", source)


def _zero_missing_biases(tensors: dict[str, torch.Tensor], config: BigModelGPTConfig) -> dict[str, torch.Tensor]:
    """GPT-2 always has biases: a `bias=False` model is the same function with zero biases."""
    if config.bias:
        return tensors
    logger.info("bias=False: GPT-2 always has biases, so they are written as zeros (same outputs).")
    out = dict(tensors)
    for key, tensor in tensors.items():
        if key.endswith(".weight") and not key.startswith(("model.embed", "lm_head")):
            rows = tensor.shape[0]
            out[key[: -len("weight")] + "bias"] = torch.zeros(rows, dtype=tensor.dtype)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Converters


def _bigmodel_source(src: Path) -> tuple[BigModelGPTConfig, dict[str, torch.Tensor]]:
    raw = read_config_json(src)
    expect_model_type(src, raw, BigModelGPTConfig.model_type)
    architectures = raw.get("architectures") or []
    if any(a not in ("BigModelGPTForCausalLM", "BigModelGPTModel") for a in architectures):
        raise ConversionError(
            f"{src} is a {', '.join(architectures)} checkpoint: only language models (BigModelGPTForCausalLM) can "
            f"be exported to stock GPT-2 / Llama, whose classes have no such head."
        )
    config = load_config(BigModelGPTConfig, src)
    return config, _add_prefix(load_folder_tensors(src), "model.")


def convert_gpt2_to_bigmodel(
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    dtype: str | torch.dtype | None = None,
    tokenizer: PathLike | None = None,
) -> Path:
    """Convert a stock transformers GPT-2 folder (`GPT2LMHeadModel` or `GPT2Model`) to a `bigmodel_gpt` folder.
    Returns `dst`."""
    src, dst = Path(src), Path(dst)
    check_inputs(src, dst, overwrite, tokenizer)
    raw = read_config_json(src)
    expect_model_type(src, raw, "gpt2")
    config = gpt2_config_to_bigmodel(load_config(GPT2Config, src))
    tensors = _add_prefix(load_folder_tensors(src), "transformer.")
    ours = GPT2_KEY_MAP.to_ours(tensors, ignore=_GPT2_BUFFER.fullmatch, source=str(src))
    model = build_model(BigModelGPTForCausalLM, config, ours, resolve_dtype(dtype, tensors), str(src))
    return write_converted(model, dst, overwrite, [(src, True), (tokenizer, False)])


def convert_bigmodel_to_gpt2(
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    dtype: str | torch.dtype | None = None,
    tokenizer: PathLike | None = None,
) -> Path:
    """Export a `bigmodel_gpt` folder at GPT-2 settings to a stock `GPT2LMHeadModel` folder (loads without
    hf_bigmodel or remote code). Returns `dst`."""
    src, dst = Path(src), Path(dst)
    check_inputs(src, dst, overwrite, tokenizer)
    config, tensors = _bigmodel_source(src)
    gpt2_config = bigmodel_to_gpt2_config(config)
    theirs = GPT2_KEY_MAP.to_theirs(_zero_missing_biases(tensors, config), source=str(src))
    model = build_model(GPT2LMHeadModel, gpt2_config, theirs, resolve_dtype(dtype, tensors), str(src))
    return write_converted(model, dst, overwrite, [(src, True), (tokenizer, False)])


def convert_llama_to_bigmodel(
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    dtype: str | torch.dtype | None = None,
    tokenizer: PathLike | None = None,
) -> Path:
    """Convert a stock transformers Llama folder (`LlamaForCausalLM` or `LlamaModel`) to a `bigmodel_gpt` folder.
    Returns `dst`."""
    src, dst = Path(src), Path(dst)
    check_inputs(src, dst, overwrite, tokenizer)
    raw = read_config_json(src)
    expect_model_type(src, raw, "llama")
    config = llama_config_to_bigmodel(load_config(LlamaConfig, src))
    tensors = _add_prefix(load_folder_tensors(src), "model.")
    renamed = LLAMA_KEY_MAP.to_ours(tensors, ignore=_LLAMA_BUFFER.fullmatch, source=str(src))
    ours = _fuse_qkv(renamed, str(src))
    model = build_model(BigModelGPTForCausalLM, config, ours, resolve_dtype(dtype, tensors), str(src))
    return write_converted(model, dst, overwrite, [(src, True), (tokenizer, False)])


def convert_bigmodel_to_llama(
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    dtype: str | torch.dtype | None = None,
    tokenizer: PathLike | None = None,
) -> Path:
    """Export a `bigmodel_gpt` folder with rotary positions, RMSNorm and SwiGLU to a stock `LlamaForCausalLM`
    folder (loads without hf_bigmodel or remote code). Returns `dst`."""
    src, dst = Path(src), Path(dst)
    check_inputs(src, dst, overwrite, tokenizer)
    config, tensors = _bigmodel_source(src)
    llama_config = bigmodel_to_llama_config(config)
    theirs = LLAMA_KEY_MAP.to_theirs(_split_qkv(tensors, config), source=str(src))
    model = build_model(LlamaForCausalLM, llama_config, theirs, resolve_dtype(dtype, tensors), str(src))
    return write_converted(model, dst, overwrite, [(src, True), (tokenizer, False)])


def load_nanogpt_checkpoint(ckpt: PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The (state dict, model_args) of a nanoGPT `ckpt.pt`, read with `torch.load(weights_only=True)` only."""
    ckpt = Path(ckpt)
    if ckpt.is_dir():
        ckpt = ckpt / "ckpt.pt"
    data = torch_load_tensors_only(ckpt)
    if not isinstance(data, dict) or "model" not in data or "model_args" not in data:
        found = f"a dict with keys {sorted(map(str, data))}" if isinstance(data, dict) else type(data).__name__
        raise ConversionError(
            f"{ckpt} is not a nanoGPT checkpoint: expected a dict with 'model' (the state dict) and 'model_args' "
            f"(n_layer, n_head, n_embd, block_size, bias, vocab_size, dropout), as nanoGPT's train.py saves; "
            f"found {found}."
        )
    state_dict, model_args = data["model"], data["model_args"]
    if not isinstance(model_args, dict):
        raise ConversionError(f"{ckpt}: 'model_args' must be a dict, got {type(model_args).__name__}.")
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ConversionError(f"{ckpt}: 'model' must be a state dict of tensors.")
    # torch.compile wraps the module, so train.py with compile=True saves every key under `_orig_mod.`.
    return strip_prefix(state_dict, "_orig_mod."), model_args


def char_tokenizer(chars: str, model_max_length: int | None = None) -> Any:
    """A character-level tokenizer with id i = chars[i], as nanoGPT's `data/shakespeare_char/prepare.py` builds it
    (`chars = sorted(set(text))`). Unknown characters raise, as in nanoGPT."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if len(set(chars)) != len(chars):
        raise ConversionError("The vocabulary characters must be distinct (id i is the i-th character).")
    tok = Tokenizer(models.WordLevel(vocab={c: i for i, c in enumerate(chars)}, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character alone
    tok.decoder = decoders.Fuse()  # join characters back without spaces
    kwargs = {"model_max_length": model_max_length} if model_max_length else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


def convert_nanogpt_to_bigmodel(
    ckpt: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    dtype: str | torch.dtype | None = None,
    tokenizer: PathLike | None = None,
    vocab_chars: str | None = None,
) -> Path:
    """Convert a karpathy/nanoGPT `ckpt.pt` (or the out_dir holding it) to a `bigmodel_gpt` folder. Returns `dst`.

    The checkpoint is read with `torch.load(weights_only=True)`; nanoGPT's `meta.pkl` (a pickle) is never read.
    For a character-level model pass `vocab_chars` (the characters in id order, i.e. `"".join(sorted(set(text)))`
    of the training text) to get a matching tokenizer; or `tokenizer`, a folder whose tokenizer files are copied
    (e.g. a GPT-2 folder for nanoGPT's BPE models).
    """
    ckpt, dst = Path(ckpt), Path(dst)
    ckpt = ckpt / "ckpt.pt" if ckpt.is_dir() else ckpt
    check_inputs(ckpt, dst, overwrite, tokenizer)
    state_dict, model_args = load_nanogpt_checkpoint(ckpt)
    config = nanogpt_args_to_bigmodel(model_args)
    if vocab_chars is not None and len(vocab_chars) != config.vocab_size:
        raise ConversionError(
            f"vocab_chars has {len(vocab_chars)} characters but the checkpoint's vocab_size is {config.vocab_size}: "
            f"give the characters of the training text in id order (nanoGPT: sorted(set(text)))."
        )
    ours = GPT2_KEY_MAP.to_ours(state_dict, transpose=False, ignore=_GPT2_BUFFER.fullmatch, source=str(ckpt))
    model = build_model(BigModelGPTForCausalLM, config, ours, resolve_dtype(dtype, state_dict), str(ckpt))
    if vocab_chars is None:
        return write_converted(model, dst, overwrite, [(tokenizer, False)])
    chars = char_tokenizer(vocab_chars, config.max_position_embeddings)
    return write_converted(model, dst, overwrite, finish=chars.save_pretrained)


__all__ = [
    "GPT2_KEY_MAP",
    "LLAMA_KEY_MAP",
    "bigmodel_to_gpt2_config",
    "bigmodel_to_llama_config",
    "char_tokenizer",
    "choose_export_target",
    "convert_bigmodel_to_gpt2",
    "convert_bigmodel_to_llama",
    "convert_gpt2_to_bigmodel",
    "convert_llama_to_bigmodel",
    "convert_nanogpt_to_bigmodel",
    "gpt2_config_to_bigmodel",
    "gpt2_export_problems",
    "llama_config_to_bigmodel",
    "llama_export_problems",
    "load_nanogpt_checkpoint",
    "nanogpt_args_to_bigmodel",
]


def _default_export(src: Path) -> str:
    return choose_export_target(load_config(BigModelGPTConfig, src))


_OURS = "AutoModelForCausalLM.from_pretrained(DST, trust_remote_code=True) (or after `import hf_bigmodel`)"
_STOCK = "AutoModelForCausalLM.from_pretrained(DST), plain transformers, no remote code"

# The rows this module adds to `hf_bigmodel.convert.ROUTES` and `DEFAULT_TARGETS` (source kind -> function(SRC)
# giving the target when the user does not choose one).
ROUTES = (
    Route("gpt2", "bigmodel_gpt", convert_gpt2_to_bigmodel, _OURS),
    Route("llama", "bigmodel_gpt", convert_llama_to_bigmodel, _OURS),
    Route(NANOGPT, "bigmodel_gpt", convert_nanogpt_to_bigmodel, _OURS),
    Route("bigmodel_gpt", "gpt2", convert_bigmodel_to_gpt2, _STOCK),
    Route("bigmodel_gpt", "llama", convert_bigmodel_to_llama, _STOCK),
)
DEFAULT_TARGETS = {
    "gpt2": lambda src: "bigmodel_gpt",
    "llama": lambda src: "bigmodel_gpt",
    NANOGPT: lambda src: "bigmodel_gpt",
    "bigmodel_gpt": _default_export,
}
