"""Checkpoint conversion for the hf_bigmodel ResNet (`bigmodel_resnet`).

Routes:
    stock ResNet (`ResNetForImageClassification` / `ResNetModel` folder, microsoft/resnet-* layout)
                                                -> bigmodel_resnet      convert_resnet_to_bigmodel
    bigmodel_resnet with the ImageNet stem      -> stock ResNet         convert_bigmodel_to_resnet

Every route is a key rename (the module names differ, the tensors are the same, BatchNorm running statistics
included) and a config translation that refuses, naming the field, whatever the target cannot express. The image
processor config (`preprocessor_config.json`) is translated too: transformers' ConvNeXT processor (what
microsoft/resnet-* ship: resize to size / crop_pct, center crop to size) <-> `BigModelResNetImageProcessor`
(resize the shortest edge, center crop), which give identical pixels.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import ResNetConfig, ResNetForImageClassification, ResNetModel

from hf_bigmodel.models.resnet import (
    BigModelResNetConfig,
    BigModelResNetForImageClassification,
    BigModelResNetImageProcessor,
    BigModelResNetModel,
)

from .common import (
    ConversionError,
    KeyMap,
    KeyRule,
    Route,
    build_model,
    check_destination,
    expect_model_type,
    load_config,
    load_folder_tensors,
    logger,
    read_config_json,
    resolve_dtype,
    write_converted,
)

PathLike = str | os.PathLike
PREPROCESSOR_FILE = "preprocessor_config.json"
_NORM_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_CONVNEXT_PROCESSORS = (
    "ConvNextImageProcessor",
    "ConvNextImageProcessorPil",
    "ConvNextImageProcessorFast",
    "ConvNextFeatureExtractor",
)


def resnet_key_map(num_stages: int) -> KeyMap:
    """Our parameter names <-> transformers' ResNetForImageClassification names, for `num_stages` stages. `{i}` is
    the block index inside a stage."""

    def conv_norm(ours: tuple[str, str], theirs: tuple[str, str]) -> list[KeyRule]:
        """(conv, norm) module names on each side -> the conv weight and the five BatchNorm tensors."""
        return [
            KeyRule(f"{ours[0]}.weight", f"{theirs[0]}.weight"),
            *[KeyRule(f"{ours[1]}.{name}", f"{theirs[1]}.{name}") for name in _NORM_TENSORS],
        ]

    rules = conv_norm(
        ("resnet.embedder.conv", "resnet.embedder.norm"),
        ("resnet.embedder.embedder.convolution", "resnet.embedder.embedder.normalization"),
    )
    for stage in range(num_stages):
        ours, theirs = f"resnet.stages.{stage}.layers.{{i}}", f"resnet.encoder.stages.{stage}.layers.{{i}}"
        for k in range(3):
            rules += conv_norm(
                (f"{ours}.conv{k + 1}", f"{ours}.norm{k + 1}"),
                (f"{theirs}.layer.{k}.convolution", f"{theirs}.layer.{k}.normalization"),
            )
        rules += conv_norm(
            (f"{ours}.shortcut.conv", f"{ours}.shortcut.norm"),
            (f"{theirs}.shortcut.convolution", f"{theirs}.shortcut.normalization"),
        )
    rules += [KeyRule("classifier.{p}", "classifier.1.{p}")]
    return KeyMap(rules)


# ---------------------------------------------------------------------------------------------------------------
# Config translation


def resnet_config_to_bigmodel(config: ResNetConfig) -> BigModelResNetConfig:
    """Our config for a stock ResNet config; raises `ConversionError` for options we do not implement."""
    if config.hidden_act != "relu":
        raise ConversionError(
            f"ResNet config has hidden_act={config.hidden_act!r}: transformers' ResNet applies it only in the stem and "
            f"after each residual sum and keeps ReLU inside the blocks, which bigmodel_resnet (one activation "
            f"everywhere) cannot reproduce. Only hidden_act='relu' checkpoints convert exactly."
        )
    return BigModelResNetConfig(
        num_channels=config.num_channels,
        embedding_size=config.embedding_size,
        hidden_sizes=list(config.hidden_sizes),
        depths=list(config.depths),
        layer_type=config.layer_type,
        stem_type="imagenet",
        hidden_act="relu",
        downsample_in_first_stage=config.downsample_in_first_stage,
        downsample_in_bottleneck=config.downsample_in_bottleneck,
        id2label=dict(config.id2label),
        label2id=dict(config.label2id),
        problem_type=config.problem_type,
    )


def bigmodel_to_resnet_config(config: BigModelResNetConfig) -> ResNetConfig:
    """The stock ResNet config of an ImageNet-stem ReLU model; raises `ConversionError` naming the fields
    otherwise."""
    problems = []
    if config.stem_type != "imagenet":
        problems.append(
            f"stem_type={config.stem_type!r} (transformers' ResNet always has the 7x7 stride-2 stem and max pool)"
        )
    if config.hidden_act != "relu":
        problems.append(
            f"hidden_act={config.hidden_act!r} (transformers' ResNet keeps ReLU inside its blocks whatever "
            f"hidden_act says)"
        )
    if not config.use_residual_connection:
        problems.append(
            "use_residual_connection=False (a plain network without shortcuts; transformers' ResNet always adds "
            "each block's shortcut)"
        )
    if config.num_labels == 0:
        problems.append("num_labels=0 (transformers' ResNetForImageClassification needs a classifier)")
    if problems:
        raise ConversionError(
            f"Cannot export to stock transformers ResNet: {'; '.join(problems)}. The model still loads with "
            f"trust_remote_code=True (or with hf_bigmodel installed)."
        )
    if config.label_smoothing:
        logger.info(f"label_smoothing={config.label_smoothing} dropped: it only affects the training loss.")
    return ResNetConfig(
        num_channels=config.num_channels,
        embedding_size=config.embedding_size,
        hidden_sizes=list(config.hidden_sizes),
        depths=list(config.depths),
        layer_type=config.layer_type,
        hidden_act="relu",
        downsample_in_first_stage=config.downsample_in_first_stage,
        downsample_in_bottleneck=config.downsample_in_bottleneck,
        id2label=dict(config.id2label),
        label2id=dict(config.label2id),
        problem_type=config.problem_type,
    )


def _size_value(size: Any, key: str) -> int | None:
    if isinstance(size, int):
        return size
    if isinstance(size, dict):
        return size.get(key)
    return None


def stock_processor_to_bigmodel(processor: dict[str, Any], num_channels: int) -> dict[str, Any] | None:
    """`BigModelResNetImageProcessor` settings equal to a ConvNeXT processor config (what microsoft/resnet-* ship),
    or None for another processor type."""
    kind = processor.get("image_processor_type") or processor.get("feature_extractor_type")
    if kind not in _CONVNEXT_PROCESSORS:
        return None
    shortest = _size_value(processor.get("size", 384), "shortest_edge")
    if shortest is None:
        return None
    crop_pct = processor.get("crop_pct") or 224 / 256
    ours: dict[str, Any] = {"num_channels": num_channels}
    if shortest < 384:  # ConvNeXT resizes the shortest edge to int(size / crop_pct), then center-crops `size`
        ours.update(
            size={"shortest_edge": int(shortest / crop_pct)},
            crop_size={"height": shortest, "width": shortest},
            do_center_crop=True,
        )
    else:  # and warps to size x size without cropping at 384 and above
        ours.update(size={"height": shortest, "width": shortest}, do_center_crop=False)
    for name in ("do_resize", "resample", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std"):
        if processor.get(name) is not None:
            ours[name] = processor[name]
    return ours


def bigmodel_processor_to_stock(processor: BigModelResNetImageProcessor) -> tuple[dict[str, Any] | None, str]:
    """(ConvNeXT processor config giving the same pixels, or None, and the reason when None)."""
    if processor.num_channels != 3:
        return None, f"num_channels={processor.num_channels} (transformers' processors always convert to RGB)"
    size, crop = processor.size, processor.crop_size
    stock = {
        "image_processor_type": "ConvNextImageProcessor",
        "do_resize": processor.do_resize,
        "resample": int(processor.resample),
        "do_rescale": processor.do_rescale,
        "rescale_factor": processor.rescale_factor,
        "do_normalize": processor.do_normalize,
        "image_mean": list(processor.image_mean),
        "image_std": list(processor.image_std),
    }
    if processor.do_center_crop and size.shortest_edge and crop.height == crop.width and crop.height < 384:
        crop_pct = crop.height / size.shortest_edge
        if int(crop.height / crop_pct) != size.shortest_edge:
            return None, f"size {size.shortest_edge} / crop {crop.height} is not representable as a crop_pct"
        return {**stock, "size": {"shortest_edge": crop.height}, "crop_pct": crop_pct}, ""
    if not processor.do_center_crop and size.height and size.height == size.width and size.height >= 384:
        return {**stock, "size": {"shortest_edge": size.height}, "crop_pct": 224 / 256}, ""
    return None, "its resize/crop settings have no ConvNeXT equivalent"


# ---------------------------------------------------------------------------------------------------------------
# Converters


def _check_inputs(src: Path, dst: Path, overwrite: bool, tokenizer: PathLike | None) -> None:
    check_destination(src, dst, overwrite)
    if tokenizer is not None:
        raise ConversionError("--tokenizer does not apply to image models: ResNet folders carry an image processor.")


def _read_processor(src: Path) -> dict[str, Any] | None:
    path = src / PREPROCESSOR_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConversionError(f"{path} is not valid JSON ({err}).") from err


def _with_prefix(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """(tensors with the `resnet.` prefix of the classification class, whether the checkpoint had a classifier).
    Checkpoints of the bare backbone (ResNetModel / BigModelResNetModel) lack the prefix."""
    has_head = any(k.startswith("classifier.") for k in tensors)
    if any(k.startswith("resnet.") for k in tensors):
        return tensors, has_head
    return {(k if k.startswith("classifier.") else "resnet." + k): v for k, v in tensors.items()}, has_head


def _without_prefix(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("resnet.") :]: v for k, v in tensors.items() if k.startswith("resnet.")}


def convert_resnet_to_bigmodel(
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    dtype: str | torch.dtype | None = None,
    tokenizer: PathLike | None = None,
) -> Path:
    """Convert a stock transformers ResNet folder (`ResNetForImageClassification` or `ResNetModel`) to a
    `bigmodel_resnet` folder, with its image processor config translated. Returns `dst`."""
    src, dst = Path(src), Path(dst)
    _check_inputs(src, dst, overwrite, tokenizer)
    expect_model_type(src, read_config_json(src), "resnet")
    config = resnet_config_to_bigmodel(load_config(ResNetConfig, src))
    tensors, has_head = _with_prefix(load_folder_tensors(src))
    ours = resnet_key_map(config.num_stages).to_ours(tensors, source=str(src))
    model_class = BigModelResNetForImageClassification
    if not has_head:
        model_class, ours = BigModelResNetModel, _without_prefix(ours)
    model = build_model(model_class, config, ours, resolve_dtype(dtype, tensors), str(src))
    stock_processor = _read_processor(src)

    def write_processor(folder: Path) -> None:
        if stock_processor is None:
            return
        settings = stock_processor_to_bigmodel(stock_processor, config.num_channels)
        if settings is None:
            kind = stock_processor.get("image_processor_type") or stock_processor.get("feature_extractor_type")
            logger.info(f"{PREPROCESSOR_FILE} ({kind}) has no BigModelResNetImageProcessor equivalent: copied as is.")
            shutil.copyfile(src / PREPROCESSOR_FILE, folder / PREPROCESSOR_FILE)
        else:
            BigModelResNetImageProcessor(**settings).save_pretrained(folder)

    return write_converted(model, dst, overwrite, finish=write_processor)


def convert_bigmodel_to_resnet(
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    dtype: str | torch.dtype | None = None,
    tokenizer: PathLike | None = None,
) -> Path:
    """Export a `bigmodel_resnet` folder with the ImageNet stem to a stock `ResNetForImageClassification` (or
    `ResNetModel`) folder, which loads with plain transformers. Returns `dst`."""
    src, dst = Path(src), Path(dst)
    _check_inputs(src, dst, overwrite, tokenizer)
    raw = read_config_json(src)
    expect_model_type(src, raw, BigModelResNetConfig.model_type)
    config = load_config(BigModelResNetConfig, src)
    stock_config = bigmodel_to_resnet_config(config)
    tensors, has_head = _with_prefix(load_folder_tensors(src))
    theirs = resnet_key_map(config.num_stages).to_theirs(tensors, source=str(src))
    model_class = ResNetForImageClassification
    if not has_head:
        model_class, theirs = ResNetModel, _without_prefix(theirs)
    model = build_model(model_class, stock_config, theirs, resolve_dtype(dtype, tensors), str(src))
    has_processor = (src / PREPROCESSOR_FILE).is_file()

    def write_processor(folder: Path) -> None:
        if not has_processor:
            return
        processor = BigModelResNetImageProcessor.from_pretrained(src)
        settings, reason = bigmodel_processor_to_stock(processor)
        if settings is None:
            logger.info(f"{PREPROCESSOR_FILE} not written: {reason}. Write one for the stock model by hand.")
            return
        (folder / PREPROCESSOR_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    return write_converted(model, dst, overwrite, finish=write_processor)


__all__ = [
    "bigmodel_processor_to_stock",
    "bigmodel_to_resnet_config",
    "convert_bigmodel_to_resnet",
    "convert_resnet_to_bigmodel",
    "resnet_config_to_bigmodel",
    "resnet_key_map",
    "stock_processor_to_bigmodel",
]


_OURS = (
    "AutoModelForImageClassification.from_pretrained(DST, trust_remote_code=True) and "
    "AutoImageProcessor.from_pretrained(DST, trust_remote_code=True) (or after `import hf_bigmodel`)"
)
_STOCK = "AutoModelForImageClassification.from_pretrained(DST), plain transformers, no remote code"

# The rows this module adds to `hf_bigmodel.convert.ROUTES` and `DEFAULT_TARGETS`.
ROUTES = (
    Route("resnet", "bigmodel_resnet", convert_resnet_to_bigmodel, _OURS),
    Route("bigmodel_resnet", "resnet", convert_bigmodel_to_resnet, _STOCK),
)
DEFAULT_TARGETS = {"resnet": lambda src: "bigmodel_resnet", "bigmodel_resnet": lambda src: "resnet"}
