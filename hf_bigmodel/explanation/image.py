"""Pixel attributions for image classification: Grad-CAM on an automatically found layer, or integrated
gradients over the pixels (captum)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .core import ExplainError, Explanation, find_target_layer, integrated_gradients, label_of, resolve_target, scores

# PIL modes that the image processors turn into the model's channels. Others (HSV, LAB, BGR;15...) have no
# well-defined conversion here, so they are refused with the fix rather than giving a silently wrong picture.
SUPPORTED_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "F"}
SUPPORTED_MODES |= {"I;16", "I;16B", "I;16L", "I;16N"}


def _check_image(image):
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ExplainError(f"Image file {path} does not exist; pass the path of an image file.")
        try:
            image = Image.open(path)
            image.load()
        except (UnidentifiedImageError, OSError) as error:
            raise ExplainError(f"{path} is not an image Pillow can read ({error}); pass a PNG or JPEG file.") from None
    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise ExplainError(f"The image has zero size ({image.width}x{image.height}); pass a non-empty image.")
        if image.mode not in SUPPORTED_MODES:
            raise ExplainError(
                f"Image mode {image.mode!r} cannot be explained: convert it to RGB or L first (e.g. with "
                "image.convert('RGB'), or save it as a PNG)."
            )
        return image
    if isinstance(image, torch.Tensor):
        if image.dim() == 3:
            image = image.unsqueeze(0)
        if image.dim() != 4 or image.shape[0] != 1 or 0 in image.shape:
            raise ExplainError(
                f"A pixel tensor must be (channels, height, width) with non-zero sizes; got {tuple(image.shape)}."
            )
        return image.float()
    raise ExplainError(
        f"An image-classification model explains a PIL image, an image path or a pixel tensor; got {type(image).__name__}."
    )


def _pixels(processor, image) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        return image  # already prepared pixel values
    if not type(processor).__name__.startswith("BigModel") and image.mode not in ("L", "RGB"):
        image = image.convert("RGB")  # stock processors expect L or RGB; ours converts every mode itself
    return processor(images=image, return_tensors="pt")["pixel_values"].float()


def _display(pixel_values: torch.Tensor) -> np.ndarray:
    """The model's input as an 8-bit RGB picture (min-max scaled), the background of the overlays."""
    pixels = pixel_values[0].detach().float().cpu()
    pixels = (pixels - pixels.min()) / (pixels.max() - pixels.min()).clamp_min(1e-12)
    if pixels.shape[0] == 1:
        pixels = pixels.expand(3, -1, -1)
    return (pixels[:3].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def explain_image_classification(
    model: nn.Module, processor, image, method: str, target, options: dict, output: str
) -> Explanation:
    from captum.attr import LayerAttribution, LayerGradCam

    pixel_values = _pixels(processor, _check_image(image)).to(model.device)  # results come back to the CPU

    def attributed(pixels: torch.Tensor) -> torch.Tensor:
        return scores(model(pixel_values=pixels).logits, output)

    with torch.no_grad():
        probs = model(pixel_values=pixel_values).logits[0].float().softmax(-1)
    index = resolve_target(target, model.config, probs)

    delta = n_steps = layer_name = None
    if method == "grad_cam":
        layer_name, layer = find_target_layer(model, pixel_values)
        # Grad-CAM as pytorch-grad-cam computes it: channel weights = spatial mean of the gradients, ReLU of the
        # weighted sum, upsampled (bilinear) to the input size.
        cam = LayerGradCam(attributed, layer).attribute(pixel_values, target=index, relu_attributions=True)
        attributions = LayerAttribution.interpolate(cam, tuple(pixel_values.shape[-2:]), "bilinear")[0, 0]
    else:
        # Baseline: zero pixel values, i.e. the processor's mean colour (a black image before normalisation).
        baseline = torch.zeros_like(pixel_values)
        attributions, delta, n_steps = integrated_gradients(
            attributed, pixel_values, baseline, index, options["n_steps"], options["tolerance"]
        )
        attributions = attributions[0].sum(0)  # (height, width): the channels of a pixel together
    return Explanation(
        kind="image-classification",
        method=method,
        output=output,
        target=index,
        target_label=label_of(model.config, index),
        probabilities=probs.tolist(),
        attributions=attributions.detach().float().cpu(),
        convergence_delta=delta,
        n_steps=n_steps,
        target_layer=layer_name,
        image=_display(pixel_values),
    )
