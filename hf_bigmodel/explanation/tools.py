"""Glue for the explanation tools people already use, which want a plain prediction function rather than a model.

`predict_proba(model, tokenizer)` is the `list[str] -> probabilities` function that `lime`'s
`LimeTextExplainer.explain_instance(text, classifier_fn)` (and any such tool) calls: it batches the texts through
the model, `batch_size` at a time, instead of one forward per perturbed text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn


def predict_proba(model: nn.Module, tokenizer, batch_size: int = 64) -> Callable[[Sequence[str]], np.ndarray]:
    """A function from a list of texts to a `(len(texts), num_labels)` array of class probabilities, for a
    sequence-classification model. Texts are padded per batch (left for decoder-only models, whose classification
    token is the last one) and truncated to the tokenizer's `model_max_length`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive; got {batch_size}.")

    def predict(texts: Sequence[str]) -> np.ndarray:
        model.eval()
        rows = []
        for start in range(0, len(texts), batch_size):
            encoding = tokenizer(
                list(texts[start : start + batch_size]), return_tensors="pt", padding=True, truncation=True
            )
            names = ("input_ids", "attention_mask", "token_type_ids")
            encoding = {k: v.to(model.device) for k, v in encoding.items() if k in names}
            with torch.no_grad():
                rows.append(model(**encoding).logits.float().softmax(-1).cpu())
        return torch.cat(rows).numpy() if rows else np.zeros((0, model.config.num_labels), dtype=np.float32)

    return predict
