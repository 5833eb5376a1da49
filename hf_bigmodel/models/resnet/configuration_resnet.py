"""Configuration of the hf_bigmodel ResNet.

Standalone on purpose (transformers' single-model-file policy): this file is copied next to the weights on
`save_pretrained`, so it may only import `transformers`, `huggingface_hub`, `torch` and the standard library.
"""

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

LAYER_TYPES = ("basic", "bottleneck")
STEM_TYPES = ("imagenet", "cifar")

# Written into every config.json so that `trust_remote_code=True` resolves every auto class from the code files
# saved next to the weights (transformers itself only records the class being saved).
AUTO_MAP = {
    "AutoConfig": "configuration_resnet.BigModelResNetConfig",
    "AutoModel": "modeling_resnet.BigModelResNetModel",
    "AutoModelForImageClassification": "modeling_resnet.BigModelResNetForImageClassification",
}

_IMAGENET = dict(stem_type="imagenet", embedding_size=64, num_labels=1000)
_CIFAR = dict(stem_type="cifar", embedding_size=16, hidden_sizes=[16, 32, 64], layer_type="basic", num_labels=10)

# Named sizes, as timm names its models. The ImageNet ones have exactly the shapes of microsoft/resnet-* (7x7 stem,
# max pool, 4 stages, 1000 classes); the CIFAR ones are He et al.'s (2015) section 4.2 networks (3x3 stem, 3 stages of
# 16/32/64 channels, 6n+2 layers) with projection shortcuts, for 32x32 images and 10 classes.
PRESETS: dict[str, dict] = {
    # For unit tests: a few thousand parameters; bottleneck blocks, a projection shortcut and an identity one.
    "resnet-tiny": dict(
        stem_type="imagenet", embedding_size=8, hidden_sizes=[16, 32], depths=[1, 2], layer_type="bottleneck",
        num_labels=3,
    ),
    "resnet-18": dict(**_IMAGENET, hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic"),
    "resnet-34": dict(**_IMAGENET, hidden_sizes=[64, 128, 256, 512], depths=[3, 4, 6, 3], layer_type="basic"),
    "resnet-50": dict(**_IMAGENET, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3], layer_type="bottleneck"),
    "resnet-101": dict(
        **_IMAGENET, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 23, 3], layer_type="bottleneck"
    ),
    "resnet-152": dict(
        **_IMAGENET, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 8, 36, 3], layer_type="bottleneck"
    ),
    "resnet-20": dict(**_CIFAR, depths=[3, 3, 3]),
    "resnet-32": dict(**_CIFAR, depths=[5, 5, 5]),
    "resnet-56": dict(**_CIFAR, depths=[9, 9, 9]),
}  # fmt: skip


# Copied from hf_bigmodel.models.gpt.configuration_gpt.ConfigValidationError
class ConfigValidationError(StrictDataclassClassValidationError, ValueError):
    """A config with invalid or inconsistent fields. huggingface_hub's `@strict` wraps the `ValueError` of
    `validate_architecture` in `StrictDataclassClassValidationError`, which is not a `ValueError`; this is both, so
    `except ValueError` (what a bad argument is elsewhere in Python) and `except StrictDataclassError` (what
    transformers' own configs raise) both catch it, with the same message."""

    def __init__(self, message: str):
        Exception.__init__(self, message)  # the parent's __init__ builds the message from (validator, cause)


# Copied from hf_bigmodel.models.gpt.configuration_gpt.raise_value_errors
def raise_value_errors(config_class: type) -> type:
    """Class decorator, above `@strict`: `validate()` (run by `__init__` and `save_pretrained`) raises
    `ConfigValidationError` instead of a bare `StrictDataclassClassValidationError`."""
    strict_validate = config_class.validate

    def validate(self) -> None:
        try:
            strict_validate(self)
        except StrictDataclassClassValidationError as error:
            raise ConfigValidationError(str(error)) from error.__cause__

    validate.__is_defined_by_strict_decorator__ = True  # lets a `@strict` subclass replace it, as `@strict` allows
    config_class.validate = validate
    return config_class


@raise_value_errors
@strict
class BigModelResNetConfig(PreTrainedConfig):
    r"""
    Configuration of a ResNet image classifier. The defaults are ResNet-50 (as `microsoft/resnet-50`).

    Args:
        num_channels: channels of the input images (3 for RGB, 1 for grayscale such as MNIST).
        embedding_size: channels of the stem convolution.
        hidden_sizes: output channels of each stage.
        depths: number of residual blocks in each stage (one entry per entry of `hidden_sizes`).
        layer_type: `"basic"` (two 3x3 convolutions, ResNet-18/34 and the CIFAR nets) or `"bottleneck"`
            (1x1 -> 3x3 -> 1x1 with a 4x channel reduction, ResNet-50 and deeper).
        stem_type: `"imagenet"` (7x7 stride-2 convolution + 3x3 stride-2 max pool: 224x224 images become 56x56) or
            `"cifar"` (one 3x3 stride-1 convolution, no pooling: for 32x32 or 28x28 images).
        hidden_act: activation after each convolution and after each residual sum.
        downsample_in_first_stage: give the first stage stride 2 (the later stages always have stride 2).
        downsample_in_bottleneck: stride the first 1x1 convolution of a bottleneck instead of its 3x3 one (ResNet
            v1 as in the paper; the default strides the 3x3, "ResNet v1.5").
        zero_init_residual: initialise the last BatchNorm scale of every block to zero, so that each block starts as
            the identity (Goyal et al., 2017). Helps large-batch training.
        use_residual_connection: add each block's input (or its 1x1 projection) to the block's output. `False`
            builds the "plain" network of the ResNet paper's baselines (He et al., 2015, section 4.1): every block is
            its convolutions, BatchNorms and activations only, with no shortcut module and no addition, so the
            same depth can be trained with and without the residual connection. For teaching and ablations; plain
            checkpoints do not convert to transformers' `ResNetForImageClassification`, which always adds the
            shortcut.
        channels_last: run the convolutions in channels-last (NHWC) memory layout, which is faster on CPUs (oneDNN)
            and on GPUs with tensor cores. Outputs and weights are the same; only the memory layout differs.
        fold_batch_norm: at inference (`model.eval()` and no gradients), fold each BatchNorm into the convolution
            before it. The saved weights are never changed: the folded copies are kept in memory only.
        label_smoothing: label smoothing of the classification loss.
    """

    model_type = "bigmodel_resnet"

    num_channels: int = 3
    embedding_size: int = 64
    hidden_sizes: list[int] | tuple[int, ...] = (256, 512, 1024, 2048)
    depths: list[int] | tuple[int, ...] = (3, 4, 6, 3)
    layer_type: str = "bottleneck"
    stem_type: str = "imagenet"
    hidden_act: str = "relu"
    downsample_in_first_stage: bool = False
    downsample_in_bottleneck: bool = False
    zero_init_residual: bool = False
    use_residual_connection: bool = True
    channels_last: bool = True
    fold_batch_norm: bool = True
    label_smoothing: float = 0.0

    def __post_init__(self, **kwargs):
        self.hidden_sizes = list(self.hidden_sizes)
        self.depths = list(self.depths)
        kwargs["auto_map"] = {**AUTO_MAP, **(kwargs.get("auto_map") or {})}
        super().__post_init__(**kwargs)
        if self.id2label and not self.label2id:  # label -> id for datasets and Trainer; transformers leaves it unset
            self.label2id = {label: int(index) for index, label in self.id2label.items()}

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "BigModelResNetConfig":
        """`BigModelResNetConfig.from_preset("resnet-50", num_labels=10)`: a named size, with any field
        overridden."""
        if name not in PRESETS:
            raise ValueError(f"Unknown ResNet preset {name!r}. Available presets: {', '.join(PRESETS)}.")
        settings = dict(PRESETS[name])
        if "id2label" in overrides or "label2id" in overrides:
            settings.pop("num_labels")  # the label map decides the class count
        return cls(**{**settings, **overrides})

    @property
    def num_stages(self) -> int:
        return len(self.hidden_sizes)

    def validate_architecture(self):
        """Part of `@strict` validation: runs at init and again before `save_pretrained`."""
        if len(self.depths) != len(self.hidden_sizes):
            raise ValueError(
                f"`depths` has {len(self.depths)} entries but `hidden_sizes` has {len(self.hidden_sizes)}: give one "
                f"depth (number of blocks) per stage width, e.g. hidden_sizes=[256, 512, 1024, 2048] with "
                f"depths=[3, 4, 6, 3]."
            )
        if not self.hidden_sizes:
            raise ValueError("`hidden_sizes` is empty: a ResNet needs at least one stage, e.g. hidden_sizes=[64].")
        for name in ("depths", "hidden_sizes"):
            bad = [value for value in getattr(self, name) if value <= 0]
            if bad:
                raise ValueError(f"Every entry of `{name}` must be a positive integer, got {getattr(self, name)}.")
        _check_positive_ints(self, ("num_channels", "embedding_size"))
        if self.layer_type not in LAYER_TYPES:
            raise ValueError(f"`layer_type` must be one of {LAYER_TYPES}, got {self.layer_type!r}.")
        if self.stem_type not in STEM_TYPES:
            raise ValueError(
                f"`stem_type` must be one of {STEM_TYPES}, got {self.stem_type!r}: 'imagenet' for 224x224 images "
                f"(7x7 stride-2 convolution + max pool), 'cifar' for small images (3x3 stride-1 convolution)."
            )
        if self.layer_type == "bottleneck":
            odd = [size for size in self.hidden_sizes if size % 4]
            if odd:
                raise ValueError(
                    f"Bottleneck blocks reduce the channels by 4 inside each block, so every entry of "
                    f"`hidden_sizes` must be a multiple of 4; {odd} are not. Use multiples of 4 or layer_type='basic'."
                )
        if self.hidden_act not in ACT2FN:
            raise ValueError(
                f"`hidden_act` {self.hidden_act!r} is not a transformers activation; use one of "
                f"{', '.join(sorted(k for k in ACT2FN if k in ('relu', 'gelu', 'silu', 'leaky_relu', 'mish')))}."
            )
        _check_probabilities(self, ("label_smoothing",))
        if self.zero_init_residual and not self.use_residual_connection:
            raise ValueError(
                "`zero_init_residual=True` needs `use_residual_connection=True`: it zeroes the last BatchNorm scale of "
                "every block so that the block starts as the identity through its shortcut; without the shortcut "
                "every block would output zeros. Set zero_init_residual=False for a plain network."
            )


# Copied from hf_bigmodel.models.gpt.configuration_gpt._check_positive_ints
def _check_positive_ints(config: PreTrainedConfig, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise ValueError(f"`{name}` must be a positive integer, got {getattr(config, name)}.")


# Copied from hf_bigmodel.models.gpt.configuration_gpt._check_probabilities
def _check_probabilities(config: PreTrainedConfig, names: tuple[str, ...]) -> None:
    for name in names:
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ValueError(f"`{name}` must be in [0, 1), got {getattr(config, name)}.")


__all__ = ["BigModelResNetConfig", "PRESETS"]
