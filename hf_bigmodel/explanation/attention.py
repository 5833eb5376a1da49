"""Attention maps and attention rollout, for every model of the zoo and stock transformers models.

transformers 5 returns attention weights only from eager attention (sdpa does not compute them and returns an
empty tuple), so `attention_maps` switches the model to eager attention for the call and restores the previous
implementation afterwards, also when the forward fails.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .core import ExplainError


@dataclass
class AttentionMaps:
    """Attention weights of one input, one tensor per kind, each `(layers, heads, queries, keys)`.

    Encoder-only and decoder-only models fill `self_attentions`; encoder-decoder models fill `self_attentions`
    (the encoder's), `decoder_attentions` and `cross_attentions` (queries: target tokens, keys: source tokens)."""

    tokens: list[str]
    self_attentions: torch.Tensor
    target_tokens: list[str] | None = None
    decoder_attentions: torch.Tensor | None = None
    cross_attentions: torch.Tensor | None = None

    def bertviz(self) -> dict:
        """The keyword arguments of bertviz's `head_view` / `model_view`, which take one `(batch, heads, queries,
        keys)` tensor per layer: `head_view(**maps.bertviz(), html_action="return")`. Encoder-decoders give the
        encoder-decoder form (`encoder_attention`, `decoder_attention`, `cross_attention` and their tokens)."""

        def layers(maps: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(maps.unsqueeze(1))  # (layers, heads, q, k) -> layers x (1, heads, q, k)

        if self.cross_attentions is None:
            return {"attention": layers(self.self_attentions), "tokens": list(self.tokens)}
        return {
            "encoder_attention": layers(self.self_attentions),
            "decoder_attention": layers(self.decoder_attentions),
            "cross_attention": layers(self.cross_attentions),
            "encoder_tokens": list(self.tokens),
            "decoder_tokens": list(self.target_tokens),
        }

    def rollout(self, which: str = "self", residual: bool = True) -> torch.Tensor:
        """Attention rollout (Abnar & Zuidema, 2020): the heads' mean per layer, plus the identity for the residual
        connection (`residual=True`), rows renormalised, multiplied from the first layer up. Returns `(queries,
        keys)`: how much each output position draws on each input position through all the layers."""
        maps = {"self": self.self_attentions, "decoder": self.decoder_attentions}.get(which)
        if maps is None:
            raise ExplainError(f"No {which!r} attentions to roll out; use 'self' (or 'decoder' for encoder-decoders).")
        result = None
        for layer in maps.float().mean(dim=1):  # (queries, keys), heads averaged
            if residual:
                layer = layer + torch.eye(layer.shape[-1])
                layer = layer / layer.sum(-1, keepdim=True)
            result = layer if result is None else layer @ result
        return result

    def render_png(self, which: str = "self") -> bytes:
        """A grid of heatmaps, one row per layer and one column per head, of the `which` attentions ("self",
        "decoder" or "cross"), as PNG bytes (matplotlib)."""
        from .render import _figure

        maps = {"self": self.self_attentions, "decoder": self.decoder_attentions, "cross": self.cross_attentions}
        if maps.get(which) is None:
            raise ExplainError(
                f"No {which!r} attentions; this model has: {', '.join(k for k, v in maps.items() if v is not None)}."
            )
        maps = maps[which]
        queries = self.tokens if which == "self" else self.target_tokens
        keys = self.tokens if which != "decoder" else self.target_tokens
        layers, heads = maps.shape[:2]
        figure = _figure(1.0 + 2.2 * heads, 0.5 + 2.2 * layers)
        for layer in range(layers):
            for head in range(heads):
                axes = figure.add_subplot(layers, heads, layer * heads + head + 1)
                axes.imshow(maps[layer, head].numpy(), cmap="viridis", vmin=0, vmax=1)
                axes.set_title(f"layer {layer} head {head}", fontsize=7)
                axes.set_xticks(range(len(keys)), keys, rotation=90, fontsize=5)
                axes.set_yticks(range(len(queries)), queries, fontsize=5)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})
        return buffer.getvalue()

    def to_dict(self) -> dict:
        out = {"tokens": self.tokens, "self_attentions": self.self_attentions.tolist()}
        if self.cross_attentions is not None:
            out |= {
                "target_tokens": self.target_tokens,
                "decoder_attentions": self.decoder_attentions.tolist(),
                "cross_attentions": self.cross_attentions.tolist(),
            }
        return out


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[nn.Module]:
    """The model with eager attention inside the block, and its previous implementation (sdpa, flex...) after."""
    previous = model.config._attn_implementation
    if previous == "eager":
        yield model
        return
    model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        model.set_attn_implementation(previous)


def _stack(attentions) -> torch.Tensor:
    if not attentions or any(a is None for a in attentions):
        raise ExplainError("The model returned no attention weights even with eager attention; it cannot be shown.")
    return torch.stack([a[0].detach().float().cpu() for a in attentions])  # (layers, heads, queries, keys)


def attention_maps(model: nn.Module, text: str, tokenizer, target_text: str | None = None) -> AttentionMaps:
    """Per-layer, per-head attention of `model` on `text`. For an encoder-decoder model, `target_text` is the
    decoder's side (e.g. a translation); without it the model's greedy output (up to 32 tokens) is used."""
    encoding = {k: v.to(model.device) for k, v in tokenizer(text, return_tensors="pt").items()}
    tokens = tokenizer.convert_ids_to_tokens(encoding["input_ids"][0].tolist())
    was_training = model.training
    model.eval()
    try:
        with eager_attention(model), torch.no_grad():
            if not model.config.is_encoder_decoder:
                outputs = model(**encoding, output_attentions=True)
                return AttentionMaps(tokens=tokens, self_attentions=_stack(outputs.attentions))
            if target_text is not None:
                decoder_ids = tokenizer(text_target=target_text, return_tensors="pt")["input_ids"].to(model.device)
                start = torch.tensor([[model.config.decoder_start_token_id]], device=model.device)
                decoder_ids = torch.cat([start, decoder_ids[:, :-1]], dim=1)  # teacher forcing: shifted right
            else:
                decoder_ids = model.generate(**encoding, max_new_tokens=32, do_sample=False, num_beams=1)[:, :-1]
            outputs = model(**encoding, decoder_input_ids=decoder_ids, output_attentions=True)
            return AttentionMaps(
                tokens=tokens,
                self_attentions=_stack(outputs.encoder_attentions),
                target_tokens=tokenizer.convert_ids_to_tokens(decoder_ids[0].tolist()),
                decoder_attentions=_stack(outputs.decoder_attentions),
                cross_attentions=_stack(outputs.cross_attentions),
            )
    finally:
        model.train(was_training)
