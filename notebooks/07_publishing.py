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
# # Publishing: model cards, pushing, and loading where remote code is not allowed
#
# A trained folder from hf_bigmodel is ready for the Hub: weights in safetensors, config, tokenizer, the
# architecture's code and a model card. This notebook
#
# 1. trains a small GPT (the `demo` command) and reads the model card it wrote;
# 2. checks the folder and pushes it (`hf-bigmodel push`, to the package's local Hub server);
# 3. loads it from the Hub in a fresh process without hf_bigmodel, through `trust_remote_code=True`;
# 4. exports it to a stock transformers class (`GPT2LMHeadModel`), for platforms that refuse remote code (vLLM,
#    TGI, inference endpoints with remote code off), pushes that and loads it with no remote code at all.
#
# `HF_BIGMODEL_QUICK=1` trains for fewer steps (as CI does).

# %%
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from hf_bigmodel.cli import main as hf_bigmodel_cli
from hf_bigmodel.testing import WITHOUT_HF_BIGMODEL, HubServer, run_python

QUICK = os.environ.get("HF_BIGMODEL_QUICK") == "1"
RUN = Path("runs/07_publishing")
shutil.rmtree(RUN, ignore_errors=True)


def sh(command: str) -> None:
    """Run an `hf-bigmodel ...` command line in this process, exactly as a terminal would, and stop on failure."""
    print(f"$ {command}")
    assert hf_bigmodel_cli(shlex.split(command)[1:]) == 0, f"failed: {command}"


# %% [markdown]
# ## 1. A model and its card
#
# `hf-bigmodel demo` trains a byte-level BPE tokenizer and a small GPT on the Python reference. Every training
# command writes `README.md`, the model card: YAML metadata that the Hub indexes (license, tags, pipeline tag,
# datasets, the `model-index` of evaluation results), then text for people.

# %%
sh(f"hf-bigmodel demo --output_dir {RUN}/gpt --max_steps {40 if QUICK else 300}")

# %%
from huggingface_hub import ModelCard

card = ModelCard.load(RUN / "gpt" / "README.md")
metadata = card.data.to_dict()
print(json.dumps({key: metadata[key] for key in ("license", "library_name", "pipeline_tag", "tags")}, indent=1))
print(json.dumps(metadata["model-index"], indent=1)[:800])
print(card.text[:1200], "\n[...]")
assert metadata["pipeline_tag"] == "text-generation" and metadata["model-index"]
assert (RUN / "gpt" / "loss_curve.png").exists()  # the card shows the loss curve

# %% [markdown]
# ## 2. Check, then push
#
# `hf-bigmodel push --dry-run` checks the folder (a config with a `model_type`, whole safetensors weights that fit
# the config, a complete tokenizer, no symbolic link out of the folder) and lists what would be uploaded:
# checkpoints, pickles such as `training_args.bin` and scratch folders such as the demo's `_corpus/` stay home.
#
# The real Hub needs `hf auth login` (or `HF_TOKEN`); here the package's local Hub server stands in for it.
# `huggingface_hub` reads its endpoint when it is imported and `HF_HUB_OFFLINE=1` blocks every request, so the
# commands that talk to the server run in child processes started with its environment.

# %%
hub = HubServer(RUN / "hub").start()
child_env = {**os.environ, **hub.env(), "HF_HOME": str((RUN / "hf_home").resolve())}


def hf_bigmodel_child(command: str) -> str:
    """Run an `hf-bigmodel ...` command line in a child process that talks to the local Hub; return its output."""
    print(f"$ {command}")
    args = [sys.executable, "-m", "hf_bigmodel.cli", *shlex.split(command)[1:]]
    done = subprocess.run(args, env=child_env, capture_output=True, text=True)
    print(done.stdout[-2000:], done.stderr[-2000:])
    assert done.returncode == 0, f"failed: {command}"
    return done.stdout


hf_bigmodel_child(f"hf-bigmodel push {RUN}/gpt testuser/pydoc-gpt --dry-run")
hf_bigmodel_child(f"hf-bigmodel push {RUN}/gpt testuser/pydoc-gpt")
remote = sorted(hub.files("testuser/pydoc-gpt"))
print(remote)
assert {"config.json", "model.safetensors", "tokenizer.json", "modeling_gpt.py", "README.md"} <= set(remote)
assert not any(name.startswith(("_corpus", "checkpoint-")) or name.endswith(".bin") for name in remote)

# %% [markdown]
# ## 3. Load it where hf_bigmodel is not installed
#
# The folder's `config.json` has an `auto_map` that points the Auto classes at the code files pushed with the
# weights. A fresh process that cannot import hf_bigmodel loads the model with `trust_remote_code=True`; without
# that flag transformers refuses to run code from a repo, which is what platforms without remote code do.

# %%
load_code = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

repo, remote_code = sys.argv[1], sys.argv[2] == "yes"
try:
    model = AutoModelForCausalLM.from_pretrained(repo, trust_remote_code=remote_code)
except Exception as err:  # report the refusal instead of failing the child
    print("\nRESULTS" + json.dumps({"error": f"{type(err).__name__}: {str(err)[:300]}"}))
    raise SystemExit(0)
tokenizer = AutoTokenizer.from_pretrained(repo)
ids = tokenizer("The try statement", return_tensors="pt")["input_ids"]
with torch.no_grad():
    logits = model(ids).logits[0, -1]
# on a line of its own: a library may have left the current line unfinished
print("\nRESULTS" + json.dumps({"class": type(model).__name__, "logits": logits.tolist()}))
"""


def load_in_fresh_process(repo: str, remote_code: bool) -> dict:
    args = (repo, "yes" if remote_code else "no")
    return run_python(WITHOUT_HF_BIGMODEL + load_code, *args, cwd=RUN, env=child_env)


with_remote_code = load_in_fresh_process("testuser/pydoc-gpt", remote_code=True)
refused = load_in_fresh_process("testuser/pydoc-gpt", remote_code=False)
print("trust_remote_code=True :", with_remote_code["class"])
print("trust_remote_code=False:", refused["error"])
assert with_remote_code["class"] == "BigModelGPTForCausalLM" and "error" in refused

# %% [markdown]
# ## 4. Export to a stock class
#
# `hf-bigmodel convert FOLDER DST` writes the same weights as the stock transformers class that computes the same
# function: `GPT2LMHeadModel` for a GPT-2-style model, `LlamaForCausalLM` for one with rotary embeddings, RMSNorm
# and SwiGLU. The export needs no remote code anywhere. Its logits must equal the original's.

# %%
sh(f"hf-bigmodel convert {RUN}/gpt {RUN}/stock")
print(json.loads((RUN / "stock" / "config.json").read_text())["architectures"])
hf_bigmodel_child(f"hf-bigmodel push {RUN}/stock testuser/pydoc-gpt2")
stock = load_in_fresh_process("testuser/pydoc-gpt2", remote_code=False)
hub.stop()

import torch

difference = (torch.tensor(stock["logits"]) - torch.tensor(with_remote_code["logits"])).abs().max().item()
print(f"{stock['class']} without remote code; largest logit difference from the original: {difference:.2e}")
assert stock["class"] == "GPT2LMHeadModel" and difference < 1e-4

# %% [markdown]
# On the real Hub the same steps are `hf-bigmodel push runs/my-gpt you/my-gpt` and
# `hf-bigmodel push runs/my-gpt-stock you/my-gpt-gpt2`. More in [docs/usage.md](../docs/usage.md#publish):
# private repos, revisions, `--delete-missing`, and Trainer's `--push_to_hub`.
