"""What the model card says about a `bigmodel_bert` model: its family line, the "Model details" rows of its
config.json, its tags and loss unit. `hf_bigmodel.publish.card` finds this module from the architecture's row in
`models.ARCHITECTURES`. Plain data and functions of config.json; the modeling code never imports it.
"""

FAMILY = "a BERT encoder (bidirectional Transformer) from hf_bigmodel"
TAGS = ("bert",)
LOSS_UNIT = "token"  # one term of the mean cross-entropy is a token, so the card reports perplexity too


def describe(config: dict) -> list[tuple[str, str]]:
    """Model-details rows for a `bigmodel_bert` config.json."""
    heads = config["num_attention_heads"]
    return [
        ("Type", "encoder-only Transformer (BERT: post-norm, learned absolute positions, segment embeddings)"),
        ("Layers", str(config["num_hidden_layers"])),
        ("Hidden size", str(config["hidden_size"])),
        ("Attention", f"{heads} heads of {config['hidden_size'] // heads}, bidirectional"),
        (
            "Feed-forward size",
            f"{config.get('intermediate_size') or 4 * config['hidden_size']} ({config.get('hidden_act', 'gelu')})",
        ),
        ("Max sequence length", f"{config['max_position_embeddings']} tokens"),
        ("Vocabulary", f"{config['vocab_size']} embeddings"),
        ("Segment (token type) ids", str(config.get("type_vocab_size", 2))),
        ("Tied input/output embeddings", "yes" if config.get("tie_word_embeddings", True) else "no"),
        (
            "Dropout (hidden / attention)",
            f"{config.get('hidden_dropout_prob', 0.1):g} / {config.get('attention_probs_dropout_prob', 0.1):g}",
        ),
    ]
