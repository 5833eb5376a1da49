"""CPU fast paths of the hf_bigmodel encoder-decoder Transformer: the same functions as the plain PyTorch ops they
replace, computed faster on CPU. The architecture lives in `modeling_transformer.py`.

- `dropout_training` / `BigModelTransformerDropout`: dropout from `torch.rand` instead of the `bernoulli_` kernel;
- `math_attention`: training attention as plain matmuls, faster than sdpa's CPU kernels for short sequences;
- `ChunkedCrossEntropySum` / `label_smoothed_loss`: the label-smoothed loss in row chunks, without a
  float32 copy of the logits.

(`TokenPacking`, the other training fast path, stays in `modeling_transformer.py`: it threads through the layers'
signatures, so it is part of how the architecture reads.)

Standalone on purpose: `modeling_transformer.py` imports it with a single-dot relative import, so `save_pretrained`
copies it next to the weights and `trust_remote_code=True` still works without hf_bigmodel. Only `torch`,
`transformers` and sibling files may be imported here.
"""

import torch
from torch import nn


# Copied from hf_bigmodel.models.gpt.cpu_kernels_gpt.dropout_training
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


# Copied from hf_bigmodel.models.gpt.cpu_kernels_gpt.BigModelGPTDropout with GPT->Transformer
class BigModelTransformerDropout(nn.Dropout):
    """`nn.Dropout` computed by `dropout_training` (same distribution, cheaper on CPU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout_training(x, self.p) if self.training else x


# Largest score tensor (batch x heads x queries x keys) for which training on CPU uses `math_attention` instead of
# sdpa: 16M float32 scores (64 MiB per attention layer kept for backward).
MATH_ATTENTION_MAX_SCORES = 2**24


def math_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    scaling: float,
    dropout_p: float,
    is_causal: bool,
) -> torch.Tensor:
    """softmax(q k^T * scaling + mask) v, exactly the function sdpa computes, as plain matmuls: on CPU, for the
    short sequences of translation training, forward + backward runs faster than sdpa's flash kernel (whose
    backward dominates in bfloat16). Scores and softmax are float32, as in sdpa's kernels. `mask` is sdpa's
    boolean mask (True = attend) or an additive float mask. Returns (batch, q_len, heads, head_dim)."""
    with torch.autocast(query.device.type, enabled=False):
        scores = torch.matmul(query.float(), key.float().transpose(2, 3)).mul_(scaling)  # (batch, heads, q, k)
        if is_causal:
            causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril_()
            mask = causal if mask is None else mask & causal
        if mask is not None:
            if mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            else:
                scores = scores + mask
        probs = dropout_training(scores.softmax(dim=-1).to(value.dtype), dropout_p)
        return torch.matmul(probs, value).transpose(1, 2)


# Logits per chunk of the loss (8 MiB in float32): softmax and gradient run on data still in the CPU caches.
# Copied from hf_bigmodel.models.gpt.cpu_kernels_gpt.LOSS_CHUNK_ELEMENTS
LOSS_CHUNK_ELEMENTS = 2**21


# Copied from hf_bigmodel.models.gpt.cpu_kernels_gpt.ChunkedCrossEntropySum
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


def label_smoothed_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    label_smoothing: float = 0.0,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Cross-entropy of `logits` (..., vocab) against `labels` (...), NOT shifted (seq2seq labels are aligned with
    the decoder inputs), `ignore_index` skipped, with label smoothing. The sum is divided by `num_items_in_batch`
    when given (Trainer's count over the whole accumulated batch), else by the number of labelled tokens."""
    targets = labels.reshape(-1).to(logits.device)
    total = ChunkedCrossEntropySum.apply(
        logits.reshape(-1, logits.shape[-1]), targets, ignore_index, float(label_smoothing)
    )
    if num_items_in_batch is None:
        return total / (targets != ignore_index).sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch
