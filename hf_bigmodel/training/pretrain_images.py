"""`hf-bigmodel pretrain resnet`: train an image classifier from images with `Trainer`.

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
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from .. import registry
from ..data import DataError
from ..data.images import MNIST_MEAN, MNIST_STD, check_image_file, decode_image, load_mnist
from ..models import ARCHITECTURES
from .pretrain import _parse_overrides, finish_run, resolve_checkpoint

logger = logging.getLogger("hf_bigmodel.pretrain_images")

ARCH = "resnet"
GREYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
TOP_K = 5


@dataclass
class ModelArguments:
    preset: str = field(
        default="resnet-20",
        metadata={"help": "Config preset to train from scratch (see `hf_bigmodel.list_presets('resnet')`)."},
    )
    config_overrides: str | None = field(
        default=None, metadata={"help": "Override preset fields, e.g. 'hidden_sizes=[16,32,64],depths=[2,2,2]'."}
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Continue training a saved image classifier instead of starting from a preset."},
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


def parse_args(argv: list[str]) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        loader = parser.parse_json_file if argv[0].endswith(".json") else parser.parse_yaml_file
        return loader(os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


# ----------------------------------------------------------------------------------------------------------------
# Data


def _image_files(directory: Path) -> list[Path]:
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    extensions = {e.lower() for e in ImageFolder.EXTENSIONS}
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in extensions)


def load_image_data(data_args: DataArguments, verify: bool = True):
    """The raw data as a DatasetDict with "train" and maybe "validation" splits of {"image", "label"} columns.

    Images of folders and datasets are left undecoded (decoded by the training transform, so a corrupt file is
    named in the error); MNIST's are PIL images.
    """
    import datasets

    sources = [s for s in ("train_dir", "dataset_name", "mnist_dir") if getattr(data_args, s)]
    if len(sources) != 1:
        raise DataError("Give exactly one of --train_dir (image folder), --dataset_name or --mnist_dir.")
    if data_args.mnist_dir:
        limit = {"train": data_args.max_train_samples, "test": data_args.max_eval_samples}
        raw = load_mnist(data_args.mnist_dir, limit=limit)
        return datasets.DatasetDict({"train": raw["train"], "validation": raw["test"]})
    if data_args.train_dir:
        dirs = {"train": Path(data_args.train_dir)}
        if data_args.validation_dir:
            dirs["validation"] = Path(data_args.validation_dir)
        data_files = {}
        for split, directory in dirs.items():
            if not directory.is_dir():
                raise FileNotFoundError(f"--{split}_dir {directory} is not a folder.")
            files = _image_files(directory)
            if not files:
                raise DataError(
                    f"--{'train' if split == 'train' else 'validation'}_dir {directory} holds no image files. It must "
                    f"hold one sub-folder of images per class, e.g. {directory}/cat/1.png, {directory}/dog/2.jpg."
                )
            if verify:
                for path in files:
                    check_image_file(path)
            data_files[split] = [str(p) for p in files]
        raw = datasets.load_dataset("imagefolder", data_files=data_files)
    else:
        saved = Path(data_args.dataset_name)
        if (saved / "dataset_dict.json").is_file() or (saved / "state.json").is_file():
            raw = datasets.load_from_disk(str(saved))
        else:
            raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
        if not isinstance(raw, datasets.DatasetDict):
            raw = datasets.DatasetDict({"train": raw})
        if "train" not in raw:
            raise DataError(f"Dataset {data_args.dataset_name} has no 'train' split (it has {', '.join(raw)}).")
        for alias in ("valid", "val", "test"):
            if "validation" not in raw and alias in raw:
                raw["validation"] = raw[alias]
    raw = datasets.DatasetDict({k: v for k, v in raw.items() if k in ("train", "validation")})
    for split, ds in raw.items():
        for column in (data_args.image_column, data_args.label_column):
            if column not in ds.column_names:
                raise DataError(
                    f"The {split} data has no column {column!r}; its columns are {ds.column_names}. Set "
                    f"--image_column / --label_column (an image folder needs one sub-folder per class)."
                )
        ds = ds.select_columns([data_args.image_column, data_args.label_column])
        if data_args.image_column != "image":
            ds = ds.rename_column(data_args.image_column, "image")
        if data_args.label_column != "label":
            ds = ds.rename_column(data_args.label_column, "label")
        if isinstance(ds.features["image"], datasets.Image) and ds.features["image"].decode:
            ds = ds.cast_column("image", datasets.Image(decode=False))
        raw[split] = ds
    if "validation" not in raw and data_args.validation_split_percentage > 0:
        split = raw["train"].train_test_split(test_size=data_args.validation_split_percentage / 100, seed=0)
        raw = datasets.DatasetDict({"train": split["train"], "validation": split["test"]})
    if data_args.max_train_samples:
        raw["train"] = raw["train"].select(range(min(data_args.max_train_samples, len(raw["train"]))))
    if data_args.max_eval_samples and "validation" in raw:
        raw["validation"] = raw["validation"].select(range(min(data_args.max_eval_samples, len(raw["validation"]))))
    for split, ds in raw.items():
        if len(ds) == 0:
            raise DataError(f"The {split} split is empty: there are no images to learn from.")
    return raw


def label_names(raw) -> list[str]:
    """Class names in id order: a ClassLabel's names, else the sorted distinct values of the label column."""
    import datasets

    feature = raw["train"].features["label"]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    values = sorted({v for ds in raw.values() for v in ds["label"]}, key=lambda v: (str(type(v)), v))
    if all(isinstance(v, (int, np.integer)) for v in values):
        if values and values[0] < 0:
            raise DataError(f"Label {values[0]} is negative; class ids must be 0, 1, ... (or class names).")
        return [str(i) for i in range(int(values[-1]) + 1)] if values else []
    return [str(v) for v in values]


def encode_labels(raw, names: list[str], num_labels: int, label2id: dict[str, int] | None = None):
    """Labels as class ids in [0, num_labels): class names through `label2id` (default: their index in `names`),
    integer ids as they are; every id is checked against the range."""
    import datasets

    feature = raw["train"].features["label"]
    for split, ds in raw.items():
        values = ds["label"]
        if isinstance(feature, datasets.ClassLabel):
            ids = np.asarray(values, dtype=np.int64)
            if label2id is not None:  # a model with named classes: map this data's names onto the model's ids
                ids = np.array([label2id[name] for name in feature.names], dtype=np.int64)[ids]
        elif len(values) and all(isinstance(v, (int, np.integer)) for v in values):
            ids = np.asarray(values, dtype=np.int64)
        else:
            lookup = label2id or {name: i for i, name in enumerate(names)}
            unknown = sorted({str(v) for v in values} - set(lookup))
            if unknown:
                raise DataError(
                    f"The {split} data has labels {unknown[:5]} that the model does not know (its labels: "
                    f"{sorted(lookup)[:10]})."
                )
            ids = np.array([lookup[str(v)] for v in values], dtype=np.int64)
        bad = np.flatnonzero((ids < 0) | (ids >= num_labels))
        if len(bad):
            raise DataError(
                f"The {split} data has label {ids[bad[0]]} (row {bad[0]}), out of range for num_labels={num_labels} "
                f"(class ids 0..{num_labels - 1}). Check --label_column, or train a model with more labels."
            )
        raw[split] = ds.remove_columns("label").add_column("label", ids.tolist())
    return raw


def detect_num_channels(dataset, sample: int = 32) -> int:
    """1 when the first `sample` images are all greyscale, else 3."""
    from PIL import Image

    for i in range(min(sample, len(dataset))):
        value = dataset[i]["image"]
        if isinstance(value, np.ndarray):
            if value.ndim == 3 and value.shape[-1] != 1:
                return 3
            continue
        image = value if isinstance(value, Image.Image) else decode_image(value, mode=None)
        if image.mode not in GREYSCALE_MODES:
            return 3
    return 1


class ShiftAndFlip:
    """Random training transforms on a batch of processed images (B, C, H, W), drawn from torch's RNG (seeded per
    DataLoader worker): `padding` pads by that many pixels with black (the normalized value of a 0 pixel) and crops
    back at a random position (the CIFAR / MNIST shift augmentation); `flip` flips left-right with probability 1/2.
    """

    def __init__(self, padding: int, flip: bool, fill: list[float]):
        self.padding, self.flip = padding, flip
        self.fill = torch.tensor(fill, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = pixels.shape
        if self.flip:
            flip = torch.rand(batch) < 0.5
            pixels = torch.where(flip.view(-1, 1, 1, 1), pixels.flip(-1), pixels)
        p = self.padding
        if p > 0:
            padded = self.fill.to(pixels.dtype).expand(batch, channels, height + 2 * p, width + 2 * p).clone()
            padded[:, :, p : p + height, p : p + width] = pixels
            offsets = torch.randint(0, 2 * p + 1, (batch, 2))
            pixels = torch.stack(
                [padded[i, :, y : y + height, x : x + width] for i, (y, x) in enumerate(offsets.tolist())]
            )
        return pixels


class ImageTransform:
    """The `set_transform` function: decode (errors name the file), run the image processor (with `augment`, the
    processor's training-augmentation arguments, if given), then `shift_and_flip`; gives {"pixel_values", "labels"}.
    A class rather than a closure so that DataLoader workers started with "spawn" can pickle it."""

    def __init__(self, image_processor, augment: dict | None = None, shift_and_flip: ShiftAndFlip | None = None):
        self.image_processor, self.augment, self.shift_and_flip = image_processor, augment or {}, shift_and_flip

    def __call__(self, batch: dict) -> dict:
        images = [decode_image(value, mode=None) for value in batch["image"]]
        pixels = self.image_processor(images, return_tensors="pt", **self.augment)["pixel_values"]
        if self.shift_and_flip is not None:
            pixels = self.shift_and_flip(pixels)
        return {"pixel_values": pixels, "labels": batch["label"]}


class MixupCollator:
    """Stacks a batch and mixes it with a shuffled copy of itself (mixup, Zhang et al. 2018): images
    `lam * x + (1 - lam) * x[perm]` and soft targets `lam * y + (1 - lam) * y[perm]` of shape (batch, num_labels),
    which sum to 1, with `lam ~ Beta(alpha, alpha)` drawn once per batch."""

    def __init__(self, alpha: float, num_labels: int):
        if alpha <= 0:
            raise ValueError(f"mixup alpha must be > 0, got {alpha}.")
        self.alpha, self.num_labels = alpha, num_labels
        self.beta = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = default_data_collator(features)
        pixels, labels = batch["pixel_values"], batch["labels"]
        targets = F.one_hot(labels.long(), self.num_labels).to(pixels.dtype) if labels.dim() == 1 else labels
        lam = float(self.beta.sample())
        perm = torch.randperm(pixels.shape[0])
        batch["pixel_values"] = lam * pixels + (1 - lam) * pixels[perm]
        batch["labels"] = lam * targets + (1 - lam) * targets[perm]
        return batch


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


def top_k_indices(logits, labels=None):
    """`preprocess_logits_for_metrics`: keep the indices of the top-5 classes, not the whole logits."""
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return logits.topk(min(TOP_K, logits.shape[-1]), dim=-1).indices


def accuracy_metrics(eval_pred) -> dict[str, float]:
    """Top-1 and top-5 accuracy from the top-k class indices (N, k) and class ids (N,)."""
    top, labels = eval_pred.predictions, eval_pred.label_ids
    if top.ndim == 1:
        top = top[:, None]
    return {
        "accuracy": float((top[:, 0] == labels).mean()),
        "top5_accuracy": float((top == labels[:, None]).any(axis=1).mean()),
    }


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
        config = AutoConfig.from_pretrained(model_args.model_name_or_path)
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
                f"{model_args.model_name_or_path} has num_labels={config.num_labels}: labels out of range. Train a new "
                f"model from a preset for these classes."
            )
        return AutoModelForImageClassification.from_pretrained(model_args.model_name_or_path)
    if ARCH not in ARCHITECTURES:
        raise DataError("The ResNet architecture is not available in this hf_bigmodel installation.")
    presets = registry.list_presets(ARCH)
    if model_args.preset not in presets:
        raise DataError(f"--preset {model_args.preset!r} is not a {ARCH} preset; choose from {', '.join(presets)}.")
    overrides = {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
        "num_channels": num_channels or 3,
        **_parse_overrides(model_args.config_overrides),
    }
    config = registry.create_config(model_args.preset, **overrides)
    if config.num_labels < len(names):
        raise DataError(
            f"--config_overrides num_labels={config.num_labels} is smaller than the {len(names)} classes of the data."
        )
    return AutoModelForImageClassification.from_config(config)


def build_image_processor(model_args: ModelArguments, data_args: DataArguments, config):
    """The model's saved image processor, else a new `BigModelResNetImageProcessor` for this data: input size,
    channels, mean/std per channel (MNIST's for MNIST, else the processor's ImageNet defaults)."""
    from ..models.resnet import BigModelResNetImageProcessor

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
        return BigModelResNetImageProcessor(num_channels=num_channels, **settings)
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
        raw = load_image_data(data_args, verify=data_args.verify_images and training_args.process_index == 0)

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
    checkpoint = resolve_checkpoint(training_args)
    metrics = dict(trainer.train(resume_from_checkpoint=checkpoint).metrics)
    trainer.save_model()
    trainer.save_state()
    if eval_dataset is not None:
        metrics.update(trainer.evaluate())
    finish_run(trainer, training_args, metrics, (model_args, data_args), "image processor",
               extra={"train_images": len(raw["train"])})  # fmt: skip
    return metrics


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    if argv and argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    model_args, data_args, training_args = parse_args(argv)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    try:
        run_training(model_args, data_args, training_args)
    except (DataError, FileNotFoundError) as err:
        message = str(err)
        if "Original Traceback" in message:  # raised in a DataLoader worker: keep the message, not the traceback
            message = message.strip().splitlines()[-1].split("DataError: ", 1)[-1]
        print(f"hf-bigmodel pretrain resnet: error: {message}", file=sys.stderr)
        return 2
    return 0
