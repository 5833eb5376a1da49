"""`explain()`: pick the model's kind, load what it needs, run the captum method, return an `Explanation`."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

# kind -> methods, default first. A method outside its kind's list is a user error (e.g. Grad-CAM on text).
METHODS: dict[str, tuple[str, ...]] = {
    "text-classification": ("integrated_gradients", "gradient_x_input", "lime", "kernel_shap"),
    "token-classification": ("integrated_gradients", "gradient_x_input", "lime", "kernel_shap"),
    "masked-lm": ("integrated_gradients", "gradient_x_input", "lime", "kernel_shap"),
    "causal-lm": ("integrated_gradients", "gradient_x_input", "lime", "kernel_shap"),
    "translation": ("integrated_gradients", "gradient_x_input", "lime", "kernel_shap"),
    "image-classification": ("grad_cam", "integrated_gradients"),
    "recommendation": ("integrated_gradients", "gradient_x_input", "lime", "kernel_shap"),
}

OUTPUTS = ("logit", "probability")
TEXT_KINDS = ("text-classification", "token-classification", "masked-lm", "causal-lm", "translation")
MAX_STEPS = 1024  # integrated gradients: the most steps the adaptive schedule takes

# Head-class name suffix -> kind. Suffixes, not our classes, so stock transformers heads are explained the same way.
_KIND_OF_SUFFIX = {
    # The recommenders first: their heads end like a causal LM's and a masked LM's, but they read item histories.
    "SASRecForCausalLM": "recommendation",
    "Bert4RecForMaskedLM": "recommendation",
    "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification",
    "ForMaskedLM": "masked-lm",
    "ForCausalLM": "causal-lm",
    "LMHeadModel": "causal-lm",  # GPT2LMHeadModel and kin
    "ForConditionalGeneration": "translation",  # encoder-decoders: ours, BART, T5, ...
    "MTModel": "translation",  # MarianMTModel
    "ForImageClassification": "image-classification",
}


class ExplainError(ValueError):
    """A request that `explain` cannot serve; the message names what is wrong and the fix."""


@dataclass
class Explanation:
    """What `explain` returns: the attributions for one input and one target class, and how they were made.

    `attributions` has one value per token (text, shape `(seq,)`) or per pixel (image, `(height, width)` of the
    model's input). For integrated gradients, `convergence_delta` is captum's completeness error: the attributions
    sum to f(input) - f(baseline) up to it, where f is the target's logit or probability (`output`)."""

    kind: str
    method: str
    output: str  # what was attributed: "logit" or "probability" of the target class
    target: int
    target_label: str
    probabilities: list[float]
    attributions: torch.Tensor
    tokens: list[str] | None = None
    convergence_delta: float | None = None
    n_steps: int | None = None  # integrated gradients: the steps taken
    target_layer: str | None = None  # Grad-CAM: the module whose activations were used
    position: int | None = None  # token classification: the token whose label is explained
    target_tokens: list[str] | None = None  # translation: the decoder's input (start token, target so far)
    attention: Any = field(default=None, repr=False)  # AttentionMaps, with explain(..., attention=True)
    image: Any = field(default=None, repr=False)  # (height, width, 3) uint8 array of the model's input, for overlays

    @property
    def probability(self) -> float:
        """The model's probability for the target class."""
        return self.probabilities[self.target]

    def to_dict(self) -> dict:
        """The raw numbers as plain JSON types."""
        return {
            "kind": self.kind,
            "method": self.method,
            "output": self.output,
            "target": self.target,
            "target_label": self.target_label,
            "probability": self.probability,
            "probabilities": self.probabilities,
            "tokens": self.tokens,
            "attributions": self.attributions.tolist(),
            "convergence_delta": self.convergence_delta,
            "n_steps": self.n_steps,
            "target_layer": self.target_layer,
            "position": self.position,
            "target_tokens": self.target_tokens,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, folder: str | os.PathLike) -> dict[str, Path]:
        """Write explanation.json, attributions.safetensors, explanation.png and explanation.html (self-contained:
        no network, no CDN) into `folder`, and with attention maps attention.json and attention.png (a heatmap per
        layer and head, also shown in the HTML page); returns the paths by kind."""
        from safetensors.torch import save

        from .._io import atomic_write_bytes, atomic_write_text
        from .render import render_html, render_png

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        png = render_png(self)
        paths = {
            "json": atomic_write_text(folder / "explanation.json", self.to_json() + "\n"),
            "tensors": atomic_write_bytes(
                folder / "attributions.safetensors", save({"attributions": self.attributions.contiguous()})
            ),
            "png": atomic_write_bytes(folder / "explanation.png", png),
        }
        attention_png = None
        if self.attention is not None:
            attention_png = self.attention.render_png()
            paths["attention_json"] = atomic_write_text(
                folder / "attention.json", json.dumps(self.attention.to_dict())
            )
            paths["attention_png"] = atomic_write_bytes(folder / "attention.png", attention_png)
        paths["html"] = atomic_write_text(folder / "explanation.html", render_html(self, png, attention_png))
        return paths


def kind_of(model_or_class_name: nn.Module | str) -> str:
    """The kind of a model ("text-classification", "token-classification", "image-classification") from its head
    class name."""
    name = model_or_class_name if isinstance(model_or_class_name, str) else type(model_or_class_name).__name__
    for suffix, kind in _KIND_OF_SUFFIX.items():
        if name.endswith(suffix):
            if kind == "translation" and not isinstance(model_or_class_name, str):
                _check_text_to_text(name, model_or_class_name.config, model_or_class_name.main_input_name)
            return kind
    supported = ", ".join(f"*{suffix}" for suffix in _KIND_OF_SUFFIX)
    raise ExplainError(f"explain does not support {name} yet; it explains these heads: {supported}.")


def _check_text_to_text(name: str, config, main_input_name: str = "input_ids", seq2seq_lm: bool = True) -> None:
    """`*ForConditionalGeneration` also names speech (Whisper) and vision-language (Llava) models; explain's
    translation path reads text into an encoder and explains a decoder's next token, so it takes text-to-text
    encoder-decoders only."""
    if not getattr(config, "is_encoder_decoder", False):
        problem = "is not an encoder-decoder"
    elif main_input_name != "input_ids":
        problem = f"reads {main_input_name}, not input_ids"
    elif not seq2seq_lm:
        problem = "is not a model that AutoModelForSeq2SeqLM loads"
    else:
        return
    raise ExplainError(
        f"explain does not support {name}: of the *ForConditionalGeneration models it explains text-to-text "
        f"encoder-decoders (ours, BART, T5, Marian), and this one {problem}."
    )


def _load(folder: str | os.PathLike, trust_remote_code: bool) -> tuple[nn.Module, Any, str]:
    import transformers

    import hf_bigmodel  # noqa: F401  (registers the architectures with the Auto classes)

    if not Path(folder).is_dir():
        raise ExplainError(f"{folder} is not a folder; pass a saved model folder (config.json, weights, tokenizer).")
    config = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    architectures = getattr(config, "architectures", None) or []
    if not architectures:
        raise ExplainError(
            f"{folder}/config.json names no `architectures`, so its head is unknown; save the model with "
            "save_pretrained, or load it yourself and pass the model to explain()."
        )
    kind = kind_of(architectures[0])
    if kind == "translation":
        auto_map = getattr(config, "auto_map", None) or {}
        seq2seq_lm = (
            type(config) in transformers.AutoModelForSeq2SeqLM._model_mapping or "AutoModelForSeq2SeqLM" in auto_map
        )
        _check_text_to_text(architectures[0], config, seq2seq_lm=seq2seq_lm)
    if kind == "recommendation":  # the item map is in the config: no tokenizer
        auto = "AutoModelForMaskedLM" if architectures[0].endswith("ForMaskedLM") else "AutoModelForCausalLM"
        model = getattr(transformers, auto).from_pretrained(folder, trust_remote_code=trust_remote_code)
        return model, None, kind
    if kind in TEXT_KINDS:
        auto = {
            "text-classification": "AutoModelForSequenceClassification",
            "token-classification": "AutoModelForTokenClassification",
            "masked-lm": "AutoModelForMaskedLM",
            "causal-lm": "AutoModelForCausalLM",
            "translation": "AutoModelForSeq2SeqLM",
        }[kind]
        model = getattr(transformers, auto).from_pretrained(folder, trust_remote_code=trust_remote_code)
        processor = transformers.AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    else:
        model = transformers.AutoModelForImageClassification.from_pretrained(
            folder, trust_remote_code=trust_remote_code
        )
        processor = transformers.AutoImageProcessor.from_pretrained(folder, trust_remote_code=trust_remote_code)
    return model, processor, kind


def resolve_target(target: int | str | None, config, probabilities: torch.Tensor) -> int:
    """The class index for `target`: None = the predicted class; an int; a label name of `config.id2label`; or a
    digit string. Anything else raises an ExplainError listing the labels."""
    num_labels = probabilities.shape[-1]
    if target is None:
        return int(probabilities.argmax())
    id2label = {int(k): v for k, v in (getattr(config, "id2label", None) or {}).items()}
    label2id = {v: k for k, v in id2label.items()}
    index: int | None = None
    if isinstance(target, str) and target in label2id:
        index = label2id[target]
    elif isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        index = int(target)
    if index is None or not 0 <= index < num_labels:
        labels = ", ".join(f"{i}={id2label.get(i, i)!s}" for i in range(num_labels))
        raise ExplainError(
            f"Target label {target!r} does not exist: this model has {num_labels} classes ({labels}). "
            "Pass one of these names or indices, or leave the target out to explain the predicted class."
        )
    return index


def label_of(config, index: int) -> str:
    id2label = {int(k): v for k, v in (getattr(config, "id2label", None) or {}).items()}
    return str(id2label.get(index, index))


def scores(logits: torch.Tensor, output: str) -> torch.Tensor:
    """What the attribution methods differentiate: the logits, or the softmax probabilities."""
    logits = logits.float()
    return logits.softmax(-1) if output == "probability" else logits


def integrated_gradients(
    forward, inputs: torch.Tensor, baseline: torch.Tensor, target: int, n_steps: int | None, tolerance: float
) -> tuple[torch.Tensor, float, int]:
    """captum's integrated gradients with its convergence delta. With `n_steps=None` the steps double from 64 (up to
    1024) until the delta is within `tolerance` of |f(input) - f(baseline)|: a sharp stretch on the path (a
    LayerNorm near zero input, a saturating softmax) needs many steps, a smooth one few. Returns (attributions,
    |delta|, steps used). Still short of `tolerance` at 1024 steps, it warns (with the delta) rather than return the
    attributions as if they were complete: that happens when f(input) and f(baseline) are almost equal, so that a
    tiny absolute error is a large relative one (seen on MNIST digits, tests/test_explain_faithfulness_real.py)."""
    from captum.attr import IntegratedGradients

    method = IntegratedGradients(forward)
    with torch.no_grad():
        change = float((forward(inputs)[0, target] - forward(baseline)[0, target]).abs())
    steps = n_steps or 64
    while True:
        attributions, delta = method.attribute(
            inputs, baselines=baseline, target=target, n_steps=steps, internal_batch_size=64,
            return_convergence_delta=True,
        )  # fmt: skip
        delta = float(delta.abs().max())
        if n_steps is not None or delta <= tolerance * max(change, 1e-6):
            return attributions, delta, steps
        if steps >= MAX_STEPS:
            warnings.warn(
                f"Integrated gradients did not converge in {MAX_STEPS} steps: the attributions sum to "
                f"f(input) - f(baseline) = {change:.4g} (in absolute value) only up to the convergence delta "
                f"{delta:.3g}, {delta / max(change, 1e-12):.1%} of it, not within tolerance={tolerance:g}. "
                "A change this close to zero makes a relative tolerance hard to reach; pass a larger tolerance= "
                "or judge the attributions by explanation.convergence_delta.",
                stacklevel=2,
            )
            return attributions, delta, steps
        steps *= 2


def find_target_layer(model: nn.Module, pixel_values: torch.Tensor) -> tuple[str, nn.Module]:
    """The layer Grad-CAM reads: the last module whose output is a feature map (4-D), pooling layers excluded. When
    several nested modules return that same tensor (a stage returning its last block's output), the innermost one
    is taken, which is pytorch-grad-cam's convention for ResNets (`model.layer4[-1]`, the last residual block)."""
    names = {module: name for name, module in model.named_modules()}
    finished: list[tuple[nn.Module, torch.Tensor]] = []
    pooling = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d, nn.Flatten)

    def hook(module, args, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4 and not isinstance(module, pooling):
            finished.append((module, output))

    handles = [module.register_forward_hook(hook) for module in model.modules() if module is not model]
    try:
        with torch.no_grad():
            model(pixel_values=pixel_values)
    finally:
        for handle in handles:
            handle.remove()
    if not finished:
        raise ExplainError(
            f"{type(model).__name__} has no layer with a 4-D feature map, so Grad-CAM cannot run on it."
        )
    last_output = finished[-1][1]
    same = [module for module, output in finished if output is last_output]  # hooks fire innermost first
    # The block, not its final activation nor the stage around it: the innermost module that is an item of a
    # ModuleList/Sequential (its name ends in an index), else the innermost module.
    module = next((m for m in same if names[m].rsplit(".", 1)[-1].isdigit()), same[0])
    return names[module], module


def explain(
    model_or_folder: nn.Module | str | os.PathLike,
    inputs: Any,
    method: str | None = None,
    target: int | str | None = None,
    *,
    tokenizer: Any = None,
    image_processor: Any = None,
    n_steps: int | None = None,
    tolerance: float = 0.01,
    output: str = "logit",
    position: int | None = None,
    n_samples: int = 200,
    batch_size: int = 64,
    attention: bool = False,
    max_new_tokens: int = 8,
    target_text: str | None = None,
    trust_remote_code: bool = False,
) -> Explanation | list[Explanation]:
    """Explain one prediction of a model of the zoo or a stock transformers model of the same kind.

    Args:
        model_or_folder: a model (then pass its `tokenizer` or `image_processor`, or they are loaded from
            `model.name_or_path`), or a saved folder.
        inputs: a string (text classification), or a PIL image, path to an image file, or `(channels, height,
            width)` pixel tensor (image classification), or a history of raw item ids, oldest first (recommendation:
            SASRec, BERT4Rec; `target` is then a raw item id, default the top recommendation not in the history).
        method: one of `METHODS[kind]`; None takes the kind's default (integrated gradients for text, Grad-CAM for
            images).
        target: the class to explain, as an index or a label name; None explains the predicted class.
        n_samples, batch_size: LIME and Kernel SHAP: perturbed inputs to fit on, and how many go through the model
            in one forward pass.
        target_text: translation only: a target sentence to explain token by token instead of the model's greedy
            output.
        max_new_tokens: causal LMs and translation: how many tokens to generate (greedily) and explain; the result is then a list
            with one Explanation per generated token, attributing it to the context before it.
        attention: text models: also record the attention maps (`Explanation.attention`, see `attention_maps`).
        position: token classification only: the index of the token (in the tokenizer's output, special tokens
            included) whose label is explained. Required for token-classification models.
        n_steps: integration steps of integrated gradients; None (default) doubles them from 64 up to 1024 until
            the convergence delta is within `tolerance` (relative to |f(input) - f(baseline)|).
        output: what to attribute: the target's "logit" (default: it does not saturate, so a confident model still
            gets attributions and integrated gradients converge in few steps) or its softmax "probability".
    """
    try:
        import captum  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "explain needs captum: pip install 'hf_bigmodel[explain]' (or pip install captum)."
        ) from error

    if isinstance(model_or_folder, nn.Module):
        model, kind = model_or_folder, kind_of(model_or_folder)
        processor = tokenizer if kind in TEXT_KINDS else image_processor
        needs_processor = kind in TEXT_KINDS or (
            kind == "image-classification" and not isinstance(inputs, torch.Tensor)
        )
        if processor is None and needs_processor:
            source = getattr(model, "name_or_path", "")
            if not source or not Path(source).is_dir():
                what = "tokenizer" if kind in TEXT_KINDS else "image_processor"
                raise ExplainError(f"Pass `{what}=` with a model object (it was not loaded from a folder).")
            _, processor, _ = _load(source, trust_remote_code)
    else:
        model, processor, kind = _load(model_or_folder, trust_remote_code)

    if output not in OUTPUTS:
        raise ExplainError(f"output={output!r} is not known; use one of: {', '.join(OUTPUTS)}.")
    method = method or METHODS[kind][0]
    if method not in METHODS[kind]:
        fits = next((k for k, methods in METHODS.items() if method in methods), None)
        article = "an" if kind[0] in "aeiou" else "a"
        if fits is None:
            raise ExplainError(
                f"Unknown method {method!r}; {article} {kind} model takes one of: {', '.join(METHODS[kind])}."
            )
        raise ExplainError(
            f"Method {method!r} does not fit {article} {kind} model ({method} explains {fits} models); use one of: "
            f"{', '.join(METHODS[kind])}."
        )
    if n_samples < 1 or batch_size < 1:
        raise ExplainError(f"n_samples and batch_size must be positive; got {n_samples} and {batch_size}.")
    options = {"n_steps": n_steps, "tolerance": tolerance, "n_samples": n_samples, "batch_size": batch_size}
    was_training = model.training
    model.eval()  # dropout off: attributions must be those of the deterministic model
    if target_text is not None and kind != "translation":
        raise ExplainError("target_text= (--target_text) applies to translation models only; leave it out.")
    try:
        if kind == "recommendation":
            if attention:
                raise ExplainError("attention=True (--attention) is not offered for recommenders yet; leave it out.")
            from .recommendation import explain_recommendation

            return explain_recommendation(model, inputs, method, target, options, output)
        if kind in ("causal-lm", "translation"):
            from .text import explain_generation

            if target is not None or attention:
                raise ExplainError(
                    "target= and attention= do not apply to generation (causal LM, translation): each generated token is the target "
                    "of its explanation (use attention_maps for the attention)."
                )
            return explain_generation(model, processor, inputs, method, options, output, max_new_tokens, target_text)
        if kind in TEXT_KINDS:
            from .text import explain_text_classification

            explanation = explain_text_classification(
                model, processor, inputs, method, target, options, output, position
            )
            if attention:
                from .attention import attention_maps

                explanation.attention = attention_maps(model, inputs, processor)
            return explanation
        if attention:
            raise ExplainError("attention=True (--attention) applies to text models; ResNets have no attention.")
        from .image import explain_image_classification

        return explain_image_classification(model, processor, inputs, method, target, options, output)
    finally:
        model.train(was_training)
