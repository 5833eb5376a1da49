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
# # Explaining predictions: integrated gradients, LIME, SHAP and attention on one model, and are they faithful?
#
# An explanation method gives every input token a number: how much it pushed the model towards its answer. Methods
# disagree, and a method can produce a pretty picture that has little to do with what the model computes. This
# notebook explains one sentiment classifier four ways, then checks the explanations against the model itself:
#
# 1. a small GPT pretrained on the Python reference, fine-tuned on SST-2 movie-review sentences;
# 2. integrated gradients (with its completeness check), LIME, Kernel SHAP (captum's, through `hf_bigmodel.explain`)
#    and the attention maps, on one sentence, with the offline HTML page;
# 3. faithfulness on real sentences: does removing the word a method ranks first change the prediction more than
#    removing a random word? And does a model with random weights get different explanations (it must)?
#
# `HF_BIGMODEL_QUICK=1` fine-tunes on fewer sentences and checks fewer (as CI does).

# %%
import json
import os
import shlex
import shutil
from pathlib import Path

import torch

import hf_bigmodel
from hf_bigmodel.cli import main as hf_bigmodel_cli

QUICK = os.environ.get("HF_BIGMODEL_QUICK") == "1"
SHARED = next(p / "shared" / "data" for p in Path.cwd().resolve().parents if (p / "shared" / "data").is_dir())
SST2 = SHARED / "sst2"
RUN = Path("runs/06_explaining")
shutil.rmtree(RUN, ignore_errors=True)


def sh(command: str) -> None:
    """Run an `hf-bigmodel ...` command line in this process, exactly as a terminal would, and stop on failure."""
    print(f"$ {command}")
    assert hf_bigmodel_cli(shlex.split(command)[1:]) == 0, f"failed: {command}"


# %% [markdown]
# ## 1. A classifier to explain
#
# Pretrain a small GPT (the `demo` command), then fine-tune it on SST-2's training sentences with a
# sequence-classification head. SST-2's dev set has 428 negative and 444 positive sentences: always answering
# "positive" scores 50.9%.

# %%
sh(f"hf-bigmodel demo --output_dir {RUN}/gpt --max_steps 600")
sh(
    f"hf-bigmodel finetune --model_name_or_path {RUN}/gpt --task sequence-classification "
    f"--train_file {SST2}/train.tsv --validation_file {SST2}/dev.tsv --text_column sentence --label_column label "
    f"--max_train_samples {8000 if QUICK else 16000} --max_seq_length 64 --learning_rate 1e-3 "
    f"--per_device_train_batch_size 32 --num_train_epochs 1 --eval_strategy epoch --save_strategy no "
    f"--report_to none --use_cpu true --seed 0 --output_dir {RUN}/sst2"
)

# %%
metrics = json.loads((RUN / "sst2" / "all_results.json").read_text())
print(f"dev accuracy {metrics['eval_accuracy']:.3f}, F1 {metrics['eval_f1']:.3f}")
assert metrics["eval_accuracy"] > 0.56, "the classifier should beat always-positive (0.509) by a margin"

from transformers import AutoModelForSequenceClassification, AutoTokenizer

model = AutoModelForSequenceClassification.from_pretrained(RUN / "sst2").eval()
tokenizer = AutoTokenizer.from_pretrained(RUN / "sst2")
print(model.config.id2label)

# %% [markdown]
# ## 2. One sentence, four explanations
#
# **Integrated gradients** move the input embeddings from a baseline (every word replaced by padding) to the real
# sentence and add up the gradients on the way. By construction the attributions sum to f(sentence) -
# f(baseline); captum's *convergence delta* is how far the sum misses, and `explain` adds steps until it is within
# 1%.

# %%
sentence = "a gorgeous, witty, seductive movie."
ig = hf_bigmodel.explain(model, sentence, tokenizer=tokenizer)
print(f"predicted {ig.target_label} (p = {ig.probability:.2f}); {ig.n_steps} steps, delta {ig.convergence_delta:.4f}")
for token, value in zip(ig.tokens, ig.attributions.tolist()):
    print(f"{token!r:>12} {value:+.3f}")
paths = ig.save(RUN / "explanation")
assert Path(paths["html"]).stat().st_size > 1000  # a self-contained page: open it in a browser

# %% [markdown]
# **LIME** and **Kernel SHAP** treat the model as a black box: they drop random subsets of the words (replacing
# them by the same baseline token), watch the output, and fit a linear model to it. Kernel SHAP weights the
# samples so that the fit gives Shapley values. Both are captum's; `explain` sends the perturbed sentences through
# the model 64 at a time.

# %%
lime = hf_bigmodel.explain(model, sentence, method="lime", tokenizer=tokenizer, target=ig.target, n_samples=300)
shap = hf_bigmodel.explain(model, sentence, method="kernel_shap", tokenizer=tokenizer, target=ig.target, n_samples=300)


def ranks(values: torch.Tensor) -> torch.Tensor:
    return values.argsort().argsort().float()


table = {"integrated gradients": ig.attributions, "LIME": lime.attributions, "Kernel SHAP": shap.attributions}
print(f"{'token':>12} " + " ".join(f"{name:>20}" for name in table))
for i, token in enumerate(ig.tokens):
    print(f"{token!r:>12} " + " ".join(f"{values[i].item():+20.3f}" for values in table.values()))
for name, values in table.items():
    correlation = torch.corrcoef(torch.stack([ranks(ig.attributions), ranks(values)]))[0, 1].item()
    print(f"rank correlation of {name} with integrated gradients: {correlation:+.2f}")

# %% [markdown]
# **Attention** shows where each position looked, not why the model decided. Rollout multiplies the layers'
# attention (plus the residual path) to follow information from the input to the last position, the one this GPT
# classifies from.

# %%
import matplotlib.pyplot as plt

from hf_bigmodel.explanation import attention_maps

maps = attention_maps(model, sentence, tokenizer)
rollout = maps.rollout()[-1]  # what the last position (the classifier's input) draws from
print(" ".join(f"{t}:{v:.2f}" for t, v in zip(maps.tokens, rollout.tolist())))
fig, ax = plt.subplots(figsize=(7, 2.5))
ax.bar(range(len(maps.tokens)), rollout.tolist())
ax.set_xticks(range(len(maps.tokens)), maps.tokens, rotation=45)
ax.set_title("attention rollout from the last position")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Faithfulness on real sentences
#
# **Deletion.** For each dev sentence, replace the word a method ranks first by padding (what the baseline uses)
# and measure how much the probability of the predicted class drops; compare with replacing a random word. A
# faithful method's top word matters more than an average word.

# %%
sentences = [line.split("\t")[0].strip() for line in (SST2 / "dev.tsv").read_text().splitlines()[1:]]
sentences = [s for s in sentences if 4 <= len(tokenizer(s)["input_ids"]) <= 24][: 15 if QUICK else 60]
pad = tokenizer.pad_token_id


@torch.no_grad()
def probability(ids: list[int], label: int) -> float:
    # The attention mask keeps a removed word in place as a blank, as the explanations' baseline does; without it
    # the GPT would read a pad at the end as "the sentence ends earlier".
    ids = torch.tensor([ids])
    return model(ids, attention_mask=torch.ones_like(ids)).logits.softmax(-1)[0, label].item()


drops = {"integrated gradients": [], "random word": []}
for s in sentences:
    e = hf_bigmodel.explain(model, s, tokenizer=tokenizer, n_steps=64)
    ids = tokenizer(s)["input_ids"]
    assert len(ids) == len(e.attributions)
    full = probability(ids, e.target)
    top = int(e.attributions.argmax())
    drops["integrated gradients"].append(full - probability(ids[:top] + [pad] + ids[top + 1 :], e.target))
    # the expected drop of a random word: the average over every word
    random_drop = [full - probability(ids[:i] + [pad] + ids[i + 1 :], e.target) for i in range(len(ids))]
    drops["random word"].append(sum(random_drop) / len(random_drop))
mean_drop = {name: sum(values) / len(values) for name, values in drops.items()}
for name, value in mean_drop.items():
    print(f"removing the {name:>25}'s word: probability drops by {value:.3f} on average ({len(sentences)} sentences)")
assert mean_drop["integrated gradients"] > mean_drop["random word"] + 0.02

# %% [markdown]
# **Model randomisation** (Adebayo et al., 2018). Explanations of a model with re-initialised weights should look
# nothing like the trained model's; if they do, the method shows the input, not the model.

# %%
random_model = AutoModelForSequenceClassification.from_config(model.config).eval()
correlations = []
for s in sentences[:10]:
    # signed values: the magnitudes of both follow the tokens' embeddings, whatever the weights above them
    trained = hf_bigmodel.explain(model, s, tokenizer=tokenizer, n_steps=64).attributions
    untrained = hf_bigmodel.explain(random_model, s, tokenizer=tokenizer, n_steps=64).attributions
    correlations.append(torch.corrcoef(torch.stack([trained, untrained]))[0, 1].item())
mean_correlation = sum(abs(c) for c in correlations) / len(correlations)
print(f"mean |correlation| between the trained and the random model's attributions: {mean_correlation:.2f}")
assert mean_correlation < 0.6  # 0.41 in the committed full-size run; real sentences share more structure than noise

# %% [markdown]
# From a terminal the same explanation is
# `hf-bigmodel explain runs/06_explaining/sst2 --text "a gorgeous, witty, seductive movie." --output_dir out`
# (`--method lime`, `--method kernel_shap`, `--attention`). More in [docs/explain.md](../docs/explain.md).
