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
    # On the model's device (a model on a GPU explains there); the results come back to the CPU.
    return {
        k: v.to(model.device) for k, v in encoding.items() if k in ("input_ids", "attention_mask", "token_type_ids")
    }


def _vocabulary_target(target: int | str | None, tokenizer, probabilities: torch.Tensor) -> int:
    """Masked LM: the target is a token of the vocabulary (its text or id); None = the model's top fill."""
    if target is None:
        return int(probabilities.argmax())
    if isinstance(target, str) and not target.isdigit():
        index = tokenizer.convert_tokens_to_ids(target)
        if index is None or (index == tokenizer.unk_token_id and target != tokenizer.unk_token):
            raise ExplainError(
                f"Target token {target!r} is not in the tokenizer's vocabulary; pass a token as the tokenizer writes "
                f"it (tokenizer.tokenize(word)) or a token id 0..{probabilities.shape[-1] - 1}."
            )
        return int(index)
    if not 0 <= int(target) < probabilities.shape[-1]:
        raise ExplainError(
            f"Target token id {target} does not exist: the vocabulary has ids 0..{probabilities.shape[-1] - 1}."
        )
    return int(target)


def explain_text_classification(
    model: nn.Module,
    tokenizer,
    text: str,
    method: str,
    target,
    options: dict,
    output: str,
    position: int | None = None,
    encoded: dict | None = None,
) -> Explanation:
    """Sequence classification; token classification (`position` = the token whose label is explained); masked LM
    (the token filled in at the mask); one step of causal generation (`encoded` = the context so far, the target
    the token generated next)."""
    from captum.attr import InputXGradient

    encoding = dict(encoded) if encoded is not None else encode(model, tokenizer, text)
    input_ids = encoding.pop("input_ids")
    kind = kind_of(model)
    embeddings = source_embeddings(model) if kind == "translation" else model.get_input_embeddings()
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
    elif kind == "causal-lm":
        position = length - 1  # the last position predicts the next token
    elif kind == "translation":
        position = encoding["decoder_input_ids"].shape[1] - 1  # the decoder's last position predicts the next token
    elif kind == "masked-lm":
        # The explained position is the masked one: which tokens made the model fill it as it did.
        masks = (input_ids[0] == tokenizer.mask_token_id).nonzero().flatten().tolist()
        if tokenizer.mask_token is None or len(masks) != 1:
            raise ExplainError(
                f"A masked-LM model explains the token it fills in: put exactly one {tokenizer.mask_token} in the "
                f"text (found {len(masks)})."
            )
        position = masks[0]

    def select(logits: torch.Tensor) -> torch.Tensor:
        return logits[:, position] if position is not None else logits  # (batch, num_labels)

    def attributed(inputs_embeds: torch.Tensor) -> torch.Tensor:
        # captum batches the integration steps: repeat the single row's mask and segment ids to match.
        extra = {k: v.expand(inputs_embeds.shape[0], -1) for k, v in encoding.items()}
        return scores(select(model(inputs_embeds=inputs_embeds, **extra).logits), output)

    with torch.no_grad():
        inputs_embeds = embeddings(input_ids)
        probs = select(model(inputs_embeds=inputs_embeds, **encoding).logits)[0].float().softmax(-1)
        if kind == "translation":
            _check_same_forward(model, input_ids, encoding, probs, select)
    if kind in ("masked-lm", "causal-lm", "translation"):
        index = _vocabulary_target(target, tokenizer, probs)
        target_label = tokenizer.convert_ids_to_tokens(index)
    else:
        index = resolve_target(target, model.config, probs)
        target_label = label_of(model.config, index)

    # The baseline keeps the special tokens ([CLS], [SEP]) and replaces every other token by padding (or the unknown
    # token, or id 0), so the attributions are those of the words, not of the sentence frame. LIME and Kernel SHAP
    # use it too: a token "removed" by a perturbation is this baseline token.
    special = torch.tensor(
        tokenizer.get_special_tokens_mask(input_ids[0].tolist(), already_has_special_tokens=True),
        dtype=torch.bool,
        device=input_ids.device,
    )
    reference = next((i for i in (tokenizer.pad_token_id, tokenizer.unk_token_id) if i is not None), 0)
    baseline_ids = torch.where(special, input_ids[0], torch.full_like(input_ids[0], reference)).unsqueeze(0)

    delta = n_steps = None
    if method == "integrated_gradients":
        with torch.no_grad():
            baseline = embeddings(baseline_ids)
        attributions, delta, n_steps = integrated_gradients(
            attributed, inputs_embeds, baseline, index, options["n_steps"], options["tolerance"]
        )
        attributions = attributions[0].sum(-1)
    elif method == "gradient_x_input":
        attributions = InputXGradient(attributed).attribute(inputs_embeds.requires_grad_(), target=index)[0].sum(-1)
    else:
        attributions = _perturbation(method, model, encoding, select, output, input_ids, baseline_ids, index, options)
    return Explanation(
        kind=kind,
        method=method,
        output=output,
        target=index,
        target_label=target_label,
        probabilities=probs.tolist(),
        attributions=attributions.detach().float().cpu(),
        tokens=tokenizer.convert_ids_to_tokens(input_ids[0].tolist()),
        convergence_delta=delta,
        n_steps=n_steps,
        # Translation: the position is the decoder's, not one of the source tokens listed in `tokens`.
        position=None if kind == "translation" else position,
        target_tokens=(
            tokenizer.convert_ids_to_tokens(encoding["decoder_input_ids"][0].tolist())
            if kind == "translation"
            else None
        ),
    )


def source_embeddings(model: nn.Module):
    """Encoder-decoders: the encoder's token embeddings as the encoder itself computes them. Marian's encoder, and
    ours, multiply `embed_tokens(ids)` by `embed_scale` only when given ids; `inputs_embeds` are taken as they come,
    so the attributed forward must be given the scaled embeddings to equal the real one."""
    encoder = model.get_encoder()
    table = encoder.get_input_embeddings() if hasattr(encoder, "get_input_embeddings") else encoder.embed_tokens
    scale = float(getattr(encoder, "embed_scale", None) or 1.0)

    def embed(ids: torch.Tensor) -> torch.Tensor:
        return table(ids) * scale  # (batch, src_len, hidden)

    return embed


def _check_same_forward(model, input_ids, encoding: dict, probs: torch.Tensor, select) -> None:
    """The attributed forward (through `inputs_embeds`) must be the model's own; an encoder that scales its
    embeddings some other way would make the attributions those of another function."""
    reference = select(model(input_ids=input_ids, **encoding).logits)[0].float().softmax(-1)
    if not torch.allclose(reference, probs, atol=1e-4, rtol=1e-3):
        raise ExplainError(
            f"{type(model).__name__}: the forward through inputs_embeds differs from the forward through input_ids "
            "(the encoder scales its token embeddings in a way explain does not know), so its attributions would "
            "not be those of the model; explain supports encoders with `embed_scale` (Marian, BART, ours)."
        )


def _perturbation(
    method: str, model, encoding: dict, select, output: str, input_ids, baseline_ids, index: int, options: dict
) -> torch.Tensor:
    """LIME or Kernel SHAP over the tokens (each token one feature), the perturbed texts sent through the model in
    batches of `options["batch_size"]`: `n_samples` perturbations cost n_samples / batch_size forward passes, not
    n_samples (the cost that makes LIME on BERT take minutes per sentence when each sample is its own call)."""
    from captum.attr import KernelShap, Lime

    def forward(ids: torch.Tensor) -> torch.Tensor:
        extra = {k: v.expand(ids.shape[0], -1) for k, v in encoding.items()}
        with torch.no_grad():
            return scores(select(model(input_ids=ids, **extra).logits), output)

    algorithm = (Lime if method == "lime" else KernelShap)(forward)
    attributions = algorithm.attribute(
        input_ids,
        baselines=baseline_ids,
        target=index,
        feature_mask=torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(
            0
        ),  # every token its own feature
        n_samples=options["n_samples"],
        perturbations_per_eval=options["batch_size"],
    )
    return attributions[0].float()


def explain_generation(
    model: nn.Module,
    tokenizer,
    text: str,
    method: str,
    options: dict,
    output: str,
    max_new_tokens: int,
    target_text: str | None = None,
) -> list[Explanation]:
    """Greedy generation from `text`, then one explanation per generated token. A causal LM: which tokens of the
    context (the prompt and the tokens generated before it) drove the model to generate it. An encoder-decoder
    (translation): which source tokens did, the target prefix before it held fixed; `target_text` explains that
    target instead of the greedy output."""
    encoding = encode(model, tokenizer, text)
    if kind_of(model) == "translation":
        return _explain_translation(model, tokenizer, encoding, method, options, output, max_new_tokens, target_text)
    start = encoding["input_ids"].shape[1]
    limit = max_input_length(model.config, tokenizer)
    budget = max_new_tokens if limit is None else min(max_new_tokens, limit - start)
    if budget < 1:
        raise ExplainError(
            f"The prompt fills the model's context ({limit} tokens), leaving no room to generate; shorten it."
        )
    pad = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    with torch.no_grad():
        generated = model.generate(**encoding, max_new_tokens=budget, do_sample=False, num_beams=1, pad_token_id=pad)
    explanations = []
    for step in range(start, generated.shape[1]):
        context = {"input_ids": generated[:, :step], "attention_mask": torch.ones_like(generated[:, :step])}
        target = int(generated[0, step])
        explanations.append(
            explain_text_classification(model, tokenizer, None, method, target, options, output, encoded=context)
        )
    return explanations


def _explain_translation(
    model: nn.Module, tokenizer, encoding: dict, method: str, options: dict, output: str, max_new_tokens: int,
    target_text: str | None,
) -> list[Explanation]:  # fmt: skip
    start_id = model.config.decoder_start_token_id
    if start_id is None:
        raise ExplainError(f"{type(model).__name__}'s config has no decoder_start_token_id; set it to translate.")
    if target_text is not None:
        target_ids = tokenizer(text_target=target_text, return_tensors="pt", verbose=False)["input_ids"]
        target = torch.cat([torch.tensor([[start_id]]), target_ids], dim=1).to(encoding["input_ids"].device)
        limit = max_input_length(model.config, tokenizer)
        if limit is not None and target.shape[1] - 1 > limit:
            raise ExplainError(
                f"The target is {target.shape[1] - 1} tokens long but this model takes at most {limit}; shorten it."
            )
    else:
        limit = max_input_length(model.config, tokenizer)
        budget = max_new_tokens if limit is None else min(max_new_tokens, limit)
        if budget < 1:
            raise ExplainError(f"max_new_tokens must be positive; got {max_new_tokens}.")
        with torch.no_grad():
            # generate() starts with decoder_start_token_id: target[:, 0] is it, every later column a token.
            target = model.generate(**encoding, max_new_tokens=budget, do_sample=False, num_beams=1)
    explanations = []
    for step in range(1, target.shape[1]):
        context = {**encoding, "decoder_input_ids": target[:, :step]}
        token = int(target[0, step])
        explanations.append(
            explain_text_classification(model, tokenizer, None, method, token, options, output, encoded=context)
        )
    return explanations
