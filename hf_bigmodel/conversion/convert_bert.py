"""Checkpoint conversion for the hf_bigmodel BERT (`bigmodel_bert`).

Routes:
    stock BERT (`BertModel`, `BertForPreTraining`, `BertForMaskedLM`, `BertForSequenceClassification`, ... folder)
                                                -> bigmodel_bert     convert_bert_to_bigmodel
    bigmodel_bert (any head)                    -> stock BERT        convert_bigmodel_to_bert

The head follows from config.json's `architectures` (else from the checkpoint's key prefixes), and each stock head
maps to ours of the same name (`BertForMaskedLM` <-> `BigModelBertForMaskedLM`, ...). Tensors are renamed one to
one, except the attention input projection, which stock BERT keeps as three matrices (`query`, `key`, `value`) and
we keep fused (`qkv_proj`, rows [q | k | v]). Tokenizer files (vocab.txt, tokenizer.json, ...) are copied as they
are, so the WordPiece tokenizer gives identical ids. Stock outputs load with plain `transformers`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForNextSentencePrediction,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)
from transformers.activations import ACT2FN

from hf_bigmodel.models.bert import (
    BigModelBertConfig,
    BigModelBertForMaskedLM,
    BigModelBertForMultipleChoice,
    BigModelBertForNextSentencePrediction,
    BigModelBertForPreTraining,
    BigModelBertForQuestionAnswering,
    BigModelBertForSequenceClassification,
    BigModelBertForTokenClassification,
    BigModelBertModel,
)

from .common import (
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
    read_config_json,
    resolve_dtype,
    split_projection,
    write_converted,
)

PathLike = str | os.PathLike

# Stock class <-> our class, head by head.
HEAD_CLASSES: dict[str, tuple[type, type]] = {
    "BertModel": (BertModel, BigModelBertModel),
    "BertForPreTraining": (BertForPreTraining, BigModelBertForPreTraining),
    "BertForMaskedLM": (BertForMaskedLM, BigModelBertForMaskedLM),
    "BertForNextSentencePrediction": (BertForNextSentencePrediction, BigModelBertForNextSentencePrediction),
    "BertForSequenceClassification": (BertForSequenceClassification, BigModelBertForSequenceClassification),
    "BertForTokenClassification": (BertForTokenClassification, BigModelBertForTokenClassification),
    "BertForQuestionAnswering": (BertForQuestionAnswering, BigModelBertForQuestionAnswering),
    "BertForMultipleChoice": (BertForMultipleChoice, BigModelBertForMultipleChoice),
}
OUR_HEADS = {ours.__name__: stock_name for stock_name, (_, ours) in HEAD_CLASSES.items()}

_QKV = ("query", "key", "value")
BERT_KEY_MAP = KeyMap(
    [
        KeyRule("bert.embeddings.word_embeddings.weight", "bert.embeddings.word_embeddings.weight"),
        KeyRule("bert.embeddings.position_embeddings.weight", "bert.embeddings.position_embeddings.weight"),
        KeyRule("bert.embeddings.token_type_embeddings.weight", "bert.embeddings.token_type_embeddings.weight"),
        KeyRule("bert.embeddings.layer_norm.{p}", "bert.embeddings.LayerNorm.{p}"),
        *[
            KeyRule(
                f"bert.layers.{{i}}.attention.{name}.{{p}}", f"bert.encoder.layer.{{i}}.attention.self.{name}.{{p}}"
            )
            for name in _QKV  # transient names around _fuse_qkv / _split_qkv
        ],
        KeyRule("bert.layers.{i}.attention.o_proj.{p}", "bert.encoder.layer.{i}.attention.output.dense.{p}"),
        KeyRule("bert.layers.{i}.attention_norm.{p}", "bert.encoder.layer.{i}.attention.output.LayerNorm.{p}"),
        KeyRule("bert.layers.{i}.mlp.up_proj.{p}", "bert.encoder.layer.{i}.intermediate.dense.{p}"),
        KeyRule("bert.layers.{i}.mlp.down_proj.{p}", "bert.encoder.layer.{i}.output.dense.{p}"),
        KeyRule("bert.layers.{i}.mlp_norm.{p}", "bert.encoder.layer.{i}.output.LayerNorm.{p}"),
        KeyRule("bert.pooler.dense.{p}", "bert.pooler.dense.{p}"),
        KeyRule("cls.transform.dense.{p}", "cls.predictions.transform.dense.{p}"),
        KeyRule("cls.transform.layer_norm.{p}", "cls.predictions.transform.LayerNorm.{p}"),
        KeyRule("cls.decoder.weight", "cls.predictions.decoder.weight"),
        KeyRule("cls.decoder.bias", "cls.predictions.bias"),
        KeyRule("cls.seq_relationship.{p}", "cls.seq_relationship.{p}"),
        KeyRule("classifier.{p}", "classifier.{p}"),
        KeyRule("qa_outputs.{p}", "qa_outputs.{p}"),
    ]
)

# Index buffers that old BERT checkpoints persisted (not weights): recomputed by the model, never loaded.
_BERT_BUFFER = re.compile(r"bert\.embeddings\.(position_ids|token_type_ids)")
_BODY_PREFIXES = ("embeddings.", "encoder.", "pooler.")
_DECODER_BIAS = "cls.predictions.decoder.bias"
_MLM_BIAS = "cls.predictions.bias"


# ---------------------------------------------------------------------------------------------------------------
# Config translation

_SHARED_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "pad_token_id",
    "classifier_dropout",
    "tie_word_embeddings",
)
_LABEL_FIELDS = ("id2label", "label2id", "problem_type")


def bert_config_to_bigmodel(config: BertConfig) -> BigModelBertConfig:
    """Our config for a stock BERT config; raises `ConversionError` for BERT options we do not implement."""
    if config.is_decoder or config.add_cross_attention:
        raise ConversionError(
            "BERT config has is_decoder=True or add_cross_attention=True (a causal decoder / seq2seq half): "
            "bigmodel_bert is a bidirectional encoder only."
        )
    position_type = getattr(config, "position_embedding_type", "absolute")
    if position_type not in (None, "absolute"):
        raise ConversionError(
            f"BERT config has position_embedding_type={position_type!r}: bigmodel_bert has learned absolute "
            f"positions only, so the outputs would differ."
        )
    if not isinstance(config.hidden_act, str) or config.hidden_act not in ACT2FN:
        raise ConversionError(
            f"BERT config has hidden_act={config.hidden_act!r}, which is not a transformers activation name "
            f"(see transformers.activations.ACT2FN)."
        )
    fields = {name: getattr(config, name) for name in _SHARED_FIELDS}
    labels = {name: getattr(config, name) for name in _LABEL_FIELDS}
    return BigModelBertConfig(**fields, **labels)


def bigmodel_to_bert_config(config: BigModelBertConfig) -> BertConfig:
    """The stock BERT config of ours (every bigmodel_bert config has one)."""
    fields = {name: getattr(config, name) for name in _SHARED_FIELDS}
    labels = {name: getattr(config, name) for name in _LABEL_FIELDS}
    return BertConfig(**fields, **labels)


# ---------------------------------------------------------------------------------------------------------------
# Tensor translation


def _add_body_prefix(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A bare body checkpoint (`BertModel`, `BigModelBertModel`) lacks the `bert.` prefix of the head classes."""
    if any(k.startswith("bert.") for k in tensors):
        return tensors
    return {
        ("bert." + k if k.startswith(_BODY_PREFIXES) or k.startswith("layers.") else k): v for k, v in tensors.items()
    }


def _strip_body_prefix(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("bert.") :]: v for k, v in tensors.items()}


def detect_stock_head(raw: dict[str, Any], tensors: dict[str, torch.Tensor], src: Path) -> str:
    """The stock class name of a BERT folder: from config.json's `architectures`, else from its key prefixes."""
    for name in raw.get("architectures") or []:
        if name in HEAD_CLASSES:
            return name
        if name == "BertLMHeadModel":
            raise ConversionError(f"{src} is a BertLMHeadModel (causal decoder): bigmodel_bert is an encoder only.")
    if raw.get("architectures"):
        raise ConversionError(
            f"{src} is a {', '.join(raw['architectures'])} checkpoint; convertible BERT heads: {', '.join(HEAD_CLASSES)}."
        )
    keys = set(tensors)
    has = {prefix: any(k.startswith(prefix) for k in keys) for prefix in ("cls.predictions.", "cls.seq_relationship.")}
    if not any(k.startswith("bert.") for k in keys):
        return "BertModel"
    if has["cls.predictions."]:
        return "BertForPreTraining" if has["cls.seq_relationship."] else "BertForMaskedLM"
    if has["cls.seq_relationship."]:
        return "BertForNextSentencePrediction"
    if any(k.startswith("qa_outputs.") for k in keys):
        return "BertForQuestionAnswering"
    raise ConversionError(
        f"{src}/config.json has no `architectures` and the classifier head is ambiguous (sequence, token or "
        f'multiple-choice classification): add e.g. "architectures": ["BertForSequenceClassification"] to it.'
    )


_ATTENTION = r"bert\.layers\.\d+\.attention\."


def _fuse_qkv(tensors: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    return fuse_projections(tensors, _ATTENTION, _QKV, "qkv_proj", source)


def _split_qkv(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return split_projection(tensors, _ATTENTION, "qkv_proj", _QKV)


def _stock_mlm_bias_to_ours(tensors: dict[str, torch.Tensor], tied: bool) -> dict[str, torch.Tensor]:
    """Stock BERT keeps the MLM output bias twice: `cls.predictions.bias` and the decoder's own bias. With tied
    embeddings the decoder bias is tied to (and saved as) `cls.predictions.bias`; untied, the decoder's own bias
    is the one the forward pass adds. Ours is the decoder's bias alone: keep the one stock uses."""
    out = dict(tensors)
    decoder_bias, mlm_bias = out.pop(_DECODER_BIAS, None), out.pop(_MLM_BIAS, None)
    used = (
        (mlm_bias if mlm_bias is not None else decoder_bias)
        if tied
        else (decoder_bias if decoder_bias is not None else mlm_bias)
    )
    if used is not None:
        out[_MLM_BIAS] = used
    return out


def _our_mlm_bias_to_stock(tensors: dict[str, torch.Tensor], tied: bool) -> dict[str, torch.Tensor]:
    if tied or _MLM_BIAS not in tensors:
        return tensors
    return {**tensors, _DECODER_BIAS: tensors[_MLM_BIAS].clone()}  # untied: stock has (and uses) its own copy


# ---------------------------------------------------------------------------------------------------------------
# Converters


# Our classes with a pooler: those of stock BERT built with its default add_pooling_layer=True.
_WITH_POOLER = (
    BigModelBertModel,
    BigModelBertForPreTraining,
    BigModelBertForNextSentencePrediction,
    BigModelBertForSequenceClassification,
    BigModelBertForMultipleChoice,
)


def _check_has_pooler(tensors: dict[str, torch.Tensor], model_class: type, src: Path) -> None:
    if model_class in _WITH_POOLER and not any(k.startswith("bert.pooler.") for k in tensors):
        raise ConversionError(
            f"{src} has no pooler weights (saved with add_pooling_layer=False), but {model_class.__name__} needs "
            f"them. Convert a checkpoint that has `pooler.dense`, or one of a head without a pooler (masked LM, "
            f"token classification, question answering)."
        )


def convert_bert_to_bigmodel(
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    dtype: str | torch.dtype | None = None,
    tokenizer: PathLike | None = None,
) -> Path:
    """Convert a stock transformers BERT folder (`BertModel` or any `BertFor*` head but the causal `BertLMHeadModel`)
    to a `bigmodel_bert` folder with the same head and tokenizer files. Returns `dst`."""
    src, dst = Path(src), Path(dst)
    check_inputs(src, dst, overwrite, tokenizer)
    raw = read_config_json(src)
    expect_model_type(src, raw, "bert")
    config = bert_config_to_bigmodel(load_config(BertConfig, src))
    tensors = load_folder_tensors(src)
    head = detect_stock_head(raw, _add_body_prefix(tensors), src)
    our_class = HEAD_CLASSES[head][1]
    tensors = _stock_mlm_bias_to_ours(_add_body_prefix(tensors), config.tie_word_embeddings)
    renamed = BERT_KEY_MAP.to_ours(tensors, ignore=_BERT_BUFFER.fullmatch, source=str(src))
    ours = _fuse_qkv(renamed, str(src))
    _check_has_pooler(ours, our_class, src)
    if our_class is BigModelBertModel:
        ours = _strip_body_prefix(ours)
    model = build_model(our_class, config, ours, resolve_dtype(dtype, tensors), str(src))
    return write_converted(model, dst, overwrite, [(src, False), (tokenizer, False)])


def convert_bigmodel_to_bert(
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    dtype: str | torch.dtype | None = None,
    tokenizer: PathLike | None = None,
) -> Path:
    """Export a `bigmodel_bert` folder to the stock transformers BERT class of the same head (`BertModel`,
    `BertForPreTraining`, `BertForMaskedLM`, ...), which loads without hf_bigmodel or remote code. Returns `dst`."""
    src, dst = Path(src), Path(dst)
    check_inputs(src, dst, overwrite, tokenizer)
    raw = read_config_json(src)
    expect_model_type(src, raw, BigModelBertConfig.model_type)
    architectures = raw.get("architectures") or ["BigModelBertModel"]
    if len(architectures) != 1 or architectures[0] not in OUR_HEADS:
        raise ConversionError(f"{src} has architectures={architectures}; expected one of {', '.join(OUR_HEADS)}.")
    stock_class = HEAD_CLASSES[OUR_HEADS[architectures[0]]][0]
    config = load_config(BigModelBertConfig, src)
    tensors = _add_body_prefix(load_folder_tensors(src))
    stock = BERT_KEY_MAP.to_theirs(_split_qkv(tensors), source=str(src))
    stock = _our_mlm_bias_to_stock(stock, config.tie_word_embeddings)
    if stock_class is BertModel:
        stock = _strip_body_prefix(stock)
    model = build_model(stock_class, bigmodel_to_bert_config(config), stock, resolve_dtype(dtype, tensors), str(src))
    return write_converted(model, dst, overwrite, [(src, False), (tokenizer, False)])


__all__ = [
    "BERT_KEY_MAP",
    "HEAD_CLASSES",
    "bert_config_to_bigmodel",
    "bigmodel_to_bert_config",
    "convert_bert_to_bigmodel",
    "convert_bigmodel_to_bert",
    "detect_stock_head",
]


_OURS = "AUTO.from_pretrained(DST, trust_remote_code=True) (or after `import hf_bigmodel`)"
_STOCK = "AUTO.from_pretrained(DST), plain transformers, no remote code"

# The rows this module adds to `hf_bigmodel.convert.ROUTES` and `DEFAULT_TARGETS`; AUTO stands for the Auto class
# of the converted head.
ROUTES = (
    Route("bert", "bigmodel_bert", convert_bert_to_bigmodel, _OURS),
    Route("bigmodel_bert", "bert", convert_bigmodel_to_bert, _STOCK),
)
DEFAULT_TARGETS = {"bert": lambda src: "bigmodel_bert", "bigmodel_bert": lambda src: "bert"}
