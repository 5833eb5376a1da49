"""What the model card says about a `bigmodel_gpt` model: its family line, the "Model details" rows of its
config.json, its tags and loss unit. `hf_bigmodel.publish.card` finds this module from the architecture's row in
`models.ARCHITECTURES`. Plain data and functions of config.json; the modeling code never imports it.
"""

FAMILY = "a decoder-only Transformer language model (GPT) from hf_bigmodel"
TAGS = ("gpt",)
LOSS_UNIT = "token"  # one term of the mean cross-entropy is a token, so the card reports perplexity too
# The card names the stock class (`GPT2LMHeadModel` or `LlamaForCausalLM`) that `hf-bigmodel convert` exports
# this config to, or why there is none.
EXPORT_HINT = True


def _gpt_recipe(config: dict) -> str:
    gpt2 = ("learned", "layernorm", "gelu")
    llama = ("rope", "rmsnorm", "swiglu")
    got = (config.get("position_embedding_type"), config.get("norm_type"), config.get("mlp_type"))
    if got == gpt2:
        return "GPT-2 recipe: learned positions, LayerNorm, GELU MLP"
    if got == llama:
        return "Llama recipe: rotary positions, RMSNorm, SwiGLU MLP"
    return f"positions {got[0]}, {got[1]}, {got[2]} MLP"


def describe(config: dict) -> list[tuple[str, str]]:
    """Model-details rows for a `bigmodel_gpt` config.json."""
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    attention = f"{heads} heads of {config['hidden_size'] // heads}"
    if kv_heads != heads:
        attention += f", {kv_heads} key/value heads (grouped-query attention)"
    rows = [
        ("Type", f"decoder-only Transformer, {_gpt_recipe(config)}"),
        ("Layers", str(config["num_hidden_layers"])),
        ("Hidden size", str(config["hidden_size"])),
        ("Attention", attention),
        ("MLP size", str(config.get("intermediate_size") or 4 * config["hidden_size"])),
        ("Context length", f"{config['max_position_embeddings']} tokens"),
        ("Vocabulary", f"{config['vocab_size']} embeddings"),
        ("Biases", "yes" if config.get("bias", True) else "no"),
        ("Tied input/output embeddings", "yes" if config.get("tie_word_embeddings", True) else "no"),
    ]
    if config.get("position_embedding_type") == "rope":
        theta = (config.get("rope_parameters") or {}).get("rope_theta")
        if theta is not None:
            rows.append(("RoPE theta", f"{theta:g}"))
    dropouts = [config.get(k, 0.0) or 0.0 for k in ("embedding_dropout", "hidden_dropout", "attention_dropout")]
    rows.append(("Dropout (embedding / hidden / attention)", " / ".join(f"{d:g}" for d in dropouts)))
    return rows
