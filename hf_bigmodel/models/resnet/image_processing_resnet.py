"""Image processor of the hf_bigmodel ResNet: ImageNet-style evaluation transforms (resize the shortest edge to 256,
center crop 224, rescale to [0, 1], normalize with the ImageNet mean/std) and training augmentation (random resized
crop + horizontal flip), on Pillow and NumPy only (no torchvision).

Standalone on purpose: `save_pretrained` copies this file next to `preprocessor_config.json`, so
`AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)` works without hf_bigmodel installed.

Any input becomes the model's channel count (`num_channels`): PIL images in any mode (1, L, LA, P, PA, RGB, RGBA,
CMYK, YCbCr, I, I;16, F...; transparency is composited onto white; 16-bit and 32-bit modes are scaled to the 8-bit
range), NumPy arrays and torch tensors in (H, W), (H, W, C) or (C, H, W) layout (C = 1, 3 or 4; a 4th channel is
taken as alpha and dropped; uint16 is scaled to the 8-bit range), batches as lists or 4-D arrays, and file paths or
encoded bytes. Grayscale -> RGB repeats the channel; RGB -> grayscale uses Pillow's ITU-R 601-2 luma weights.
"""

import io
import math
import os

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    ChannelDimension,
    PILImageResampling,
    SizeDict,
    infer_channel_dimension_format,
    load_image,
)
from transformers.processing_utils import ImagesKwargs, Unpack

# Pillow's RGB -> L conversion (ITU-R 601-2 luma), used for arrays so that they match converted PIL images.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


class BigModelResNetImageProcessorKwargs(ImagesKwargs, total=False):
    """Keyword arguments beyond transformers' `ImagesKwargs`.

    num_channels: channels of the output (1 = grayscale, 3 = RGB), i.e. the model's `config.num_channels`.
    do_augment: training augmentation instead of resize + center crop: a random crop covering `augment_scale` of the
        image area with an aspect ratio in `augment_ratio`, resized to `crop_size`, then a horizontal flip with
        probability `flip_probability`.
    augment_seed: seed of the augmentation (default: drawn from torch's global generator, so `torch.manual_seed`
        and DataLoader worker seeding make it reproducible).
    """

    num_channels: int | None
    do_augment: bool | None
    augment_scale: list[float] | tuple[float, ...] | None
    augment_ratio: list[float] | tuple[float, ...] | None
    flip_probability: float | None
    augment_seed: int | None


class BigModelResNetImageProcessor(PilBackend):
    r"""
    Prepares images for BigModelResNet models: `processor(images, return_tensors="pt")["pixel_values"]`.

    Evaluation (default): resize so the shortest edge is `size["shortest_edge"]` (256), center crop to `crop_size`
    (224x224), multiply by `rescale_factor` (1/255), normalize with `image_mean`/`image_std` (ImageNet's).
    Training: `processor(images, do_augment=True)` or `processor.train_transforms(images)` replaces resize + center
    crop with a random resized crop to `crop_size` and a random horizontal flip.
    """

    valid_kwargs = BigModelResNetImageProcessorKwargs
    model_input_names = ["pixel_values"]

    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 256}
    crop_size = {"height": 224, "width": 224}
    default_to_square = False
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True
    num_channels = 3
    do_augment = False
    augment_scale = [0.08, 1.0]
    augment_ratio = [3 / 4, 4 / 3]
    flip_probability = 0.5
    augment_seed = None

    def __init__(self, **kwargs: Unpack[BigModelResNetImageProcessorKwargs]):
        num_channels = kwargs.get("num_channels") or self.num_channels
        if num_channels == 1:
            # A grayscale model: one mean/std, the luma of ImageNet's RGB statistics, unless given.
            for name in ("image_mean", "image_std"):
                if kwargs.get(name) is None:
                    kwargs[name] = [round(sum(w * v for w, v in zip(LUMA_WEIGHTS, getattr(self, name))), 4)]
        super().__init__(**kwargs)
        # Lists, as JSON gives them back: a saved and reloaded processor compares equal.
        self.augment_scale = [float(v) for v in self.augment_scale]
        self.augment_ratio = [float(v) for v in self.augment_ratio]
        self._check_settings(
            self.num_channels, self.image_mean, self.image_std, self.augment_scale, self.augment_ratio
        )

    # ---------------------------------------------------------------------------------------------------------
    # Settings

    @staticmethod
    def _check_settings(num_channels, image_mean, image_std, augment_scale, augment_ratio) -> None:
        if not isinstance(num_channels, int) or num_channels <= 0:
            raise ValueError(f"`num_channels` must be a positive integer (1 or 3 usually), got {num_channels!r}.")
        for name, value in (("image_mean", image_mean), ("image_std", image_std)):
            values = [value] if isinstance(value, (int, float)) else list(value or [])
            if value is not None and len(values) not in (1, num_channels):
                raise ValueError(
                    f"`{name}` has {len(values)} values but the images have {num_channels} channel(s): give one value "
                    f"per channel, or a single value for all."
                )
        for name, pair, low in (("augment_scale", augment_scale, 0.0), ("augment_ratio", augment_ratio, 0.0)):
            if pair is None:
                continue
            if len(pair) != 2 or not low < pair[0] <= pair[1]:
                raise ValueError(f"`{name}` must be (min, max) with 0 < min <= max, got {tuple(pair)}.")
        if augment_scale is not None and augment_scale[1] > 1.0:
            raise ValueError(
                f"`augment_scale` is a fraction of the image area: max must be <= 1, got {augment_scale}."
            )

    # ---------------------------------------------------------------------------------------------------------
    # Inputs

    def fetch_images(self, images):
        """Open file paths (str or os.PathLike), encoded image bytes and URLs; pass images through."""
        if isinstance(images, (list, tuple)):
            return [self.fetch_images(image) for image in images]
        if isinstance(images, (bytes, bytearray, memoryview)):
            return _open_image(io.BytesIO(bytes(images)), "the given bytes")
        if isinstance(images, (os.PathLike, str)):
            text = os.fspath(images)
            if isinstance(text, str) and text.startswith(("http://", "https://", "data:image/")):
                return load_image(text)
            if not os.path.isfile(text):
                raise FileNotFoundError(f"Image file {text} does not exist (or is not a file).")
            return _open_image(text, f"image file {text}")
        return images

    def _prepare_images_structure(self, images, expected_ndims: int = 3):
        """A flat list of single images: 2-D arrays are grayscale images, 4-D arrays/tensors are batches."""
        images = self.fetch_images(images)
        flat = []

        def add(item):
            if isinstance(item, (list, tuple)):
                for sub in item:
                    add(sub)
            elif isinstance(item, (np.ndarray, torch.Tensor)) and item.ndim == 4:
                flat.extend(list(item))
            elif isinstance(item, (Image.Image, np.ndarray, torch.Tensor)):
                flat.append(item)
            else:
                raise TypeError(
                    f"Unsupported image type {type(item).__name__}: pass PIL images, NumPy arrays or torch tensors "
                    f"(H, W), (H, W, C) or (C, H, W), file paths or encoded image bytes, or a list of them."
                )

        add(images)
        if not flat:
            raise ValueError("No images were given: pass at least one image.")
        return flat

    def process_image(
        self,
        image,
        num_channels: int | None = None,
        input_data_format: str | ChannelDimension | None = None,
        **kwargs,
    ) -> np.ndarray:
        """One image as a (num_channels, H, W) array: uint8 for PIL images and 8/16-bit arrays, else the array's
        own float values."""
        num_channels = num_channels or self.num_channels
        if isinstance(image, Image.Image):
            array = _pil_to_array(image, num_channels)
        else:
            array = _array_to_chw(image, num_channels, input_data_format)
        if array.shape[1] == 0 or array.shape[2] == 0:
            raise ValueError(
                f"An image has zero size ({array.shape[1]}x{array.shape[2]} pixels, height x width): every image "
                f"needs at least one pixel. Check for empty crops or unreadable files."
            )
        return array

    # ---------------------------------------------------------------------------------------------------------
    # Transforms

    def train_transforms(self, images, **kwargs) -> BatchFeature:
        """Training preprocessing: `self(images, do_augment=True, **kwargs)` (random resized crop + flip)."""
        kwargs.setdefault("return_tensors", "pt")
        return self(images, do_augment=True, **kwargs)

    def random_resized_crop_box(
        self, height: int, width: int, scale, ratio, rng: np.random.Generator
    ) -> tuple[int, int, int, int]:
        """(top, left, crop height, crop width) of a random crop covering `scale` of the area with aspect ratio
        (width / height) in `ratio`; falls back to the largest centered crop within the ratio range (as
        torchvision's RandomResizedCrop)."""
        area = height * width
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        for _ in range(10):
            target_area = area * rng.uniform(scale[0], scale[1])
            aspect = math.exp(rng.uniform(*log_ratio))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                return top, left, h, w
        in_ratio = width / height
        if in_ratio < min(ratio):
            w, h = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            h, w = height, int(round(height * max(ratio)))
        else:
            w, h = width, height
        h, w = max(1, min(h, height)), max(1, min(w, width))
        return (height - h) // 2, (width - w) // 2, h, w

    def _augment(self, image: np.ndarray, crop_size: SizeDict, resample, scale, ratio, flip_probability, rng):
        _, height, width = image.shape
        top, left, h, w = self.random_resized_crop_box(height, width, scale, ratio, rng)
        image = image[:, top : top + h, left : left + w]
        image = self.resize(image, SizeDict(height=crop_size.height, width=crop_size.width), resample=resample)
        if rng.uniform() < flip_probability:
            image = image[:, :, ::-1]
        return np.ascontiguousarray(image)

    def _preprocess(
        self,
        images: list[np.ndarray],
        do_resize: bool,
        size: SizeDict,
        resample,
        do_center_crop: bool,
        crop_size: SizeDict,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean,
        image_std,
        do_pad: bool | None = None,
        pad_size: SizeDict | None = None,
        return_tensors=None,
        num_channels: int | None = None,
        do_augment: bool | None = None,
        augment_scale=None,
        augment_ratio=None,
        flip_probability: float | None = None,
        augment_seed: int | None = None,
        **kwargs,
    ) -> BatchFeature:
        num_channels = num_channels or self.num_channels
        self._check_settings(num_channels, image_mean, image_std, augment_scale, augment_ratio)
        rng = None
        if do_augment:
            if crop_size is None or not (crop_size.height and crop_size.width):
                raise ValueError("Augmentation crops to `crop_size`: set crop_size={'height': H, 'width': W}.")
            if augment_seed is None:  # follows torch.manual_seed and each DataLoader worker's seed
                augment_seed = int(torch.randint(0, 2**62, ()).item())
            rng = np.random.default_rng(augment_seed)
        processed = []
        for image in images:
            if do_augment:
                image = self._augment(
                    image, crop_size, resample, augment_scale, augment_ratio, flip_probability or 0.0, rng
                )
            else:
                if do_resize:
                    image = self.resize(image=image, size=size, resample=resample)
                if do_center_crop:
                    image = self.center_crop(image, crop_size)
            if do_rescale:
                image = self.rescale(image, rescale_factor)
            if do_normalize:
                image = self.normalize(image.astype(np.float32), image_mean, image_std)
            if do_rescale or do_normalize:
                image = image.astype(np.float32, copy=False)
            processed.append(image)
        shapes = {image.shape for image in processed}
        if return_tensors and len(shapes) > 1:
            raise ValueError(
                f"The processed images have different sizes {sorted(shapes)} and cannot be stacked into one tensor: "
                f"enable do_center_crop (or do_augment) so that every image ends up crop_size, or pass "
                f"return_tensors=None to get a list."
            )
        return BatchFeature(data={"pixel_values": processed}, tensor_type=return_tensors)


# -------------------------------------------------------------------------------------------------------------
# Conversions


def _open_image(source, what: str) -> Image.Image:
    try:
        image = Image.open(source)
        image.load()  # decode now, so a truncated file fails here and not halfway through a batch
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(
            f"Cannot read {what}: Pillow cannot decode it as an image ({type(error).__name__}: {error}). The file may "
            f"be corrupt, truncated or not an image; re-export or re-download it."
        ) from error
    return ImageOps.exif_transpose(image)  # the camera's orientation tag, as transformers' load_image applies


def _composite_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _pil_to_array(image: Image.Image, num_channels: int) -> np.ndarray:
    """A PIL image in any mode as a (num_channels, H, W) uint8 array."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float64)
        image = Image.fromarray(np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8), mode="L")
    elif mode == "F":  # 32-bit float pixels, on the 8-bit scale as Pillow's L -> F conversion gives
        image = Image.fromarray(np.clip(np.round(np.asarray(image)), 0, 255).astype(np.uint8), mode="L")
    elif mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info) or mode == "PA":
        image = _composite_on_white(image)
    if num_channels == 1:
        image = image.convert("L")
    elif num_channels == 3:
        image = image.convert("RGB")
    else:
        raise ValueError(
            f"PIL images can be converted to 1 (grayscale) or 3 (RGB) channels, but the processor has "
            f"num_channels={num_channels}. Pass NumPy arrays or tensors that already have {num_channels} channels."
        )
    array = np.asarray(image)
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))


def _array_to_chw(image, num_channels: int, input_data_format) -> np.ndarray:
    """An array or tensor (H, W), (H, W, C) or (C, H, W) as (num_channels, H, W)."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = image.float().numpy() if image.dtype == torch.bfloat16 else image.numpy()
    array = np.asarray(image)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:  # 16-bit images: to the 8-bit range the rescale factor expects
        array = np.clip(np.round(array / 257.0), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3:
        if input_data_format is None:
            try:
                input_data_format = infer_channel_dimension_format(array, num_channels=(1, 3, 4, num_channels))
            except ValueError as error:
                raise ValueError(
                    f"Cannot tell the channel axis of an image of shape {array.shape}: expected (H, W), (H, W, C) or "
                    f"(C, H, W) with C = 1, 3 or 4 (or {num_channels}, the processor's num_channels). Pass "
                    f"input_data_format='channels_first' or 'channels_last' if the layout is unusual."
                ) from error
        if ChannelDimension(input_data_format) == ChannelDimension.LAST:
            array = array.transpose(2, 0, 1)
    else:
        raise ValueError(
            f"An image has shape {array.shape}: expected (H, W), (H, W, C) or (C, H, W) for one image, or a 4-D "
            f"(batch, ...) array for a batch."
        )
    channels = array.shape[0]
    if channels == num_channels:
        return np.ascontiguousarray(array)
    if channels == 4 and num_channels in (1, 3):  # RGBA: drop alpha (arrays carry no range to composite with)
        array, channels = array[:3], 3
    if channels == num_channels:
        return np.ascontiguousarray(array)
    if channels == 1 and num_channels == 3:
        return np.ascontiguousarray(np.repeat(array, 3, axis=0))
    if channels == 3 and num_channels == 1:
        weights = np.asarray(LUMA_WEIGHTS, dtype=np.float64).reshape(3, 1, 1)
        gray = (array.astype(np.float64) * weights).sum(axis=0, keepdims=True)
        if array.dtype == np.uint8:
            return np.clip(np.round(gray), 0, 255).astype(np.uint8)
        return gray.astype(array.dtype if np.issubdtype(array.dtype, np.floating) else np.float32)
    raise ValueError(
        f"An image has {channels} channels but the model takes {num_channels}: give 1-channel (grayscale), "
        f"3-channel (RGB) or 4-channel (RGBA) images, or build the processor with num_channels={channels}."
    )


__all__ = ["BigModelResNetImageProcessor"]
