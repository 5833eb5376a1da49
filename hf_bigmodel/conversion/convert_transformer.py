"""Checkpoint conversion for the hf_bigmodel encoder-decoder Transformer (`bigmodel_transformer`).

Routes:
    stock Marian (`MarianMTModel` folder)            -> bigmodel_transformer   convert_marian_to_bigmodel
    bigmodel_transformer at Marian settings          -> stock Marian           convert_bigmodel_to_marian

Marian settings: sinusoidal positions in the "split" layout (all sines, then all cosines), post-norm, the same
head count and feed-forward width in encoder and decoder, one vocabulary. Marian's `scale_embedding`,
`share_encoder_decoder_embeddings`, `tie_word_embeddings` and `final_logits_bias` all have counterparts, so those
convert either way. The tensors are renamed one to one, except the attention input projections: Marian keeps
q/k/v as three matrices, ours are fused (`qkv_proj` in self-attention, `kv_proj` in cross-attention).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from transformers import MarianConfig, MarianMTModel
from transformers.activations import ACT2FN

from hf_bigmodel.models.transformer import BigModelTransformerConfig, BigModelTransformerForConditionalGeneration
from hf_bigmodel.models.transformer.modeling_transformer import sinusoidal_table

from .common import (
    ConversionError,
    Route,
    check_inputs,
    expect_model_type,
    expected_shapes,
    fuse_projections,
    load_config,
    load_folder_tensors,
    logger,
    quiet_progress,
    read_config_json,
    resolve_dtype,
    split_projection,
    write_converted,
)

PathLike = str | os.PathLike

# Marian's SentencePiece models (MarianTokenizer); the other tokenizer files are in common.TOKENIZER_FILES.
MARIAN_TOKENIZER_FILES = ("source.spm", "target.spm")
# Recomputed by both models from the config, never loaded (old Marian checkpoints saved them).
_POSITION_TABLES = re.compile(r"model\.(encoder|decoder)\.embed_positions\.weight")
# Our fused projections: q/k/v in self-attention, k/v in cross-attention (whose queries come from the decoder alone).
_SELF_ATTENTION = r"model\.(?:encoder|decoder)\.layers\.\d+\.self_attn\."
_CROSS_ATTENTION = r"model\.decoder\.layers\.\d+\.encoder_attn\."
_QKV = ("q_proj", "k_proj", "v_proj")
_KV = ("k_proj", "v_proj")


# ---------------------------------------------------------------------------------------------------------------
# Config translation


def marian_config_to_bigmodel(config: MarianConfig, has_logits_bias: bool) -> BigModelTransformerConfig:
    """Our config for a stock Marian config; raises `ConversionError` for Marian options we do not implement."""
    problems = []
    if config.encoder_attention_heads != config.decoder_attention_heads:
        problems.append(
            f"encoder_attention_heads={config.encoder_attention_heads} != decoder_attention_heads="
            f"{config.decoder_attention_heads} (bigmodel_transformer has one num_attention_heads)"
        )
    if config.encoder_ffn_dim != config.decoder_ffn_dim:
        problems.append(
            f"encoder_ffn_dim={config.encoder_ffn_dim} != decoder_ffn_dim={config.decoder_ffn_dim} "
            f"(bigmodel_transformer has one intermediate_size)"
        )
    if (config.decoder_vocab_size or config.vocab_size) != config.vocab_size:
        problems.append(
            f"decoder_vocab_size={config.decoder_vocab_size} != vocab_size={config.vocab_size} (bigmodel_transformer "
            f"has one vocabulary for source and target)"
        )
    if config.activation_function not in ACT2FN:
        problems.append(f"activation_function={config.activation_function!r} is not a transformers activation")
    if problems:
        raise ConversionError(f"Cannot convert this Marian model: {'; '.join(problems)}.")
    if config.encoder_layerdrop or config.decoder_layerdrop:
        logger.info("Marian layerdrop dropped: it only matters when training; outputs are unchanged.")
    return BigModelTransformerConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers,
        num_attention_heads=config.encoder_attention_heads,
        intermediate_size=config.encoder_ffn_dim,
        max_position_embeddings=config.max_position_embeddings,
        position_embedding_type="sinusoidal",
        sinusoidal_layout="split",
        pre_norm=False,
        scale_embedding=config.scale_embedding,
        tie_word_embeddings=config.tie_word_embeddings,
        share_encoder_decoder_embeddings=config.share_encoder_decoder_embeddings,
        lm_head_bias=has_logits_bias,
        activation_function=config.activation_function,
        dropout=float(config.dropout),
        attention_dropout=float(config.attention_dropout),
        activation_dropout=float(config.activation_dropout),
        label_smoothing=0.0,  # MarianMTModel's loss is plain cross-entropy: fine-tuning behaves the same
        initializer_range=config.init_std,
        use_cache=config.use_cache,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
    )


def marian_export_problems(config: BigModelTransformerConfig) -> list[str]:
    """Why `config` cannot be written as a stock Marian model (empty when it can)."""
    problems = []
    if config.position_embedding_type != "sinusoidal":
        problems.append(
            f"position_embedding_type={config.position_embedding_type!r} (Marian has fixed sinusoidal positions)"
        )
    elif config.sinusoidal_layout != "split":
        problems.append(
            f"sinusoidal_layout={config.sinusoidal_layout!r} (Marian's table is 'split': all sines, then all cosines)"
        )
    if config.pre_norm:
        problems.append("pre_norm=True (Marian is post-norm and has no final LayerNorm)")
    if config.activation_function not in ACT2FN:
        problems.append(f"activation_function={config.activation_function!r} is not a transformers activation")
    return problems


def bigmodel_to_marian_config(config: BigModelTransformerConfig) -> MarianConfig:
    """The stock Marian config of a model at Marian settings; raises `ConversionError` naming the fields otherwise."""
    problems = marian_export_problems(config)
    if problems:
        raise ConversionError(
            f"Cannot export to stock Marian: {'; '.join(problems)}. The model still loads with "
            f"trust_remote_code=True (or with hf_bigmodel installed)."
        )
    if config.label_smoothing:
        logger.info(
            f"label_smoothing={config.label_smoothing} dropped: MarianMTModel's loss is plain cross-entropy. "
            f"Outputs are unchanged."
        )
    return MarianConfig(
        vocab_size=config.vocab_size,
        decoder_vocab_size=config.vocab_size,
        max_position_embeddings=config.max_position_embeddings,
        d_model=config.hidden_size,
        encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers,
        encoder_attention_heads=config.num_attention_heads,
        decoder_attention_heads=config.num_attention_heads,
        encoder_ffn_dim=config.intermediate_size,
        decoder_ffn_dim=config.intermediate_size,
        activation_function=config.activation_function,
        dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        activation_dropout=config.activation_dropout,
        init_std=config.initializer_range,
        scale_embedding=config.scale_embedding,
        share_encoder_decoder_embeddings=config.share_encoder_decoder_embeddings,
        tie_word_embeddings=config.tie_word_embeddings,
        use_cache=config.use_cache,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        forced_eos_token_id=None,  # ours does not force one; generation_config.json carries generation settings
    )


# ---------------------------------------------------------------------------------------------------------------
# Tensor translation


def _fuse_projections(tensors: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Marian's q/k/v_proj -> our qkv_proj (self-attention) and q_proj + kv_proj (cross-attention)."""
    tensors = fuse_projections(tensors, _SELF_ATTENTION, _QKV, "qkv_proj", source)
    return fuse_projections(tensors, _CROSS_ATTENTION, _KV, "kv_proj", source)


def _split_projections(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our fused projections -> Marian's q/k/v_proj (the inverse of `_fuse_projections`)."""
    tensors = split_projection(tensors, _SELF_ATTENTION, "qkv_proj", _QKV)
    return split_projection(tensors, _CROSS_ATTENTION, "kv_proj", _KV)


def _build(model_class: type, config: Any, tensors: dict[str, torch.Tensor], dtype: torch.dtype, source: str) -> Any:
    """`model_class` holding exactly `tensors`: tied copies are checked and dropped (these models decide their
    tying per instance, from the config), every other parameter must be present with the right shape."""
    with torch.device("meta"):
        tied = model_class(config).all_tied_weights_keys
    tensors = dict(tensors)
    for target, origin in tied.items():
        if target in tensors:
            if origin in tensors and not torch.equal(tensors[target], tensors[origin]):
                raise ConversionError(
                    f"{source}: `{target}` should be tied to `{origin}` by its config but the two differ. Set "
                    f"tie_word_embeddings / share_encoder_decoder_embeddings to False in its config.json if they "
                    f"are separate matrices."
                )
            if origin not in tensors:
                tensors[origin] = tensors[target]
            del tensors[target]
    expected = expected_shapes(model_class, config)
    if getattr(config, "position_embedding_type", "sinusoidal") == "sinusoidal":
        expected = {k: v for k, v in expected.items() if not _POSITION_TABLES.fullmatch(k)}
    missing = sorted(set(expected) - set(tensors) - set(tied))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k} {tuple(tensors[k].shape)} (expected {tuple(expected[k])})"
        for k in expected
        if k in tensors and tensors[k].shape != expected[k]
    ]
    if missing or unexpected or wrong:
        details = "; ".join(
            f"{what} {', '.join(keys[:8])}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shapes", wrong))
            if keys
        )
        raise ConversionError(
            f"{source} does not match its config ({model_class.__name__}): {details}. Check that config.json "
            f"belongs to these weights."
        )
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()}
    with quiet_progress():
        model, info = model_class.from_pretrained(
            None, config=config, state_dict=tensors, dtype=dtype, output_loading_info=True
        )
    info["missing_keys"] = [k for k in info.get("missing_keys", []) if not _POSITION_TABLES.fullmatch(k)]
    leftovers = {k: v for k, v in info.items() if v}
    if leftovers:  # the checks above should have caught this; never write a half-initialised model
        raise ConversionError(f"Loading the converted weights into {model_class.__name__} failed: {leftovers}.")
    return model.eval()


def _learned_position_tables(
    tables: dict[str, torch.Tensor], config: BigModelTransformerConfig, source: str
) -> dict[str, torch.Tensor]:
    """The checkpoint's position tables, to keep as learned positions, when one of them is not the sinusoidal
    formula (a fine-tuned or edited table: stock Marian loads it, so dropping it would change every logit); empty
    when every saved table is the formula, or none is saved. A table missing beside a kept one gets the formula."""
    formula = sinusoidal_table(config.max_position_embeddings, config.hidden_size, "split")
    differs = [
        name
        for name, table in tables.items()
        if table.shape != formula.shape
        or not torch.allclose(table.float(), formula, rtol=0.0, atol=1e-3 if table.dtype != torch.float32 else 1e-5)
    ]
    if not differs:
        return {}
    logger.warning(
        f"{source}: {', '.join(sorted(differs))} is not the sinusoidal formula; the converted model keeps the "
        f"checkpoint's tables as learned positions (position_embedding_type='learned'), so its outputs match Marian's."
    )
    kept = dict(tables)
    for side in ("encoder", "decoder"):
        kept.setdefault(f"model.{side}.embed_positions.weight", formula.to(next(iter(tables.values())).dtype))
    return kept


# ---------------------------------------------------------------------------------------------------------------
# Converters


def convert_marian_to_bigmodel(
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    dtype: str | torch.dtype | None = None,
    tokenizer: PathLike | None = None,
) -> Path:
    """Convert a stock transformers Marian folder (`MarianMTModel`) to a `bigmodel_transformer` folder; tokenizer
    and generation files are copied. Returns `dst`."""
    src, dst = Path(src), Path(dst)
    check_inputs(src, dst, overwrite, tokenizer)
    expect_model_type(src, read_config_json(src), "marian")
    marian_config = load_config(MarianConfig, src)
    tensors = load_folder_tensors(src)
    tables = {k: tensors.pop(k) for k in list(tensors) if _POSITION_TABLES.fullmatch(k)}
    bias = tensors.pop("final_logits_bias", None)
    has_bias = bias is not None and bool(bias.any())
    if has_bias:
        tensors["lm_head.bias"] = bias.reshape(-1)
    config = marian_config_to_bigmodel(marian_config, has_bias)
    learned = _learned_position_tables(tables, config, str(src))
    if learned:
        config.position_embedding_type = "learned"
        tensors.update(learned)
    if config.share_encoder_decoder_embeddings and not config.tie_word_embeddings:
        # transformers ties Marian's embeddings only when tie_word_embeddings is set: otherwise its encoder and
        # decoder embeddings are separate matrices (and `model.shared` is unused) despite the sharing flag.
        names = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "model.shared.weight")
        present = [tensors[n] for n in names if n in tensors]
        if not all(torch.equal(present[0], t) for t in present[1:]):
            logger.info(
                "Marian's share_encoder_decoder_embeddings=True has no effect without tie_word_embeddings: its "
                "encoder and decoder embeddings differ, so they are converted as separate matrices."
            )
            config.share_encoder_decoder_embeddings = False
            tensors.pop("model.shared.weight", None)
    ours = _fuse_projections(tensors, str(src))
    model = _build(BigModelTransformerForConditionalGeneration, config, ours, resolve_dtype(dtype, tensors), str(src))
    return write_converted(model, dst, overwrite, [(src, True), (tokenizer, False)], extra=MARIAN_TOKENIZER_FILES)


def convert_bigmodel_to_marian(
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    dtype: str | torch.dtype | None = None,
    tokenizer: PathLike | None = None,
) -> Path:
    """Export a `bigmodel_transformer` folder at Marian settings to a stock `MarianMTModel` folder (loads with plain
    transformers, no remote code). Returns `dst`."""
    src, dst = Path(src), Path(dst)
    check_inputs(src, dst, overwrite, tokenizer)
    raw = read_config_json(src)
    expect_model_type(src, raw, BigModelTransformerConfig.model_type)
    architectures = raw.get("architectures") or []
    if any(a != "BigModelTransformerForConditionalGeneration" for a in architectures):
        raise ConversionError(
            f"{src} is a {', '.join(architectures)} checkpoint: only BigModelTransformerForConditionalGeneration "
            f"(with its output projection) can be exported to MarianMTModel."
        )
    config = load_config(BigModelTransformerConfig, src)
    marian_config = bigmodel_to_marian_config(config)
    tensors = load_folder_tensors(src)
    # Every embedding name Marian may expect; `_build` drops the ones its config ties.
    if "model.shared.weight" in tensors:
        for name in ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"):
            tensors.setdefault(name, tensors["model.shared.weight"])
    if config.tie_word_embeddings:
        tensors.setdefault("lm_head.weight", tensors["model.decoder.embed_tokens.weight"])
    if config.share_encoder_decoder_embeddings:
        tensors.setdefault("model.shared.weight", tensors["model.encoder.embed_tokens.weight"])
    bias = tensors.pop("lm_head.bias", None)
    tensors["final_logits_bias"] = (
        bias.reshape(1, -1) if bias is not None else torch.zeros(1, config.vocab_size, dtype=torch.float32)
    )
    theirs = _split_projections(tensors)
    model = _build(MarianMTModel, marian_config, theirs, resolve_dtype(dtype, tensors), str(src))
    return write_converted(model, dst, overwrite, [(src, True), (tokenizer, False)], extra=MARIAN_TOKENIZER_FILES)


__all__ = [
    "bigmodel_to_marian_config",
    "convert_bigmodel_to_marian",
    "convert_marian_to_bigmodel",
    "marian_config_to_bigmodel",
    "marian_export_problems",
]


_OURS = "AutoModelForSeq2SeqLM.from_pretrained(DST, trust_remote_code=True) (or after `import hf_bigmodel`)"
_STOCK = "AutoModelForSeq2SeqLM.from_pretrained(DST), plain transformers, no remote code"

# The rows this module adds to `hf_bigmodel.convert.ROUTES` and `DEFAULT_TARGETS`.
ROUTES = (
    Route("marian", "bigmodel_transformer", convert_marian_to_bigmodel, _OURS),
    Route("bigmodel_transformer", "marian", convert_bigmodel_to_marian, _STOCK),
)
DEFAULT_TARGETS = {"marian": lambda src: "bigmodel_transformer", "bigmodel_transformer": lambda src: "marian"}
