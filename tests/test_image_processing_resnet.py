"""BigModelResNetImageProcessor: every PIL mode and array layout becomes the model's channel count, outputs equal a
hand-written reference (Pillow resize, center crop, rescale, normalize), augmentation is random but seeded, the
config round-trips through save_pretrained / AutoImageProcessor, and bad inputs get errors that say what is wrong."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor

from hf_bigmodel.models.resnet import BigModelResNetConfig, BigModelResNetImageProcessor

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)


def random_rgb(height: int = 60, width: int = 80, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def small_processor(**kwargs) -> BigModelResNetImageProcessor:
    """Resize the shortest edge to 40, crop 32x32: the ImageNet recipe at test size."""
    return BigModelResNetImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}, **kwargs)


def reference(image: Image.Image, short: int = 40, crop: int = 32, mean=MEAN, std=STD) -> np.ndarray:
    """The evaluation transform written out with Pillow and NumPy."""
    width, height = image.size
    if width <= height:
        new_width, new_height = short, int(short * height / width)
    else:
        new_width, new_height = int(short * width / height), short
    resized = np.asarray(image.resize((new_width, new_height), Image.Resampling.BILINEAR), dtype=np.float32)
    top, left = (new_height - crop) // 2, (new_width - crop) // 2
    cropped = resized[top : top + crop, left : left + crop]
    chw = cropped[None] if cropped.ndim == 2 else cropped.transpose(2, 0, 1)
    return (chw / 255.0 - mean) / std


def pixels(processor, images, **kwargs) -> np.ndarray:
    return processor(images, return_tensors="pt", **kwargs).pixel_values.numpy()


# --------------------------------------------------------------------------------------------------------------------
# Values


def test_default_recipe_is_imagenet_eval():
    processor = BigModelResNetImageProcessor()
    assert dict(processor.size) == {"shortest_edge": 256}
    assert dict(processor.crop_size) == {"height": 224, "width": 224}
    assert processor.rescale_factor == pytest.approx(1 / 255)
    out = pixels(processor, random_rgb(300, 400))
    assert out.shape == (1, 3, 224, 224) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], reference(random_rgb(300, 400), 256, 224), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("height", "width"), [(60, 80), (90, 45), (40, 40)])
def test_matches_manual_reference(height, width):
    image = random_rgb(height, width)
    np.testing.assert_allclose(pixels(small_processor(), image)[0], reference(image), rtol=0, atol=1e-5)


def test_settings_are_configurable():
    image = random_rgb()
    processor = small_processor(do_normalize=False, resample=Image.Resampling.NEAREST)
    out = pixels(processor, image)[0]
    assert out.min() >= 0.0 and out.max() <= 1.0
    resized = np.asarray(image.resize((53, 40), Image.Resampling.NEAREST), dtype=np.float32) / 255
    np.testing.assert_allclose(out, resized[4:36, 10:42].transpose(2, 0, 1), atol=1e-6)
    unscaled = pixels(small_processor(do_rescale=False, do_normalize=False, resample=Image.Resampling.NEAREST), image)
    assert unscaled.dtype == np.uint8
    np.testing.assert_allclose(unscaled, out[None] * 255, atol=1e-3)
    assert pixels(small_processor(do_center_crop=False), image).shape == (1, 3, 40, 53)


# --------------------------------------------------------------------------------------------------------------------
# PIL modes


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F", "HSV"])
@pytest.mark.parametrize("num_channels", [1, 3])
def test_every_pil_mode_becomes_the_model_channel_count(mode, num_channels):
    image = random_rgb()
    converted = image.convert(mode) if mode not in ("I;16", "I", "F") else image.convert("L").convert(mode)
    out = pixels(small_processor(num_channels=num_channels), converted)
    assert out.shape == (1, num_channels, 32, 32)
    assert np.isfinite(out).all()


def test_gray_to_rgb_repeats_and_rgb_to_gray_uses_luma():
    image = random_rgb()
    gray = image.convert("L")
    rgb_of_gray = pixels(small_processor(do_normalize=False), gray)[0]
    np.testing.assert_array_equal(rgb_of_gray[0], rgb_of_gray[1])
    np.testing.assert_array_equal(rgb_of_gray[0], rgb_of_gray[2])
    # A grayscale model converts RGB with Pillow's luma weights and normalizes with one mean/std.
    processor = small_processor(num_channels=1)
    assert len(processor.image_mean) == 1 and len(processor.image_std) == 1
    mean, std = (np.array(processor.image_mean).reshape(1, 1, 1), np.array(processor.image_std).reshape(1, 1, 1))
    np.testing.assert_allclose(pixels(processor, image)[0], reference(gray, mean=mean, std=std), atol=1e-5)
    # Arrays get the same luma weights.
    np.testing.assert_allclose(pixels(processor, np.asarray(image)), pixels(processor, image), atol=0.05)


def test_alpha_is_composited_on_white():
    transparent = Image.new("RGBA", (50, 40), (10, 200, 30, 0))
    white = Image.new("RGB", (50, 40), (255, 255, 255))
    np.testing.assert_array_equal(pixels(small_processor(), transparent), pixels(small_processor(), white))
    half = Image.new("LA", (50, 40), (0, 128))
    out = pixels(small_processor(do_normalize=False, num_channels=1), half)
    np.testing.assert_allclose(out, 127 / 255, atol=1 / 255)  # black at ~50% over white
    palette = Image.new("P", (50, 40), 0)
    palette.putpalette([255, 0, 0] * 256)
    palette.info["transparency"] = 0
    np.testing.assert_array_equal(pixels(small_processor(), palette), pixels(small_processor(), white))


def test_sixteen_bit_images_are_scaled_to_eight_bits():
    values = np.random.default_rng(0).integers(0, 65536, (40, 50), dtype=np.uint16)
    sixteen = Image.fromarray(values)  # mode I;16
    assert sixteen.mode == "I;16"
    eight = Image.fromarray(np.round(values / 257).astype(np.uint8), mode="L")
    np.testing.assert_array_equal(pixels(small_processor(), sixteen), pixels(small_processor(), eight))
    np.testing.assert_array_equal(pixels(small_processor(), values), pixels(small_processor(), eight))


# --------------------------------------------------------------------------------------------------------------------
# Arrays, tensors, batches, files


def test_numpy_and_torch_layouts_agree_with_pil():
    image = random_rgb()
    hwc = np.asarray(image)
    expected = pixels(small_processor(), image)
    for variant in (
        hwc,
        hwc.transpose(2, 0, 1),
        torch.from_numpy(hwc.copy()),
        torch.from_numpy(hwc.copy()).permute(2, 0, 1),
    ):
        np.testing.assert_array_equal(pixels(small_processor(), variant), expected)
    gray = np.asarray(image.convert("L"))
    np.testing.assert_array_equal(pixels(small_processor(), gray), pixels(small_processor(), image.convert("L")))
    rgba = np.concatenate([hwc, np.full((*hwc.shape[:2], 1), 7, np.uint8)], axis=-1)
    np.testing.assert_array_equal(pixels(small_processor(), rgba), expected)  # arrays: alpha dropped


def test_batches_lists_and_files(tmp_path):
    images = [random_rgb(seed=i) for i in range(3)]
    single = np.concatenate([pixels(small_processor(), image) for image in images])
    np.testing.assert_array_equal(pixels(small_processor(), images), single)
    batch = np.stack([np.asarray(image) for image in images])  # (3, H, W, C)
    np.testing.assert_array_equal(pixels(small_processor(), batch), single)
    images[0].save(tmp_path / "a.png")
    np.testing.assert_array_equal(pixels(small_processor(), str(tmp_path / "a.png")), single[:1])
    np.testing.assert_array_equal(pixels(small_processor(), tmp_path / "a.png"), single[:1])
    np.testing.assert_array_equal(pixels(small_processor(), (tmp_path / "a.png").read_bytes()), single[:1])
    mixed = small_processor()([images[0], np.asarray(images[1])], return_tensors="pt").pixel_values
    np.testing.assert_array_equal(mixed.numpy(), single[:2])


# --------------------------------------------------------------------------------------------------------------------
# Augmentation


def test_augmentation_is_random_seeded_and_crops_to_crop_size():
    image = random_rgb(80, 100)
    processor = small_processor()
    first = pixels(processor, [image] * 4, do_augment=True, augment_seed=1)
    assert first.shape == (4, 3, 32, 32)
    assert not np.array_equal(first[0], first[1])  # each image gets its own crop
    np.testing.assert_array_equal(pixels(processor, [image] * 4, do_augment=True, augment_seed=1), first)
    assert not np.array_equal(pixels(processor, [image] * 4, do_augment=True, augment_seed=2), first)
    torch.manual_seed(5)
    a = processor.train_transforms([image] * 2).pixel_values
    torch.manual_seed(5)
    b = processor.train_transforms([image] * 2).pixel_values
    assert isinstance(a, torch.Tensor) and torch.equal(a, b)


def test_augmentation_reference_full_crop_and_flip():
    image = random_rgb(60, 80)
    ratio = 80 / 60
    processor = small_processor(augment_scale=(1.0, 1.0), augment_ratio=(ratio, ratio), flip_probability=1.0)
    out = pixels(processor, image, do_augment=True, augment_seed=0)[0]
    resized = np.asarray(image.resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float32)
    expected = (resized[:, ::-1].transpose(2, 0, 1) / 255.0 - MEAN) / STD
    np.testing.assert_allclose(out, expected, atol=1e-5)
    no_flip = small_processor(augment_scale=(1.0, 1.0), augment_ratio=(ratio, ratio), flip_probability=0.0)
    np.testing.assert_allclose(pixels(no_flip, image, do_augment=True)[0], expected[:, :, ::-1], atol=1e-5)


def test_random_resized_crop_box_stays_inside():
    rng = np.random.default_rng(0)
    processor = BigModelResNetImageProcessor()
    for _ in range(200):
        top, left, h, w = processor.random_resized_crop_box(50, 90, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        assert top >= 0 and top + h <= 50 and left >= 0 and left + w <= 90 and h > 0 and w > 0
    # Impossible ratios fall back to a centered crop within the ratio range.
    assert processor.random_resized_crop_box(10, 100, (0.9, 1.0), (1.0, 1.0), rng) == (0, 45, 10, 10)


# --------------------------------------------------------------------------------------------------------------------
# Saving and loading


def test_save_load_round_trip(tmp_path):
    processor = BigModelResNetImageProcessor(
        num_channels=1, size={"shortest_edge": 36}, crop_size={"height": 28, "width": 28}, flip_probability=0.25
    )
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "image_processing_resnet.py").is_file()
    BigModelResNetConfig(num_channels=1).save_pretrained(tmp_path)
    for reloaded in (
        BigModelResNetImageProcessor.from_pretrained(tmp_path),
        AutoImageProcessor.from_pretrained(tmp_path, trust_remote_code=False),
    ):
        assert type(reloaded) is BigModelResNetImageProcessor
        assert reloaded.to_dict() == processor.to_dict()
        image = random_rgb()
        np.testing.assert_array_equal(pixels(reloaded, image), pixels(processor, image))


# --------------------------------------------------------------------------------------------------------------------
# Errors


def test_errors_say_what_is_wrong(tmp_path):
    processor = small_processor()
    with pytest.raises(ValueError, match=r"An image has zero size \(0x5 pixels"):
        processor(np.zeros((0, 5, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"zero size \(4x0 pixels"):
        processor(Image.new("RGB", (0, 4)))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(ValueError, match=r"Cannot read image file .*broken\.png: Pillow cannot decode it"):
        processor(str(tmp_path / "broken.png"))
    buffer = io.BytesIO()
    random_rgb().save(buffer, format="PNG")
    with pytest.raises(ValueError, match=r"Cannot read the given bytes: .*corrupt, truncated"):
        processor(buffer.getvalue()[:60])
    with pytest.raises(FileNotFoundError, match=r"Image file .*missing\.jpg does not exist"):
        processor(str(tmp_path / "missing.jpg"))
    with pytest.raises(ValueError, match=r"An image has 2 channels but the model takes 3"):
        processor(np.zeros((2, 10, 10), dtype=np.uint8), input_data_format="channels_first")
    with pytest.raises(ValueError, match=r"Cannot tell the channel axis of an image of shape \(10, 10, 5\)"):
        processor(np.zeros((10, 10, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"`image_mean` has 3 values but the images have 1 channel"):
        BigModelResNetImageProcessor(num_channels=1, image_mean=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match=r"PIL images can be converted to 1 \(grayscale\) or 3 \(RGB\)"):
        BigModelResNetImageProcessor(num_channels=4, image_mean=0.5, image_std=0.5)(random_rgb())
    with pytest.raises(ValueError, match=r"different sizes .* enable do_center_crop"):
        small_processor(do_center_crop=False)([random_rgb(60, 80), random_rgb(60, 60)], return_tensors="pt")
    with pytest.raises(TypeError, match=r"Unsupported image type int"):
        processor([3])
    with pytest.raises(ValueError, match=r"`augment_scale` must be \(min, max\) with 0 < min <= max"):
        BigModelResNetImageProcessor(augment_scale=(0.5, 0.1))
