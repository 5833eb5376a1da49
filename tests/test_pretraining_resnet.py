"""Training image classifiers from images: the MNIST idx reader, `hf-bigmodel pretrain resnet` on MNIST, image
folders and `datasets` datasets (augmentation, mixup, label smoothing, resume, errors naming the bad file), and the
image-classification pipeline on the result."""

import gzip
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hf_bigmodel.cli import main as cli_main
from hf_bigmodel.data import DataError
from hf_bigmodel.data.images import (
    MNIST_FILES,
    check_image_file,
    decode_image,
    load_mnist,
    load_mnist_arrays,
    read_idx,
)
from hf_bigmodel.testing import shared_data

MNIST_DIR = shared_data("mnist")
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


# ------------------------------------------------------------------------------------------------- training


def train_args(output_dir, *extra: str, data: tuple[str, ...] | None = None) -> list[str]:
    """`hf-bigmodel pretrain resnet` on 512 MNIST training / 256 test images (or `data`) with resnet-tiny."""
    data = data or ("--mnist_dir", str(MNIST_DIR), "--max_train_samples", "512", "--max_eval_samples", "256")
    return [
        "pretrain", "resnet", *data, "--preset", "resnet-tiny", "--output_dir", str(output_dir),
        "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "64", "--learning_rate", "1e-2",
        "--report_to", "none", "--use_cpu", "true", "--seed", "3", "--dataloader_num_workers", "0",
        "--disable_tqdm", "true", *extra,
    ]  # fmt: skip


def logged(output_dir: Path, key: str = "loss") -> list[float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry[key] for entry in state["log_history"] if key in entry]


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory) -> Path:
    if not MNIST_DIR.is_dir():
        pytest.skip("MNIST idx files not in ../shared/data/mnist")
    out = tmp_path_factory.mktemp("mnist") / "run"
    args = train_args(out, "--num_train_epochs", "3", "--learning_rate", "2e-2", "--warmup_steps", "5",
                      "--random_crop_padding", "2", "--eval_strategy", "epoch", "--logging_steps", "4",
                      "--label_smoothing", "0.1")  # fmt: skip
    assert cli_main(args) == 0
    return out


@needs_mnist
def test_mnist_end_to_end_learns_and_saves_a_complete_folder(mnist_run):
    metrics = json.loads((mnist_run / "all_results.json").read_text())
    assert metrics["eval_accuracy"] > 0.35, metrics  # chance is 0.1 (a 256-image std of 0.02); 48 steps give ~0.55
    assert metrics["eval_top5_accuracy"] >= metrics["eval_accuracy"] and metrics["eval_top5_accuracy"] > 0.6
    assert len(logged(mnist_run, "eval_accuracy")) == 3  # one evaluation per epoch
    losses = logged(mnist_run)
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    config = json.loads((mnist_run / "config.json").read_text())
    assert config["model_type"] == "bigmodel_resnet" and config["num_channels"] == 1  # from the data
    assert len(config["id2label"]) == 10 and config["id2label"]["5"] == "5" and config["label_smoothing"] == 0.1
    processor = json.loads((mnist_run / "preprocessor_config.json").read_text())
    assert processor["num_channels"] == 1 and processor["crop_size"] == {"height": 28, "width": 28}
    assert processor["image_mean"] == [0.1307] and processor["image_std"] == [0.3081]
    for name in ("configuration_resnet.py", "modeling_resnet.py", "image_processing_resnet.py", "README.md"):
        assert (mnist_run / name).is_file(), name
    card = (mnist_run / "README.md").read_text()
    assert "- MNIST (idx files): the first 512 of the 60,000 training images" in card
    assert "- Training augmentation: random-resized crop off, horizontal flip off, random 2-pixel shift" in card
    assert (
        f"| Top-5 accuracy | {metrics['eval_top5_accuracy']:.6g} |" in card
        and "| Input | 1 channel (greyscale) |" in card
    )


@needs_mnist
def test_pipeline_classifies_with_the_trained_model(mnist_run):
    from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

    test = load_mnist(MNIST_DIR, splits=("test",), limit={"test": 4})["test"]
    classifier = pipeline("image-classification", model=str(mnist_run))
    results = classifier([row["image"] for row in test], top_k=3)
    model = AutoModelForImageClassification.from_pretrained(mnist_run).eval()
    processor = AutoImageProcessor.from_pretrained(mnist_run)
    with torch.no_grad():
        probs = model(**processor([row["image"] for row in test], return_tensors="pt")).logits.softmax(-1)
    for result, row_probs in zip(results, probs):
        assert [r["label"] for r in result] == [model.config.id2label[i] for i in row_probs.topk(3).indices.tolist()]
        assert result[0]["score"] == pytest.approx(row_probs.max().item(), abs=1e-5)


@needs_mnist
def test_resume_from_checkpoint_continues_exactly(tmp_path):
    common = ("--lr_scheduler_type", "constant", "--save_strategy", "steps", "--save_steps", "2",
              "--train_sampling_strategy", "sequential", "--logging_steps", "1", "--max_eval_samples", "64")  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert cli_main(train_args(straight, "--max_steps", "4", *common)) == 0
    assert cli_main(train_args(resumed, "--max_steps", "2", *common)) == 0  # "interrupted" after 2 steps
    assert (resumed / "checkpoint-2" / "optimizer.pt").is_file()
    assert cli_main(train_args(resumed, "--max_steps", "4", "--resume_from_checkpoint", "last", *common)) == 0
    assert json.loads((resumed / "trainer_state.json").read_text())["global_step"] == 4
    assert logged(resumed)[-2:] == pytest.approx(logged(straight)[-2:], abs=1e-5)
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5)


def make_image_folder(root: Path, per_class: int = 4) -> Path:
    """Class folders of PNGs in the modes L, RGB, RGBA and P, of different sizes: dark / bright / striped."""
    from PIL import Image

    rng = np.random.default_rng(0)
    modes = ("L", "RGB", "RGBA", "P")
    for c, name in enumerate(("dark", "bright", "striped")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = (20 + 4 * i, 16 + 6 * i)
            pixels = rng.integers(0, 60, (size[1], size[0], 3)) + 150 * (c == 1)
            if c == 2:
                pixels[:, ::4] = 255
            image = Image.fromarray(pixels.astype(np.uint8), "RGB")
            mode = modes[i % len(modes)]
            image = image.quantize(16) if mode == "P" else image.convert(mode)
            image.save(root / name / f"{i}.png")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "images")


def folder_args(folder: Path, *extra: str) -> tuple[str, ...]:
    return ("--train_dir", str(folder), "--validation_dir", str(folder), "--image_size", "24", *extra)


def test_image_folder_of_mixed_modes_trains_with_augmentation(image_folder, tmp_path):
    out = tmp_path / "run"
    args = train_args(out, "--max_steps", "2", "--logging_steps", "1", "--report_to", "tensorboard",
                      data=folder_args(image_folder))  # fmt: skip
    assert cli_main(args) == 0
    assert all(math.isfinite(x) for x in logged(out)) and len(logged(out)) == 2
    events = list((out / "runs").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    config = json.loads((out / "config.json").read_text())
    assert config["num_channels"] == 3  # RGB, RGBA and P images among the first ones
    assert config["id2label"] == {"0": "bright", "1": "dark", "2": "striped"}  # imagefolder sorts the classes
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["crop_size"] == {"height": 24, "width": 24} and processor["num_channels"] == 3


def test_corrupt_or_empty_image_files_are_named(image_folder, tmp_path, capsys):
    broken = image_folder / "dark" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    assert cli_main(train_args(tmp_path / "a", "--max_steps", "1", data=folder_args(image_folder))) == 2
    assert f"Image file {broken} is corrupt or not an image" in capsys.readouterr().err
    # Without the up-front check, decoding in the training loop (here in a DataLoader worker) names it too.
    data = folder_args(image_folder, "--verify_images", "false", "--train_sampling_strategy", "sequential")
    assert cli_main(train_args(tmp_path / "b", "--max_steps", "4", "--dataloader_num_workers", "1", data=data)) == 2
    err = capsys.readouterr().err
    assert f"error: Image {broken} is corrupt or not an image" in err and "Traceback" not in err
    broken.unlink()
    (image_folder / "bright" / "empty.png").write_bytes(b"")
    assert cli_main(train_args(tmp_path / "c", "--max_steps", "1", data=folder_args(image_folder))) == 2
    assert "empty.png is empty (0 bytes)" in capsys.readouterr().err


def test_mixup_collator_gives_soft_targets_of_convex_combinations():
    from hf_bigmodel.data.images import MixupCollator

    features = [{"pixel_values": torch.randn(1, 4, 4), "labels": i % 3} for i in range(6)]
    collator = MixupCollator(alpha=0.4, num_labels=3)
    torch.manual_seed(0)
    batch = collator(features)
    torch.manual_seed(0)  # the same draws: the mixing weight, then the partner of each image
    lam, perm = float(collator.beta.sample()), torch.randperm(6)
    assert 0 < lam < 1 and not torch.equal(perm, torch.arange(6))
    images = torch.stack([f["pixel_values"] for f in features])
    one_hot = torch.nn.functional.one_hot(torch.tensor([f["labels"] for f in features]), 3).float()
    torch.testing.assert_close(batch["pixel_values"], lam * images + (1 - lam) * images[perm])
    torch.testing.assert_close(batch["labels"], lam * one_hot + (1 - lam) * one_hot[perm])
    assert batch["labels"].shape == (6, 3) and batch["labels"].is_floating_point()
    torch.testing.assert_close(batch["labels"].sum(-1), torch.ones(6))
    with pytest.raises(ValueError, match="alpha must be > 0"):
        MixupCollator(alpha=0.0, num_labels=3)


def test_loss_with_soft_targets_and_label_smoothing_matches_the_model():
    from hf_bigmodel import create_model
    from hf_bigmodel.training.pretrain_images import classification_loss

    torch.manual_seed(0)
    logits, ids = torch.randn(5, 4), torch.tensor([0, 3, 1, 1, 2])
    one_hot = torch.nn.functional.one_hot(ids, 4).float()
    plain = torch.nn.functional.cross_entropy(logits, ids)
    torch.testing.assert_close(classification_loss(logits, ids), plain)
    torch.testing.assert_close(classification_loss(logits, one_hot), plain)
    smoothed = torch.nn.functional.cross_entropy(logits, ids, label_smoothing=0.1)
    torch.testing.assert_close(classification_loss(logits, ids, 0.1), smoothed)
    torch.testing.assert_close(classification_loss(logits, one_hot, 0.1), smoothed)
    assert smoothed > plain  # smoothing penalizes confident logits
    # The trainer's loss and the model's own loss (config.label_smoothing) agree, for ids and soft targets.
    model = create_model("resnet-tiny", "image-classification", num_labels=4, label_smoothing=0.1).eval()
    pixels = torch.randn(5, 3, 32, 32)
    soft = 0.7 * one_hot + 0.3 * one_hot.roll(1, 0)
    for labels in (ids, soft):
        out = model(pixel_values=pixels, labels=labels)
        torch.testing.assert_close(out.loss, classification_loss(out.logits, labels, 0.1))


def test_label_smoothing_in_training_and_mixup_runs(image_folder, tmp_path):
    """With learning rate 0 and one batch holding every image, the logged training loss is the smoothed
    cross-entropy of the (unchanged) model in training mode; evaluation loss is plain cross-entropy."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from hf_bigmodel.data.images import decode_image

    out = tmp_path / "smooth"
    data = folder_args(image_folder, "--random_resized_crop", "off", "--horizontal_flip", "false",
                       "--label_smoothing", "0.2", "--train_sampling_strategy", "sequential")  # fmt: skip
    args = train_args(out, "--max_steps", "1", "--logging_steps", "1", "--learning_rate", "0",
                      "--per_device_train_batch_size", "12", "--optim", "sgd", data=data)  # fmt: skip
    assert cli_main(args) == 0
    files = sorted(image_folder.rglob("*.png"), key=lambda p: (p.parent.name, p.name))
    labels = torch.tensor([["bright", "dark", "striped"].index(p.parent.name) for p in files])
    model = AutoModelForImageClassification.from_pretrained(out)
    processor = AutoImageProcessor.from_pretrained(out)
    pixels = processor([decode_image(str(p), None) for p in files], return_tensors="pt")["pixel_values"]
    with torch.no_grad():  # evaluation first: a training-mode forward updates the BatchNorm running statistics
        eval_logits = model.eval()(pixel_values=pixels).logits
        train_logits = model.train()(pixel_values=pixels).logits
    expected = torch.nn.functional.cross_entropy(train_logits, labels, label_smoothing=0.2)
    assert logged(out)[0] == pytest.approx(expected.item(), rel=1e-4)
    metrics = json.loads((out / "all_results.json").read_text())
    assert metrics["eval_loss"] == pytest.approx(
        torch.nn.functional.cross_entropy(eval_logits, labels).item(), rel=1e-4
    )

    mixed = tmp_path / "mixup"
    assert cli_main(train_args(mixed, "--max_steps", "2", "--logging_steps", "1", "--mixup_alpha", "0.4",
                               data=folder_args(image_folder))) == 0  # fmt: skip
    assert len(logged(mixed)) == 2 and all(math.isfinite(x) for x in logged(mixed))


@needs_mnist
def test_data_that_does_not_fit_the_model_is_refused(mnist_run, tmp_path, capsys):
    import datasets

    rows = load_mnist(MNIST_DIR, splits=("test",), limit={"test": 24})["test"]
    digits = datasets.Dataset.from_dict(
        {"img": [row["image"] for row in rows], "digit": list(range(12)) * 2},
        features=datasets.Features({"img": datasets.Image(), "digit": datasets.Value("int64")}),
    )
    digits.save_to_disk(tmp_path / "twelve")
    data = ("--dataset_name", str(tmp_path / "twelve"), "--image_column", "img", "--label_column", "digit")
    args = train_args(tmp_path / "a", "--max_steps", "1", "--model_name_or_path", str(mnist_run), data=data)
    assert cli_main(args) == 2
    assert "has num_labels=10: labels out of range" in capsys.readouterr().err
    mnist = ("--mnist_dir", str(MNIST_DIR), "--max_train_samples", "32", "--max_eval_samples", "32")
    args = train_args(tmp_path / "b", "--max_steps", "1", "--model_name_or_path", str(mnist_run),
                      "--num_channels", "3", data=mnist)  # fmt: skip
    assert cli_main(args) == 2
    assert "--num_channels 3 does not match the model" in capsys.readouterr().err
    # Matching data continues training the saved model, with its image processor.
    args = train_args(tmp_path / "more", "--max_steps", "1", "--model_name_or_path", str(mnist_run), data=mnist)
    assert cli_main(args) == 0
    assert json.loads((tmp_path / "more" / "preprocessor_config.json").read_text())["image_mean"] == [0.1307]
    assert json.loads((tmp_path / "more" / "config.json").read_text())["id2label"]["9"] == "9"
    # The same dataset trains a fresh 12-class model; a too small num_labels override is refused.
    assert cli_main(train_args(tmp_path / "c", "--max_steps", "1", data=data)) == 0
    assert len(json.loads((tmp_path / "c" / "config.json").read_text())["id2label"]) == 12
    args = train_args(tmp_path / "d", "--max_steps", "1", "--config_overrides", "num_labels=5", data=data)
    assert cli_main(args) == 2
    assert "num_labels=5 is smaller than the 12 classes" in capsys.readouterr().err


def test_channels_come_from_the_data(tmp_path):
    import datasets
    from PIL import Image

    from hf_bigmodel.data.images import detect_num_channels

    grey = [Image.new("L", (8, 8), 30), Image.new("I;16", (8, 8), 3000)]
    assert detect_num_channels(datasets.Dataset.from_dict({"image": grey}).cast_column("image", datasets.Image())) == 1
    mixed = [*grey, Image.new("P", (8, 8))]
    assert (
        detect_num_channels(datasets.Dataset.from_dict({"image": mixed}).cast_column("image", datasets.Image())) == 3
    )


@pytest.mark.slow  # a child process: ~15 s on a quiet machine
@needs_mnist
def test_push_to_hub_publishes_model_processor_code_and_card(tmp_path):
    """`--push_to_hub` against the offline Hub server, in a child process (huggingface_hub reads HF_ENDPOINT once)."""
    import os
    import subprocess
    import sys

    import yaml

    from hf_bigmodel.testing import HubServer

    repo = "testuser/mnist-resnet-tiny"
    with HubServer(tmp_path / "hub") as hub:
        args = train_args(tmp_path / "run", "--max_steps", "2", "--push_to_hub", "true", "--hub_model_id", repo)
        env = {**os.environ, **hub.env(), "OMP_NUM_THREADS": "1"}
        result = subprocess.run([sys.executable, "-m", "hf_bigmodel.cli", *args], env=env, capture_output=True,
                                text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        files = hub.files(repo)
        for name in ("model.safetensors", "config.json", "preprocessor_config.json", "configuration_resnet.py",
                     "modeling_resnet.py", "image_processing_resnet.py", "README.md"):  # fmt: skip
            assert name in files, (name, sorted(files))
        # Optimizer state stays local (Trainer's own push adds only its training_args.bin pickle).
        assert not [n for n in files if n.endswith(".pt") or n.startswith("checkpoint-")], sorted(files)
        card = hub.read(repo, "README.md").decode()
        metadata = yaml.safe_load(card.split("---")[1])
        metrics = {m["type"]: m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]}
        saved = json.loads((tmp_path / "run" / "all_results.json").read_text())
        assert metrics["accuracy"] == pytest.approx(saved["eval_accuracy"], abs=1e-6)
        assert metadata["pipeline_tag"] == "image-classification"
        assert "nats per image" in card and "per token" not in card and "perplexity" not in metrics


def test_help_lists_the_image_options(capsys):
    assert cli_main(["pretrain", "resnet", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--mnist_dir", "--train_dir", "--random_crop_padding", "--mixup_alpha", "--learning_rate"):
        assert option in text, option
    assert cli_main(["pretrain", "--help"]) == 0
    assert re.search(r"\(ARCH: gpt, .*resnet", capsys.readouterr().out)


@pytest.mark.slow
@needs_mnist
def test_mnist_benchmark_quick_mode_runs():
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_mnist.py"
    result = subprocess.run([sys.executable, str(script), "--quick", "--threads", "1", "--mnist_dir", str(MNIST_DIR)],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy :" in result.stdout and "images/s" in result.stdout and "not judged" in result.stdout
