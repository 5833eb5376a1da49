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
# # The encoder-decoder Transformer: Multi30k German -> English, beam search, BLEU, cross-attention
#
# The Transformer of "Attention Is All You Need" has two stacks. The **encoder** reads the whole source sentence at
# once (every word sees every other, like BERT) and turns it into one vector per source token. The **decoder**
# writes the translation one token at a time (a causal mask, like the GPT), and in every layer it also looks at the
# encoder's vectors through **cross-attention**: its queries come from the target written so far, its keys and
# values from the source. Cross-attention is the only road from the German to the English. This notebook
#
# 1. builds hf_bigmodel's Transformer and finds the encoder, the decoder and the cross-attention in it;
# 2. trains it on Multi30k (image captions, German -> English) with `hf-bigmodel pretrain transformer`;
# 3. translates the test set greedily and with beam search (`num_beams=5`, a length penalty) and scores both with
#    sacreBLEU and chrF through `hf-bigmodel evaluate`, against a copy of the source and an untrained model;
# 4. translates with transformers' `translation` pipeline;
# 5. draws the cross-attention of one sentence: which German token each English token looked at.
#
# `HF_BIGMODEL_QUICK=1` runs the same code with a smaller model, less data and fewer test sentences (as CI does).

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
from hf_bigmodel.data.seq2seq import read_lines

QUICK = os.environ.get("HF_BIGMODEL_QUICK") == "1"
# The project's datasets sit in shared/data beside the checkout (../shared/data from its root).
SHARED = next(p / "shared" / "data" for p in Path.cwd().resolve().parents if (p / "shared" / "data").is_dir())
DATA = SHARED / "multi30k_de_en" / "raw"  # train.de.gz / train.en.gz, val.*, test_2016_flickr.*
RUN = Path("runs/03_transformer")
shutil.rmtree(RUN, ignore_errors=True)
torch.manual_seed(0)


def sh(command: str) -> None:
    """Run an `hf-bigmodel ...` command line in this process, exactly as a terminal would, and stop on failure."""
    print(f"$ {command}")
    assert hf_bigmodel_cli(shlex.split(command)[1:]) == 0, f"failed: {command}"


train_de, train_en = read_lines(DATA / "train.de.gz"), read_lines(DATA / "train.en.gz")
test_de, test_en = read_lines(DATA / "test_2016_flickr.de.gz"), read_lines(DATA / "test_2016_flickr.en.gz")
print(f"{len(train_de):,} training pairs, {len(test_de):,} test pairs (test2016); quick mode: {QUICK}")
for de, en in zip(train_de[:3], train_en[:3]):
    print(f"  de: {de}\n  en: {en}")

# %% [markdown]
# ## 1. The model
#
# `transformer-multi30k` is the paper's architecture at the size the common Multi30k tutorials use: 3 encoder and
# 3 decoder layers, 256 wide, 4 heads, a feed-forward of 1024, one 8000-piece vocabulary shared by German and
# English (and by the output layer). Post-norm, sinusoidal positions and dropout 0.1 are the paper's defaults
# ([docs/transformer.md](../docs/transformer.md) lists the switches).

# %%
config = hf_bigmodel.create_config("transformer-multi30k")
model = hf_bigmodel.create_model("transformer-multi30k", task="seq2seq-lm")
print(f"{type(model).__name__}: {model.num_parameters():,} parameters")
print(
    f"encoder: {len(model.model.encoder.layers)} layers, decoder: {len(model.model.decoder.layers)} layers, "
    f"d_model {config.hidden_size}, {config.num_attention_heads} heads"
)
print(model.model.decoder.layers[0])

# %% [markdown]
# Each decoder layer has three sub-layers: `self_attn` (masked: a target token sees only the tokens before it),
# `encoder_attn` (the cross-attention, over the encoder's output) and the feed-forward `fc1`/`fc2`; each is
# followed by a residual add and a LayerNorm. An encoder layer is the same without `encoder_attn` and without the
# mask. Run it once: the encoder gives one vector per source token, the decoder one vector per target token, and
# the output layer turns those into scores over the vocabulary.

# %%
source = torch.randint(4, config.vocab_size, (2, 7))  # 2 sentences of 7 source tokens
target = torch.randint(4, config.vocab_size, (2, 5))  # 5 target tokens each
with torch.no_grad():
    out = model.eval()(input_ids=source, decoder_input_ids=target)
print("encoder output", tuple(out.encoder_last_hidden_state.shape))  # (batch, source tokens, d_model)
print("logits        ", tuple(out.logits.shape))  # (batch, target tokens, vocab)
assert out.encoder_last_hidden_state.shape == (2, 7, config.hidden_size)
assert out.logits.shape == (2, 5, config.vocab_size)

# %% [markdown]
# ## 2. Train on Multi30k
#
# One command trains a joint unigram tokenizer (SentencePiece's algorithm) on both languages, tokenizes the pairs,
# and trains with `Seq2SeqTrainer`: AdamW with β2 0.98, warm-up then linear decay, label smoothing 0.1, batches of
# similar lengths (less padding). The recipe of [docs/transformer.md](../docs/transformer.md) runs 8 epochs (about
# 23 minutes on two quiet cores, test BLEU 40.7); here 3 epochs of the same model.
#
# Quick mode trains a smaller model (2+2 layers, 128 wide, a 1000-piece vocabulary, no dropout) on 16,000 pairs
# for one epoch, and switches to the pre-norm order (`pre_norm=true`: LayerNorm before each sub-layer, as in GPT-2
# and most later models). Runs this short with the paper's post-norm order still wrote one and the same caption
# for every source (see the check in section 3); the pre-norm model had begun to translate. It learns frequent
# words and phrases, not fluent English.

# %%
if QUICK:
    size = "--config_overrides hidden_size=128,intermediate_size=512,encoder_layers=2,decoder_layers=2,dropout=0.0,"
    size += "pre_norm=true --tokenizer_vocab_size 1000 --max_train_samples 16000 --num_train_epochs 1 "
    size += "--per_device_train_batch_size 32 --learning_rate 3e-3 --warmup_steps 50 --logging_steps 50"
else:
    size = "--tokenizer_vocab_size 8000 --num_train_epochs 3 --per_device_train_batch_size 64 --learning_rate 1e-3 "
    size += "--warmup_steps 300 --logging_steps 100"
sh(
    f"hf-bigmodel pretrain transformer --preset transformer-multi30k --source_lang de --target_lang en "
    f"--train_file {DATA}/train --validation_file {DATA}/val --output_dir {RUN}/model {size} "
    "--do_train --do_eval --tokenizer_kind unigram --per_device_eval_batch_size 128 "
    "--lr_scheduler_type linear --adam_beta2 0.98 --weight_decay 0.0001 --max_grad_norm 1.0 "
    "--label_smoothing_factor 0.1 --train_sampling_strategy group_by_length --generation_num_beams 5 "
    "--generation_max_length 128 --truncate_long_sequences --save_strategy no --report_to none --use_cpu true "
    "--disable_tqdm true --seed 1"
)

# %%
from IPython.display import Image, display

state = json.loads((RUN / "model" / "trainer_state.json").read_text())
losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
results = json.loads((RUN / "model" / "all_results.json").read_text())
vocab_size = json.loads((RUN / "model" / "config.json").read_text())["vocab_size"]
print("training loss (label-smoothed):", [round(loss, 2) for loss in losses])
print(f"validation loss {results['eval_loss']:.3f} (guessing among {vocab_size} pieces: {math.log(vocab_size):.2f})")
display(Image(RUN / "model" / "loss_curve.png"))
assert losses[-1] < losses[0] - (1.0 if QUICK else 2.0), "the training loss did not fall"
assert results["eval_loss"] < math.log(vocab_size) - (2.0 if QUICK else 4.0), "no better than guessing"

# %% [markdown]
# ## 3. Greedy decoding, beam search, BLEU
#
# A trained model gives a probability for the next target token; a **decoder** (here: a search procedure) turns
# those into a sentence.
#
# - **Greedy** takes the most likely token at every step. Cheap, but a good first word can lead into a bad
#   sentence, and it never reconsiders.
# - **Beam search** keeps the `num_beams` best partial translations at every step and returns the best finished
#   one. Log-probabilities only ever add negative terms, so a long sentence scores lower than a short one just for
#   being long; the score is therefore divided by `length ** length_penalty` (1.0: per-token average; larger:
#   longer outputs are favoured; 0: the raw sum, which favours short ones).
#
# `hf-bigmodel evaluate --task translation` translates a set of parallel files with `generate` and scores the
# output with **sacreBLEU** (the standard: detokenized, cased text, its `13a` tokenizer; 0-100, the geometric mean
# of 1- to 4-gram precisions times a brevity penalty) and **chrF** (character n-gram F-score, kinder to small
# spelling differences). Two yardsticks: copying the German source unchanged (names and numbers match, little
# else), and the untrained model of section 1.

# %%
from hf_bigmodel.metrics import translation_scores

n_test = 200 if QUICK else len(test_de)


def scores(name: str) -> dict:
    """The metrics and predictions that `hf-bigmodel evaluate` wrote for the run `name`."""
    metrics = json.loads((RUN / name / "eval_results.json").read_text())["translation"]["metrics"]
    predictions = (RUN / name / "translation_predictions.txt").read_text(encoding="utf-8").splitlines()
    return {"bleu": metrics["bleu"], "chrf": metrics["chrf"], "predictions": predictions}


evaluate = (
    f"hf-bigmodel evaluate {RUN}/model --task translation --data {DATA}/test_2016_flickr --source_lang de "
    f"--target_lang en --max_samples {n_test} --batch_size 50"
)
sh(f"{evaluate} --num_beams 1 --output_dir {RUN}/greedy")
sh(f"{evaluate} --num_beams 5 --length_penalty 1.0 --output_dir {RUN}/beam5")

# %% [markdown]
# The untrained model: the same architecture and tokenizer with fresh weights, saved as a folder and evaluated
# the same way (on 100 sentences, at most 40 tokens each: it babbles until the limit, and the score is about zero).

# %%
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(RUN / "model")
trained_config = AutoModelForSeq2SeqLM.from_pretrained(RUN / "model").config
untrained = AutoModelForSeq2SeqLM.from_config(trained_config)
untrained.save_pretrained(RUN / "untrained_model")
tokenizer.save_pretrained(RUN / "untrained_model")
sh(
    f"hf-bigmodel evaluate {RUN}/untrained_model --task translation --data {DATA}/test_2016_flickr "
    f"--source_lang de --target_lang en --max_samples 100 --num_beams 1 --max_new_tokens 40 "
    f"--output_dir {RUN}/untrained"
)

# %%
greedy, beam, untrained_scores = scores("greedy"), scores("beam5"), scores("untrained")
copy = translation_scores(test_de[:n_test], test_en[:n_test])  # the German, "translated" by copying it
print(f"{'':32} {'BLEU':>6} {'chrF':>6}   (test2016, first {n_test} sentences)")
for name, result in [
    ("copy the source", copy),
    ("untrained model (100 sentences)", untrained_scores),
    ("greedy", greedy),
    ("beam search, 5 beams", beam),
]:
    print(f"{name:32} {result['bleu']:6.2f} {result['chrf']:6.2f}")
for i in range(3):
    print(f"\nsource   : {test_de[i]}\nreference: {test_en[i]}\ngreedy   : {greedy['predictions'][i]}")
    print(f"beam 5   : {beam['predictions'][i]}")
assert min(greedy["bleu"], beam["bleu"]) > max(copy["bleu"], untrained_scores["bleu"]) + (2 if QUICK else 15)
if not QUICK:
    assert min(greedy["chrf"], beam["chrf"]) > copy["chrf"] + 20, "chrF: no better than copying the source"

# %% [markdown]
# A model can earn a few BLEU points without reading the German at all: captions start with "A man in a blue shirt
# is ...", and a decoder that writes that sentence for every source matches many words. (Short training runs go
# through exactly that stage, before cross-attention starts to carry the source.) So score the same outputs against
# the *wrong* references, each sentence's neighbour's: a model that translates loses most of its score there; one
# that ignores the source loses nothing.

# %%
neighbours = test_en[1:n_test] + test_en[:1]
shifted = translation_scores(beam["predictions"], neighbours)
print(f"beam search against the right references: BLEU {beam['bleu']:.2f}, against the neighbours': "
      f"{shifted['bleu']:.2f}")  # fmt: skip
assert beam["bleu"] > shifted["bleu"] + (1.0 if QUICK else 15), "the translations do not depend on the source"

# %% [markdown]
# Beam search usually adds a few points of BLEU over greedy decoding on this data (3.5 in the committed full-size
# run); on a weak model (quick mode) it can also lose, since a better-scoring sentence is not always a better translation. Greedy decoding of a weak
# model can also fall into a loop (one piece repeated up to the length limit), which beam search, comparing whole
# sentences, mostly avoids. The length penalty acts on
# how long the chosen translations are. On the first 100 test sentences, compare the length of the output with the
# references' for three penalties (the model is the same, only the search differs). Over a set of sentences a larger
# penalty gives longer outputs, but not necessarily for every step of the penalty: the penalty also decides when the
# search stops and which finished sentences it keeps, so two close penalties can swap by a word or two on a weak
# model. The check below therefore compares the ends of the range, 0 against 2:

# %%
n_lp = 50 if QUICK else 100
lengths = {}
for penalty in (0.0, 1.0, 2.0):
    sh(
        f"hf-bigmodel evaluate {RUN}/model --task translation --data {DATA}/test_2016_flickr --source_lang de "
        f"--target_lang en --max_samples {n_lp} --num_beams 5 --length_penalty {penalty} --batch_size 50 "
        f"--output_dir {RUN}/beam5_lp{penalty}"
    )
    result = scores(f"beam5_lp{penalty}")
    words = sum(len(p.split()) for p in result["predictions"])
    lengths[penalty] = words / sum(len(r.split()) for r in test_en[:n_lp])
    print(f"length_penalty {penalty}: BLEU {result['bleu']:.2f}, output/reference length {lengths[penalty]:.3f}\n")
assert lengths[2.0] > lengths[0.0], f"length_penalty 2 should give longer outputs than 0: {lengths}"

# %% [markdown]
# ## 4. The `translation` pipeline
#
# transformers 5 dropped the `translation` pipeline; `import hf_bigmodel` registers it again for every
# sequence-to-sequence model (ours and stock ones such as `MarianMTModel`). It takes the same `generate` options.
# The same sentences through the pipeline give exactly the translations `hf-bigmodel evaluate` wrote above
# (batched with padding there, one at a time here).

# %%
from transformers import pipeline

translate = pipeline("translation", model=str(RUN / "model"))
outputs = translate(test_de[:3], num_beams=5, length_penalty=1.0, max_length=128)
for de, output in zip(test_de, outputs):
    print(f"{de}\n  -> {output['translation_text']}")
assert [o["translation_text"] for o in outputs] == beam["predictions"][:3]
print(translate("Ein Hund rennt über eine grüne Wiese.", num_beams=5)[0]["translation_text"])

# %% [markdown]
# ## 5. Cross-attention: where the decoder looks
#
# `hf_bigmodel.explanation.attention_maps` runs the model once on a source sentence and a translation of it and
# returns every layer's and head's attention weights: `cross_attentions[layer, head, t, s]` is how much target
# token *t* (the decoder's input: the start token, then the translation) drew on source token *s*; each row sums
# to 1. Here the translation is the model's own beam-search output from section 3.

# %%
from matplotlib.figure import Figure

from hf_bigmodel.explanation import attention_maps

model = AutoModelForSeq2SeqLM.from_pretrained(RUN / "model")
sentence, translation = test_de[1], beam["predictions"][1]
maps = attention_maps(model, sentence, tokenizer, target_text=translation)
cross = maps.cross_attentions  # (layers, heads, target tokens, source tokens)
print(f"{sentence}\n  -> {translation}")
print("cross-attention", tuple(cross.shape))
assert torch.allclose(cross.sum(-1), torch.ones(cross.shape[:-1]), atol=1e-4)

# A bare Figure saved to a file and shown from it: training's loss curve switched matplotlib to its file-only
# backend (Agg), under which plt.show() draws nothing in a notebook.
fig = Figure(figsize=(3.5 * cross.shape[1], 4.5))
axes = fig.subplots(1, cross.shape[1])
for head, ax in enumerate(axes):
    ax.imshow(cross[-1, head], cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(maps.tokens)), maps.tokens, rotation=90)
    ax.set_yticks(range(len(maps.target_tokens)), maps.target_tokens)
    ax.set_title(f"last layer, head {head}")
    ax.set_xlabel("source token (encoder)")
axes[0].set_ylabel("target token (decoder input)")
fig.tight_layout()
fig.savefig(RUN / "cross_attention_last_layer.png")
display(Image(RUN / "cross_attention_last_layer.png"))

# The decoder input at step t is the token *before* the one it predicts, so read each row as "to write the next
# word, the decoder looked at ...": the source token each target position drew on most, all heads of all layers
# averaged.
strongest = cross.mean(dim=(0, 1)).argmax(-1)
for t, token in enumerate(maps.target_tokens):
    print(f"  after {token!r:>14} looks at {maps.tokens[strongest[t]]!r}")

# %% [markdown]
# Every layer and head, as a PNG file, and the same weights as an interactive bertviz page (encoder, decoder and
# cross-attention; the page loads bertviz's script from a CDN when it is opened):

# %%
from bertviz import model_view

png = RUN / "cross_attention.png"
png.write_bytes(maps.render_png("cross"))
html = RUN / "attention.html"
html.write_text(model_view(**maps.bertviz(), html_action="return").data, encoding="utf-8")
print(f"wrote {png} ({png.stat().st_size:,} bytes) and {html} ({html.stat().st_size:,} bytes)")
assert png.read_bytes().startswith(b"\x89PNG") and "cross" in html.read_text(encoding="utf-8").lower()

# %% [markdown]
# How concentrated is it? The entropy of a row is 0 when a target token looks at one source token and
# ln(source length) when it looks at all of them evenly. The untrained model of section 3, given the same sentence
# and translation, attends almost evenly; training made the cross-attention sharp:


# %%
def mean_entropy(weights: torch.Tensor) -> float:
    """Mean entropy (nats) of the attention rows of `weights` (..., queries, keys)."""
    return -(weights * weights.clamp_min(1e-12).log()).sum(-1).mean().item()


untrained_cross = attention_maps(untrained, sentence, tokenizer, target_text=translation).cross_attentions
print(f"uniform attention over {len(maps.tokens)} source tokens: {math.log(len(maps.tokens)):.2f} nats")
print(f"untrained model: {mean_entropy(untrained_cross):.2f} nats; trained: {mean_entropy(cross):.2f} nats")
assert mean_entropy(cross) < mean_entropy(untrained_cross) - 0.5, "training did not sharpen the cross-attention"

# %% [markdown]
# Attention weights say where the decoder looked, not why it chose a word; `hf_bigmodel.explain(model, sentence)`
# attributes each generated token to the source tokens with integrated gradients
# ([06_explaining](06_explaining.ipynb) and [docs/explain.md](../docs/explain.md)).
#
# **What to try next**: the full recipe of [docs/transformer.md](../docs/transformer.md) (8 epochs; `python
# benchmarks/bench_multi30k.py` prints its BLEU); `--config_overrides pre_norm=true` (the pre-norm order GPT-2 and
# most later models use); a BPE tokenizer (`--tokenizer_kind bpe`); English -> German (swap `--source_lang` and
# `--target_lang`).
