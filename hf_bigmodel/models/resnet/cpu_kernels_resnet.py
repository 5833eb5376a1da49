"""Fast paths of the hf_bigmodel ResNet: the same function and state dict as the plain convolution + BatchNorm, computed
faster. The architecture lives in `modeling_resnet.py`.

- `BigModelResNetConvNorm`: a (Conv2d, BatchNorm) pair, with the BatchNorm folded into the convolution at inference
  (cached, refreshed when a weight or statistic changes) and, on CPU in float32, conv + bias (+ residual) + ReLU as
  one oneDNN call;
- `BigModelResNetBatchNorm` / `checkpoint_updating_batch_norm_once`: activation checkpointing that updates the
  BatchNorm running statistics once per step, as without checkpointing.

Standalone on purpose: `modeling_resnet.py` imports it with a single-dot relative import, so `save_pretrained`
copies it next to the weights and `trust_remote_code=True` still works without hf_bigmodel. Only `torch`,
`transformers` and sibling files may be imported here.
"""

import threading
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# Set while activation checkpointing recomputes a block in the backward pass: BatchNorm then normalises with the
# batch statistics as in the first pass but does not update its running statistics a second time.
_RECOMPUTING = threading.local()


def _is_recomputing() -> bool:
    return getattr(_RECOMPUTING, "active", False)


class BigModelResNetBatchNorm(nn.BatchNorm2d):
    """`nn.BatchNorm2d` (same parameters and buffers) that leaves its running statistics alone during the backward
    recomputation of activation checkpointing, so a checkpointed step updates them exactly once, as without it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and _is_recomputing() and self.running_mean is not None:
            # Throwaway copies take the update: the same op (and the same saved tensors, which non-reentrant
            # checkpointing checks) as the first pass, with the real statistics untouched.
            mean, var = self.running_mean.clone(), self.running_var.clone()
            return F.batch_norm(x, mean, var, self.weight, self.bias, True, self.momentum or 0.0, self.eps)
        return super().forward(x)


def checkpoint_updating_batch_norm_once(checkpoint_func: Callable) -> Callable:
    """Wrap a checkpoint function so that every call after the first one of the checkpointed function (the
    recomputation in backward) runs with BatchNorm running-statistics updates switched off."""

    def run(function: Callable, *args, **kwargs):
        calls = 0

        def counted(*inner_args, **inner_kwargs):
            nonlocal calls
            calls += 1
            if calls == 1:
                return function(*inner_args, **inner_kwargs)
            previous = _is_recomputing()
            _RECOMPUTING.active = True
            try:
                return function(*inner_args, **inner_kwargs)
            finally:
                _RECOMPUTING.active = previous

        return checkpoint_func(counted, *args, **kwargs)

    return run


def _tensor_key(tensor: torch.Tensor) -> tuple:
    return (id(tensor), tensor.data_ptr(), tensor._version)


class BigModelResNetConvNorm:
    """Helpers for a (Conv2d without bias, BatchNorm) pair: the plain path and the folded inference path."""

    @staticmethod
    def fold(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
        """conv + BN (eval) as one convolution: w' = w * g / sqrt(var + eps), b' = b - mean * g / sqrt(var + eps)."""
        scale = norm.weight.float() * torch.rsqrt(norm.running_var.float() + norm.eps)
        weight = (conv.weight.float() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype)
        bias = (norm.bias.float() - norm.running_mean.float() * scale).to(conv.weight.dtype)
        return weight, bias

    @staticmethod
    def folded(conv: nn.Conv2d, norm: nn.BatchNorm2d, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """`fold(conv, norm)`, cached on the conv module; the key holds every tensor's version counter, so an
        optimizer step, a `load_state_dict` or a new running statistic recomputes it. Under torch.compile /
        torch.export the folding is traced as plain tensor ops instead (the compiler constant-folds it)."""
        if _tracing():
            return BigModelResNetConvNorm.fold(conv, norm)
        key = (
            _tensor_key(conv.weight),
            _tensor_key(norm.weight),
            _tensor_key(norm.bias),
            _tensor_key(norm.running_mean),
            _tensor_key(norm.running_var),
            norm.eps,
            channels_last,
        )
        cached = getattr(conv, "_bigmodel_folded", None)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        with torch.no_grad():
            weight, bias = BigModelResNetConvNorm.fold(conv, norm)
            if channels_last:
                weight = weight.contiguous(memory_format=torch.channels_last)
        conv._bigmodel_folded = (key, weight, bias)
        return weight, bias

    @staticmethod
    def forward(
        conv: nn.Conv2d,
        norm: nn.BatchNorm2d,
        x: torch.Tensor,
        fused: bool,
        channels_last: bool,
        act: nn.Module | None = None,  # a modeling_resnet.BigModelResNetActivation
        residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """act(norm(conv(x)) + residual), with `act` and `residual` optional. `fused` (inference only) folds the
        BatchNorm into the convolution and, on CPU in float32 with ReLU, runs conv + bias (+ residual) + ReLU as one
        oneDNN call: the same arithmetic without writing and re-reading the intermediate feature maps."""
        if fused and not (_hooked(conv) or _hooked(norm)):
            weight, bias = BigModelResNetConvNorm.folded(conv, norm, channels_last)
            if (act is None or act.inplace) and _onednn_fusable(x, weight):
                unary = "relu" if act is not None else "none"
                args = (weight, bias, conv.padding, conv.stride, conv.dilation, conv.groups)
                if residual is None:
                    return torch.ops.mkldnn._convolution_pointwise(x, *args, unary, [], "")
                return torch.ops.mkldnn._convolution_pointwise.binary(
                    x, residual, *args, "add", None, unary if act is not None else None, [], ""
                )
            y = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        else:
            y = norm(conv(x))
        if residual is not None:
            y = y.add_(residual)
        return act(y) if act is not None else y


def _hooked(module: nn.Module) -> bool:
    """Whether a module's forward does more than its arithmetic: forward hooks, or a replaced `forward` (accelerate's
    offload and device hooks, which load or move the weights only when the module's own forward runs). Folding reads
    the weights outside those forwards, so such a pair runs unfolded."""
    return bool(module._forward_pre_hooks or module._forward_hooks) or "forward" in module.__dict__


def _tracing() -> bool:
    """Whether torch.compile or torch.export is tracing (no Python-side caches or backend-specific ops then)."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.5
    return torch.compiler.is_compiling() or (is_exporting is not None and is_exporting())


def _onednn_fusable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether oneDNN's fused convolution op can run this inference convolution (CPU, float32, no autocast)."""
    return (
        _HAS_ONEDNN_POINTWISE
        and not _tracing()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and torch.backends.mkldnn.enabled
        and not torch.is_autocast_enabled("cpu")
    )


_HAS_ONEDNN_POINTWISE = (
    torch.backends.mkldnn.is_available()
    and hasattr(torch.ops, "mkldnn")
    and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
)
