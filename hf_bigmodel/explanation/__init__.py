"""Explaining predictions: `hf_bigmodel.explain(model_or_folder, inputs, method=..., target=...)`.

One call for the models of the zoo and the stock transformers models of the same kinds, built on captum's
attribution algorithms (not written again here):

- text classification (GPT and BERT sequence-classification heads, `BertForSequenceClassification`,
  `GPT2ForSequenceClassification`, ...): one attribution per input token for the chosen label, with
  `integrated_gradients` (default; reports captum's convergence delta) or `gradient_x_input`, taken with respect to
  the input embeddings;
- token classification (GPT and BERT token-classification heads, `BertForTokenClassification`, ...): the same,
  for the label of the token at `position=`;
- masked LM (BERT's head, `BertForMaskedLM`): the same, for the token filled in at the one mask of the text;
- causal generation (GPT, `GPT2LMHeadModel`): a list, one explanation per greedily generated token, over the
  context before it;
- translation (the Transformer's seq2seq head, `MarianMTModel`): a list, one explanation per target token (greedy,
  or `target_text=`), over the source tokens;
- image classification (ResNet, ours and `ResNetForImageClassification`): `grad_cam` (default; the target layer is
  found automatically: the last module whose output is a spatial feature map, i.e. the last residual block, which is
  pytorch-grad-cam's `model.layer4[-1]` convention) or `integrated_gradients` over the pixels.

`attention_maps(model, text, tokenizer)` gives the per-layer, per-head attention weights (self-, decoder- and
cross-attention for encoder-decoders) and their rollout, switching a model that runs sdpa to eager attention for
the call and back afterwards.

The result of `explain` is an `Explanation`: the raw numbers as a tensor and as JSON, a matplotlib PNG and a self-contained
HTML page (`Explanation.save(folder)`). captum is an optional dependency (`pip install hf_bigmodel[explain]`).
"""

import importlib

# name -> submodule: imported on first use (PEP 562), so that `hf-bigmodel explain --help` (explanation/cli.py)
# answers without importing torch
_LAZY_NAMES = {
    **dict.fromkeys(("AttentionMaps", "attention_maps", "eager_attention"), ".attention"),
    **dict.fromkeys(("METHODS", "ExplainError", "Explanation", "explain", "find_target_layer", "kind_of"), ".core"),
    "predict_proba": ".tools",
}


def __getattr__(name: str):
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY_NAMES[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES})


__all__ = [
    "AttentionMaps",
    "attention_maps",
    "eager_attention",
    "METHODS",
    "ExplainError",
    "Explanation",
    "explain",
    "find_target_layer",
    "kind_of",
    "predict_proba",
]
