"""Training image classifiers from images: the MNIST idx reader, `hf-bigmodel pretrain resnet` on MNIST, image
folders and `datasets` datasets (augmentation, mixup, label smoothing, resume, errors naming the bad file), and the
image-classification pipeline on the result."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from hf_bigmodel.data import DataError
from hf_bigmodel.data_images import (
    MNIST_FILES,
    check_image_file,
    decode_image,
    load_mnist,
    load_mnist_arrays,
    read_idx,
)

# ../shared/data/mnist next to the repo (as CI clones it); a worktree further down finds it higher up.
MNIST_DIR = next(
    (
        p / "shared" / "data" / "mnist"
        for p in Path(__file__).resolve().parents[1:]
        if (p / "shared" / "data").is_dir()
    ),
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist",
)
needs_mnist = pytest.mark.skipif(not MNIST_DIR.is_dir(), reason="MNIST idx files not in ../shared/data/mnist")
# Published facts about MNIST (LeCun et al.; counts as listed in ../shared/data/README.md).
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


# ----------------------------------------------------------------------------------------------- MNIST reader


@needs_mnist
def test_mnist_matches_the_published_facts():
    images, labels = load_mnist_arrays(MNIST_DIR, "train")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,) and labels[0] == 5  # the famous first "5"
    assert np.bincount(labels).tolist() == TRAIN_LABEL_COUNTS and sum(TRAIN_LABEL_COUNTS) == 60000
    assert images.min() == 0 and images.max() == 255
    assert images.mean() / 255 == pytest.approx(0.1307, abs=1e-4)  # the usual normalization constants
    assert (images / 255).std() == pytest.approx(0.3081, abs=1e-4)
    test_images, test_labels = load_mnist_arrays(MNIST_DIR, "test")
    assert test_images.shape == (10000, 28, 28) and np.bincount(test_labels).sum() == 10000
    assert test_labels[:3].tolist() == [7, 2, 1]


@needs_mnist
def test_load_mnist_gives_a_dataset_dict_of_images_and_class_labels():
    import datasets

    data = load_mnist(MNIST_DIR, limit={"train": 16, "test": 8})
    assert set(data) == {"train", "test"} and len(data["train"]) == 16 and len(data["test"]) == 8
    assert isinstance(data["train"].features["label"], datasets.ClassLabel)
    assert data["train"].features["label"].names == [str(d) for d in range(10)]
    first = data["train"][0]
    assert first["label"] == 5 and first["image"].mode == "L" and first["image"].size == (28, 28)
    images, _ = load_mnist_arrays(MNIST_DIR, "train")
    np.testing.assert_array_equal(np.asarray(first["image"]), images[0])  # PNG encoding is lossless


def test_read_idx_gzipped_or_not(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    plain = read_idx(write_idx(tmp_path / "a-idx3-ubyte", array), expected_magic=2051)
    zipped = read_idx(write_idx(tmp_path / "b-idx3-ubyte.gz", array, compress=True))
    np.testing.assert_array_equal(plain, array)
    np.testing.assert_array_equal(zipped, array)


def test_read_idx_errors_name_the_file(tmp_path):
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    full = write_idx(tmp_path / "full", images).read_bytes()

    truncated = tmp_path / "truncated-idx3-ubyte"
    truncated.write_bytes(full[:116])
    with pytest.raises(DataError, match=r"truncated-idx3-ubyte is truncated: shape \(3, 28, 28\) of uint8 needs 2,352 "
                       r"data bytes, found 100"):  # fmt: skip
        read_idx(truncated)
    longer = tmp_path / "longer"
    longer.write_bytes(full + b"\0")
    with pytest.raises(DataError, match="longer is longer than its header says"):
        read_idx(longer)
    bad_gzip = tmp_path / "cut.gz"
    bad_gzip.write_bytes(gzip.compress(full)[:-30])
    with pytest.raises(DataError, match=r"cut.gz is a corrupt or truncated gzip file"):
        read_idx(bad_gzip)
    not_idx = tmp_path / "photo.png"
    not_idx.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(DataError, match=r"photo.png is not an idx file: magic number"):
        read_idx(not_idx)
    labels = write_idx(tmp_path / "labels", np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataError, match="has magic number 2049, expected 2051 .images.. Are the image and label"):
        read_idx(labels, expected_magic=2051)
    with pytest.raises(FileNotFoundError, match="idx file not found"):
        read_idx(tmp_path / "missing")


def test_load_mnist_checks_that_the_files_belong_together(tmp_path):
    images_name, labels_name = MNIST_FILES["test"]
    write_idx(tmp_path / f"{images_name}.gz", np.zeros((4, 28, 28), np.uint8), compress=True)
    write_idx(tmp_path / labels_name, np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="holds 4 images but .* holds 3 labels"):
        load_mnist_arrays(tmp_path, "test")
    write_idx(tmp_path / labels_name, np.array([0, 1, 12, 3], np.uint8))
    with pytest.raises(DataError, match="has label 12; MNIST labels are digits 0-9"):
        load_mnist_arrays(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*not found"):
        load_mnist(tmp_path)


def test_image_checks_name_the_file(tmp_path):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.new("P", (5, 4)).save(good)
    check_image_file(good)
    assert decode_image(str(good), "RGB").mode == "RGB" and decode_image(str(good), "L").size == (5, 4)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.png is empty \(0 bytes\)"):
        check_image_file(empty)
    with pytest.raises(DataError, match=r"empty.png is empty \(0 bytes\)"):
        decode_image({"bytes": None, "path": str(empty)}, "RGB")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:30])
    with pytest.raises(DataError, match="broken.jpg is corrupt or not an image"):
        check_image_file(broken)
    with pytest.raises(DataError, match="broken.jpg is corrupt or not an image"):
        decode_image({"bytes": broken.read_bytes(), "path": str(broken)}, "RGB")
    with pytest.raises(DataError, match="zero-size image"):
        decode_image(np.zeros((0, 5), np.uint8), "L")
