"""The hf_bigmodel ResNet: ResNet-18/34/50/101/152 (ImageNet stem) and the CIFAR ResNet-20/32/56 (3x3 stem).

Standalone on purpose (transformers' single-model-file policy): `save_pretrained` copies this file and
`configuration_resnet.py` next to the weights, so that `trust_remote_code=True` loads the model without hf_bigmodel
installed. Only `torch`, `transformers` (with its own dependencies `safetensors` and
`huggingface_hub`) and the sibling files may be imported here: the sibling
`cpu_kernels_resnet.py` holds the fast paths listed below (BatchNorm folding, the fused oneDNN convolution, the
checkpoint-once BatchNorm) and is copied along, since transformers follows single-dot relative imports.

Parameter names map one to one onto transformers' `ResNetForImageClassification` (`microsoft/resnet-*`):
`resnet.embedder.{conv,norm}` <-> `resnet.embedder.embedder.{convolution,normalization}`,
`resnet.stages.S.layers.L.{convK,normK}` <-> `resnet.encoder.stages.S.layers.L.layer.(K-1).{convolution,normalization}`,
`...shortcut.{conv,norm}` <-> `...shortcut.{convolution,normalization}`, `classifier` <-> `classifier.1`.

Speed, with the same function and the same state dict as the stock model:
- channels-last (NHWC) activations, the layout oneDNN (CPU) and cuDNN tensor cores run convolutions fastest in;
- at inference (eval mode, no gradients) each BatchNorm is folded into the convolution before it, from copies kept in
  memory and refreshed whenever a weight or running statistic changes; the parameters themselves are untouched;
- in-place ReLU and residual sums.

`use_residual_connection=False` drops the shortcut of every block (the paper's "plain" baselines, for teaching): the
blocks then hold no projection and add nothing, and every path above, the fused one included, computes
act(norm(conv(x))) alone.
"""

import json
import math
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from huggingface_hub import try_to_load_from_cache
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
)
from transformers.modeling_utils import PreTrainedModel
from transformers.utils import can_return_tuple

from .configuration_resnet import BigModelResNetConfig
from .cpu_kernels_resnet import BigModelResNetBatchNorm, BigModelResNetConvNorm, checkpoint_updating_batch_norm_once


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)


class BigModelResNetActivation(nn.Module):
    """`hidden_act`, in place for ReLU (saves one full activation read/write per use)."""

    def __init__(self, name: str):
        super().__init__()
        self.inplace = name == "relu"
        self.fn = None if self.inplace else ACT2FN[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu_(x) if self.inplace else self.fn(x)


class BigModelResNetEmbeddings(nn.Module):
    """The stem: 7x7 stride-2 convolution + 3x3 stride-2 max pool ("imagenet"), or one 3x3 convolution ("cifar")."""

    def __init__(self, config: BigModelResNetConfig):
        super().__init__()
        kernel, stride = (7, 2) if config.stem_type == "imagenet" else (3, 1)
        self.conv = _conv(config.num_channels, config.embedding_size, kernel, stride)
        self.norm = BigModelResNetBatchNorm(config.embedding_size)
        self.act = BigModelResNetActivation(config.hidden_act)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if config.stem_type == "imagenet" else None
        self.channels_last = config.channels_last

    def forward(self, pixel_values: torch.Tensor, fused: bool) -> torch.Tensor:
        x = BigModelResNetConvNorm.forward(self.conv, self.norm, pixel_values, fused, self.channels_last, self.act)
        return self.pool(x) if self.pool is not None else x


class BigModelResNetShortCut(nn.Module):
    """1x1 projection (+ BN) of the residual when a block changes the width or the resolution."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv = _conv(in_channels, out_channels, 1, stride)
        self.norm = BigModelResNetBatchNorm(out_channels)


def _shortcut(
    config: BigModelResNetConfig, in_channels: int, out_channels: int, stride: int
) -> BigModelResNetShortCut | None:
    """The projection a block's shortcut needs, or None: for an identity shortcut, and for no shortcut at all
    (`use_residual_connection=False`, where `residual` below is None too)."""
    needs_projection = in_channels != out_channels or stride != 1
    if not config.use_residual_connection or not needs_projection:
        return None
    return BigModelResNetShortCut(in_channels, out_channels, stride)


class BigModelResNetBlock(GradientCheckpointingLayer):
    """What the two kinds of block share: the input to add to the block's output."""

    def _identity(self, x: torch.Tensor, fused: bool) -> torch.Tensor | None:
        """The residual: x, or its 1x1 projection when the block changes the width or the resolution; None for a
        plain network (`use_residual_connection=False`), whose block output is then act(norm(conv(...))) alone."""
        if not self.use_residual_connection:
            return None
        if self.shortcut is None:
            return x
        return BigModelResNetConvNorm.forward(self.shortcut.conv, self.shortcut.norm, x, fused, self.channels_last)


class BigModelResNetBasicBlock(BigModelResNetBlock):
    """Two 3x3 convolutions and the residual (ResNet-18/34, CIFAR ResNets); the convolutions alone in a plain network."""

    def __init__(self, config: BigModelResNetConfig, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, 3, stride)
        self.norm1 = BigModelResNetBatchNorm(out_channels)
        self.conv2 = _conv(out_channels, out_channels, 3)
        self.norm2 = BigModelResNetBatchNorm(out_channels)
        self.norm2.is_last_in_block = True
        self.shortcut = _shortcut(config, in_channels, out_channels, stride)
        self.act = BigModelResNetActivation(config.hidden_act)
        self.channels_last = config.channels_last
        self.use_residual_connection = config.use_residual_connection

    def forward(self, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
        conv_norm, cl = BigModelResNetConvNorm.forward, self.channels_last
        identity = self._identity(x, fused)
        out = conv_norm(self.conv1, self.norm1, x, fused, cl, self.act)
        return conv_norm(self.conv2, self.norm2, out, fused, cl, self.act, residual=identity)


class BigModelResNetBottleneckBlock(BigModelResNetBlock):
    """1x1 (reduce by 4) -> 3x3 -> 1x1 (expand) convolutions and the residual (ResNet-50 and deeper); the
    convolutions alone in a plain network."""

    def __init__(self, config: BigModelResNetConfig, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        reduced = out_channels // 4
        first_stride, middle_stride = (stride, 1) if config.downsample_in_bottleneck else (1, stride)
        self.conv1 = _conv(in_channels, reduced, 1, first_stride)
        self.norm1 = BigModelResNetBatchNorm(reduced)
        self.conv2 = _conv(reduced, reduced, 3, middle_stride)
        self.norm2 = BigModelResNetBatchNorm(reduced)
        self.conv3 = _conv(reduced, out_channels, 1)
        self.norm3 = BigModelResNetBatchNorm(out_channels)
        self.norm3.is_last_in_block = True
        self.shortcut = _shortcut(config, in_channels, out_channels, stride)
        self.act = BigModelResNetActivation(config.hidden_act)
        self.channels_last = config.channels_last
        self.use_residual_connection = config.use_residual_connection

    def forward(self, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
        conv_norm, cl = BigModelResNetConvNorm.forward, self.channels_last
        out = conv_norm(self.conv1, self.norm1, x, fused, cl, self.act)
        out = conv_norm(self.conv2, self.norm2, out, fused, cl, self.act)
        identity = self._identity(x, fused)
        return conv_norm(self.conv3, self.norm3, out, fused, cl, self.act, residual=identity)


class BigModelResNetStage(nn.Module):
    """A run of blocks at one width; the first one changes the width and (except maybe in stage 1) the resolution."""

    def __init__(self, config: BigModelResNetConfig, in_channels: int, out_channels: int, stride: int, depth: int):
        super().__init__()
        block = BigModelResNetBottleneckBlock if config.layer_type == "bottleneck" else BigModelResNetBasicBlock
        self.layers = nn.ModuleList(
            [block(config, in_channels, out_channels, stride)]
            + [block(config, out_channels, out_channels) for _ in range(depth - 1)]
        )


# Copied from hf_bigmodel.models.gpt.modeling_gpt._unreadable_safetensors_files
def _unreadable_safetensors_files(name_or_path: str | os.PathLike, kwargs: dict) -> list[str]:
    """The safetensors files of a local folder or of a cached Hub repo whose header safetensors cannot read."""
    subfolder = kwargs.get("subfolder") or ""
    folder = os.path.join(str(name_or_path), subfolder)
    if os.path.isdir(folder):
        candidates = sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".safetensors"))
    else:

        def cached(filename: str) -> str | None:
            try:
                path = try_to_load_from_cache(
                    str(name_or_path),
                    f"{subfolder}/{filename}" if subfolder else filename,
                    cache_dir=kwargs.get("cache_dir"),
                    revision=kwargs.get("revision"),
                )
            except Exception:  # not a valid repo id: nothing to point at
                return None
            return path if isinstance(path, str) else None

        names = ["model.safetensors"]
        index = cached("model.safetensors.index.json")
        if index is not None:
            try:
                with open(index, encoding="utf-8") as f:
                    names += sorted(set(json.load(f).get("weight_map", {}).values()))
            except (OSError, ValueError):  # a damaged index: fall back to the single-file name
                pass
        candidates = [path for path in map(cached, names) if path is not None]
    bad_files = []
    for path in candidates:
        try:
            with safe_open(path, framework="pt"):
                pass
        except (SafetensorError, OSError):
            bad_files.append(path)
    return bad_files


class BigModelResNetPreTrainedModel(PreTrainedModel):
    config: BigModelResNetConfig
    base_model_prefix = "resnet"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["BigModelResNetBasicBlock", "BigModelResNetBottleneckBlock"]

    # Copied from hf_bigmodel.models.gpt.modeling_gpt.BigModelGPTPreTrainedModel.from_pretrained
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, except that a damaged safetensors file gives an error that names the
        file and says what to do (safetensors alone says e.g. "Error while deserializing header: header too large")."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except SafetensorError as error:
            bad_files = _unreadable_safetensors_files(pretrained_model_name_or_path, kwargs)
            if len(bad_files) == 1:
                what = f"The checkpoint file {bad_files[0]} is"
            elif bad_files:
                what = f"The checkpoint files {', '.join(bad_files)} are"
            else:
                what = f"A safetensors file of {pretrained_model_name_or_path} is"
            raise OSError(
                f"{what} corrupt or truncated ({error}), probably by an interrupted save or download. Re-save the "
                f"model with `save_pretrained`, or re-download it, e.g. `from_pretrained(..., force_download=True)`."
            ) from error

    @property
    def dummy_inputs(self) -> dict[str, torch.Tensor]:
        """A batch of two random 32x32 images with the model's channel count."""
        generator = torch.Generator().manual_seed(0)
        return {"pixel_values": torch.randn(2, self.config.num_channels, 32, 32, generator=generator)}

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        # As torchvision and transformers' ResNet: He-normal convolutions (fan_out), PyTorch's default Linear init.
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.weight.shape[1]) if module.weight.shape[1] > 0 else 0
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.BatchNorm2d):
            # zero_init_residual: the last BatchNorm of each block starts at 0, so the block starts as the identity.
            if self.config.zero_init_residual and getattr(module, "is_last_in_block", False):
                init.zeros_(module.weight)
            else:
                init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)

    def _set_gradient_checkpointing(
        self, enable: bool = True, gradient_checkpointing_func: Callable | None = None, every_n_layers: int = 1
    ):
        if gradient_checkpointing_func is None:
            from torch.utils.checkpoint import checkpoint

            gradient_checkpointing_func = checkpoint
        super()._set_gradient_checkpointing(
            enable=enable,
            gradient_checkpointing_func=checkpoint_updating_batch_norm_once(gradient_checkpointing_func),
            every_n_layers=every_n_layers,
        )

    def train(self, mode: bool = True):
        if mode:  # the folded inference weights are only used in eval mode: free them
            for module in self.modules():
                if hasattr(module, "_bigmodel_folded"):
                    del module._bigmodel_folded
        return super().train(mode)


class BigModelResNetModel(BigModelResNetPreTrainedModel):
    """The ResNet backbone: stem and stages. Returns the last feature map, its global average (`pooler_output`, shape
    (batch, channels, 1, 1) as transformers' ResNetModel) and, with `output_hidden_states=True`, the stem output and
    every stage's output."""

    def __init__(self, config: BigModelResNetConfig):
        super().__init__(config)
        self.embedder = BigModelResNetEmbeddings(config)
        widths = [config.embedding_size, *config.hidden_sizes]
        self.stages = nn.ModuleList(
            [
                BigModelResNetStage(
                    config,
                    widths[i],
                    widths[i + 1],
                    stride=2 if (i > 0 or config.downsample_in_first_stage) else 1,
                    depth=depth,
                )
                for i, depth in enumerate(config.depths)
            ]
        )
        self.gradient_checkpointing = False
        self.post_init()

    def _check_pixel_values(self, pixel_values: torch.Tensor | None) -> None:
        if pixel_values is None:
            raise ValueError("Pass `pixel_values`: a (batch, channels, height, width) float tensor of images.")
        if pixel_values.dim() != 4:
            raise ValueError(
                f"`pixel_values` must have 4 dimensions (batch, channels, height, width), got shape "
                f"{tuple(pixel_values.shape)}. Use the model's image processor, or add the batch dimension with "
                f"pixel_values.unsqueeze(0) for a single image."
            )
        if pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"`pixel_values` has {pixel_values.shape[1]} channels but this model expects "
                f"{self.config.num_channels} (config.num_channels). Prepare the images with the model's image "
                f"processor (AutoImageProcessor.from_pretrained(...) converts e.g. RGB to grayscale when "
                f"num_channels=1), or pass channels-first (batch, channels, height, width) tensors."
            )

    @can_return_tuple
    def forward(
        self, pixel_values: torch.Tensor | None = None, output_hidden_states: bool | None = None, **kwargs
    ) -> BaseModelOutputWithPoolingAndNoAttention:
        self._check_pixel_values(pixel_values)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        fused = self.config.fold_batch_norm and not self.training and not torch.is_grad_enabled()
        x = (
            pixel_values.to(self.embedder.conv.weight.dtype)
            if not torch.is_autocast_enabled(pixel_values.device.type)
            else pixel_values
        )
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.embedder(x, fused)
        hidden_states = [x] if output_hidden_states else None
        for stage in self.stages:
            for block in stage.layers:
                x = block(x, fused=fused)
            if output_hidden_states:
                hidden_states.append(x)
        pooled = x.mean(dim=(2, 3), keepdim=True)  # (batch, channels, 1, 1)
        return BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state=x,
            pooler_output=pooled,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
        )


class BigModelResNetForImageClassification(BigModelResNetPreTrainedModel):
    """The backbone, global average pooling and a linear classifier.

    Labels: class indices of shape (batch,) (cross-entropy with `config.label_smoothing`), or soft targets of shape
    (batch, num_labels) as float probabilities (mixup / cutmix; cross-entropy against the distribution). With
    `config.problem_type="multi_label_classification"` float labels are independent binary targets (BCE); with
    `num_labels=1` or `problem_type="regression"` the loss is the mean squared error.
    """

    # The loss is a mean per micro-batch: Trainer divides by gradient_accumulation_steps itself.
    accepts_loss_kwargs = False

    def __init__(self, config: BigModelResNetConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.resnet = BigModelResNetModel(config)
        self.classifier = (
            nn.Linear(config.hidden_sizes[-1], config.num_labels) if config.num_labels > 0 else nn.Identity()
        )
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutputWithNoAttention:
        outputs = self.resnet(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(outputs.pooler_output.flatten(1))  # (batch, num_labels)
        loss = self.compute_loss(logits, labels) if labels is not None else None
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits, hidden_states=outputs.hidden_states)

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of `logits` against hard labels, soft targets, multi-label targets or regression targets."""
        num_labels = self.config.num_labels
        labels = labels.to(logits.device)
        logits = logits.float()
        problem_type = self.config.problem_type
        if problem_type == "regression" or (problem_type is None and num_labels == 1):
            predictions = logits.squeeze(-1) if num_labels == 1 else logits
            return F.mse_loss(predictions, labels.float().view_as(predictions))
        if problem_type == "multi_label_classification":
            if labels.shape != logits.shape:
                raise ValueError(
                    f"Multi-label targets must have shape (batch, num_labels) = {tuple(logits.shape)}, got "
                    f"{tuple(labels.shape)}."
                )
            return F.binary_cross_entropy_with_logits(logits, labels.float())
        if labels.is_floating_point():
            if labels.shape != logits.shape:
                raise ValueError(
                    f"Float labels are soft targets (e.g. from mixup) and must have shape (batch, num_labels) = "
                    f"{tuple(logits.shape)}, got {tuple(labels.shape)}. For hard labels pass class indices as an "
                    f"integer tensor of shape (batch,)."
                )
            return F.cross_entropy(logits, labels.float(), label_smoothing=self.config.label_smoothing)
        if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
            raise ValueError(
                f"Class-index labels must have shape (batch,) = ({logits.shape[0]},), got {tuple(labels.shape)}."
            )
        valid = labels[labels != -100]
        if valid.numel() and (valid.min() < 0 or valid.max() >= num_labels):
            bad = valid[(valid < 0) | (valid >= num_labels)].unique()[:5].tolist()
            raise ValueError(
                f"Labels {bad} are out of range: this model has {num_labels} classes (0 to {num_labels - 1}, "
                f"config.num_labels). Check the dataset's labels, or build the model with num_labels (or id2label) "
                f"covering every class."
            )
        return F.cross_entropy(logits, labels.long(), label_smoothing=self.config.label_smoothing)


__all__ = [
    "BigModelResNetPreTrainedModel",
    "BigModelResNetModel",
    "BigModelResNetForImageClassification",
]
