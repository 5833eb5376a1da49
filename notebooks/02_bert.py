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
# # BERT: WordPiece, pretraining with MLM + NSP, fine-tuning on SST-2
#
# BERT is the encoder half of the Transformer: every position attends to every other (no causal mask), so it
# cannot generate text left to right; it is pretrained to **fill in masked words** (MLM) and to tell whether
# sentence B **follows** sentence A (NSP), then fine-tuned for a task. This notebook
#
# 1. trains a WordPiece tokenizer, BERT's, and looks at how it splits words and encodes sentence pairs;
# 2. pretrains a small BERT with MLM + NSP on WikiText-2 (`hf-bigmodel pretrain bert`);
# 3. fills in a mask with transformers' `fill-mask` pipeline;
# 4. fine-tunes it on SST-2 (movie-review sentiment) and reports accuracy and F1 on the dev set.
#
# `HF_BIGMODEL_QUICK=1` runs the same code with fewer steps (as CI does).

# %%
import json
import os
import shlex
import shutil
from pathlib import Path

from hf_bigmodel.cli import main as hf_bigmodel_cli

QUICK = os.environ.get("HF_BIGMODEL_QUICK") == "1"
SHARED = next(p / "shared" / "data" for p in Path.cwd().resolve().parents if (p / "shared" / "data").is_dir())
WIKITEXT, SST2 = SHARED / "wikitext2", SHARED / "sst2"
RUN = Path("runs/02_bert")
shutil.rmtree(RUN, ignore_errors=True)


def sh(command: str) -> None:
    """Run an `hf-bigmodel ...` command line in this process, exactly as a terminal would, and stop on failure."""
    print(f"$ {command}")
    assert hf_bigmodel_cli(shlex.split(command)[1:]) == 0, f"failed: {command}"


# %% [markdown]
# ## 1. WordPiece
#
# WordPiece keeps whole frequent words and splits rarer ones into pieces; a piece that continues a word starts
# with `##`. BERT's tokenizer also lower-cases, strips accents and splits punctuation, and has five special
# tokens: `[PAD] [UNK] [CLS] [SEP] [MASK]`. A pair of sentences is encoded as `[CLS] A [SEP] B [SEP]`, with
# `token_type_ids` 0 for A and 1 for B.

# %%
sh(
    f"hf-bigmodel train-tokenizer --kind wordpiece --files {WIKITEXT}/valid.txt {WIKITEXT}/test.txt "
    f"--vocab_size 8192 --output_dir {RUN}/tokenizer --no_progress"
)

from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(RUN / "tokenizer")
print(tokenizer.tokenize("The unbelievably tokenizable Zürich"))
pair = tokenizer("The cat sat.", "It was tired.")
print(tokenizer.convert_ids_to_tokens(pair["input_ids"]))
print(pair["token_type_ids"])
assert tokenizer.convert_ids_to_tokens(pair["input_ids"])[0] == "[CLS]" and set(pair["token_type_ids"]) == {0, 1}

# %% [markdown]
# ## 2. Pretraining: MLM + NSP
#
# `--objective mlm_nsp` builds examples as BERT's `create_pretraining_data.py` does: sentence pairs, half of them
# with a random "next" sentence from another document, 15% of the tokens chosen for prediction (80% of those
# replaced by `[MASK]`, 10% by a random token, 10% left). The model (2 layers, 128 wide: `bert-mini` made
# smaller with `--config_overrides`) learns both tasks at once. WikiText-2's validation text trains, its test text
# evaluates (the shared data has no WikiText-2 training split).

# %%
steps = 150 if QUICK else 600
sh(
    f"hf-bigmodel pretrain bert --train_file {WIKITEXT}/valid.txt --validation_file {WIKITEXT}/test.txt "
    f"--tokenizer_name_or_path {RUN}/tokenizer --preset bert-mini "
    '--config_overrides "num_hidden_layers=2,hidden_size=128,num_attention_heads=2,intermediate_size=512" '
    f"--objective mlm_nsp --max_seq_length 64 --dupe_factor {1 if QUICK else 5} --output_dir {RUN}/bert "
    f"--max_steps {steps} --per_device_train_batch_size 32 --learning_rate 5e-4 --warmup_steps {steps // 20} "
    f"--weight_decay 0.01 --logging_steps {steps // 10} --save_strategy no --report_to none --use_cpu true --seed 0"
)

# %%
state = json.loads((RUN / "bert" / "trainer_state.json").read_text())
losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
pretrain = json.loads((RUN / "bert" / "all_results.json").read_text())
print("training loss (MLM + NSP):", [round(loss, 2) for loss in losses])
print({key: round(value, 3) for key, value in pretrain.items() if key.startswith("eval_")})
assert losses[-1] < losses[0] - 1.0, "the pretraining loss did not fall"
assert pretrain["eval_mlm_accuracy"] > 0.05  # guessing among 8192 tokens: 0.0001

# %% [markdown]
# ## 3. Filling in a mask
#
# The pretrained folder loads in transformers' own `fill-mask` pipeline. A model this small, trained for minutes,
# guesses frequent words, but it uses the context on both sides.

# %%
from transformers import AutoModelForMaskedLM, pipeline

fill = pipeline("fill-mask", model=AutoModelForMaskedLM.from_pretrained(RUN / "bert"), tokenizer=tokenizer)
for guess in fill("the team won the [MASK] in 1998 .", top_k=5):
    print(f"{guess['score']:.3f} {guess['token_str']}")
assert all(isinstance(guess["token_str"], str) for guess in fill("he was born in [MASK] .", top_k=3))

# %% [markdown]
# ## 4. Fine-tuning on SST-2
#
# `hf-bigmodel finetune --task sequence-classification` puts a classifier on the `[CLS]` position of the
# pretrained encoder and trains everything on SST-2's labelled sentences. The dev set has 428 negative and 444
# positive sentences, so always answering "positive" scores 50.9%.

# %%
finetune_steps, finetune_lr = (400, 2e-4) if QUICK else (600, 1e-4)
sh(
    f"hf-bigmodel finetune --model_name_or_path {RUN}/bert --task sequence-classification "
    f"--train_file {SST2}/train.tsv --validation_file {SST2}/dev.tsv --text_column sentence --label_column label "
    f"--max_seq_length 64 --max_steps {finetune_steps} --per_device_train_batch_size 32 --learning_rate {finetune_lr} "
    f"--warmup_steps {finetune_steps // 10} --logging_steps {finetune_steps // 10} --eval_strategy no --save_strategy no --report_to none --use_cpu true "
    f"--seed 0 --output_dir {RUN}/sst2"
)

# %% [markdown]
# `hf-bigmodel evaluate` scores the saved folder on the dev set: accuracy, F1 of the positive class (as GLUE
# reports SST-2's sibling tasks), F1 per class and the confusion matrix (rows: true label).

# %%
sh(f"hf-bigmodel evaluate {RUN}/sst2 --task classification --data {SST2}/dev.tsv --text_column sentence")
scores = json.loads((RUN / "sst2" / "eval_results.json").read_text())["classification"]["metrics"]
print(f"dev accuracy {scores['accuracy']:.3f}, F1 {scores['f1']:.3f}")
assert scores["accuracy"] > (0.56 if QUICK else 0.65), "no better than always answering 'positive' (0.509)"

# %% [markdown]
# The fine-tuned folder is a `text-classification` pipeline too:

# %%
classify = pipeline("text-classification", model=str(RUN / "sst2"))
predictions = classify(["a gorgeous, witty, seductive movie.", "the plot is a mess and the acting is worse."])
print(predictions)
assert all(p["label"] in classify.model.config.label2id for p in predictions)
