"""What the model card says about a `bigmodel_transformer` model: its family line, the "Model details" rows of its
config.json, its tags and loss unit. `hf_bigmodel.publish.card` finds this module from the architecture's row in
`models.ARCHITECTURES`. Plain data and functions of config.json; the modeling code never imports it.
"""

FAMILY = "an encoder-decoder Transformer (Attention Is All You Need) from hf_bigmodel"
TAGS = ("transformer", "seq2seq", "translation")
LOSS_UNIT = "token"  # one term of the mean cross-entropy is a token, so the card reports perplexity too


def describe(config: dict) -> list[tuple[str, str]]:
    """Model-details rows for a `bigmodel_transformer` config.json."""
    heads = config["num_attention_heads"]
    positions = config.get("position_embedding_type", "sinusoidal")
    if positions == "sinusoidal":
        positions += f" ({config.get('sinusoidal_layout', 'split')} layout)"
    norm = "pre-norm" if config.get("pre_norm") else "post-norm (as the paper)"
    return [
        ("Type", f"encoder-decoder Transformer, {norm}"),
        ("Layers", f"{config['encoder_layers']} encoder + {config['decoder_layers']} decoder"),
        ("Hidden size (d_model)", str(config["hidden_size"])),
        ("Attention", f"{heads} heads of {config['hidden_size'] // heads}"),
        ("Feed-forward size (d_ff)", f"{config['intermediate_size']}, {config.get('activation_function', 'relu')}"),
        ("Positions", positions),
        ("Maximum length", f"{config['max_position_embeddings']} tokens (source and target)"),
        ("Vocabulary", f"{config['vocab_size']} embeddings"),
        ("Shared source/target embeddings", "yes" if config.get("share_encoder_decoder_embeddings", True) else "no"),
        ("Tied output projection", "yes" if config.get("tie_word_embeddings", True) else "no"),
        ("Dropout / label smoothing", f"{config.get('dropout', 0.0):g} / {config.get('label_smoothing', 0.0):g}"),
    ]
