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
# # Quickstart: from `git clone` to a published model
#
# This notebook does the whole loop of "build your first big model" with hf_bigmodel, on a laptop CPU:
#
# 1. train a tokenizer;
# 2. pretrain a small GPT;
# 3. sample from it;
# 4. evaluate it (perplexity on held-out text);
# 5. explain one prediction;
# 6. read the model card that training wrote;
# 7. push the model to a Hub (the package's local Hub server, so nothing leaves this machine);
# 8. load it back in a fresh Python process, one where `hf_bigmodel` cannot even be imported, with
#    `trust_remote_code=True`.
#
# Every step is an `hf-bigmodel` command or a `transformers` call you can copy into a terminal or your own script.
# The corpus needs no download: it is the Python language reference that every CPython carries (the text behind
# `help("if")`).
#
# **Quick mode.** With `HF_BIGMODEL_QUICK=1` in the environment every notebook of this folder runs the same code
# at smaller sizes (CI runs them that way); leave it unset for the full run.

# %%
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import hf_bigmodel
from hf_bigmodel.cli import main as hf_bigmodel_cli

QUICK = os.environ.get("HF_BIGMODEL_QUICK") == "1"
RUN = Path("runs/00_quickstart")  # everything this notebook writes; runs/ is ignored by git
MODEL = RUN / "gpt"
shutil.rmtree(RUN, ignore_errors=True)  # start from scratch: a second run would otherwise resume the first


def sh(command: str) -> None:
    """Run an `hf-bigmodel ...` command line in this process, exactly as a terminal would, and stop on failure."""
    print(f"$ {command}")
    assert hf_bigmodel_cli(shlex.split(command)[1:]) == 0, f"failed: {command}"


print(f"hf_bigmodel {hf_bigmodel.__version__}, quick mode: {QUICK}")

# %% [markdown]
# ## 1. A corpus and a tokenizer
#
# `write_builtin_corpus` writes the Python reference as `train.txt` and `validation.txt` (the last 5%). A
# byte-level BPE tokenizer (GPT-2's kind) learns 2048 tokens from the training text; byte-level means that any
# text, in any script, round-trips exactly.

# %%
from hf_bigmodel.corpus import write_builtin_corpus

train_file, validation_file = write_builtin_corpus(RUN / "_corpus")
print(
    f"{train_file}: {train_file.stat().st_size:,} bytes, {validation_file}: {validation_file.stat().st_size:,} bytes"
)

sh(f"hf-bigmodel train-tokenizer --files {train_file} --vocab_size 2048 --output_dir {RUN}/tokenizer --no_progress")

# %%
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(RUN / "tokenizer")
text = 'The "while" statement is used for repeated execution.'
ids = tokenizer(text)["input_ids"]
print(len(text), "characters ->", len(ids), "tokens:", tokenizer.convert_ids_to_tokens(ids))
assert tokenizer.decode(ids) == text  # byte-level BPE loses nothing

# %% [markdown]
# ## 2. Pretrain a small GPT
#
# `gpt-small-cpu` is 4 layers, 128 wide, about 1.1M parameters. `hf-bigmodel pretrain gpt` packs the text into
# blocks of 128 tokens and trains with transformers' `Trainer`: every `TrainingArguments` flag works. It evaluates
# on the validation file, saves weights, tokenizer, the model's code and a model card in `--output_dir`, and
# prints a sample at the end. Rerunning the same command resumes from the last checkpoint.

# %%
steps, block_size = (100, 64) if QUICK else (600, 128)
sh(
    f"hf-bigmodel pretrain gpt --preset gpt-small-cpu --train_file {train_file} --validation_file {validation_file} "
    f"--tokenizer_name_or_path {RUN}/tokenizer --block_size {block_size} --output_dir {MODEL} "
    f"--max_steps {steps} --per_device_train_batch_size 16 --learning_rate 2e-3 --lr_scheduler_type cosine "
    f"--warmup_steps {steps // 20} --weight_decay 0.1 --logging_steps {steps // 10} --eval_strategy steps "
    f"--eval_steps {steps // 2} --save_strategy no --report_to none --use_cpu true --seed 1337"
)

# %% [markdown]
# Did it learn? A model that knows nothing spreads its probability evenly over the 2048 tokens, a loss of
# ln 2048 = 7.6 nats. The training loss must fall and the validation loss must end well below that.

# %%
import math

state = json.loads((MODEL / "trainer_state.json").read_text())
losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
results = json.loads((MODEL / "all_results.json").read_text())
print("training loss, every", steps // 10, "steps:", [round(loss, 2) for loss in losses])
print(f"validation loss {results['eval_loss']:.3f}, perplexity {math.exp(results['eval_loss']):.1f}")
assert losses[-1] < losses[0] - 1.0, "the training loss did not fall"
assert results["eval_loss"] < math.log(2048) - 1.5, "validation loss is not clearly better than guessing"

# %% [markdown]
# ## 3. Sample
#
# The folder is an ordinary transformers model: `import hf_bigmodel` registers the architecture, then the Auto
# classes and `pipeline` load it. (`hf-bigmodel generate FOLDER PROMPT` does the same from a terminal.)

# %%
from transformers import AutoModelForCausalLM, pipeline, set_seed

model = AutoModelForCausalLM.from_pretrained(MODEL)
print(type(model).__name__, f"{model.num_parameters():,} parameters")
generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
set_seed(0)
prompt = 'The "for" statement'
sample = generator(prompt, max_new_tokens=60, do_sample=True, top_k=40)[0]["generated_text"]
print(sample)

# %%
# Greedy decoding is deterministic: step 8 compares it with the model pulled from the Hub.
inputs = tokenizer(prompt, return_tensors="pt")
greedy_ids = model.generate(**inputs, max_new_tokens=20, do_sample=False)[0].tolist()
greedy_text = tokenizer.decode(greedy_ids)
print(greedy_text)
assert greedy_text.startswith(prompt) and len(greedy_text) > len(prompt) + 10  # it decodes to new text

# %% [markdown]
# ## 4. Evaluate
#
# `hf-bigmodel evaluate` scores held-out text with a sliding window and reports perplexity per token, per word and
# per byte (the last two compare models with different tokenizers). `--update_card` records the result in the
# model card's `model-index`, which the Hub shows as an evaluation table.

# %%
sh(
    f"hf-bigmodel evaluate {MODEL} --task perplexity --data {validation_file} --stride 64 "
    "--update_card --dataset_name python-reference"
)
evaluation = json.loads((MODEL / "eval_results.json").read_text())
print(json.dumps(evaluation, indent=1)[:600])

# %% [markdown]
# ## 5. Explain one prediction
#
# Which words of the prompt made the model choose its next token? `hf_bigmodel.explain` runs integrated gradients
# (captum) over the input embeddings, one explanation per generated token, and writes a self-contained HTML page
# (no script, no network) that colours each token by its attribution.

# %%
steps_explained = hf_bigmodel.explain(str(MODEL), prompt, max_new_tokens=2)
first = steps_explained[0]
print(
    f"next token {first.target_label!r} (p = {first.probability:.2f}), convergence delta {first.convergence_delta:.4f}"
)
for token, value in zip(first.tokens, first.attributions.tolist()):
    print(f"{token!r:>14} {value:+.3f}")
paths = first.save(RUN / "explanation")
html = Path(paths["html"]).read_text()
assert "<html" in html.lower() and len(html) > 1000
print("wrote", paths["html"])

# %% [markdown]
# ## 6. The model card
#
# Training wrote `README.md`: metadata the Hub reads (license, tags, datasets, the `model-index` with the
# evaluation above), then the architecture and size, tokenizer, data, hyperparameters, a loss curve
# (`loss_curve.png`), how to load the model, limitations and citation.

# %%
card = (MODEL / "README.md").read_text()
print(card[:1500], "\n[...]")
assert "model-index" in card and "perplexity" in card

# %% [markdown]
# ## 7. Push to a Hub
#
# `hf_bigmodel.testing.HubServer` is a Hub-compatible server on 127.0.0.1 that the unmodified `huggingface_hub`
# client talks to. Against the real Hub, the same command is `hf-bigmodel push runs/... you/my-gpt` after
# `hf auth login`. `push` checks the folder first (config, whole safetensors weights, tokenizer) and uploads
# weights, config, tokenizer, the model's code, the card and the loss curve in one commit.
#
# `huggingface_hub` reads its endpoint once, when it is imported, and `HF_HUB_OFFLINE=1` (which CI sets) blocks
# every request, so the push runs in a child process started with the server's environment, `hub.env()`.

# %%
import subprocess

from hf_bigmodel.testing import HubServer

hub = HubServer(RUN / "hub").start()
push = subprocess.run(
    [sys.executable, "-m", "hf_bigmodel.cli", "push", str(MODEL), "testuser/quickstart-gpt", "--exist-ok"],
    env={**os.environ, **hub.env()},
    capture_output=True,
    text=True,
)
print(push.stdout[-1500:], push.stderr[-1500:])
assert push.returncode == 0
print(sorted(hub.files("testuser/quickstart-gpt")))

# %% [markdown]
# ## 8. Load it back where hf_bigmodel is not installed
#
# A fresh Python process that *cannot* import `hf_bigmodel` (`WITHOUT_HF_BIGMODEL` blocks the import) downloads
# the repo and loads it with `trust_remote_code=True`: the architecture's code travelled with the weights. Its
# greedy output must be the one computed above.

# %%
from hf_bigmodel.testing import WITHOUT_HF_BIGMODEL, run_python

fresh_process_code = """
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer

repo, prompt = sys.argv[1], sys.argv[2]
model = AutoModelForCausalLM.from_pretrained(repo, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(repo, trust_remote_code=True)
ids = model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=20, do_sample=False)[0]
print("RESULTS" + json.dumps({"class": type(model).__module__ + "." + type(model).__name__,
                              "text": tokenizer.decode(ids)}))
"""
loaded = run_python(
    WITHOUT_HF_BIGMODEL + fresh_process_code,
    "testuser/quickstart-gpt",
    prompt,
    cwd=RUN,
    env={**hub.env(), "HF_HOME": str((RUN / "hf_home").resolve())},
)
hub.stop()
print(loaded["class"])
print(loaded["text"])
assert loaded["text"] == greedy_text, "the model loaded from the Hub generates differently"

# %% [markdown]
# That is the whole loop. Next: [01_gpt](01_gpt.ipynb) builds the GPT on tiny-shakespeare and shows what the causal
# mask does; `hf-bigmodel COMMAND --help` lists every option, and [docs/usage.md](../docs/usage.md) shows each
# command at work.
