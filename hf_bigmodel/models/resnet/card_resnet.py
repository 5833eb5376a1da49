"""What the model card says about a `bigmodel_resnet` model: its family line, the "Model details" rows of its
config.json, its tags and loss unit. `hf_bigmodel.publish.card` finds this module from the architecture's row in
`models.ARCHITECTURES`. Plain data and functions of config.json; the modeling code never imports it.
"""

FAMILY = "a ResNet image classifier from hf_bigmodel"
TAGS = ("resnet", "image-classification")
LOSS_UNIT = "image"  # one term of the mean cross-entropy is an image: no perplexity is reported


def describe(config: dict) -> list[tuple[str, str]]:
    """Model-details rows for a `bigmodel_resnet` config.json."""
    depths, widths = config.get("depths") or [], config.get("hidden_sizes") or []
    bottleneck = config.get("layer_type") == "bottleneck"
    layers = (3 if bottleneck else 2) * sum(depths) + 2  # the stem convolution and the classifier count too
    cifar = config.get("stem_type") == "cifar"
    stem = "3x3 convolution, stride 1 (for small images)" if cifar else "7x7 convolution, stride 2, 3x3 max pool"
    channels = config.get("num_channels", 3)
    blocks = "bottleneck" if bottleneck else "basic"
    if config.get("use_residual_connection", True):
        kind = f"ResNet-{layers}, {blocks} residual blocks"
    else:  # the same layers without the shortcut sums (use_residual_connection=false): not a residual network
        kind = f"plain {layers}-layer network: ResNet's {blocks} blocks without the residual connection"
    return [
        ("Type", kind),
        ("Stem", f"{stem}, {config.get('embedding_size')} channels"),
        ("Stages (blocks x channels)", ", ".join(f"{d} x {w}" for d, w in zip(depths, widths))),
        ("Input", f"{channels} channel{'s' if channels != 1 else ''} ({'greyscale' if channels == 1 else 'RGB'})"),
        ("Classes", str(len(config.get("id2label") or {}) or config.get("num_labels", "?"))),
        ("Label smoothing (training loss)", f"{config.get('label_smoothing', 0.0):g}"),
    ]
