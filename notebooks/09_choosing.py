# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Choosing an architecture and a size for a compute budget
#
# "Which model should I train?" depends on the task and on what the machine can do in the time you have. This
# notebook measures, on the machine it runs on, what a few GPT sizes and variants of this package cost and reach
# in a fixed time budget on tiny-shakespeare (characters):
#
# - **tokens per second** of training (forward, backward, optimizer step);
# - **peak memory** of the process (resident set size);
# - **loss reached** in the budget and the **time to a given loss**.
#
# Each configuration trains in its own fresh Python process, so the memory figures do not mix. The numbers are this
# machine's: rerun the notebook on yours. Which architecture fits which task: GPT for generating text, BERT for
# understanding it (classification, tagging, extractive QA), the encoder-decoder Transformer for turning one text
# into another (translation, summarisation), ResNet for images.
#
# `HF_BIGMODEL_QUICK=1` gives each configuration a few seconds instead of a minute (as CI does).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt

import hf_bigmodel
from hf_bigmodel.testing import run_python

QUICK = os.environ.get("HF_BIGMODEL_QUICK") == "1"
SHARED = next(p / "shared" / "data" for p in Path.cwd().resolve().parents if (p / "shared" / "data").is_dir())
BUDGET_S = 15 if QUICK else 60  # training seconds per configuration
TARGET_LOSS = 2.5  # nats per character; guessing among 65 characters is ln 65 = 4.17

# preset + config overrides: the same four-layer size with GPT-2's and Llama's parts, then smaller and larger
CANDIDATES = {
    "gpt-tiny (2 x 32)": ("gpt-tiny", {}),
    "nanogpt-cpu (4 x 128)": ("nanogpt-cpu", {}),
    "nanogpt-cpu, Llama parts": (
        "nanogpt-cpu",
        {"position_embedding_type": "rope", "norm_type": "rmsnorm", "mlp_type": "swiglu", "bias": False},
    ),
    "6 x 192": ("nanogpt-cpu", {"num_hidden_layers": 6, "hidden_size": 192, "num_attention_heads": 6}),
}
for name, (preset, overrides) in CANDIDATES.items():
    model = hf_bigmodel.create_model(preset, vocab_size=65, max_position_embeddings=64, **overrides)
    print(f"{name:>26}: {model.num_parameters():>9,} parameters")

# %% [markdown]
# The measurement, as run in each child process: character ids of tiny-shakespeare, random blocks of 64, AdamW,
# training until the budget runs out, with the loss logged at the first step, every 10 steps and the last.

# %%
MEASURE = r"""
import json, resource, sys, time
import torch
import hf_bigmodel

preset, overrides, budget, target, data_file = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), \
    float(sys.argv[4]), sys.argv[5]
torch.manual_seed(0)
text = open(data_file, encoding="utf-8").read()
chars = sorted(set(text))
data = torch.tensor([chars.index(c) for c in text])
model = hf_bigmodel.create_model(preset, "causal-lm", vocab_size=len(chars), max_position_embeddings=64, **overrides)
model.train()
optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
generator, block, batch = torch.Generator().manual_seed(0), 64, 32
curve, tokens, step, time_to_target, start = [], 0, 0, None, time.perf_counter()
while time.perf_counter() - start < budget:
    starts = torch.randint(len(data) - block, (batch,), generator=generator)
    x = torch.stack([data[s : s + block] for s in starts])
    loss = model(x, labels=x).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    tokens, step = tokens + x.numel(), step + 1
    elapsed = time.perf_counter() - start
    if step == 1 or step % 10 == 0 or elapsed >= budget:
        curve.append((elapsed, loss.item()))
        if time_to_target is None and loss.item() < target:
            time_to_target = elapsed
print("RESULTS" + json.dumps({"tokens_per_s": tokens / elapsed, "steps": step, "curve": curve,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "time_to_target": time_to_target}))
"""

import json

results = {}
for name, (preset, overrides) in CANDIDATES.items():
    args = (preset, json.dumps(overrides), str(BUDGET_S), str(TARGET_LOSS), str(SHARED / "tiny_shakespeare/input.txt"))
    results[name] = run_python(MEASURE, *args, cwd=".", with_package=True, timeout=BUDGET_S * 10 + 300)
    r = results[name]
    reached = f"{r['time_to_target']:.0f} s" if r["time_to_target"] else f"not within {BUDGET_S} s"
    print(
        f"{name:>26}: {r['tokens_per_s']:>8,.0f} tokens/s, peak {r['peak_rss_mib']:,.0f} MiB, "
        f"{r['steps']} steps, final loss {r['curve'][-1][1]:.2f}, loss < {TARGET_LOSS}: {reached}"
    )

# %%
fig, ax = plt.subplots(figsize=(7, 4))
for name, r in results.items():
    ax.plot(*zip(*r["curve"]), label=name)
ax.axhline(TARGET_LOSS, color="grey", linestyle=":")
ax.set_xlabel("seconds of training on this machine")
ax.set_ylabel("training loss (nats per character)")
ax.legend()
plt.show()

# %%
# Every configuration learned something in its budget, one of them a lot, and the smallest is the fastest per
# token (more parameters, more work per token).
for name, r in results.items():
    assert r["curve"][-1][1] < r["curve"][0][1], f"{name} did not learn"
assert max(r["curve"][0][1] - r["curve"][-1][1] for r in results.values()) > 1.0
speeds = {name: r["tokens_per_s"] for name, r in results.items()}
assert speeds["gpt-tiny (2 x 32)"] > speeds["6 x 192"]

# %% [markdown]
# **Reading the table.** On a CPU with a budget of minutes, the best model is rarely the largest: a larger model
# learns more per token but sees fewer tokens in the budget. Pick the size whose curve is lowest at *your* budget,
# then spend more time on it. The Llama parts (rotary positions, RMSNorm, SwiGLU) cost a little speed at this size.
# Memory at these sizes is dominated by PyTorch itself (a few hundred MiB); the model, its gradients and AdamW's
# two moments take 16 bytes per parameter in float32.
#
# The repository's benchmarks measure the same things with ratios against a reference in the same run
# (`python benchmarks/bench_gpt_train.py`, [benchmarks/README.md](../benchmarks/README.md)).
