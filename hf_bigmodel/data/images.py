"""Image data for classification training: a checked MNIST idx reader, image checks whose errors name the bad file,
loading of image folders / `datasets` datasets / MNIST as {"image", "label"} splits, class labels, and the training
transforms (augmentation through the image processor, shift and flip, mixup).

MNIST ships as four idx files (optionally gzipped). The idx format is a 4-byte magic number (two zero bytes, a
type code, the number of dimensions), one big-endian int32 per dimension, then the data, row-major. `read_idx`
checks all of it, so that a truncated download or a wrong file gives an error naming the file instead of a
reshape error or silently wrong data.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import default_data_collator

from .common import DataError, load_dataset_any, require_split

__all__ = [
    "GREYSCALE_MODES",
    "IDX_DTYPES",
    "MNIST_FILES",
    "MNIST_MEAN",
    "MNIST_STD",
    "ImageTransform",
    "MixupCollator",
    "ShiftAndFlip",
    "check_image_file",
    "decode_image",
    "detect_num_channels",
    "encode_labels",
    "image_files",
    "label_names",
    "load_image_data",
    "load_mnist",
    "read_idx",
]

# idx type code -> numpy dtype (multi-byte types are big-endian).
IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}  # fmt: skip
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # ubyte with 3 dimensions, ubyte with 1 dimension
# split -> (images file, labels file), as LeCun's page names them; "name.gz" and "name" are both accepted.
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
GREYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
# Mean and standard deviation of the MNIST training pixels scaled to [0, 1] (the usual normalization constants).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def _read_maybe_gzipped(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (whatever its extension says)."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(
            f"{path} is a corrupt or truncated gzip file ({type(err).__name__}: {err}). Download it again."
        ) from None


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read an idx file (gzipped or not) into an array of its declared type and shape.

    Raises `FileNotFoundError` for a missing file and `DataError` naming the file for a bad magic number, an
    unexpected magic (`expected_magic`, e.g. 2051 for images), or data shorter or longer than the header says.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"idx file not found: {path}")
    data = _read_maybe_gzipped(path)
    if len(data) < 4:
        raise DataError(f"{path} is not an idx file: {len(data)} bytes, shorter than the 4-byte magic number.")
    magic = int.from_bytes(data[:4], "big")
    type_code, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or type_code not in IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path} is not an idx file: magic number {magic} (bytes {data[:4].hex()}) is not 00 00 <type> <ndim> "
            f"with a known type. Is it an idx file (MNIST's train-images-idx3-ubyte...)?"
        )
    if expected_magic is not None and magic != expected_magic:
        raise DataError(
            f"{path} has magic number {magic}, expected {expected_magic} "
            f"({'images' if expected_magic == IMAGES_MAGIC else 'labels'}). Are the image and label files swapped?"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated: its header declares {ndim} dimensions but the file ends first.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "longer than its header says"
        raise DataError(
            f"{path} is {what}: shape {shape} of {dtype.name} needs {expected:,} data bytes, found {found:,}. "
            f"Download it again."
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _find(directory: Path, name: str) -> Path:
    # Accept the gzipped and the plain file, and the "train-images.idx3-ubyte" spelling of some mirrors.
    names = (name, name.replace("-idx", ".idx"))
    candidates = [directory / f"{n}{ext}" for n in names for ext in (".gz", "")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"MNIST file {name}(.gz) not found in {directory}. The folder must hold train-images-idx3-ubyte, "
        f"train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (gzipped or not)."
    )


def load_mnist_arrays(directory: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, H, W), labels int64 (N,)) of one split ("train" or "test"), checked for consistency."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"MNIST directory not found: {directory}")
    images_name, labels_name = MNIST_FILES[split]
    images_path, labels_path = _find(directory, images_name), _find(directory, labels_name)
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; the files do "
            f"not belong together."
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path} has label {labels.max()}; MNIST labels are digits 0-9.")
    return images, labels.astype(np.int64)


def load_mnist(directory: str | os.PathLike, splits: Sequence[str] = ("train", "test"), limit: dict | None = None):
    """MNIST from its idx files as a `datasets.DatasetDict` with "train" and "test" splits of
    {"image": Image (28x28, mode L), "label": ClassLabel("0".."9")}, in the files' order.

    `limit` ({"train": 512}) keeps only the first N examples of a split (for quick runs and tests).
    """
    import datasets

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(d) for d in range(10)])}
    )
    result = {}
    for split in splits:
        if split not in MNIST_FILES:
            raise DataError(f"MNIST has the splits {', '.join(MNIST_FILES)}, not {split!r}.")
        images, labels = load_mnist_arrays(directory, split)
        n = (limit or {}).get(split)
        if n is not None:
            images, labels = images[:n], labels[:n]
        result[split] = datasets.Dataset.from_dict({"image": list(images), "label": labels}, features=features)
    return datasets.DatasetDict(result)


# ----------------------------------------------------------------------------------------------------------------
# Image files


def _describe(source) -> str:
    return str(source) if source else "an in-memory image"


def check_image_file(path: str | os.PathLike) -> None:
    """Open and verify an image file without decoding all its pixels; `DataError` naming the file if it is empty,
    not an image, corrupt or has a zero width or height."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"Image file {path} is empty (0 bytes). Delete it or replace it with the real image.")
    try:
        with Image.open(path) as image:
            width, height = image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(
            f"Image file {path} is corrupt or not an image ({type(err).__name__}: {err}). Delete or replace it."
        ) from None
    if width == 0 or height == 0:
        raise DataError(f"Image file {path} has a zero-size image ({width}x{height}). Delete or replace it.")


def decode_image(value, mode: str | None):
    """A `datasets` image value (PIL image, {"bytes", "path"} dict, array, or path) as a PIL image in `mode`
    ("L" or "RGB"; None keeps the file's mode). Errors are `DataError`s naming the file."""
    from PIL import Image, UnidentifiedImageError

    source = None
    try:
        if isinstance(value, dict):
            source = value.get("path")
            if value.get("bytes") is not None:
                if len(value["bytes"]) == 0:
                    raise DataError(f"Image {_describe(source)} is empty (0 bytes). Delete or replace it.")
                image = Image.open(io.BytesIO(value["bytes"]))
            elif source:
                if os.path.getsize(source) == 0:
                    raise DataError(f"Image file {source} is empty (0 bytes). Delete or replace it.")
                image = Image.open(source)
            else:
                raise DataError("An image entry has neither bytes nor a path.")
        elif isinstance(value, (str, os.PathLike)):
            source = value
            image = Image.open(value)
        elif isinstance(value, (np.ndarray, list)):  # an array column: (H, W) or (H, W, C) of 8-bit values
            array = np.asarray(value)
            if array.dtype != np.uint8:
                array = np.clip(array, 0, 255).astype(np.uint8)
            image = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)
        elif isinstance(value, Image.Image):
            source = getattr(value, "filename", None)
            image = value
        else:
            raise DataError(f"Unsupported image value of type {type(value).__name__}; expected a PIL image.")
        if image.width == 0 or image.height == 0:
            raise DataError(f"Image {_describe(source)} has a zero-size image ({image.width}x{image.height}).")
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(
            f"Image {_describe(source)} is corrupt or not an image ({type(err).__name__}: {err}). "
            f"Delete or replace it."
        ) from None
    if mode == "RGB" and image.mode in ("P", "PA", "LA", "RGBA") and image.mode != "RGB":
        image = image.convert("RGBA")  # palette transparency is applied before alpha is dropped
    if mode == "L" and image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)  # 16-bit greyscale: scale to 8 bits rather than clip
        image = Image.fromarray(np.uint8(np.clip(np.round(array / 257.0 if array.max() > 255 else array), 0, 255)))
    return image.convert(mode) if mode is not None and image.mode != mode else image


# ----------------------------------------------------------------------------------------------------------------
# Classification data: loading, labels, augmentation, mixup


def image_files(directory: Path) -> list[Path]:
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    extensions = {e.lower() for e in ImageFolder.EXTENSIONS}
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in extensions)


def load_image_data(
    train_dir: str | None = None,
    validation_dir: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    mnist_dir: str | None = None,
    image_column: str = "image",
    label_column: str = "label",
    validation_split_percentage: float = 5.0,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    verify: bool = True,
):
    """The raw data as a DatasetDict with "train" and maybe "validation" splits of {"image", "label"} columns.

    Images of folders and datasets are left undecoded (decoded by the training transform, so a corrupt file is
    named in the error); MNIST's are PIL images.
    """
    import datasets

    if sum(bool(source) for source in (train_dir, dataset_name, mnist_dir)) != 1:
        raise DataError("Give exactly one of --train_dir (image folder), --dataset_name or --mnist_dir.")
    if mnist_dir:
        raw = load_mnist(mnist_dir, limit={"train": max_train_samples, "test": max_eval_samples})
        return datasets.DatasetDict({"train": raw["train"], "validation": raw["test"]})
    if train_dir:
        dirs = {"train": Path(train_dir)}
        if validation_dir:
            dirs["validation"] = Path(validation_dir)
        data_files = {}
        for split, directory in dirs.items():
            if not directory.is_dir():
                raise FileNotFoundError(f"--{split}_dir {directory} is not a folder.")
            files = image_files(directory)
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
        raw = load_dataset_any(dataset_name, dataset_config_name, validation_aliases=("valid", "val", "test"))
        require_split(raw, "train", dataset_name)
    raw = datasets.DatasetDict({k: v for k, v in raw.items() if k in ("train", "validation")})
    for split, ds in raw.items():
        for column in (image_column, label_column):
            if column not in ds.column_names:
                raise DataError(
                    f"The {split} data has no column {column!r}; its columns are {ds.column_names}. Set "
                    f"--image_column / --label_column (an image folder needs one sub-folder per class)."
                )
        ds = ds.select_columns([image_column, label_column])
        if image_column != "image":
            ds = ds.rename_column(image_column, "image")
        if label_column != "label":
            ds = ds.rename_column(label_column, "label")
        if isinstance(ds.features["image"], datasets.Image) and ds.features["image"].decode:
            ds = ds.cast_column("image", datasets.Image(decode=False))
        raw[split] = ds
    if "validation" not in raw and validation_split_percentage > 0:
        split = raw["train"].train_test_split(test_size=validation_split_percentage / 100, seed=0)
        raw = datasets.DatasetDict({"train": split["train"], "validation": split["test"]})
    if max_train_samples:
        raw["train"] = raw["train"].select(range(min(max_train_samples, len(raw["train"]))))
    if max_eval_samples and "validation" in raw:
        raw["validation"] = raw["validation"].select(range(min(max_eval_samples, len(raw["validation"]))))
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
