"""Configuration of the SASRec-style sequential recommender on the GPT backbone.

A GPT config whose vocabulary is the item catalogue: id 0 is padding and items are 1..num_items. It also holds the
raw-id item map (`item_ids`, as a classifier's config holds `id2label`) and the training loss. Standalone like
`configuration_gpt.py` (copied next to the weights with it): it imports only transformers, huggingface_hub and its
sibling.
"""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .configuration_gpt import BigModelGPTConfig, raise_value_errors

AUTO_MAP = {
    "AutoConfig": "configuration_sasrec.BigModelSASRecConfig",
    "AutoModelForCausalLM": "modeling_sasrec.BigModelSASRecForCausalLM",
}

# The papers' sizes. SASRec (Kang & McAuley, 2018): hidden 50, 2 blocks, 1 head, a d x d feed-forward, dropout 0.5
# on the sparse Amazon data (max length 50) and 0.2 on MovieLens (max length 200).
PRESETS: dict[str, dict] = {
    "sasrec-tiny": dict(
        num_items=20,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=12,
        embedding_dropout=0.0,
        hidden_dropout=0.0,
        attention_dropout=0.0,
    ),  # fmt: skip
    "sasrec-50": dict(
        hidden_size=50,
        num_hidden_layers=2,
        num_attention_heads=1,
        intermediate_size=50,
        max_position_embeddings=50,
        embedding_dropout=0.5,
        hidden_dropout=0.5,
        attention_dropout=0.0,
    ),  # fmt: skip
    "sasrec-200": dict(
        hidden_size=50,
        num_hidden_layers=2,
        num_attention_heads=1,
        intermediate_size=50,
        max_position_embeddings=200,
        embedding_dropout=0.2,
        hidden_dropout=0.2,
        attention_dropout=0.0,
    ),  # fmt: skip
}

LOSSES = ("bce", "ce", "sampled_ce:N", "gbce:k,t")


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
class BigModelSASRecConfig(BigModelGPTConfig):
    r"""
    SASRec on the GPT backbone: a causal decoder over item ids that predicts the next item at every position, with
    the item embeddings shared with the output layer. Every GPT field works (rotary positions, RMSNorm, SwiGLU,
    grouped-query attention, dropout); `vocab_size` is derived, `num_items + 1`.

    Args:
        num_items: size of the catalogue; model ids are 1..num_items, 0 is padding.
        item_ids: the raw id of each model id 1..num_items (`item_ids[i - 1]`), so `recommend` answers in raw ids.
        loss: `"bce"` (one uniformly sampled negative per position, as SASRec), `"ce"` (softmax over every item),
            `"sampled_ce:N"` (softmax over the target and N uniformly sampled negatives shared by the batch) or
            `"gbce:k,t"` (gSASRec's generalised BCE: k negatives for each position, calibration t).
        scale_embeddings: multiply item embeddings by sqrt(hidden_size) before adding positions, as SASRec does.
    """

    model_type = "bigmodel_sasrec"

    num_items: int = 1
    item_ids: list | None = None
    loss: str = "ce"
    scale_embeddings: bool = True
    tie_word_embeddings: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        self.vocab_size = self.num_items + 1
        super().__post_init__(**kwargs)
        self.auto_map = {**AUTO_MAP}

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "BigModelSASRecConfig":
        """`BigModelSASRecConfig.from_preset("sasrec-50", num_items=23715)`."""
        if name not in PRESETS:
            raise ValueError(f"Unknown SASRec preset {name!r}. Available presets: {', '.join(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    def validate_architecture(self):
        """Part of `@strict` validation: runs at init and again before `save_pretrained`."""
        check_item_map(self)
        if self.vocab_size != self.num_items + 1:
            raise ValueError(
                f"`vocab_size` ({self.vocab_size}) must be num_items + 1 ({self.num_items + 1}): padding and the items."
            )
        if not self.tie_word_embeddings:
            raise ValueError("SASRec shares the item embeddings with the output layer: keep tie_word_embeddings=True.")
        super().validate_architecture()


__all__ = ["BigModelSASRecConfig", "PRESETS", "parse_loss"]
