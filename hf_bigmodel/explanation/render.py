"""Pictures of an `Explanation`: a matplotlib PNG, and a self-contained HTML page (inline styles and a data-URI
image: no script, no network, no CDN, so it opens offline)."""

from __future__ import annotations

import base64
import html
import io

import numpy as np

POSITIVE = (214, 39, 40)  # tab:red: pushes towards the target class
NEGATIVE = (31, 119, 180)  # tab:blue: pushes away from it


def _figure(width: float, height: float):
    # A bare Figure: not registered with pyplot (nothing to close or leak), drawn with Agg whatever the backend. No
    # `matplotlib.use`, which would switch a notebook's inline backend off and silence its plt.show().
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, facecolor="white")


def render_png(explanation) -> bytes:
    """Text: a bar per token (red for the target, blue against). Image: the input, and the map over it."""
    values = explanation.attributions.numpy()
    title = f"{explanation.method} for {explanation.target_label!s} (p={explanation.probability:.3f})"
    if explanation.position is not None:
        title += f" at token {explanation.position} ({explanation.tokens[explanation.position]})"
    if explanation.tokens is not None:
        figure = _figure(max(4.0, 0.45 * len(values) + 1.5), 3.2)
        axes = figure.add_subplot()
        colors = ["#{:02x}{:02x}{:02x}".format(*(POSITIVE if v >= 0 else NEGATIVE)) for v in values]
        axes.bar(range(len(values)), values, color=colors)
        axes.set_xticks(range(len(values)), explanation.tokens, rotation=60, ha="right", fontsize=8)
        axes.axhline(0, color="black", linewidth=0.6)
        axes.set_ylabel("attribution")
    else:
        figure = _figure(7.0, 3.6)
        left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
        left.imshow(explanation.image)
        left.set_title("input", fontsize=9)
        right.imshow(explanation.image)
        signed = explanation.method != "grad_cam"
        limit = float(np.abs(values).max()) or 1.0
        right.imshow(values, cmap="bwr" if signed else "jet", alpha=0.5, vmin=-limit if signed else 0, vmax=limit)
        right.set_title("attribution", fontsize=9)
        for axes in (left, right):
            axes.axis("off")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _token_spans(explanation) -> str:
    values = explanation.attributions.numpy()
    limit = float(np.abs(values).max()) or 1.0
    spans = []
    for token, value in zip(explanation.tokens, values):
        red, green, blue = POSITIVE if value >= 0 else NEGATIVE
        alpha = abs(float(value)) / limit
        spans.append(
            f'<span class="token" style="background: rgba({red},{green},{blue},{alpha:.3f})" '
            f'title="{float(value):+.4f}">{html.escape(token)}</span>'
        )
    return " ".join(spans)


def render_html(explanation, png: bytes | None = None, attention_png: bytes | None = None) -> str:
    """One HTML page: the prediction, tokens coloured by attribution (text) and the PNG figure, embedded."""
    png = png if png is not None else render_png(explanation)
    delta = "" if explanation.convergence_delta is None else f"; convergence delta {explanation.convergence_delta:.2e}"
    where = "" if explanation.position is None else f" at token {explanation.position}"
    layer = (
        ""
        if explanation.target_layer is None
        else f"; target layer <code>{html.escape(explanation.target_layer)}</code>"
    )
    body = _token_spans(explanation) if explanation.tokens is not None else ""
    image = base64.b64encode(png).decode("ascii")
    attention = ""
    if attention_png is not None:
        encoded = base64.b64encode(attention_png).decode("ascii")
        attention = (
            f'\n<h2>Attention</h2>\n<img alt="attention per layer and head" src="data:image/png;base64,{encoded}">'
        )

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Explanation: {html.escape(explanation.target_label)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 60em; }}
.token {{ padding: 0.1em 0.2em; border-radius: 0.2em; line-height: 2; }}
.legend span {{ padding: 0 0.4em; }}
</style></head>
<body>
<h1>{html.escape(explanation.method)}: {html.escape(explanation.target_label)}</h1>
<p>Class {explanation.target} ({html.escape(explanation.target_label)}){where}, probability {explanation.probability:.4f}{delta}{layer}.</p>
<p class="legend"><span style="background: rgba({POSITIVE[0]},{POSITIVE[1]},{POSITIVE[2]},0.6)">towards the class</span>
<span style="background: rgba({NEGATIVE[0]},{NEGATIVE[1]},{NEGATIVE[2]},0.6)">against it</span></p>
<p>{body}</p>
<img alt="attribution figure" src="data:image/png;base64,{image}">{attention}
</body></html>
"""
