"""`hf-bigmodel pretrain resnet`: train an image classifier from images with `Trainer`.

The architecture comes from the registry: the one whose presets hold `--preset` (or the `model_type` of
`--model_name_or_path`), with the image processor class of its `ARCHITECTURES` row, so any registered image
architecture trains through this module.

Every `TrainingArguments` flag works (parsed by `HfArgumentParser`). Data comes from a folder of class
sub-folders (`--train_dir`, `--validation_dir`, read by `datasets`' imagefolder), a `datasets` dataset
(`--dataset_name`: a `save_to_disk` folder or anything `load_dataset` reads) or MNIST idx files (`--mnist_dir`):

    hf-bigmodel pretrain resnet --mnist_dir data/mnist --preset resnet-20 --output_dir runs/mnist \\
        --num_train_epochs 4 --per_device_train_batch_size 128 --learning_rate 0.1 --optim sgd \\
        --random_crop_padding 2 --label_smoothing 0.1
    hf-bigmodel pretrain resnet --train_dir photos/train --validation_dir photos/val --preset resnet-50 ...

The model is built from a preset (labels and input channels come from the data) or continues from
`--model_name_or_path`. Images are decoded, augmented (random-resized crop, horizontal flip, random crop of a padded
image) and processed on the fly by the model's image processor, which is saved with the model, so
`pipeline("image-classification", model=OUTPUT_DIR)` works on the result. Evaluation reports top-1 and top-5
accuracy. `--mixup_alpha` mixes pairs of training images and their labels (soft targets); `--label_smoothing`
smooths the targets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from ..data import DataError
from ..data.images import (
    MNIST_MEAN,
    MNIST_STD,
    ImageTransform,
    MixupCollator,
    ShiftAndFlip,
    detect_num_channels,
    encode_labels,
    label_names,
    load_image_data,
)
from ..metrics import accuracy_metrics, top_k_indices
from ..models import ARCHITECTURES, architecture_of
from . import common
from .common import CommonModelArguments, finish_run, load_saved_model, preset_config, run_cli, train_and_save

logger = logging.getLogger("hf_bigmodel.pretrain_images")

TASK = "image-classification"


@dataclass
class ModelArguments(CommonModelArguments):
    preset: str = field(
        default="resnet-20",
        metadata={"help": "Config preset to train from scratch (see `hf_bigmodel.list_presets('resnet')`)."},
    )
    num_channels: int | None = field(
        default=None,
        metadata={"help": "Input channels (1 greyscale, 3 RGB). Default: from the model, else 1 for MNIST or when "
                  "the first training images are greyscale, else 3."},
    )  # fmt: skip


@dataclass
class DataArguments:
    train_dir: str | None = field(default=None, metadata={"help": "Folder of class sub-folders of training images."})
    validation_dir: str | None = field(default=None, metadata={"help": "Same layout, for evaluation."})
    dataset_name: str | None = field(
        default=None, metadata={"help": "A `datasets` dataset: `save_to_disk` folder, data folder or cached name."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset configuration name."})
    mnist_dir: str | None = field(
        default=None,
        metadata={"help": "Folder with MNIST's four idx files (gzipped or not); evaluates on its test split."},
    )
    image_column: str = field(default="image", metadata={"help": "Column holding the images."})
    label_column: str = field(default="label", metadata={"help": "Column holding the class labels."})
    validation_split_percentage: float = field(
        default=5.0, metadata={"help": "Without a validation set, hold out this %% of the training images (0: none)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training images."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation images."})
    image_size: int | None = field(
        default=None,
        metadata={"help": "Side of the square model input. Default: the model's processor, else 28 for MNIST, 32 "
                  "for CIFAR-stem presets, 224 otherwise."},
    )  # fmt: skip
    image_mean: str | None = field(
        default=None, metadata={"help": "Per-channel mean, e.g. '0.5' or '0.485,0.456,0.406'."}
    )
    image_std: str | None = field(default=None, metadata={"help": "Per-channel standard deviation, as --image_mean."})
    random_resized_crop: str | None = field(
        default=None,
        metadata={"help": "Training crop of a random area fraction MIN,MAX of the image, resized to the input size "
                  "(ImageNet: '0.08,1.0'); 'off' to disable. Default: '0.08,1.0' for image folders and datasets, off "
                  "for MNIST."},
    )  # fmt: skip
    horizontal_flip: bool | None = field(
        default=None,
        metadata={"help": "Flip training images left-right at random. Default: on for image folders and datasets, off "
                  "for MNIST (a flipped digit is another shape)."},
    )  # fmt: skip
    random_crop_padding: int = field(
        default=0, metadata={"help": "Pad training images by N pixels and crop back at a random position (CIFAR: 4)."}
    )
    mixup_alpha: float = field(
        default=0.0, metadata={"help": "Mixup: mix pairs of training images with weight ~ Beta(a, a) (0: off)."}
    )
    label_smoothing: float = field(default=0.0, metadata={"help": "Label smoothing of the training targets."})
    verify_images: bool = field(
        default=True, metadata={"help": "Open and verify every image file before training (names a corrupt file)."}
    )


ARGUMENTS = (ModelArguments, DataArguments, TrainingArguments)


def parse_args(argv: list[str]) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    return common.parse_args(argv, ARGUMENTS)


def image_architectures() -> list[str]:
    """The registered architectures with an image-classification head and an image processor."""
    return [name for name, row in ARCHITECTURES.items() if TASK in row.heads and row.image_processor is not None]


def architecture_of_preset(preset: str) -> str:
    """The image architecture whose presets hold `preset`; `DataError` listing every image preset otherwise."""
    archs = image_architectures()
    for arch in archs:
        if preset in ARCHITECTURES[arch].presets:
            return arch
    presets = [name for arch in archs for name in ARCHITECTURES[arch].presets]
    raise DataError(
        f"--preset {preset!r} is not a preset of an image architecture ({', '.join(archs) or 'none registered'}); "
        f"choose from {', '.join(presets)}."
    )


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of class ids (B,) or soft targets (B, C), with label smoothing (computed in float32)."""
    logits = logits.float()
    if labels.dim() == 1 and not labels.is_floating_point():
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    targets = labels.float()
    if label_smoothing:
        targets = targets * (1 - label_smoothing) + label_smoothing / logits.shape[-1]
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()


class ImageClassificationTrainer(Trainer):
    """Computes the loss itself so that every classifier gets soft targets (mixup) and label smoothing in
    training; evaluation loss is plain cross-entropy. The loss is a per-batch mean, so Trainer divides it by the
    gradient accumulation steps. `train_collator` (mixup) is used for training batches only."""

    loss_is_scaled_for_ga = False

    def __init__(self, *args, label_smoothing: float = 0.0, train_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.label_smoothing = label_smoothing
        self.train_collator = train_collator

    def get_train_dataloader(self):
        if self.train_collator is None:
            return super().get_train_dataloader()
        eval_collator, self.data_collator = self.data_collator, self.train_collator
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = eval_collator

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        smoothing = self.label_smoothing if model.training else 0.0
        loss = classification_loss(outputs["logits"], labels, smoothing)
        return (loss, outputs) if return_outputs else loss


# ----------------------------------------------------------------------------------------------------------------
# Model and image processor


def _floats(text: str | None, name: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise DataError(f"--{name} must be comma-separated numbers, got {text!r}.") from None


def build_model(model_args: ModelArguments, names: list[str], num_channels: int | None):
    """The model (fresh from a preset, or loaded) and its config; labels and channels checked against the data."""
    if model_args.model_name_or_path is not None:

        def check(config) -> None:
            channels = getattr(config, "num_channels", 3)
            if num_channels is not None and num_channels != channels:
                raise DataError(
                    f"--num_channels {num_channels} does not match the model {model_args.model_name_or_path}, which "
                    f"takes {channels}-channel images. Drop --num_channels (images are converted to {channels} "
                    f"channels) or train a new model from a preset."
                )
            if len(names) > config.num_labels:
                raise DataError(
                    f"The data has {len(names)} classes (labels {names[0]}..{names[-1]}) but the model "
                    f"{model_args.model_name_or_path} has num_labels={config.num_labels}: labels out of range. Train a "
                    f"new model from a preset for these classes."
                )

        return load_saved_model(AutoModelForImageClassification, model_args, check=check)
    defaults = {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
        "num_channels": num_channels or 3,
    }
    config = preset_config(architecture_of_preset(model_args.preset), model_args, defaults)
    if config.num_labels < len(names):
        raise DataError(
            f"--config_overrides num_labels={config.num_labels} is smaller than the {len(names)} classes of the data."
        )
    return AutoModelForImageClassification.from_config(config)


def build_image_processor(model_args: ModelArguments, data_args: DataArguments, config):
    """The model's saved image processor, else a new one of its architecture's processor class for this data:
    input size, channels, mean/std per channel (MNIST's for MNIST, else the processor's ImageNet defaults)."""
    num_channels = getattr(config, "num_channels", 3)
    mean, std = _floats(data_args.image_mean, "image_mean"), _floats(data_args.image_std, "image_std")
    if data_args.mnist_dir:
        mean, std = mean or [MNIST_MEAN], std or [MNIST_STD]
    settings = {k: v for k, v in (("image_mean", mean), ("image_std", std)) if v is not None}
    if data_args.image_size:
        side = data_args.image_size
        # Small images are used whole; larger ones are resized to side/0.875 and center-cropped (ImageNet's 256/224).
        settings["size"] = {"shortest_edge": side if side <= 64 else round(side / 0.875)}
        settings["crop_size"] = {"height": side, "width": side}
    saved = model_args.model_name_or_path and Path(model_args.model_name_or_path, "preprocessor_config.json").is_file()
    if saved:
        processor = AutoImageProcessor.from_pretrained(model_args.model_name_or_path)
        for name, value in settings.items():
            setattr(processor, name, value)
        if getattr(processor, "num_channels", num_channels) != num_channels:
            raise DataError(
                f"The image processor of {model_args.model_name_or_path} makes {processor.num_channels}-channel "
                f"images but the model takes {num_channels}; fix num_channels in its preprocessor_config.json."
            )
        return processor
    if "size" not in settings:
        side = 28 if data_args.mnist_dir else 32 if getattr(config, "stem_type", None) == "cifar" else 224
        settings["size"] = {"shortest_edge": side if side <= 64 else round(side / 0.875)}
        settings["crop_size"] = {"height": side, "width": side}
    try:
        _, architecture = architecture_of(config.model_type)
    except KeyError:  # a model of another library without a saved processor: the processor of --preset's arch
        architecture = ARCHITECTURES[architecture_of_preset(model_args.preset)]
    if architecture.image_processor is None:
        raise DataError(f"The {config.model_type} architecture has no image processor; it cannot train on images.")
    try:
        return architecture.image_processor(num_channels=num_channels, **settings)
    except ValueError as err:  # mean/std of the wrong length
        raise DataError(f"Image processor settings: {err}") from None


def input_side(processor) -> int:
    """Side of the square images the processor produces."""
    crop = getattr(processor, "crop_size", None) or {}
    size = processor.size or {}
    return int(crop.get("height") or size.get("height") or size.get("shortest_edge"))


# ----------------------------------------------------------------------------------------------------------------
# The run


def run_training(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict:
    """Train and save; returns the final metrics (eval_accuracy, eval_top5_accuracy, eval_loss, train_*)."""
    set_seed(training_args.seed)
    for name, value in (("mixup_alpha", data_args.mixup_alpha), ("label_smoothing", data_args.label_smoothing)):
        if value < 0 or (name == "label_smoothing" and value >= 1):
            raise DataError(f"--{name} must be {'in [0, 1)' if name == 'label_smoothing' else '>= 0'}, got {value}.")
    with training_args.main_process_first(desc="loading images"):
        raw = load_image_data(
            data_args.train_dir, data_args.validation_dir, data_args.dataset_name, data_args.dataset_config_name,
            data_args.mnist_dir, data_args.image_column, data_args.label_column,
            data_args.validation_split_percentage, data_args.max_train_samples, data_args.max_eval_samples,
            verify=data_args.verify_images and training_args.process_index == 0,
        )  # fmt: skip

    names = label_names(raw)
    num_channels = model_args.num_channels
    if num_channels is not None and num_channels not in (1, 3):
        raise DataError(f"--num_channels must be 1 (greyscale) or 3 (RGB), got {num_channels}.")
    if num_channels is None and model_args.model_name_or_path is None:
        num_channels = 1 if data_args.mnist_dir else detect_num_channels(raw["train"])
    model = build_model(model_args, names, num_channels)
    config = model.config
    num_channels = getattr(config, "num_channels", 3)
    label2id = None
    if model_args.model_name_or_path is not None and set(names) <= set(config.label2id):
        label2id = dict(config.label2id)  # the model's names for these classes
    raw = encode_labels(raw, names, config.num_labels, label2id)
    if hasattr(config, "label_smoothing"):  # so that model(pixel_values, labels=...) gives the training loss
        config.label_smoothing = data_args.label_smoothing

    processor = build_image_processor(model_args, data_args, config)
    from_mnist = data_args.mnist_dir is not None
    crop = data_args.random_resized_crop or ("off" if from_mnist else "0.08,1.0")
    crop_scale = None if crop.lower() in ("off", "none", "false", "0") else tuple(_floats(crop, "random_resized_crop"))
    if crop_scale is not None and not (len(crop_scale) == 2 and 0 < crop_scale[0] <= crop_scale[1] <= 1):
        raise DataError(f"--random_resized_crop must be MIN,MAX with 0 < MIN <= MAX <= 1, or off; got {crop!r}.")
    flip = data_args.horizontal_flip if data_args.horizontal_flip is not None else not from_mnist
    if data_args.random_crop_padding < 0:
        raise DataError(f"--random_crop_padding must be >= 0, got {data_args.random_crop_padding}.")
    augment = None
    if crop_scale is not None:
        if not hasattr(processor, "train_transforms"):
            raise DataError(
                f"The image processor {type(processor).__name__} has no training augmentation; pass "
                f"--random_resized_crop off."
            )
        augment = {"do_augment": True, "augment_scale": crop_scale, "flip_probability": 0.5 if flip else 0.0}
    mean = np.broadcast_to(np.asarray(processor.image_mean, dtype=np.float64), (num_channels,))
    std = np.broadcast_to(np.asarray(processor.image_std, dtype=np.float64), (num_channels,))
    shift_and_flip = None
    if data_args.random_crop_padding or (flip and augment is None):
        fill = (-mean / std).tolist() if processor.do_normalize else [0.0] * num_channels  # a black pixel
        shift_and_flip = ShiftAndFlip(data_args.random_crop_padding, flip and augment is None, fill)
    side = input_side(processor)
    logger.info(
        "%d training / %s evaluation images, %d classes, %d-channel %dx%d input; augmentation: random-resized crop "
        "%s, flip %s, crop padding %d, mixup %s, label smoothing %s; model %.2fM parameters",
        len(raw["train"]), len(raw["validation"]) if "validation" in raw else 0, len(names), num_channels, side, side,
        crop_scale or "off", "on" if flip else "off", data_args.random_crop_padding, data_args.mixup_alpha or "off",
        data_args.label_smoothing, model.num_parameters() / 1e6,
    )  # fmt: skip

    train_dataset = raw["train"]
    train_dataset.set_transform(ImageTransform(processor, augment, shift_and_flip))
    eval_dataset = raw.get("validation")
    if eval_dataset is not None:
        eval_dataset.set_transform(ImageTransform(processor))
    training_args.remove_unused_columns = False  # the transform needs the raw "image" column
    train_collator = MixupCollator(data_args.mixup_alpha, config.num_labels) if data_args.mixup_alpha > 0 else None

    trainer = ImageClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=default_data_collator,
        train_collator=train_collator,
        label_smoothing=data_args.label_smoothing,
        processing_class=processor,
        compute_metrics=accuracy_metrics if eval_dataset is not None else None,
        preprocess_logits_for_metrics=top_k_indices,
    )
    metrics = train_and_save(trainer, training_args, evaluate=eval_dataset is not None)
    finish_run(trainer, training_args, metrics, (model_args, data_args), "image processor",
               extra={"train_images": len(raw["train"])})  # fmt: skip
    return metrics


def main(argv: list[str] | None = None) -> int:
    """`hf-bigmodel pretrain resnet ...`: 0 on success, 2 with a message on bad input."""
    return run_cli("hf-bigmodel pretrain resnet", ARGUMENTS, run_training, argv)
