"""BERT4Rec (Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder Representations from
Transformer", CIKM 2019) on the zoo's BERT.

The model is `BigModelBertModel` over item ids (id num_items + 1 is the mask) with BERT's masked-LM head: the
transform (dense, GELU, LayerNorm) and an output layer that shares the item embeddings and has its own bias, as in
the paper. It is trained on the cloze task (random items masked); a recommendation is the prediction at a mask
appended after the history. No transformer code is written here: every layer is the BERT's.

Standalone on purpose: `save_pretrained` copies this file and its single-dot imports (`modeling_bert.py`, the
configurations) next to the weights, so `trust_remote_code=True` loads a recommender without hf_bigmodel. The code it
shares with the SASRec recommender (the losses, `recommend`) is a marked copy of `gpt/modeling_sasrec.py`.
"""

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import MaskedLMOutput
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple

from .configuration_bert4rec import BigModelBert4RecConfig, parse_loss
from .modeling_bert import BigModelBertMLMHead, BigModelBertModel, BigModelBertPreTrainedModel, check_ids_in_range

IGNORE_INDEX = -100

# Copied from hf_bigmodel.models.gpt.modeling_sasrec.ITEM_MAP_MISMATCH
ITEM_MAP_MISMATCH = (
    "Item ids are 0 (padding) or 1..num_items: encode raw ids with the model's own item map "
    "(model.encode_histories), not another catalogue's."
)


# Copied from hf_bigmodel.models.gpt.modeling_sasrec.sample_negatives
def sample_negatives(count: int, num_items: int, device: torch.device) -> torch.Tensor:
    """`count` item ids drawn uniformly from 1..num_items (with replacement: accidental hits of the target are
    masked by the loss)."""
    return torch.randint(1, num_items + 1, (count,), device=device)


# Copied from hf_bigmodel.models.gpt.modeling_sasrec.recommendation_loss
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


# Copied from hf_bigmodel.models.gpt.modeling_sasrec.SequentialRecommenderMixin
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


def left_padded_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted from each row's first item, so that a history has the same positions whatever padding
    its batch adds on the left (BERT's own default, 0..seq-1, would shift them)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class BigModelBert4RecForMaskedLM(SequentialRecommenderMixin, BigModelBertPreTrainedModel):
    """BERT4Rec: fill in masked items of a left-padded item sequence.

    `forward(input_ids, labels=...)` trains the cloze task with the config's `loss` (labels: the items at masked
    positions, -100 elsewhere); `logits` are the scores of every id (batch, seq, num_items + 2), padding and the
    mask at -inf. In training with labels the loss scores only the masked positions and `logits` is None.
    `recommend()` appends the mask to each history and answers raw ids.
    """

    config_class = BigModelBert4RecConfig
    _tied_weights_keys = {"cls.decoder.weight": "bert.embeddings.word_embeddings.weight"}
    # The loss is a mean over the micro-batch's masked items: Trainer divides by the accumulation steps itself.
    accepts_loss_kwargs = False

    def __init__(self, config: BigModelBert4RecConfig):
        super().__init__(config)
        self.bert = BigModelBertModel(config, add_pooling_layer=False)
        self.cls = BigModelBertMLMHead(config)
        self.post_init()

    @property
    def max_history_length(self) -> int:
        return self.config.max_position_embeddings - 1  # one position for the appended mask

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.cls.decoder = new_embeddings

    def item_output(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The output layer's (weight (num_items + 2, hidden), bias (num_items + 2,))."""
        return self.cls.decoder.weight, self.cls.decoder.bias

    def item_logits(self, transformed: torch.Tensor) -> torch.Tensor:
        """(..., hidden) transformed states -> (..., num_items + 2) scores, padding and the mask at -inf."""
        logits = self.cls.decoder(transformed)
        # In place: the product's backward does not read its output (see the SASRec head).
        logits[..., 0] = float("-inf")
        logits[..., self.config.mask_token_id] = float("-inf")
        return logits

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        r"""
        input_ids: `(batch, seq)` item ids, 0 for padding, num_items + 1 for the mask.
        attention_mask: `(batch, seq)`, 1 for items and masks, 0 for padding (default: `input_ids != 0`).
        labels: `(batch, seq)` the true items at masked positions, -100 elsewhere.
        """
        kwargs.pop("num_items_in_batch", None)
        check_ids_in_range(input_ids, self.config.vocab_size, "input_ids", "vocab_size", ITEM_MAP_MISMATCH)
        if attention_mask is None:
            attention_mask = (input_ids != 0).long()
        if position_ids is None:
            position_ids = left_padded_positions(attention_mask)
        outputs = self.bert(input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
        transformed = self.cls.transform(outputs.last_hidden_state)  # (batch, seq, hidden)
        logits = None
        if labels is None or not self.training:
            # In training the loss scores the masked positions only (see the SASRec head).
            logits = self.item_logits(transformed)

        loss = None
        if labels is not None:
            labels = labels.to(transformed.device)
            keep = (labels != IGNORE_INDEX) & (labels != 0)
            loss = recommendation_loss(
                transformed[keep],
                labels[keep],
                self.cls.decoder.weight,
                self.cls.decoder.bias,
                self.config.loss,
                self.config.num_items,
            )
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    def next_item_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, hidden) transformed states at a mask appended to each left-padded history (the oldest item is
        dropped when the history fills every position): what the output layer scores."""
        if attention_mask is None:
            attention_mask = (input_ids != 0).long()
        keep = self.config.max_position_embeddings - 1
        mask_column = torch.full_like(input_ids[:, :1], self.config.mask_token_id)
        input_ids = torch.cat([input_ids[:, -keep:], mask_column], dim=1)
        attention_mask = torch.cat([attention_mask[:, -keep:], torch.ones_like(mask_column)], dim=1)
        position_ids = left_padded_positions(attention_mask)
        hidden = self.bert(input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state[
            :, -1
        ]
        return self.cls.transform(hidden)

    def next_item_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, num_items + 2) scores of the item after each left-padded history: the prediction at a mask
        appended to it."""
        return self.item_logits(self.next_item_states(input_ids, attention_mask))


__all__ = ["BigModelBert4RecForMaskedLM"]
