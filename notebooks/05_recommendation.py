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
# # Recommendation: SASRec and BERT4Rec on Amazon Video Games, and what their numbers mean
#
# A sequential recommender reads the items a user picked, oldest first, and predicts the next one. The two canonical
# transformer recommenders are the two halves of this tutorial's language models with item ids for words:
# **SASRec** is a GPT (causal: each position sees only the past) and **BERT4Rec** a BERT (bidirectional, trained
# to fill in masked items). This notebook
#
# 1. reads SASRec's `Video.txt` and splits it leave-one-out;
# 2. builds both models from presets and trains them with `hf-bigmodel pretrain sasrec|bert4rec`;
# 3. evaluates them under the three protocols of the one evaluator, next to a random and a most-popular ranking,
#    and shows why a sampled NDCG@10 of 0.5 and a full-ranking 0.03 can be the same model;
# 4. recommends the top 10 items for one user, in the catalogue's own ids, with `model.recommend` and the
#    `sequential-recommendation` pipeline, and checks that a saved and reloaded model answers the same.
#
# `HF_BIGMODEL_QUICK=1` runs the same code at smaller sizes (as CI does): the first 5,000 users instead of all
# 31,013.

# %%
import json
import math
import os
import shlex
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import torch

import hf_bigmodel
from hf_bigmodel.cli import main as hf_bigmodel_cli
from hf_bigmodel.hardware import native_bf16

QUICK = os.environ.get("HF_BIGMODEL_QUICK") == "1"
# The project's datasets sit in shared/data beside the checkout (../shared/data from its root).
SHARED = next(p / "shared" / "data" for p in Path.cwd().resolve().parents if (p / "shared" / "data").is_dir())
DATA = SHARED / "seqrec" / "Video.txt"
RUN = Path("runs/05_recommendation")
shutil.rmtree(RUN, ignore_errors=True)
RUN.mkdir(parents=True)
USERS = 5000 if QUICK else None  # None: every user
EPOCHS = {"sasrec": 5, "bert4rec": 10} if QUICK else {"sasrec": 3, "bert4rec": 6}
torch.manual_seed(0)


def sh(command: str) -> None:
    """Run an `hf-bigmodel ...` command line in this process, exactly as a terminal would, and stop on failure."""
    print(f"$ {command}")
    assert hf_bigmodel_cli(shlex.split(command)[1:]) == 0, f"failed: {command}"


print(f"quick mode: {QUICK}")
print("".join(DATA.open().readlines()[:8]))

# %% [markdown]
# ## 1. The data and the leave-one-out split
#
# `Video.txt` is the file of the SASRec paper ("Games": Amazon Video Games reviews, users and items with at least
# five reviews): one `user item` line per interaction, each user's lines together and in time order. Nothing else:
# no ratings, no text, no timestamps. `read_interactions` checks the format (a user who appears again after other
# users is an error naming the line) and keeps raw ids.
#
# Both papers split **leave-one-out**: each user's last item is the test target, the one before the validation
# target, and the rest is training data. A user needs three items to be evaluated.

# %%
from hf_bigmodel.data.seqrec import leave_one_out, read_interactions

data = read_interactions(DATA)
print(data)
if USERS is not None:
    # The file is 5-core: every item has at least 5 interactions. A subset of the users breaks that, leaving thousands
    # of items seen once or twice, whose embeddings nothing trains: apply the same item filter to the subset.
    counts = Counter(i for s in data.sequences[:USERS] for i in s)
    kept = [(u, [i for i in s if counts[i] >= 5]) for u, s in zip(data.users[:USERS], data.sequences[:USERS])]
    data.users, data.sequences = map(list, zip(*[(u, s) for u, s in kept if s]))
    # The pretrain command reads a file: write the subset in the same format.
    DATA = RUN / f"Video-first-{USERS}-users-5-core.txt"
    DATA.write_text("".join(f"{u} {i}\n" for u, s in zip(data.users, data.sequences) for i in s))
    data = read_interactions(DATA)
    print("quick mode, kept:", data)

split = leave_one_out(data)
lengths = np.array([len(s) for s in data.sequences])
print(f"{split.num_items:,} items; items per user: median {np.median(lengths):.0f}, max {lengths.max()}")
print(f"users evaluated: {len(split.targets('test')):,} ({split.skipped} with fewer than 3 items train only)")

user = 0
items = data.sequences[user]
print(f"\nuser {data.users[user]}: {len(items)} items {items}")
print(f"  trains on {items[:-2]}")
print(f"  validation target {items[-2]} (history: the training items)")
print(f"  test target       {items[-1]} (history: the training items and the validation target)")
assert split.item_map.decode(split.train_sequences()[user]) == items[:-2]
assert split.item_map.decode([split.targets("test")[user]]) == [items[-1]]

# %% [markdown]
# Models see **model ids** 1..N (0 is padding); `ItemMap` translates. In the whole file the raw ids happen to be
# 1..N already; in quick mode's subset they are not, and a catalogue of SKUs or strings works the same way: the
# model keeps the raw ids in its config (`config.item_ids`, as a classifier keeps `id2label`) and answers in them.

# %%
print("model id -> raw id:", {i: split.item_map.decode([i])[0] for i in range(1, 6)}, "...")
print(f"user {data.users[user]}'s items as model ids: {split.sequences[user]}")

# %% [markdown]
# ## 2. Two models from presets
#
# `sasrec-50` is the SASRec paper's model for sparse data (hidden 50, 2 blocks, 1 head, histories of up to 50
# items, dropout 0.5); `bert4rec-50` the BERT4Rec paper's (hidden 64, 2 layers, 2 heads). In both, the item
# embeddings are also the output layer: the score of item *j* is the dot product of the last hidden state with
# item *j*'s embedding.

# %%
sasrec_config = hf_bigmodel.BigModelSASRecConfig.from_preset(
    "sasrec-50", num_items=split.num_items, item_ids=split.item_map.item_ids
)
bert4rec_config = hf_bigmodel.BigModelBert4RecConfig.from_preset(
    "bert4rec-50", num_items=split.num_items, item_ids=split.item_map.item_ids
)
print(hf_bigmodel.BigModelSASRecForCausalLM(sasrec_config))
for config, cls in [
    (sasrec_config, hf_bigmodel.BigModelSASRecForCausalLM),
    (bert4rec_config, hf_bigmodel.BigModelBert4RecForMaskedLM),
]:
    n = cls(config).num_parameters()
    share = (config.num_items + 1) * config.hidden_size / n
    print(f"{cls.__name__}: {n:,} parameters, {share:.0%} of them item embeddings; vocab {config.vocab_size:,}")

# %% [markdown]
# Almost all the parameters are the item table: the transformer on top is tiny. The vocabularies differ by one:
# BERT4Rec has a **mask** item (id N + 1).
#
# - **SASRec** (causal) is trained as a GPT is: at every position, predict the next item. To recommend, it reads
#   the history and scores every item at the last position.
# - **BERT4Rec** (bidirectional) cannot be trained on "the next item" (every position would see it), so it is
#   trained as BERT's masked LM is: 20% of the items are replaced by the mask and predicted from both sides, plus,
#   one batch in ten, only the last item. To recommend, it **appends a mask** after the history and predicts it.
#
# ## 3. Training with `hf-bigmodel pretrain`
#
# One command each. It reads the file, splits it, evaluates the validation targets after every epoch
# (sampled-uniform NDCG@10), keeps the best epoch, evaluates the test targets under all three protocols, and saves
# the model with its item map, model card and pipeline code. The loss is softmax cross-entropy over every item
# (Klenitskiy & Vasilev, RecSys 2023: it needs far fewer epochs than SASRec's one-negative loss), Adam at 1e-3;
# `--bf16` (bfloat16 autocast) is passed only where the CPU computes bfloat16 natively: emulated, it is slower than
# float32.
#
# The papers train for up to 200 epochs; this runs a few, so three settings move away from the presets, each
# through an ordinary flag:
#
# - batches of 32 users instead of 128: four times as many optimizer steps for the same compute. With 128 and
#   five epochs, both models had learned little beyond popularity (they ranked like the most-popular list of
#   section 4);
# - SASRec's dropout at 0.2, its paper's value for denser data: 0.5 regularises a long run and slows a short one;
# - BERT4Rec's mask probability at 0.6, its paper's best for the Amazon Beauty data, whose histories are as short as
#   these: at 0.2, a six-item history gives about one masked item to learn from;
# - BERT4Rec trains for twice as many epochs: it learns only from the masked items, and more slowly than SASRec,
#   which learns from every position (Petrov & Macdonald, RecSys 2022, found it needs far longer training than its
#   paper said).

# %%
bf16 = "--bf16 " if native_bf16() else ""
common = (
    f"--train_file {DATA} --per_device_train_batch_size 32 {bf16}"
    "--save_total_limit 1 --report_to none --disable_tqdm true --seed 0"
)
sh(
    f"hf-bigmodel pretrain sasrec --preset sasrec-50 --config_overrides embedding_dropout=0.2,hidden_dropout=0.2 "
    f"--num_train_epochs {EPOCHS['sasrec']} --output_dir {RUN}/sasrec {common}"
)
sh(
    f"hf-bigmodel pretrain bert4rec --preset bert4rec-50 --config_overrides mask_probability=0.6 "
    f"--num_train_epochs {EPOCHS['bert4rec']} --output_dir {RUN}/bert4rec {common}"
)

# %% [markdown]
# The report at the end of each run is the test evaluation. The curve of the validation NDCG@10 per epoch is in each
# folder's `trainer_state.json`:

# %%
import matplotlib.pyplot as plt

curves = {}
for arch in ("sasrec", "bert4rec"):
    state = json.loads((RUN / arch / "trainer_state.json").read_text())
    curves[arch] = [
        (e["epoch"], e["eval_sampled-uniform_NDCG@10"])
        for e in state["log_history"]
        if "eval_sampled-uniform_NDCG@10" in e
    ]
    print(arch, [round(v, 4) for _, v in curves[arch]])
    assert curves[arch][-1][1] > curves[arch][0][1], f"{arch}: validation NDCG@10 did not improve"

fig, ax = plt.subplots(figsize=(5, 3))
for arch, points in curves.items():
    ax.plot(*zip(*points), marker="o", label=arch)
ax.set_xlabel("epoch")
ax.set_ylabel("validation NDCG@10 (sampled-uniform)")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Three protocols, one model
#
# The evaluator ranks each user's held-out item among **candidates** and reports HR@k (is it in the top k?),
# NDCG@k (1 / log2(rank + 2) if it is, so rank 0 counts 1 and rank 9 counts 0.29) and MRR@k. What changes between
# the protocols is the candidates:
#
# - **sampled-uniform** (SASRec's paper): the held-out item and 100 items drawn uniformly among those the user never
#   touched;
# - **sampled-popularity** (BERT4Rec's paper): 100 negatives drawn in proportion to how often they were bought;
# - **full**: every item of the catalogue, the user's other history items filtered out.
#
# Two reference rankers go through the same evaluator (`evaluate_scores` takes any function from histories to a
# score for every item): **random** scores and **most popular** (the number of training interactions, the same
# list for everyone).

# %%
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

from hf_bigmodel.recommendation import PROTOCOLS, evaluate_recommender, evaluate_scores, sample_candidates

sasrec = AutoModelForCausalLM.from_pretrained(RUN / "sasrec")
bert4rec = AutoModelForMaskedLM.from_pretrained(RUN / "bert4rec")
# The same negatives for every ranker, so the columns compare like with like.
candidates = {p: sample_candidates(split, "test", p, seed=0) for p in PROTOCOLS if p != "full"}

generator = torch.Generator().manual_seed(0)
train_counts = torch.bincount(
    torch.tensor([i for s in split.train_sequences() for i in s]), minlength=split.num_items + 1
).float()
# Counts are integers: noise below 1 breaks the ties between equally popular items without reordering the others.
popularity_scores = train_counts + 0.5 * torch.rand(split.num_items + 1, generator=generator)


def random_ranker(histories):
    return torch.rand(len(histories), split.num_items + 1, generator=generator)


def popularity_ranker(histories):
    return popularity_scores.repeat(len(histories), 1)


reports = {
    "random": evaluate_scores(random_ranker, split, "test", candidates=candidates),
    "most popular": evaluate_scores(popularity_ranker, split, "test", candidates=candidates),
    "SASRec": evaluate_recommender(sasrec, split, "test", candidates=candidates),
    "BERT4Rec": evaluate_recommender(bert4rec, split, "test", candidates=candidates),
}
print(reports["SASRec"])
print()
print(f"{'HR@10 / NDCG@10':<14}" + "".join(f"{p:>26}" for p in PROTOCOLS))
for name, report in reports.items():
    print(
        f"{name:<14}"
        + "".join(f"{report.metrics[p]['HR@10']:>16.4f} / {report.metrics[p]['NDCG@10']:.4f}" for p in PROTOCOLS)
    )
# How popular (training interactions) are the test targets, and the negatives each sampler draws against them?
for what, ids in [
    ("test targets", split.targets("test")),
    ("sampled-uniform negatives", candidates["sampled-uniform"][:, 1:]),
    ("sampled-popularity negatives", candidates["sampled-popularity"][:, 1:]),
]:
    print(f"median training interactions of the {what}: {train_counts[torch.as_tensor(ids)].median():.0f}")

# %% [markdown]
# ### What ranking at random would score
#
# If the held-out item's rank among C candidates is uniform on 0..C-1, then HR@10 = 10 / C and
# NDCG@10 = (1/C) * sum over ranks 0..9 of 1 / log2(rank + 2). Sampled protocols have C = 101 for every user;
# full ranking has C = the catalogue minus the user's other history items, about the number of items.

# %%
DISCOUNT_10 = sum(1 / math.log2(r + 2) for r in range(10))
histories, targets = split.history("test"), split.targets("test")
full_sizes = np.array([split.num_items - len(set(h) - {t}) for h, t in zip(histories, targets)])
expected = {
    "sampled": {"HR@10": 10 / 101, "NDCG@10": DISCOUNT_10 / 101},
    "full": {"HR@10": float(np.mean(10 / full_sizes)), "NDCG@10": float(np.mean(DISCOUNT_10 / full_sizes))},
}
print(f"random HR@10, sampled: 10/101 = {10 / 101:.4f}; full: mean of 10/C = {expected['full']['HR@10']:.5f}")
print(f"  (10/{split.num_items:,} = {10 / split.num_items:.5f})")
print(
    f"random NDCG@10, sampled: {DISCOUNT_10:.3f}/101 = {DISCOUNT_10 / 101:.4f}; full: {expected['full']['NDCG@10']:.5f}"
)
measured = reports["random"].metrics
for protocol in PROTOCOLS:
    want = expected["full" if protocol == "full" else "sampled"]["HR@10"]
    print(
        f"  the random ranker measured HR@10 {measured[protocol]['HR@10']:.4f} under {protocol} (expected {want:.4f})"
    )

# %% [markdown]
# The random ranker lands on its expectation under all three protocols (up to sampling noise), so the evaluator
# has no bias of its own. The **check that the models learned** is against these numbers: each must beat
# random by a clear margin under every protocol, not only under the easy one.

# %%
MARGIN = {"sampled-uniform": 2.0, "sampled-popularity": 1.3, "full": 10.0}
for name in ("SASRec", "BERT4Rec"):
    for protocol in PROTOCOLS:
        chance = expected["full" if protocol == "full" else "sampled"]
        got = reports[name].metrics[protocol]
        ratio = got["NDCG@10"] / chance["NDCG@10"]
        print(f"{name:>8} {protocol:>18}: NDCG@10 {got['NDCG@10']:.4f} = {ratio:6.1f} x random")
        assert ratio > MARGIN[protocol], f"{name} is not clearly better than random under {protocol}"
        assert got["HR@10"] > MARGIN[protocol] * chance["HR@10"]

# %% [markdown]
# ### Why 0.5 and 0.03 can be the same model
#
# Under full ranking the held-out item competes with every item; under sampled ranking with 100 of them, and a
# uniform draw from a long-tailed catalogue is mostly items nobody buys. If the model puts R items above the
# held-out one out of C, each uniform negative beats it with probability about R / C, so the number of sampled
# negatives above it is about Binomial(100, R / C): an item at full rank 500 of 20,000 is beaten by 2.5 sampled
# negatives on average and is a sampled hit@10 almost always, while it is far from a full hit@10.
#
# So a sampled metric is a function of the full rank, squeezed: the full ranks below are exactly what the
# evaluator measured (the check recomputes its full HR@10), and the binomial turns them into the sampled HR@10.

# %%
from scipy.stats import binom

from hf_bigmodel.metrics import ranking_metrics
from hf_bigmodel.recommendation import model_scorer, ranks_from_scores


def full_ranks(model) -> np.ndarray:
    """Each user's test rank among every item, the other history items filtered out, as the evaluator does."""
    score, ranks = model_scorer(model), []
    for start in range(0, len(histories), 2048):
        chunk = histories[start : start + 2048]
        scores = score(chunk)[:, : split.num_items + 1]  # (users, num_items + 1), column 0 is padding
        scores[:, 0] = float("-inf")
        for row, (history, target) in enumerate(zip(chunk, targets[start:])):
            scores[row, [i for i in history if i != target]] = float("-inf")
        ranks.append(ranks_from_scores(scores, torch.as_tensor(targets[start : start + len(chunk)])))
    return np.concatenate(ranks)


ranks = {name: full_ranks(model) for name, model in [("SASRec", sasrec), ("BERT4Rec", bert4rec)]}
for name, r in ranks.items():
    full_hr = ranking_metrics(r)["HR@10"]
    assert abs(full_hr - reports[name].metrics["full"]["HR@10"]) < 1e-9, "the recomputed full ranks disagree"
    # P(fewer than 10 of 100 uniform negatives score above the held-out item), each above it with probability R/C.
    predicted = binom.cdf(9, 100, r / full_sizes).mean()
    print(
        f"{name}: median full rank {np.median(r):,.0f} of ~{split.num_items:,}; full HR@10 {full_hr:.4f}; "
        f"sampled-uniform HR@10 predicted from the full ranks {predicted:.4f}, "
        f"measured {reports[name].metrics['sampled-uniform']['HR@10']:.4f}"
    )
    assert abs(predicted - reports[name].metrics["sampled-uniform"]["HR@10"]) < 0.05

fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
bins = np.logspace(0, math.log10(split.num_items), 40)
for name, r in ranks.items():
    axes[0].hist(r + 1, bins=bins, histtype="step", linewidth=1.5, label=name)
axes[0].axvline(10, color="k", linestyle="--")
axes[0].text(11, axes[0].get_ylim()[1] * 0.9, "full top 10")
axes[0].axvline(split.num_items * 10 / 101, color="gray", linestyle="--")
axes[0].text(split.num_items * 10 / 101 * 1.1, axes[0].get_ylim()[1] * 0.8, "~ sampled top 10")
axes[0].set_xscale("log")
axes[0].set_xlabel("full rank of the held-out test item (1 = first)")
axes[0].set_ylabel("users")
axes[0].legend(loc="upper left")

names = list(reports)
width = 0.8 / len(names)
for j, name in enumerate(names):
    values = [reports[name].metrics[p]["NDCG@10"] for p in PROTOCOLS]
    axes[1].bar(np.arange(len(PROTOCOLS)) + j * width, values, width, label=name)
axes[1].set_xticks(np.arange(len(PROTOCOLS)) + 0.4 - width / 2, PROTOCOLS)
axes[1].set_yscale("log")
axes[1].set_ylabel("test NDCG@10 (log scale)")
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the bars protocol by protocol, never across: the same SASRec is several times "better" under
# sampled-uniform than under full ranking, because the question is easier, not because the model changed.
# The **most popular** list shows what each protocol rewards: against uniform negatives (mostly obscure items)
# popularity alone is a strong ranker, since the negatives are far less popular than a typical target (the medians
# above); against popularity-drawn negatives it is about as good as random, or worse: those negatives are the
# catalogue's bestsellers, and each test target is the user's *newest* item, which the older training interactions
# know less well. Sampled-popularity asks what a model knows beyond popularity (which items go together, in which
# order), and a model trained briefly has learned popularity first: it is the hardest of the three. Full ranking is what a user of the
# recommendations meets, and the only protocol whose numbers compare across papers with different samplers
# (Krichene & Rendle, "On Sampled Metrics for Item Recommendation", KDD 2020, show that sampled metrics can even
# reorder models).
#
# ## 5. The top 10 for one user
#
# `model.recommend` takes histories in **raw ids** (oldest first) and returns the best `k` items with their
# scores, leaving out what the user already has (`exclude_seen=True`). Here: the user's whole history, so the
# recommendations are for what comes after their test item.

# %%
history = data.sequences[user]
catalogue = set(split.item_map.item_ids)
for name, model in [("SASRec", sasrec), ("BERT4Rec", bert4rec)]:
    top = model.recommend([history], k=10)[0]
    print(f"{name} for user {data.users[user]} (history {history}):")
    print("   ", [(r["item"], round(r["score"], 2)) for r in top])
    assert len(top) == 10 and all(r["item"] in catalogue and r["item"] not in history for r in top)
    assert [r["score"] for r in top] == sorted((r["score"] for r in top), reverse=True)

# %% [markdown]
# The same through transformers' `pipeline`, which `pretrain` declared in the folder (`sequential-recommendation`,
# registered by `import hf_bigmodel`; the folder also carries the pipeline's code, so
# `pipeline(model=repo, trust_remote_code=True)` works without hf_bigmodel):

# %%
from transformers import pipeline

recommend = pipeline("sequential-recommendation", model=str(RUN / "sasrec"))
from_pipeline = recommend(history, k=10)
print([r["item"] for r in from_pipeline])
assert [r["item"] for r in from_pipeline] == [r["item"] for r in sasrec.recommend([history], k=10)[0]]

# %% [markdown]
# ## 6. Save, reload, same answer
#
# The item map travels in `config.json`, so a reloaded model answers in the same raw ids without any other file.

# %%
for name, model, auto in [("SASRec", sasrec, AutoModelForCausalLM), ("BERT4Rec", bert4rec, AutoModelForMaskedLM)]:
    folder = RUN / f"{name.lower()}-copy"
    model.save_pretrained(folder)
    reloaded = auto.from_pretrained(folder)
    before, after = model.recommend([history], k=10)[0], reloaded.recommend([history], k=10)[0]
    print(f"{name}: reloaded from {folder} as {type(reloaded).__name__}, same top 10: {before == after}")
    assert [r["item"] for r in before] == [r["item"] for r in after]
    assert np.allclose([r["score"] for r in before], [r["score"] for r in after], atol=1e-5)
    assert reloaded.config.item_ids == split.item_map.item_ids

# %% [markdown]
# Each training folder also holds the model card (`README.md`), whose every number names its protocol, number of
# users and the data file's sha256, and `eval_results.json`; `hf-bigmodel push` publishes it like any other model
# ([07_publishing](07_publishing.ipynb)). More in [docs/recommendation.md](../docs/recommendation.md): other losses
# (SASRec's one-negative BCE, sampled softmax, gSASRec), tables with string ids, `benchmarks/bench_seqrec.py`.
