"""Configuration of the BERT4Rec-style sequential recommender on the BERT backbone.

A BERT config whose vocabulary is the item catalogue: id 0 is padding, items are 1..num_items and num_items + 1 is
the mask. It also holds the raw-id item map (`item_ids`, as a classifier's config holds `id2label`) and the
training loss. Standalone like `configuration_bert.py` (copied next to the weights with it).
"""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .configuration_bert import BigModelBertConfig, raise_value_errors

AUTO_MAP = {
    "AutoConfig": "configuration_bert4rec.BigModelBert4RecConfig",
    "AutoModelForMaskedLM": "modeling_bert4rec.BigModelBert4RecForMaskedLM",
}

# The paper's size (Sun et al., 2019): hidden 64, 2 layers, 2 heads, a 4x feed-forward, dropout 0.1, length 50 on the
# Amazon data and 200 on MovieLens.
PRESETS: dict[str, dict] = {
    "bert4rec-tiny": dict(
        num_items=20,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=12,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    ),  # fmt: skip
    "bert4rec-50": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=256,
        max_position_embeddings=50,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    ),  # fmt: skip
    "bert4rec-200": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=256,
        max_position_embeddings=200,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    ),  # fmt: skip
}

# Copied from hf_bigmodel.models.gpt.configuration_sasrec.LOSSES
LOSSES = ("bce", "ce", "sampled_ce:N", "gbce:k,t")


# Copied from hf_bigmodel.models.gpt.configuration_sasrec.parse_loss
def parse_loss(loss: str) -> tuple[str, int, float]:
    """`"bce"` -> ("bce", 1, 0.0); `"ce"` -> ("ce", 0, 0.0); `"sampled_ce:N"` -> ("sampled_ce", N, 0.0);
    `"gbce:k,t"` -> ("gbce", k, t). A ValueError says which forms exist."""
    name, _, arguments = loss.partition(":")
    try:
        if name == "bce" and not arguments:
            return "bce", 1, 0.0
        if name == "ce" and not arguments:
            return "ce", 0, 0.0
        if name == "sampled_ce":
            negatives = int(arguments)
            if negatives > 0:
                return "sampled_ce", negatives, 0.0
        if name == "gbce":
            k, t = arguments.split(",")
            negatives, t = int(k), float(t)
            if negatives > 0 and 0.0 <= t <= 1.0:
                return "gbce", negatives, t
    except ValueError:
        pass
    raise ValueError(
        f"`loss` {loss!r} is not one of {', '.join(LOSSES)}: 'bce' (one sampled negative per position, SASRec), "
        f"'ce' (softmax over every item), 'sampled_ce:N' (N > 0 sampled negatives) or 'gbce:k,t' (gSASRec: k > 0 "
        f"negatives, calibration t in [0, 1], e.g. 'gbce:256,0.75')."
    )


# Copied from hf_bigmodel.models.gpt.configuration_sasrec.check_item_map
def check_item_map(config: PreTrainedConfig) -> None:
    if config.num_items <= 0:
        raise ValueError(
            f"`num_items` must be a positive integer (the size of the catalogue), got {config.num_items}."
        )
    if config.item_ids is not None and len(config.item_ids) != config.num_items:
        raise ValueError(
            f"The item map does not match the model: `item_ids` lists {len(config.item_ids)} items but the model "
            f"has num_items={config.num_items}. Use the item map saved with this model (its config.json), or build "
            f"the model for this map: num_items=len(item_ids)."
        )
    parse_loss(config.loss)


@raise_value_errors
@strict
class BigModelBert4RecConfig(BigModelBertConfig):
    r"""
    BERT4Rec on the BERT backbone: a bidirectional encoder trained to fill in masked items; a recommendation is the
    prediction at a mask appended after the history. Item embeddings are shared with the output layer. Every BERT
    field works; `vocab_size` is derived, `num_items + 2` (padding, the items, the mask).

    Args:
        num_items: size of the catalogue; model ids are 1..num_items, 0 is padding, num_items + 1 the mask.
        item_ids: the raw id of each model id 1..num_items (`item_ids[i - 1]`), so `recommend` answers in raw ids.
        loss: `"ce"` (softmax over every item), `"bce"`, `"sampled_ce:N"` or `"gbce:k,t"` (see the SASRec config).
        mask_probability: share of the items masked in training (the paper's rho).
    """

    model_type = "bigmodel_bert4rec"

    num_items: int = 1
    item_ids: list | None = None
    loss: str = "ce"
    mask_probability: float = 0.2
    type_vocab_size: int = 1
    pad_token_id: int | None = 0
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        self.vocab_size = self.num_items + 2
        super().__post_init__(**kwargs)
        self.auto_map = {**AUTO_MAP}

    @property
    def mask_token_id(self) -> int:
        return self.num_items + 1

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "BigModelBert4RecConfig":
        """`BigModelBert4RecConfig.from_preset("bert4rec-50", num_items=54542)`."""
        if name not in PRESETS:
            raise ValueError(f"Unknown BERT4Rec preset {name!r}. Available presets: {', '.join(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    def validate_architecture(self):
        """Part of `@strict` validation: runs at init and again before `save_pretrained`."""
        check_item_map(self)
        if self.vocab_size != self.num_items + 2:
            raise ValueError(
                f"`vocab_size` ({self.vocab_size}) must be num_items + 2 ({self.num_items + 2}): padding, the items "
                f"and the mask."
            )
        if not 0.0 < self.mask_probability < 1.0:
            raise ValueError(f"`mask_probability` must be in (0, 1), got {self.mask_probability}.")
        if not self.tie_word_embeddings:
            raise ValueError(
                "BERT4Rec shares the item embeddings with the output layer: keep tie_word_embeddings=True."
            )
        super().validate_architecture()


__all__ = ["BigModelBert4RecConfig", "PRESETS", "parse_loss"]
