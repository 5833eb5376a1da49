"""CPU fast paths of the hf_bigmodel GPT: the same functions as the plain PyTorch ops they replace, computed faster on
CPU. The architecture lives in `modeling_gpt.py`; this file only holds how some of its pieces are computed.

- `dropout_training` / `BigModelGPTDropout`: dropout from `torch.rand` instead of the `bernoulli_` kernel;
- `few_rows_linear` / `fast_linear`: decoding-step products as weight-row blocks @ input column, on every
  thread;
- `blockwise_causal_attention`: training attention that skips the masked upper triangle;
- `ChunkedCrossEntropySum` / `causal_lm_loss`: the causal LM loss in row chunks, without a float32 copy of the logits.

Standalone on purpose: `modeling_gpt.py` imports it with a single-dot relative import, so `save_pretrained` copies
it next to the weights (transformers' `custom_object_save` follows such imports) and `trust_remote_code=True` still
works without hf_bigmodel. Only `torch`, `transformers` and sibling files may be imported here.
"""

from typing import NamedTuple

import torch
from torch import nn


# Copied from hf_bigmodel.models.gpt.modeling_gpt.repeat_kv
def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(batch, kv_heads, seq, head_dim) -> (batch, kv_heads * n_rep, seq, head_dim), for grouped-query attention."""
    if n_rep == 1:
        return hidden_states
    batch, kv_heads, seq_len, head_dim = hidden_states.shape
    hidden_states = hidden_states[:, :, None].expand(batch, kv_heads, n_rep, seq_len, head_dim)
    return hidden_states.reshape(batch, kv_heads * n_rep, seq_len, head_dim)


def dropout_training(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout: zero each element with probability `p` and scale the rest by 1 / (1 - p), as
    `nn.functional.dropout` does. On CPU the keep mask comes from `torch.rand` (one float32 per element, so `p` is
    exact to 2**-24) and a multiply, about 40% cheaper forward + backward than the `bernoulli_`-based kernel."""
    if p == 0.0:
        return x
    if x.device.type != "cpu":
        return nn.functional.dropout(x, p=p)
    keep = torch.rand(x.shape, device=x.device).ge_(p).mul_(1.0 / (1.0 - p))  # 0 or 1 / (1 - p)
    return x * keep.to(x.dtype)


class BigModelGPTDropout(nn.Dropout):
    """`nn.Dropout` computed by `dropout_training` (same distribution, cheaper on CPU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout_training(x, self.p) if self.training else x


# Most input rows for which `fast_linear` uses `few_rows_linear`: decoding steps (one row per sequence or beam).
# Larger inputs are matrix products that the BLAS library already runs well on every thread.
FEW_ROWS = 16


class ThreadBlocks(NamedTuple):
    """A linear layer's weight as views for `few_rows_linear`: `parts` blocks of output rows, and the rows beyond a
    multiple of `parts` (an odd vocabulary), which go through `linear()`."""

    weight: torch.Tensor  # (parts, out // parts, in): row blocks of the weight
    bias: torch.Tensor | None  # (parts, out // parts, 1)
    rest_weight: torch.Tensor | None  # (out % parts, in)
    rest_bias: torch.Tensor | None


def split_for_threads(weight: torch.Tensor, bias: torch.Tensor | None, parts: int) -> ThreadBlocks:
    out_features, in_features = weight.shape
    split = out_features - out_features % parts
    blocks = weight[:split].view(parts, split // parts, in_features)
    bias_blocks = None if bias is None else bias[:split].view(parts, -1, 1)
    if split == out_features:
        return ThreadBlocks(blocks, bias_blocks, None, None)
    return ThreadBlocks(blocks, bias_blocks, weight[split:], None if bias is None else bias[split:])


def few_rows_linear(x: torch.Tensor, blocks: ThreadBlocks) -> torch.Tensor:
    """`nn.functional.linear(x, weight, bias)` for an input of a few rows, computed as one batched product
    `weight_block @ x.T` over the weight's row blocks (`split_for_threads`).

    A decoding step at batch 1 is a matrix-vector product, which is bound by how fast the weight streams from memory.
    MKL's `linear()` runs it on one thread at about 10 GB/s on this project's CPUs; the same bytes as a batched
    product with the weight on the left stream at about 20 GB/s per thread, and the batch entries (one block of
    weight rows each) run on parallel threads: the products of a decoding step take about 1/3 of `linear()`'s time on 2
    cores (1/2 on one). Nothing is copied: the blocks are views of the weight.
    """
    parts, block, in_features = blocks.weight.shape
    columns = x.reshape(-1, in_features).t().expand(parts, -1, -1)  # (parts, in, rows)
    if blocks.bias is None:
        out = torch.bmm(blocks.weight, columns)
    else:
        out = torch.baddbmm(blocks.bias, blocks.weight, columns)  # (parts, block, rows)
    shape = x.shape[:-1] + (parts * block,)
    # (parts, block, rows) -> (rows, parts * block), with one row already the memory order. More rows are copied
    # into row order: a strided view would send sdpa to its unfused math path and slow every row-wise op after it.
    out = out.view(shape) if columns.shape[2] == 1 else out.permute(2, 0, 1).contiguous().view(shape)
    if blocks.rest_weight is not None:
        out = torch.cat([out, nn.functional.linear(x, blocks.rest_weight, blocks.rest_bias)], dim=-1)
    return out


def few_rows_applies(layer: nn.Linear, x: torch.Tensor) -> bool:
    """Whether `x @ layer.weight.T` is a float32 inference product on a few CPU rows (a decoding step of
    `generate`), which `few_rows_linear` computes faster. Training, large inputs, other dtypes, autocast, other
    devices and compiled graphs stay with `nn.functional.linear`."""
    return (
        not torch.compiler.is_compiling()  # compiled graphs fuse their own kernels; the thread count is not traceable
        and x.is_cpu
        and x.dtype == torch.float32  # bfloat16 products (and autocast) already use every thread in oneDNN
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and x.shape[-1] == layer.in_features  # (a wrong size gets linear()'s error)
        and x.numel() <= FEW_ROWS * layer.in_features
    )


def thread_blocks(layer: nn.Linear) -> ThreadBlocks | None:
    """The weight split in one block per thread (at least 2: even on one thread, MKL's batched product streams
    the weight twice as fast as its matrix-vector product), or None where that does not apply (tensor subclasses
    such as DTensor, other dtypes). Cached in the layer, because a decoding step is short enough for building the
    views to show: the cache key is the thread count and the tensors' storage, so a new thread count,
    `model.to(...)` or replaced weights rebuild it (in-place updates keep the views valid)."""
    weight, bias = layer.weight, layer.bias
    parts = max(2, torch.get_num_threads())
    key = (parts, weight.data_ptr(), None if bias is None else bias.data_ptr())
    cached = layer.__dict__.get("_thread_blocks_cache")
    if cached is not None and cached[0] == key:
        return cached[1]
    usable = (
        weight.shape[0] >= parts
        and weight.dtype == torch.float32
        and type(weight) is nn.Parameter
        and weight.is_contiguous()
        and (bias is None or bias.is_contiguous())
    )
    blocks = split_for_threads(weight, bias, parts) if usable else None
    layer.__dict__["_thread_blocks_cache"] = (key, blocks)
    return blocks


def fast_linear(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`layer(x)`, through `few_rows_linear` where that applies. The model's layers are plain `nn.Linear` (so that
    tools which match exact types, such as `torch.ao.quantization.quantize_dynamic`, find them); the fast path
    is taken only for a plain `nn.Linear` without hooks or a replaced `forward`. A quantized, LoRA-wrapped,
    FSDP-sharded or offloaded (accelerate hooks) layer runs its own forward."""
    if (
        type(layer) is nn.Linear
        and not layer._forward_hooks
        and not layer._forward_pre_hooks
        and "forward" not in layer.__dict__
        and few_rows_applies(layer, x)
    ):
        blocks = thread_blocks(layer)
        if blocks is not None:
            return few_rows_linear(x, blocks)
    return layer(x)


def drop_thread_blocks(model: nn.Module) -> None:
    """Let the cached weight views of `thread_blocks` go (before `model.to(...)`: they hold the old tensors)."""
    for module in model.modules():
        module.__dict__.pop("_thread_blocks_cache", None)


# Query rows per block of `blockwise_causal_attention`: big enough for efficient matmuls, small enough to skip most
# of the masked upper triangle (at 256 tokens, 2 blocks do 3/4 of the full work; at 1024, 8 blocks do 9/16).
CAUSAL_BLOCK_SIZE = 128


def blockwise_causal_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float, dropout: float
) -> torch.Tensor:
    """Exact causal attention over a whole sequence (no cache, no padding), for training on CPU.

    PyTorch has no fused CPU attention kernel with dropout: sdpa then falls back to its math path, which computes
    the full seq x seq scores (half of them masked) and upcasts bfloat16 inputs to float32 everywhere. Here each
    block of query rows only multiplies the keys it may see; scores and softmax are float32 (as in sdpa's kernels),
    the probabilities are cast to the value dtype for dropout and the second matmul. Returns
    (batch, seq, heads, head_dim) like the attention interfaces.
    """
    batch, heads, seq_len, head_dim = query.shape
    n_rep = heads // key.shape[1]
    value = repeat_kv(value, n_rep).flatten(0, 1)  # (batch * heads, seq, head_dim)
    with torch.autocast(query.device.type, enabled=False):
        query = query.float().flatten(0, 1)
        key_t = repeat_kv(key.float(), n_rep).flatten(0, 1).transpose(1, 2)  # (batch * heads, head_dim, seq)
        mask = torch.full((seq_len, seq_len), float("-inf"), device=query.device).triu_(1)
        blocks = []
        for start in range(0, seq_len, CAUSAL_BLOCK_SIZE):
            end = min(start + CAUSAL_BLOCK_SIZE, seq_len)
            scores = torch.baddbmm(mask[start:end, :end], query[:, start:end], key_t[:, :, :end], alpha=scaling)
            probs = scores.softmax(dim=-1).to(value.dtype)
            probs = dropout_training(probs, dropout)
            blocks.append(torch.bmm(probs, value[:, :end]))  # (batch * heads, block, head_dim)
    attn_output = torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0]
    return attn_output.view(batch, heads, seq_len, head_dim).transpose(1, 2)


# Logits per chunk of the loss (8 MiB in float32): the softmax, the gradient and its cast then run on data that is
# still in the CPU caches, instead of as several passes over the whole (tokens, vocab) matrix.
LOSS_CHUNK_ELEMENTS = 2**21


class ChunkedCrossEntropySum(torch.autograd.Function):
    """Summed cross-entropy of `logits` (rows, vocab) against `targets` (rows,), skipping `ignore_index` rows, with
    label smoothing `eps` (0 for none): exactly `cross_entropy(..., label_smoothing=eps, reduction="sum")`, in
    float32 whatever the logits dtype. Works through row chunks; the backward writes
    `softmax - (1 - eps) one_hot - eps / vocab` straight into the gradient, so no (rows, vocab) log-probabilities
    are kept between forward and backward."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, ignore_index: int, eps: float) -> torch.Tensor:
        ctx.save_for_backward(logits, targets)
        ctx.ignore_index, ctx.eps = ignore_index, eps
        ctx.chunk_rows = max(1, LOSS_CHUNK_ELEMENTS // logits.shape[1])
        total = logits.new_zeros((), dtype=torch.float32)
        for start in range(0, logits.shape[0], ctx.chunk_rows):
            rows = slice(start, start + ctx.chunk_rows)
            total += nn.functional.cross_entropy(
                logits[rows].float(), targets[rows], ignore_index=ignore_index, reduction="sum", label_smoothing=eps
            )
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        logits, targets = ctx.saved_tensors
        eps, vocab = ctx.eps, logits.shape[1]
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[0], ctx.chunk_rows):
            rows = slice(start, start + ctx.chunk_rows)
            keep = targets[rows] != ctx.ignore_index
            weight = (keep * grad_total).unsqueeze(1)  # (chunk, 1): 0 on ignored rows
            target = torch.where(keep, targets[rows], 0).unsqueeze(1)
            if logits.dtype == torch.float32:
                probs = torch.softmax(logits[rows], dim=-1, out=grad[rows])
            else:
                probs = torch.softmax(logits[rows].float(), dim=-1)
            if eps:
                probs.sub_(eps / vocab)
            probs.mul_(weight).scatter_add_(1, target, -(1.0 - eps) * weight)
            if logits.dtype != torch.float32:
                grad[rows] = probs
        return grad, None, None, None


def causal_lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    vocab_size: int,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = -100,
    shift_labels: torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor:
    """transformers' `ForCausalLMLoss` (same arguments and value: labels shifted left, `ignore_index` skipped, the
    sum divided by `num_items_in_batch` when given, else the mean), computed by `ChunkedCrossEntropySum`, which
    is faster and keeps no float32 copy of the logits."""
    if shift_labels is None:
        shift_labels = nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    shift_labels = shift_labels.reshape(-1).to(logits.device)
    total = ChunkedCrossEntropySum.apply(logits.reshape(-1, vocab_size), shift_labels, ignore_index, 0.0)
    if num_items_in_batch is None:
        return total / (shift_labels != ignore_index).sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch
