"""Which past items drove a recommendation: attributions over a history for one recommended item's score.

Works for any model with the recommenders' interface (`encode_histories`, `history_tensors`, `next_item_logits`,
`max_history_length`, `config.item_ids`): SASRec on the GPT and BERT4Rec on the BERT. A history item is one feature.
Its baseline is the padding item for SASRec and the mask item for BERT4Rec ("an item the model does not know"), with
the attention mask left as it is, so integrated gradients, LIME and Kernel SHAP all compare the history with the
same reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .core import ExplainError, Explanation, integrated_gradients, scores


def _history(model: nn.Module, history: Any) -> list[int]:
    """The model ids of the items the model reads (the newest `max_history_length`), unknown items dropped."""
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise ExplainError(
            f"A recommender explains a history: pass a list of raw item ids (oldest first), not {type(history).__name__}."
        )
    try:
        encoded = model.encode_histories([list(history)], unknown="ignore")[0]
    except ValueError as error:  # an empty history, or one with no known item
        raise ExplainError(str(error)) from error
    return encoded[-model.max_history_length :]


def _target(model: nn.Module, target: Any, logits: torch.Tensor, encoded: list[int]) -> int:
    """The explained item as a model id: the top recommendation (seen items excluded) by default, else a raw id."""
    if target is None:
        return model.top_items(logits, [encoded], 1, exclude_seen=True, raw_ids=False)[0][0]["item"]
    index = {str(raw): i + 1 for i, raw in enumerate(model.config.item_ids)}
    if str(target) not in index:
        raise ExplainError(
            f"Item {target!r} is not in the model's catalogue ({model.config.num_items} items); pass a raw item id "
            "the model was trained on, or leave target out to explain the top recommendation."
        )
    return index[str(target)]


def explain_recommendation(
    model: nn.Module, history: Any, method: str, target: Any, options: dict, output: str
) -> Explanation:
    """Attributions of each history item to the score (logit) or probability of one item after the history."""
    from captum.attr import InputXGradient, KernelShap, Lime

    encoded = _history(model, history)
    input_ids, attention_mask = model.history_tensors([encoded])  # (1, seq): no padding for one history
    length = input_ids.shape[1]
    embeddings = model.get_input_embeddings()
    baseline_id = getattr(model.config, "mask_token_id", None) or 0

    def item_scores(ids: torch.Tensor, embeds: torch.Tensor | None = None) -> torch.Tensor:
        """(n, vocab) scores after each history in `ids` (n, seq); with `embeds` (n, seq, hidden) those replace the
        history's item embeddings (BERT4Rec appends a mask after them, which keeps its own)."""
        handle = None
        if embeds is not None:

            def replace(module, args, out):  # out: (n, seq or seq + 1, hidden)
                return torch.cat([embeds.to(out.dtype), out[:, length:]], dim=1)

            handle = embeddings.register_forward_hook(replace)
        try:
            return scores(model.next_item_logits(ids, attention_mask.expand(ids.shape[0], -1)), output)
        finally:
            if handle is not None:
                handle.remove()

    def attributed(embeds: torch.Tensor) -> torch.Tensor:  # captum batches the integration steps
        return item_scores(input_ids.expand(embeds.shape[0], -1), embeds)

    with torch.no_grad():
        logits = model.next_item_logits(input_ids, attention_mask)  # (1, vocab)
        probabilities = logits[0, 1 : model.config.num_items + 1].float().softmax(-1)
        index = _target(model, target, logits, encoded)
        inputs_embeds = embeddings(input_ids)
        baseline_ids = torch.full_like(input_ids, baseline_id)
        baseline = embeddings(baseline_ids)

    delta = n_steps = None
    if method == "integrated_gradients":
        attributions, delta, n_steps = integrated_gradients(
            attributed, inputs_embeds, baseline, index, options["n_steps"], options["tolerance"]
        )
        attributions = attributions[0].sum(-1)
    elif method == "gradient_x_input":
        attributions = InputXGradient(attributed).attribute(inputs_embeds.requires_grad_(), target=index)[0].sum(-1)
    else:

        def perturbed(ids: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return item_scores(ids)

        attributions = (Lime if method == "lime" else KernelShap)(perturbed).attribute(
            input_ids,
            baselines=baseline_ids,
            target=index,
            feature_mask=torch.arange(length, device=input_ids.device).unsqueeze(0),  # one item, one feature
            n_samples=options["n_samples"],
            perturbations_per_eval=options["batch_size"],
        )[0]
    raw = model.config.item_ids
    return Explanation(
        kind="recommendation",
        method=method,
        output=output,
        target=index,
        target_label=str(raw[index - 1]),
        # The catalogue's softmax, item j at index j (index 0, padding, gets 0): `probability` reads the target's.
        probabilities=[0.0, *probabilities.tolist()],
        attributions=attributions.detach().float().cpu(),
        tokens=[str(raw[i - 1]) for i in encoded],
        convergence_delta=delta,
        n_steps=n_steps,
    )
