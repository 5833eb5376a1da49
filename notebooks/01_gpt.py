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
# # GPT: a decoder-only Transformer on tiny-shakespeare, and why it needs the causal mask
#
# A GPT reads a text left to right and, at every position, predicts the next token. Training shows it all positions
# at once, so something must stop position *t* from looking at positions after *t*: the **causal mask**. This
# notebook
#
# 1. builds hf_bigmodel's GPT and looks at its parts;
# 2. pretrains it on tiny-shakespeare (1.1M characters, one token per character, as nanoGPT's
#    `shakespeare_char`) with `hf-bigmodel pretrain gpt`, and samples;
# 3. shows the mask in the trained model's attention;
# 4. shows what removing the mask leaks.
#
# `HF_BIGMODEL_QUICK=1` runs the same code at smaller sizes (as CI does).

# %%
import json
import math
import os
import shlex
import shutil
from pathlib import Path

import torch

import hf_bigmodel
from hf_bigmodel.cli import main as hf_bigmodel_cli

QUICK = os.environ.get("HF_BIGMODEL_QUICK") == "1"
# The project's datasets sit in shared/data beside the checkout (../shared/data from its root).
SHARED = next(p / "shared" / "data" for p in Path.cwd().resolve().parents if (p / "shared" / "data").is_dir())
DATA = SHARED / "tiny_shakespeare" / "input.txt"
RUN = Path("runs/01_gpt")
shutil.rmtree(RUN, ignore_errors=True)
torch.manual_seed(0)


def sh(command: str) -> None:
    """Run an `hf-bigmodel ...` command line in this process, exactly as a terminal would, and stop on failure."""
    print(f"$ {command}")
    assert hf_bigmodel_cli(shlex.split(command)[1:]) == 0, f"failed: {command}"


text = DATA.read_text(encoding="utf-8")
print(f"{len(text):,} characters, {len(set(text))} distinct; quick mode: {QUICK}")
print(text[:200])

# %% [markdown]
# ## 1. The model
#
# `nanogpt-cpu` is nanoGPT's `shakespeare_char` recipe shrunk for a CPU: 4 layers, 4 heads, 128 wide, a context of
# 64 characters. A preset is a set of config fields; `create_model` builds it with fresh weights, and the result is
# an ordinary `PreTrainedModel` (`save_pretrained`, `generate`, `Trainer`, PEFT all work on it).

# %%
config = hf_bigmodel.create_config("nanogpt-cpu")
model = hf_bigmodel.create_model("nanogpt-cpu", task="causal-lm")
print(model)
print(f"{model.num_parameters():,} parameters")

# %% [markdown]
# Each layer is the same block: LayerNorm, causal self-attention, a residual add; LayerNorm, MLP, a residual add
# (GPT-2's pre-norm order). The token and position embeddings at the bottom are two tables: a position gets its
# own learned vector, so the model can tell "first" from "tenth".

# %% [markdown]
# ## 2. Pretrain on tiny-shakespeare and sample
#
# One command: it trains a character tokenizer, packs the text into blocks of 64 tokens, holds out the last 10%
# (as nanoGPT does), trains with `Trainer`, and saves model, tokenizer, code and model card.

# %%
steps = 150 if QUICK else 1500
sh(
    f"hf-bigmodel pretrain gpt --preset nanogpt-cpu --train_file {DATA} --tokenizer_kind char "
    f"--validation_split_percentage 10 --block_size 64 --output_dir {RUN}/gpt --max_steps {steps} "
    f"--per_device_train_batch_size 32 --learning_rate 2e-3 --lr_scheduler_type cosine --warmup_steps {steps // 15} "
    f"--logging_steps {steps // 10} --eval_strategy steps --eval_steps {steps // 2} --save_strategy no "
    "--report_to none --use_cpu true --seed 1337"
)

# %%
state = json.loads((RUN / "gpt" / "trainer_state.json").read_text())
losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
eval_loss = json.loads((RUN / "gpt" / "all_results.json").read_text())["eval_loss"]
print("training loss:", [round(loss, 2) for loss in losses])
print(f"validation loss {eval_loss:.3f} (guessing among 65 characters: ln 65 = {math.log(65):.2f})")
assert losses[-1] < losses[0] - 0.8, "the training loss did not fall"
assert eval_loss < math.log(65) - 1.2, "the model predicts held-out text no better than chance"

# %%
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

gpt = AutoModelForCausalLM.from_pretrained(RUN / "gpt")
tokenizer = AutoTokenizer.from_pretrained(RUN / "gpt")
set_seed(0)
prompt = "ROMEO:\n"
inputs = tokenizer(prompt, return_tensors="pt")
# The context is 64 characters (max_position_embeddings): prompt + new tokens must fit in it.
room = gpt.config.max_position_embeddings - inputs["input_ids"].shape[1]
ids = gpt.generate(**inputs, max_new_tokens=room, do_sample=True, top_k=20)
sample = tokenizer.decode(ids[0])
print(sample)
assert sample.startswith(prompt) and len(sample) > 50

# %% [markdown]
# ## 3. The causal mask, seen in the model
#
# `hf_bigmodel.explanation.attention_maps` returns every layer's and head's attention weights: row *q* says how
# much position *q* looks at each position *k*. Everything above the diagonal (a future position) is exactly 0.

# %%
import matplotlib.pyplot as plt

from hf_bigmodel.explanation import attention_maps

maps = attention_maps(gpt, "To be, or not to be", tokenizer)
weights = maps.self_attentions  # (layers, heads, queries, keys)
print("shape", tuple(weights.shape))
future = torch.triu(torch.ones(weights.shape[-2:], dtype=torch.bool), diagonal=1)
print("largest weight on a future position:", weights[..., future].max().item())
assert weights[..., future].max().item() == 0.0

fig, axes = plt.subplots(1, 4, figsize=(12, 3))
for head, ax in enumerate(axes):
    ax.imshow(weights[-1, head], cmap="viridis")
    ax.set_title(f"last layer, head {head}")
    ax.set_xlabel("key position")
axes[0].set_ylabel("query position")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. What the mask prevents
#
# The tutorial's GPT had no causal mask. Then position *t* can read token *t+1*, the very token it is trained to
# predict: training learns to copy it, the training loss collapses, and generation, where token *t+1* does not
# exist yet, fails. ([08_mistakes](08_mistakes.ipynb) trains a small GPT both ways and shows exactly that.)
#
# The leak is easy to test without training anything: change one character and see whether the predictions at
# *earlier* positions move. transformers uses a 4-D `attention_mask` of shape `(batch, 1, queries, keys)` as
# given, so an all-True one removes the causal mask from the trained model and changes nothing else.

# %%
text_ids = tokenizer("To be, or not to be, that is the question", return_tensors="pt")["input_ids"]
changed = text_ids.clone()
changed[0, 20] = tokenizer.convert_tokens_to_ids("x")  # one character later in the line
no_mask = torch.ones(1, 1, text_ids.shape[1], text_ids.shape[1], dtype=torch.bool)  # everyone sees everyone

with torch.no_grad():
    causal_moves = (gpt(text_ids).logits - gpt(changed).logits)[0, :20].abs().max().item()
    unmasked_moves = (
        (gpt(text_ids, attention_mask=no_mask).logits - gpt(changed, attention_mask=no_mask).logits)[0, :20]
        .abs()
        .max()
        .item()
    )
print(
    f"largest change of a prediction before the edit: with the mask {causal_moves:.2e}, without {unmasked_moves:.2e}"
)
assert causal_moves < 1e-5 < unmasked_moves

# %% [markdown]
# With the mask, nothing before the edited character moves: each prediction depends only on the past, which is what
# generation can give it. hf_bigmodel's GPT always applies the mask (transformers' `create_causal_mask`, or the
# blockwise causal kernel in training), combined with any padding mask; its logits match transformers'
# `GPT2LMHeadModel` at the same weights to 1e-5 (tested).
#
# Next: [02_bert](02_bert.ipynb), where attending in both directions is exactly what is wanted.
