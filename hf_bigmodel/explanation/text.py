"""Token attributions for text classification, taken with respect to the input embeddings (captum)."""

from __future__ import annotations

import torch
from torch import nn

from .core import ExplainError, Explanation, integrated_gradients, kind_of, label_of, resolve_target, scores

_NO_LIMIT = 10**8  # tokenizers without a known limit report model_max_length as a huge number


def max_input_length(config, tokenizer) -> int | None:
    """The longest input, in tokens, that the model takes: its position table, or the tokenizer's limit."""
    limits = [getattr(config, "max_position_embeddings", None), getattr(config, "n_positions", None)]
    limits.append(getattr(tokenizer, "model_max_length", None))
    limits = [int(limit) for limit in limits if isinstance(limit, int) and 0 < limit < _NO_LIMIT]
    return min(limits) if limits else None


def encode(model: nn.Module, tokenizer, text: str) -> dict[str, torch.Tensor]:
    if not isinstance(text, str):
        raise ExplainError(f"A text-classification model explains a string; got {type(text).__name__}.")
    # verbose=False: the tokenizer's own too-long warning would come before the clearer error below.
    encoding = tokenizer(text, return_tensors="pt", truncation=False, verbose=False)
    length = encoding["input_ids"].shape[1]
    limit = max_input_length(model.config, tokenizer)
    if limit is not None and length > limit:
        raise ExplainError(
            f"The input is {length} tokens long but this model takes at most {limit}; shorten the text "
            f"(e.g. to its first {limit} tokens) and explain that."
        )
    if length == 0:
        raise ExplainError("The text is empty after tokenization; pass some text to explain.")
    return {k: v for k, v in encoding.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def explain_text_classification(
    model: nn.Module,
    tokenizer,
    text: str,
    method: str,
    target,
    steps: tuple[int | None, float],
    output: str,
    position: int | None = None,
) -> Explanation:
    """Sequence classification; or token classification (`position` = the token whose label is explained)."""
    from captum.attr import InputXGradient

    encoding = encode(model, tokenizer, text)
    input_ids = encoding.pop("input_ids")
    embeddings = model.get_input_embeddings()
    kind = kind_of(model)
    length = input_ids.shape[1]
    if kind == "token-classification":
        if position is None or not -length <= position < length:
            tokens = tokenizer.convert_ids_to_tokens(input_ids[0].tolist())
            listed = ", ".join(f"{i}={token}" for i, token in enumerate(tokens))
            raise ExplainError(
                f"A token-classification model explains the label of one token: pass position= (--position) with "
                f"the index of one of the {length} tokens ({listed})."
            )
        position %= length
    elif position is not None:
        raise ExplainError("position= applies to token-classification models only; leave it out.")

    def select(logits: torch.Tensor) -> torch.Tensor:
        return logits[:, position] if position is not None else logits  # (batch, num_labels)

    def attributed(inputs_embeds: torch.Tensor) -> torch.Tensor:
        # captum batches the integration steps: repeat the single row's mask and segment ids to match.
        extra = {k: v.expand(inputs_embeds.shape[0], -1) for k, v in encoding.items()}
        return scores(select(model(inputs_embeds=inputs_embeds, **extra).logits), output)

    with torch.no_grad():
        inputs_embeds = embeddings(input_ids)
        probs = select(model(inputs_embeds=inputs_embeds, **encoding).logits)[0].float().softmax(-1)
    index = resolve_target(target, model.config, probs)

    delta = n_steps = None
    if method == "integrated_gradients":
        # The baseline keeps the special tokens ([CLS], [SEP]) and replaces every other token by padding (or the
        # unknown token, or id 0), so the attributions are those of the words, not of the sentence frame.
        special = torch.tensor(
            tokenizer.get_special_tokens_mask(input_ids[0].tolist(), already_has_special_tokens=True), dtype=torch.bool
        )
        reference = next((i for i in (tokenizer.pad_token_id, tokenizer.unk_token_id) if i is not None), 0)
        baseline_ids = torch.where(special, input_ids[0], torch.full_like(input_ids[0], reference)).unsqueeze(0)
        with torch.no_grad():
            baseline = embeddings(baseline_ids)
        attributions, delta, n_steps = integrated_gradients(attributed, inputs_embeds, baseline, index, *steps)
    else:
        attributions = InputXGradient(attributed).attribute(inputs_embeds.requires_grad_(), target=index)
    return Explanation(
        kind=kind,
        method=method,
        output=output,
        target=index,
        target_label=label_of(model.config, index),
        probabilities=probs.tolist(),
        attributions=attributions[0].sum(-1).detach().float(),
        tokens=tokenizer.convert_ids_to_tokens(input_ids[0].tolist()),
        convergence_delta=delta,
        n_steps=n_steps,
        position=position,
    )
