"""SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018) on the zoo's GPT.

The model is `BigModelGPTModel` over item ids: its token embedding is the item embedding (scaled by sqrt(hidden), as
SASRec does), its causal blocks read the history, and the score of item i after position t is the dot product of
the hidden state at t with item i's embedding (the output layer shares the embedding). No transformer code is
written here: the blocks, attention, positions and norms are the GPT's, so every GPT switch applies.

Standalone on purpose: `save_pretrained` copies this file and its single-dot imports (`modeling_gpt.py`,
`cpu_kernels_gpt.py`, the configurations) next to the weights, so `trust_remote_code=True` loads a recommender
without hf_bigmodel.
"""

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple

from .configuration_sasrec import BigModelSASRecConfig, parse_loss
from .modeling_gpt import BigModelGPTModel, BigModelGPTPreTrainedModel, check_ids_in_range

IGNORE_INDEX = -100
ITEM_MAP_MISMATCH = (
    "Item ids are 0 (padding) or 1..num_items: encode raw ids with the model's own item map "
    "(model.encode_histories), not another catalogue's."
)


def sample_negatives(count: int, num_items: int, device: torch.device) -> torch.Tensor:
    """`count` item ids drawn uniformly from 1..num_items (with replacement: accidental hits of the target are
    masked by the loss)."""
    return torch.randint(1, num_items + 1, (count,), device=device)


def recommendation_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    item_weight: torch.Tensor,
    item_bias: torch.Tensor | None,
    loss: str,
    num_items: int,
) -> torch.Tensor:
    """The training loss of a recommender, in float32, averaged over the labelled positions.

    hidden: (n, hidden) the states that predict; targets: (n,) their items (model ids 1..num_items);
    item_weight: (vocab, hidden) the item embeddings; item_bias: (vocab,) or None.
    """
    kind, negatives, t = parse_loss(loss)

    def scores(ids: torch.Tensor) -> torch.Tensor:  # (n, hidden) x (m, hidden) -> (n, m)
        logits = hidden @ item_weight[ids].T
        return (logits + item_bias[ids] if item_bias is not None else logits).float()

    if kind == "ce":
        # A slice of the table, not an index: the backward of an index is a scatter-add over every item row,
        # several times the cost of the product itself.
        logits = nn.functional.linear(hidden, item_weight[1 : num_items + 1])  # (n, num_items)
        if item_bias is not None:
            logits = logits + item_bias[1 : num_items + 1]
        return nn.functional.cross_entropy(logits.float(), targets - 1)
    if kind == "bce":
        # SASRec: one negative per position; each position's positive and negative logits are two separate
        # binary decisions.
        negative = sample_negatives(targets.shape[0], num_items, hidden.device)
        h = hidden.float()
        positive_logit = (h * item_weight[targets].float()).sum(-1)
        negative_logit = (h * item_weight[negative].float()).sum(-1)
        if item_bias is not None:
            positive_logit, negative_logit = positive_logit + item_bias[targets], negative_logit + item_bias[negative]
        keep = (negative != targets).float()
        loss_positive = nn.functional.softplus(-positive_logit)  # -log sigmoid(s+)
        loss_negative = nn.functional.softplus(negative_logit) * keep  # -log(1 - sigmoid(s-))
        return (loss_positive + loss_negative).mean()
    if kind == "sampled_ce":
        # Negatives shared by every position of the batch: one (n, k) product instead of a gather of n * k
        # embeddings; a negative that is the position's own target is masked out.
        negative = sample_negatives(negatives, num_items, hidden.device)
        positive_logit = (hidden.float() * item_weight[targets].float()).sum(-1, keepdim=True)  # (n, 1)
        if item_bias is not None:
            positive_logit = positive_logit + item_bias[targets].float().unsqueeze(-1)
        negative_logits = scores(negative).masked_fill(negative.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
        logits = torch.cat([positive_logit, negative_logits], dim=1)  # (n, 1 + k), the target in column 0
        return nn.functional.cross_entropy(logits, torch.zeros_like(targets))
    # gSASRec (Petrov & Macdonald, RecSys 2023): each position draws its own k negatives, as its authors' code does.
    # Negatives shared by the batch (one (n, k) product, as above) made the same k items take the push of every
    # position at once, and training diverged on Video; the (n, k, hidden) gather costs about 70 MB at k=256 for a
    # batch of 128 Amazon histories. The positive's sigmoid is raised to the power beta, which calibrates the scores
    # as if every other item were a negative; t=0 is plain BCE with k negatives, t=1 full calibration.
    negative = sample_negatives(targets.shape[0] * negatives, num_items, hidden.device).view(-1, negatives)  # (n, k)
    h = hidden.float()
    positive_logit = (h * item_weight[targets].float()).sum(-1)  # (n,)
    negative_logits = torch.einsum("nh,nkh->nk", h, item_weight[negative].float())  # (n, k)
    if item_bias is not None:
        positive_logit, negative_logits = positive_logit + item_bias[targets], negative_logits + item_bias[negative]
    alpha = negatives / max(num_items - 1, 1)
    beta = alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)
    loss_positive = beta * nn.functional.softplus(-positive_logit)  # -log sigmoid(s+)^beta
    hit = negative == targets.unsqueeze(1)  # a draw of the position's own target is not a negative
    loss_negative = nn.functional.softplus(negative_logits).masked_fill(hit, 0.0).sum(1)
    # Averaged over the 1 + k binary decisions of each position, as gSASRec does.
    return ((loss_positive + loss_negative) / (1 + negatives)).mean()


class SequentialRecommenderMixin:
    """`recommend()` on top of a model's `next_item_logits` (batch, vocab): raw ids in, raw ids and scores out,
    through the item map in the config (`config.item_ids`)."""

    def _item_index(self) -> dict[str, int]:
        item_ids = self.config.item_ids
        if not item_ids:
            raise ValueError(
                "This model has no item map (config.item_ids), so it cannot read raw item ids. Set "
                "model.config.item_ids to the raw ids of items 1..num_items, or pass model ids with raw_ids=False."
            )
        if len(item_ids) != self.config.num_items:
            raise ValueError(
                f"The item map does not match the model: config.item_ids lists {len(item_ids)} items but the model "
                f"has num_items={self.config.num_items}. Use the item map saved with this model."
            )
        cached = getattr(self, "_cached_item_index", None)
        if cached is None or cached[0] is not item_ids:
            cached = (item_ids, {str(item): i + 1 for i, item in enumerate(item_ids)})
            self._cached_item_index = cached
        return cached[1]

    def encode_histories(
        self, histories: Sequence[Sequence[Any]], unknown: str = "ignore", raw_ids: bool = True
    ) -> list[list[int]]:
        """Model ids of each history's items. An item the model does not know is dropped with a warning naming it
        (`unknown="ignore"`) or is a ValueError (`unknown="error"`). An empty history is a ValueError."""
        if unknown not in ("ignore", "error"):
            raise ValueError(f"`unknown` must be 'ignore' or 'error', got {unknown!r}.")
        if isinstance(histories, (str, bytes)) or not isinstance(histories, Sequence):
            raise ValueError("`histories` must be a list of histories, each a list of item ids, e.g. [[12, 7, 3]].")
        index = self._item_index() if raw_ids else None
        encoded = []
        for row, history in enumerate(histories):
            if isinstance(history, (str, bytes, int)) or not isinstance(history, Sequence):
                raise ValueError(
                    f"History {row} is {history!r}, not a list of item ids: pass a list of histories, e.g. [[12, 7]]."
                )
            if raw_ids:
                ids = [index.get(str(item)) for item in history]
            else:
                ids = [int(i) if 1 <= int(i) <= self.config.num_items else None for i in history]
            missing = [item for item, i in zip(history, ids) if i is None]
            if missing:
                message = (
                    f"History {row} names {len(missing)} item(s) the model does not know: {missing[:5]}"
                    f"{' ...' if len(missing) > 5 else ''}."
                )
                if unknown == "error":
                    raise ValueError(f"{message} Remove them, or pass unknown='ignore' to drop them.")
                warnings.warn(f"{message} They are ignored.", stacklevel=4)
            ids = [i for i in ids if i is not None]
            if not ids:
                raise ValueError(
                    f"History {row} is empty{' once unknown items are dropped' if history else ''}: a recommendation "
                    f"needs at least one item the model knows."
                )
            encoded.append(ids)
        return encoded

    def history_tensors(self, histories: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), left-padded to the longest kept history: the newest items last."""
        length = min(max(len(h) for h in histories), self.max_history_length)
        input_ids = torch.zeros(len(histories), length, dtype=torch.long)
        for row, history in enumerate(histories):
            tail = history[-length:]
            input_ids[row, length - len(tail) :] = torch.tensor(tail, dtype=torch.long)
        return input_ids.to(self.device), (input_ids != 0).long().to(self.device)

    def _check_k(self, k: int) -> None:
        num_items = self.config.num_items
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be a positive integer, got {k!r}.")
        if k > num_items:
            raise ValueError(f"k={k} is larger than the catalogue ({num_items} items): ask for at most {num_items}.")

    def top_items(
        self, logits: torch.Tensor, histories: Sequence[Sequence[int]], k: int, exclude_seen: bool, raw_ids: bool
    ) -> list[list[dict[str, Any]]]:
        """The `k` best items of each row of `logits` (batch, vocab), without padding, the mask and (if
        `exclude_seen`) the history's items; fewer where fewer remain."""
        num_items = self.config.num_items
        self._check_k(k)
        scores = logits[:, 1 : num_items + 1].float().clone()  # (batch, num_items): column j is item j + 1
        if exclude_seen:
            for row, history in enumerate(histories):
                scores[row, torch.tensor(history, device=scores.device) - 1] = float("-inf")
        values, indices = scores.topk(k, dim=-1)
        results = []
        for row_values, row_indices in zip(values.tolist(), (indices + 1).tolist()):
            kept = [(i, v) for i, v in zip(row_indices, row_values) if v != float("-inf")]
            items = [self.config.item_ids[i - 1] for i, _ in kept] if raw_ids else [i for i, _ in kept]
            results.append([{"item": item, "score": v} for item, (_, v) in zip(items, kept)])
        return results

    def candidate_scores(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, candidates: torch.Tensor
    ) -> torch.Tensor:
        """(batch, c) scores of `candidates` (batch, c model ids) after each left-padded history: the entries of
        `next_item_logits` at those ids, without the (batch, vocab) product that a sampled protocol does not need."""
        states = self.next_item_states(input_ids, attention_mask)  # (batch, hidden)
        weight, bias = self.item_output()
        scores = (weight[candidates] @ states.unsqueeze(-1)).squeeze(-1)  # (batch, c, hidden) x (batch, hidden, 1)
        return scores + bias[candidates] if bias is not None else scores

    @torch.no_grad()
    def recommend(
        self,
        histories: Sequence[Sequence[Any]],
        k: int = 10,
        exclude_seen: bool = True,
        unknown: str = "ignore",
        raw_ids: bool = True,
    ) -> list[list[dict[str, Any]]]:
        """The top `k` next items for each history (raw item ids, oldest first): a list per history of
        `{"item": raw id, "score": float}`, best first. `exclude_seen` leaves out the history's own items;
        `unknown` is "ignore" (drop unknown items with a warning) or "error"; `raw_ids=False` reads and answers
        model ids 1..num_items."""
        self._check_k(k)
        encoded = self.encode_histories(histories, unknown=unknown, raw_ids=raw_ids)
        was_training = self.training
        self.eval()
        try:
            logits = self.next_item_logits(*self.history_tensors(encoded))
        finally:
            self.train(was_training)
        return self.top_items(logits, encoded, k, exclude_seen, raw_ids)


class BigModelSASRecForCausalLM(SequentialRecommenderMixin, BigModelGPTPreTrainedModel):
    """SASRec: next-item prediction at every position of a left-padded item sequence.

    `forward(input_ids, labels=input_ids)` trains as a causal LM does (labels shifted inside, -100 ignored) with the
    config's `loss`; `logits` are the scores of every id (batch, seq, num_items + 1), column 0 (padding) at -inf.
    In training with labels the loss scores only the labelled positions and `logits` is None. `recommend()` answers
    raw ids.
    """

    config_class = BigModelSASRecConfig
    _tied_weights_keys = {}
    # The loss is a mean over the micro-batch's labelled positions: Trainer divides by the accumulation steps itself.
    accepts_loss_kwargs = False

    def __init__(self, config: BigModelSASRecConfig):
        super().__init__(config)
        self.model = BigModelGPTModel(config)
        self.embed_scale = math.sqrt(config.hidden_size) if config.scale_embeddings else 1.0
        self.post_init()

    @property
    def max_history_length(self) -> int:
        return self.config.max_position_embeddings

    def item_embeddings(self) -> torch.Tensor:
        """(num_items + 1, hidden): the input embedding, which is also the output layer."""
        return self.model.embed_tokens.weight

    def get_output_embeddings(self) -> None:
        return None  # the output layer is the input embedding itself, not a separate (tied) module

    def item_output(self) -> tuple[torch.Tensor, None]:
        """The output layer's (weight (num_items + 1, hidden), bias): the item embeddings, no bias."""
        return self.item_embeddings(), None

    def item_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(..., hidden) -> (..., num_items + 1) scores, padding at -inf."""
        logits = hidden_states @ self.item_embeddings().T
        # In place: the product's backward does not read its output, and a copy of (users, items) costs as much as
        # the product at hidden 50.
        logits[..., 0] = float("-inf")
        return logits

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CausalLMOutputWithPast:
        r"""
        input_ids: `(batch, seq)` item ids, 0 for padding (left padding: the newest item last).
        attention_mask: `(batch, seq)`, 1 for items, 0 for padding (default: `input_ids != 0`).
        labels: `(batch, seq)` item ids, -100 (or 0) where no loss is wanted; shifted inside, so `labels=input_ids`
            trains next-item prediction at every position.
        """
        kwargs.pop("num_items_in_batch", None)
        kwargs.pop("use_cache", None)
        check_ids_in_range(input_ids, self.config.vocab_size, "input_ids", "vocab_size", ITEM_MAP_MISMATCH)
        if attention_mask is None:
            attention_mask = (input_ids != 0).long()
        inputs_embeds = self.model.embed_tokens(input_ids) * self.embed_scale  # (batch, seq, hidden)
        outputs: BaseModelOutputWithPast = self.model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state  # (batch, seq, hidden)
        logits = None
        if labels is None or not self.training:
            # In training the loss scores the labelled positions only; the (batch, seq, items) tensor would be most
            # of an epoch's time and memory (most positions are padding in short histories).
            logits = self.item_logits(hidden_states)

        loss = None
        if labels is not None:
            targets = labels[:, 1:].to(hidden_states.device)  # position t predicts the item at t + 1
            # Only a real item predicts: a padding position's state has read nothing, and whether a history's first
            # item gets one depends on how much padding its batch has.
            keep = (targets != IGNORE_INDEX) & (targets != 0) & attention_mask[:, :-1].bool().to(targets.device)
            predicting = hidden_states[:, :-1][keep]  # (labelled positions, hidden)
            loss = recommendation_loss(
                predicting, targets[keep], self.item_embeddings(), None, self.config.loss, self.config.num_items
            )
        return CausalLMOutputWithPast(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    def next_item_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, hidden) states that score the item after each left-padded history (the last position)."""
        if attention_mask is None:
            attention_mask = (input_ids != 0).long()
        inputs_embeds = self.model.embed_tokens(input_ids) * self.embed_scale
        hidden = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False)
        return hidden.last_hidden_state[:, -1]

    def next_item_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, num_items + 1) scores of the item after each left-padded history (the last position)."""
        return self.item_logits(self.next_item_states(input_ids, attention_mask))


__all__ = ["BigModelSASRecForCausalLM"]
