# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # ResNet: MNIST digits, the residual connection and what happens without it, Grad-CAM
#
# A ResNet is a stack of convolutional blocks, each of which *adds* its input back to its output: the block learns
# a correction to the identity instead of a whole new function. That one addition, the **residual connection**,
# is what let He et al. (2015) train networks of 50 to 150 layers. This notebook
#
# 1. builds hf_bigmodel's ResNet and looks at one block;
# 2. trains a ResNet-20 on MNIST with `hf-bigmodel pretrain resnet` and measures its test accuracy;
# 3. trains a 56-layer network twice, the same way, with and without the residual connection
#    (`use_residual_connection=False`, the paper's "plain" network), and compares the loss curves and the gradients
#    that reach the first layers;
# 4. asks the trained model which pixels it looked at: Grad-CAM and integrated gradients with `hf_bigmodel.explain`.
#
# `HF_BIGMODEL_QUICK=1` runs the same code at smaller sizes (as CI does).

# %%
import json
import os
import shlex
import shutil
from pathlib import Path

import numpy as np
import torch

import hf_bigmodel
from hf_bigmodel.cli import main as hf_bigmodel_cli
from hf_bigmodel.data.images import load_mnist_arrays

QUICK = os.environ.get("HF_BIGMODEL_QUICK") == "1"
# The project's datasets sit in shared/data beside the checkout (../shared/data from its root).
SHARED = next(p / "shared" / "data" for p in Path.cwd().resolve().parents if (p / "shared" / "data").is_dir())
MNIST = SHARED / "mnist"
RUN = Path("runs/04_resnet")
shutil.rmtree(RUN, ignore_errors=True)
torch.manual_seed(0)


def sh(command: str) -> None:
    """Run an `hf-bigmodel ...` command line in this process, exactly as a terminal would, and stop on failure."""
    print(f"$ {command}")
    assert hf_bigmodel_cli(shlex.split(command)[1:]) == 0, f"failed: {command}"


test_images, test_labels = load_mnist_arrays(MNIST, "test")
print(f"{len(test_images):,} test images of {test_images.shape[1]}x{test_images.shape[2]} pixels; quick mode: {QUICK}")

# %%
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 10, figsize=(10, 1.3))
for ax, image, label in zip(axes, test_images, test_labels):
    ax.imshow(image, cmap="gray_r")
    ax.set_title(str(label))
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 1. The model
#
# `resnet-20` is the network of the paper's CIFAR-10 experiments (section 4.2): a 3x3 convolution (the "stem"),
# then three stages of three **basic blocks** each, 16, 32 and 64 channels wide, global average pooling and one
# linear layer: 6 x 3 + 2 = 20 layers with weights. MNIST digits have one channel (`num_channels=1`).
# `downsample_in_first_stage=True` halves the 28x28 images to 14x14 in the first stage: four times less work per
# image, and a digit does not need its full resolution to be recognised.

# %%
model = hf_bigmodel.create_model(
    "resnet-20", task="image-classification", num_channels=1, downsample_in_first_stage=True
)
print(f"{model.num_parameters():,} parameters")
print(model.resnet.stages[1].layers[0])

# %% [markdown]
# A basic block computes `relu(norm2(conv2(relu(norm1(conv1(x))))) + shortcut(x))`. The `shortcut` is `x` itself,
# or, in the first block of a stage, where the width doubles and the resolution halves, a 1x1 convolution (and
# BatchNorm) that brings `x` to the new shape. That `+ shortcut(x)` is the residual connection.

# %% [markdown]
# ## 2. Train on MNIST
#
# One command reads MNIST's idx files, takes the number of classes and channels from the data, builds the image
# processor (normalisation with MNIST's mean and standard deviation), trains with `Trainer` (SGD with Nesterov
# momentum and a cosine schedule, the paper's recipe), evaluates on the test images and saves model, processor, code
# and model card. `benchmarks/bench_mnist.py` is the full recipe (6 epochs, augmentation, 99.5% test accuracy); here
# a few hundred steps show the model learning.

# %%
SMALL_STEPS = 80 if QUICK else 500
EVAL_IMAGES = 1000 if QUICK else 10000
BATCH = 64
COMMON = (
    f"--mnist_dir {MNIST} --per_device_train_batch_size {BATCH} --per_device_eval_batch_size 500 "
    "--optim sgd --optim_args momentum=0.9,nesterov=True --learning_rate 0.1 --weight_decay 5e-4 "
    "--lr_scheduler_type cosine --warmup_steps 0.1 --eval_strategy no --save_strategy no "
    f"--max_eval_samples {EVAL_IMAGES} --report_to none --use_cpu true --seed 0"
)
sh(
    f"hf-bigmodel pretrain resnet --preset resnet-20 --config_overrides downsample_in_first_stage=true "
    f"--max_steps {SMALL_STEPS} --max_train_samples {SMALL_STEPS * BATCH} --logging_steps {SMALL_STEPS // 10} "
    f"--output_dir {RUN}/resnet20 {COMMON}"
)

# %%
results = json.loads((RUN / "resnet20" / "all_results.json").read_text())
accuracy = results["eval_accuracy"]
print(f"test accuracy {accuracy:.2%} on {EVAL_IMAGES:,} test images after {SMALL_STEPS} steps (chance: 10%)")
assert accuracy > (0.8 if QUICK else 0.97), "the ResNet did not learn to read digits"

# %% [markdown]
# The folder is an ordinary transformers model: `pipeline("image-classification")` loads it with its processor.

# %%
from PIL import Image
from transformers import pipeline

classify = pipeline("image-classification", model=str(RUN / "resnet20"))
digits = [Image.fromarray(image) for image in test_images[:8]]
predictions = [result[0]["label"] for result in classify(digits)]
print("predicted:", " ".join(predictions))
print("true:     ", " ".join(str(label) for label in test_labels[:8]))

# %% [markdown]
# ## 3. The residual connection, and what happens without it
#
# He et al. first trained "plain" networks: the same blocks without the `+ shortcut(x)`. With BatchNorm the plain
# networks trained, but a deeper one reached a *higher* training error than a shallower one (their figure 1): depth
# made optimisation harder, not the model worse. With the residual connection, the deeper network trained better.
#
# `use_residual_connection=False` builds that plain network: every block is its convolutions, BatchNorms and ReLUs
# only (no shortcut weights, no addition). We train a 56-layer network (`resnet-56`: nine blocks per stage) twice,
# with the same command, data order and seed; only the switch differs.

# %%
DEEP_STEPS = 40 if QUICK else 200
for residual in (True, False):
    name = "residual" if residual else "plain"
    sh(
        f"hf-bigmodel pretrain resnet --preset resnet-56 "
        f"--config_overrides downsample_in_first_stage=true,use_residual_connection={str(residual).lower()} "
        f"--max_steps {DEEP_STEPS} --max_train_samples {DEEP_STEPS * BATCH} --logging_steps {max(1, DEEP_STEPS // 15)} "
        f"--output_dir {RUN}/{name}56 {COMMON}"
    )


# %%
def logged(name: str, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of a key that Trainer logged during training (`loss`, `grad_norm`)."""
    history = json.loads((RUN / name / "trainer_state.json").read_text())["log_history"]
    entries = [entry for entry in history if key in entry and "train_runtime" not in entry]
    return [entry["step"] for entry in entries], [entry[key] for entry in entries]


def late_loss(name: str) -> float:
    """The mean training loss over the last quarter of the steps (one logged value alone is noisy)."""
    steps, losses = logged(name, "loss")
    return float(np.mean([loss for step, loss in zip(steps, losses) if step > 0.75 * DEEP_STEPS]))


runs = {"residual": "residual56", "plain": "plain56"}
final_loss = {label: late_loss(name) for label, name in runs.items()}
deep_accuracy = {
    label: json.loads((RUN / name / "all_results.json").read_text())["eval_accuracy"] for label, name in runs.items()
}
for label in runs:
    print(
        f"56 layers, {label:8s}: training loss {final_loss[label]:.3f} over the last quarter of {DEEP_STEPS} steps, "
        f"test accuracy {deep_accuracy[label]:.2%}"
    )

# %% [markdown]
# Why? Look at the gradient that each layer receives. Below, one batch of training digits goes through both
# networks, freshly initialised (seed 0), and back; for every block we take the norm of the gradient of its first
# convolution's weights, from the first block (next to the input) to the last.

# %%
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, set_seed

processor = AutoImageProcessor.from_pretrained(RUN / "residual56")
train_images, train_labels = load_mnist_arrays(MNIST, "train")
batch = processor(images=[Image.fromarray(image) for image in train_images[:BATCH]], return_tensors="pt")
labels = torch.from_numpy(train_labels[:BATCH])


def gradient_per_block(model) -> list[float]:
    """Norm of the gradient of each block's first convolution, input side first, after one backward pass."""
    model.train()
    model(**batch, labels=labels).loss.backward()
    blocks = [block for stage in model.resnet.stages for block in stage.layers]
    return [block.conv1.weight.grad.norm().item() for block in blocks]


gradients = {}
for label, name in runs.items():
    set_seed(0)
    fresh = AutoModelForImageClassification.from_config(AutoConfig.from_pretrained(RUN / name))
    gradients[label] = gradient_per_block(fresh)
# How much larger the gradient is at the first block than at the last: 1 would mean every block gets the same.
spread = {label: g[0] / g[-1] for label, g in gradients.items()}
for label in runs:
    print(
        f"{label:8s}: first block {gradients[label][0]:.3g}, last block {gradients[label][-1]:.3g}, ratio {spread[label]:.3g}"
    )

# %%
fig, (ax_loss, ax_norm, ax_depth) = plt.subplots(1, 3, figsize=(15, 4))
colors = {"residual": "tab:blue", "plain": "tab:red"}
for label, name in runs.items():
    ax_loss.plot(*logged(name, "loss"), label=f"{label} 56", color=colors[label])
    ax_norm.plot(*logged(name, "grad_norm"), label=f"{label} 56", color=colors[label])
    ax_depth.plot(
        range(1, len(gradients[label]) + 1), gradients[label], "o-", label=f"{label} 56", color=colors[label]
    )
ax_loss.axhline(np.log(10), color="gray", linestyle=":", label="chance (ln 10)")
ax_loss.set(title="training loss", xlabel="step", ylabel="cross-entropy")
ax_norm.set(title="gradient norm before clipping (Trainer's log)", xlabel="step", yscale="log")
ax_depth.set(title="gradient per block at initialisation", xlabel="block (1 = next to the input)", yscale="log")
for ax in (ax_loss, ax_norm, ax_depth):
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# What the three panels show:
#
# - **Loss.** The residual network's loss falls from the first steps; the plain one stays near chance
#   (ln 10 = 2.30) for as long as the residual one needs to learn most of the task. At full size (200 steps) it
#   starts to learn only once its gradient norm has come down, and ends far behind.
# - **Gradient per block.** In the residual network the shortcuts carry the loss's gradient to the first block
#   unchanged and each block adds its own contribution, so the gradient grows only mildly towards the input (about
#   10x over the 27 blocks here). In the plain network the gradient has to pass through every block's convolutions,
#   BatchNorms and ReLUs in turn, and it grows with every block it crosses, so the first blocks receive gradients
#   thousands of times larger than the last ones: not the "vanishing gradient" one might expect, but its mirror image,
#   which deep plain networks with BatchNorm are known to show at initialisation (Yang et al., 2019, "A Mean Field
#   Theory of Batch Normalization").
# - **Total gradient norm.** Trainer clips the gradient to norm 1 (`max_grad_norm=1.0`), so the plain network's huge
#   gradient is scaled down by its size: the first layers take their step, and the layers near the output, whose
#   gradients were small to begin with, barely move. Without clipping the first layers' steps would be enormous
#   instead. Either way, one learning rate cannot suit layers whose gradients differ by orders of magnitude.
#
# The residual connection does not make the network more expressive (a plain network could learn the identity in
# each block); it makes the one that is easy to optimise the default.

# %%
# Marked check: the outcome this section teaches, with margins verified over several seeds in quick mode.
assert final_loss["residual"] < final_loss["plain"] - 0.3, f"residual did not train better: {final_loss}"
assert spread["plain"] > 10 * spread["residual"], f"the plain network's gradient is not skewed to the input: {spread}"

# %% [markdown]
# ## 4. Which pixels did it look at? Grad-CAM and integrated gradients
#
# `hf_bigmodel.explain` explains one prediction of a saved model. For images it offers
#
# - **Grad-CAM** (the default): the feature maps of the last residual block, weighted by how much the target class's
#   score grows with each channel, summed, rectified and upsampled to the input. Coarse (the last block sees the
#   digit at 4x4), but it says *where*;
# - **integrated gradients**: each pixel's share of the difference between the score of the image and that of a
#   blank one (the processor's mean grey), accumulated along the straight path between them. Pixel-sharp, and the
#   shares add up to the difference (captum reports the error, `convergence_delta`).

# %%
model = AutoModelForImageClassification.from_pretrained(RUN / "resnet20").eval()
processor = AutoImageProcessor.from_pretrained(RUN / "resnet20")
shown = [int(np.flatnonzero(test_labels == digit)[0]) for digit in (0, 3, 7, 9)]
explanations = []
for index in shown:
    image = Image.fromarray(test_images[index])
    cam = hf_bigmodel.explain(model, image, method="grad_cam", image_processor=processor)
    ig = hf_bigmodel.explain(model, image, method="integrated_gradients", image_processor=processor, target=cam.target)
    explanations.append((index, cam, ig))

fig, axes = plt.subplots(3, len(shown), figsize=(2.6 * len(shown), 8))
for column, (index, cam, ig) in enumerate(explanations):
    axes[0, column].imshow(test_images[index], cmap="gray_r")
    axes[0, column].set_title(f"true {test_labels[index]}, predicted {cam.target_label} ({cam.probability:.0%})")
    axes[1, column].imshow(test_images[index], cmap="gray_r")
    axes[1, column].imshow(cam.attributions, cmap="jet", alpha=0.5)
    axes[1, column].set_title("Grad-CAM")
    limit = ig.attributions.abs().max().item()
    axes[2, column].imshow(ig.attributions, cmap="bwr", vmin=-limit, vmax=limit)
    axes[2, column].set_title("integrated gradients")
for ax in axes.flat:
    ax.axis("off")
plt.tight_layout()
plt.show()
print("Grad-CAM layer:", explanations[0][1].target_layer)

# %% [markdown]
# Grad-CAM lights up the region of the digit that tells it apart; integrated gradients (red: for the class, blue:
# against) credit the strokes, and also some empty pixels where ink would have suggested another digit. The same
# explanation is saved as JSON, the attributions as safetensors, a PNG and a self-contained HTML page (no network
# needed to open it); `hf-bigmodel explain runs/... --image digit.png` does this from the command line.

# %%
index, cam, ig = explanations[0]
paths = cam.save(RUN / "explain")
print({kind: str(path) for kind, path in paths.items()})
html = paths["html"].read_text(encoding="utf-8")
heat = cam.attributions
ink = torch.from_numpy(test_images[index] > 127)
print(f"Grad-CAM: mean {heat.mean():.3g}, on the ink {heat[ink].mean():.3g}, off it {heat[~ink].mean():.3g}")
print(f"integrated gradients: completeness error {ig.convergence_delta:.2g} after {ig.n_steps} steps")
# Marked check: the page was written and the map is a real map (finite, positive somewhere, not flat).
assert paths["html"].stat().st_size > 1000 and "<html" in html.lower()
assert torch.isfinite(heat).all() and heat.max() > 0 and heat.std() > 0.05 * heat.max(), "degenerate Grad-CAM map"
assert all(ig.attributions.abs().max() > 0 for _, _, ig in explanations), "integrated gradients are all zero"

# %% [markdown]
# ## What to take away
#
# - A ResNet of 0.27M parameters reads MNIST digits after a few hundred steps of `hf-bigmodel pretrain resnet`; the
#   output folder loads with `from_pretrained` and `pipeline` like any transformers model.
# - At 56 layers, the same network without its residual connections learns far slower in the same number of steps:
#   the gradient reaching its first layers is orders of magnitude larger than at its last ones. The shortcuts keep
#   every layer's gradient on a similar scale.
# - `hf_bigmodel.explain` shows where the model looked (Grad-CAM) and which pixels counted (integrated gradients).
