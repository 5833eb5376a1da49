"""The loss-curve picture of a model card: training and evaluation loss against the step, as a PNG.

matplotlib is imported inside `render_loss_curve`, with the Agg backend (no display), so that `import hf_bigmodel`
stays cheap and only writing a card with a loss curve pays for it.
"""

from __future__ import annotations

import io

TRAIN_COLOR = (31, 119, 180)  # matplotlib's "tab:blue"
EVAL_COLOR = (255, 127, 14)  # "tab:orange"


def _hex(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def render_loss_curve(
    train: list[tuple[float, float]], evals: list[tuple[float, float]], width: int = 640, height: int = 360
) -> bytes:
    """A PNG line plot of loss against step, `width` x `height` pixels: training loss in blue, evaluation loss in
    orange (with dots). The same losses give the same bytes, so pushing a card again changes nothing.

    Raises ValueError when there is no loss at all to plot."""
    if not train and not evals:
        raise ValueError("No loss values to plot: the run logged no training or evaluation loss.")
    # A bare Figure is not registered with pyplot (nothing to close or leak) and draws its PNG with Agg whatever the
    # backend: no `matplotlib.use`, which would switch a notebook's inline backend off and silence its plt.show().
    from matplotlib.figure import Figure

    dpi = 100
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    axes = figure.add_subplot()
    for name, color, series in (("train", TRAIN_COLOR, train), ("eval", EVAL_COLOR, evals)):
        if not series:
            continue
        steps, losses = zip(*sorted(series))
        marker = "o" if series is evals or len(series) == 1 else None
        axes.plot(steps, losses, color=_hex(color), linewidth=2, marker=marker, markersize=5, label=name)
    axes.set_title("Loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss (cross-entropy)")
    axes.grid(True, color="#e1e1e1")
    axes.legend(loc="upper right")
    figure.tight_layout()
    buffer = io.BytesIO()
    # No "Software" (version) text chunk: the bytes depend on the losses only, not on the matplotlib release.
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


__all__ = ["EVAL_COLOR", "TRAIN_COLOR", "render_loss_curve"]
