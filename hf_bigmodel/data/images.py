"""Image data for classification training: a checked MNIST idx reader, loading of image folders / `datasets`
datasets, and image checks whose errors name the bad file.

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

from .text import DataError

__all__ = [
    "IDX_DTYPES",
    "MNIST_FILES",
    "MNIST_MEAN",
    "MNIST_STD",
    "check_image_file",
    "decode_image",
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
