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
# # Mistakes in a first Transformer
#
# hf_bigmodel grew from a beginner's tutorial whose sample code shows four mistakes that many first Transformers
# make. Each is reproduced here in a few lines of plain PyTorch, shown failing or learning nothing, then fixed; the
# last section shows how hf_bigmodel's models avoid them.
#
# 1. A `ModuleList` called as if it were a layer.
# 2. A "position encoding" that is one learned vector, broadcast to every position.
# 3. A GPT without a causal mask.
# 4. A BERT and a GPT that come out as the same network.
#
# Unlike the other notebooks, this one writes its toy models by hand on purpose: the point is the mistakes.
# `HF_BIGMODEL_QUICK=1` trains for fewer steps (as CI does).

# %%
import os
import traceback
from pathlib import Path

import torch
from torch import nn

QUICK = os.environ.get("HF_BIGMODEL_QUICK") == "1"
torch.set_num_threads(1)  # models this small run fastest on one thread: more only adds synchronisation
torch.manual_seed(0)
d_model, heads = 32, 4

# %% [markdown]
# ## 1. Calling a `ModuleList`
#
# The tutorial stacks the parts of a layer in a `ModuleList` and calls the list:

# %%
layer = nn.ModuleList(
    [nn.Linear(d_model, d_model), nn.Dropout(0.1), nn.MultiheadAttention(d_model, heads, batch_first=True)]
)
x = torch.randn(2, 5, d_model)  # (batch, seq, d_model)
try:
    layer(x)
    raise AssertionError("a ModuleList should not be callable")
except NotImplementedError as err:
    traceback.print_exception(err, limit=1)
    assert "forward" in str(err)

# %% [markdown]
# A `ModuleList` only *registers* modules (so their weights are found by `.parameters()` and moved by `.to()`); it
# has no `forward`. `nn.Sequential` does not fit either: `MultiheadAttention` takes a query, key and value and
# returns a tuple `(output, weights)`. A layer is a module whose `forward` says how the parts connect; here a
# pre-norm Transformer block, with its residual connections:


# %%
class Block(nn.Module):
    def __init__(self, d_model: int, heads: int, dropout: float = 0.1):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attention = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attention(h, h, h, attn_mask=mask, need_weights=False)[0]  # (batch, seq, d_model)
        return x + self.mlp(self.norm2(x))


print(Block(d_model, heads)(x).shape)

# %% [markdown]
# ## 2. A position encoding of length 1
#
# The tutorial's position encoding is `nn.Parameter(torch.zeros(1, 1, d_model))`: one vector, broadcast to every
# position. Every position gets the *same* vector, so it encodes nothing, and self-attention without positions
# sees a bag of tokens: permute the input and the outputs are permuted the same way.
#
# A task that needs order shows it: given 8 random tokens, say whether the first is larger than the last. The same
# classifier is trained with the broken encoding and with a real one (a learned vector per position, as BERT and
# GPT-2 do).


# %%
class Classifier(nn.Module):
    def __init__(self, vocab: int, length: int, positions: str):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        if positions == "broken":  # the tutorial's: shape (1, 1, d_model), the same for every position
            self.position = nn.Parameter(torch.zeros(1, 1, d_model))
        else:  # one learned vector per position: shape (1, length, d_model)
            self.position = nn.Parameter(torch.randn(1, length, d_model) * 0.02)
        self.blocks = nn.ModuleList([Block(d_model, heads, dropout=0.0) for _ in range(2)])
        self.head = nn.Linear(d_model, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.position  # (batch, seq, d_model)
        for block in self.blocks:  # a ModuleList is iterated, not called
            x = block(x)
        return self.head(x.mean(dim=1))  # (batch, 2)


vocab, length = 16, 8


def order_batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(vocab, (n, length), generator=generator)
    return tokens, (tokens[:, 0] > tokens[:, -1]).long()


def train_classifier(positions: str, steps: int) -> float:
    torch.manual_seed(0)
    model, generator = Classifier(vocab, length, positions), torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        tokens, labels = order_batch(64, generator)
        loss = nn.functional.cross_entropy(model(tokens), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    tokens, labels = order_batch(2000, torch.Generator().manual_seed(99))
    with torch.no_grad():
        return (model(tokens).argmax(-1) == labels).float().mean().item()


steps = 300 if QUICK else 1000
broken, fixed = train_classifier("broken", steps), train_classifier("learned", steps)
# "first > last" is false for ties, so always answering "no" scores 120/256 + ... about 53%.
print(f"accuracy with one broadcast vector: {broken:.1%}; with a vector per position: {fixed:.1%}")
assert broken < 0.6, "without positions the task should be impossible"
assert fixed > broken + 0.2, "a real position encoding should solve the task"

# %%
# The bag-of-tokens property itself: permuting the input permutes the outputs, whatever the weights.
torch.manual_seed(0)
bag = Classifier(vocab, length, "broken").eval()
tokens = torch.randint(vocab, (1, length))
permutation = torch.randperm(length)
assert torch.allclose(bag(tokens), bag(tokens[:, permutation]), atol=1e-5)
print("the broken model gives the same answer for a sequence and its shuffle")

# %% [markdown]
# ## 3. A GPT without a causal mask
#
# A language model is trained on all positions at once: position *t* predicts token *t+1*. Without a mask that
# hides the future, token *t+1* is in its input, and the model learns to copy it. The training loss collapses, and
# generation, where token *t+1* does not exist yet, fails.


# %%
# SHARED: the project's datasets, in shared/data beside the checkout (../shared/data from its root).
SHARED = next(p / "shared" / "data" for p in Path.cwd().resolve().parents if (p / "shared" / "data").is_dir())
text = (SHARED / "tiny_shakespeare" / "input.txt").read_text(encoding="utf-8")[:300_000]
chars = sorted(set(text))
data = torch.tensor([chars.index(c) for c in text])
block_size = 32


class TinyGPT(nn.Module):
    def __init__(self, causal: bool):
        super().__init__()
        self.causal = causal
        self.embed = nn.Embedding(len(chars), d_model)
        self.position = nn.Embedding(block_size, d_model)
        self.blocks = nn.ModuleList([Block(d_model, heads, dropout=0.0) for _ in range(2)])
        self.head = nn.Linear(d_model, len(chars))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        seq = tokens.shape[1]
        x = self.embed(tokens) + self.position(torch.arange(seq))
        # True above the diagonal = "may not attend": position t sees positions 0..t only.
        mask = torch.triu(torch.ones(seq, seq, dtype=torch.bool), diagonal=1) if self.causal else None
        for block in self.blocks:
            x = block(x, mask)
        return self.head(x)  # (batch, seq, vocab)


def lm_batch(generator: torch.Generator, n: int = 32) -> torch.Tensor:
    starts = torch.randint(len(data) - block_size - 1, (n,), generator=generator)
    return torch.stack([data[s : s + block_size + 1] for s in starts])  # (n, block_size + 1)


def train_lm(causal: bool, steps: int) -> tuple[TinyGPT, float]:
    torch.manual_seed(0)
    model, generator = TinyGPT(causal), torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        chunk = lm_batch(generator)
        logits = model(chunk[:, :-1])  # position t is scored on token t+1, which is also in the input
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), loss.item()


@torch.no_grad()
def next_char_accuracy(model: TinyGPT, context: int = 16) -> float:
    """Generation's situation: predict the character after `context` characters, with nothing after it in the
    input."""
    chunk = lm_batch(torch.Generator().manual_seed(5), n=1000)
    return (model(chunk[:, :context])[:, -1].argmax(-1) == chunk[:, context]).float().mean().item()


steps = 200 if QUICK else 800
for causal in (False, True):
    model, train_loss = train_lm(causal, steps)
    accuracy = next_char_accuracy(model)
    print(f"causal mask {causal!s:>5}: training loss {train_loss:.2f}, next-character accuracy {accuracy:.1%}")
    if causal:
        causal_loss, causal_accuracy = train_loss, accuracy
    else:
        leaky_loss, leaky_accuracy = train_loss, accuracy
assert leaky_loss < causal_loss - 0.5, "the leaking model should look better in training"
assert leaky_accuracy < causal_accuracy - 0.05, "and be worse at what a GPT is for"

# %% [markdown]
# A check that catches the leak without training anything: change a later token and see whether the output at an
# earlier position moves. For a GPT it must not.

# %%
for causal in (False, True):
    torch.manual_seed(0)
    model = TinyGPT(causal).eval()
    tokens = torch.randint(len(chars), (1, 10))
    changed = tokens.clone()
    changed[0, 7] = (changed[0, 7] + 1) % len(chars)
    leaks = not torch.allclose(model(tokens)[0, :7], model(changed)[0, :7])
    print(f"causal mask {causal!s:>5}: positions 0-6 react to a change at position 7: {leaks}")
    assert leaks != causal

# %% [markdown]
# ## 4. A BERT that is a GPT
#
# In the tutorial, "BERT" and "GPT" are the same class under two names: the same layers, no mask in either, the
# same objective. What makes them different models is not the stack of layers but:
#
# | | GPT | BERT |
# |---|---|---|
# | attention | causal: position *t* sees 0..*t* | bidirectional: every position sees all |
# | objective | predict the next token | predict masked-out tokens (MLM), and whether B follows A (NSP) |
# | input | text | `[CLS] A [SEP] B [SEP]`, with segment embeddings |
# | used for | generation | understanding: classification, tagging, QA |
#
# hf_bigmodel's two models show it with the same leak test as above: BERT's early positions react to a later
# token, GPT's do not; and their pretraining heads differ.

# %%
import hf_bigmodel

gpt = hf_bigmodel.create_model("gpt-tiny", task="causal-lm").eval()
bert = hf_bigmodel.create_model("bert-tiny", task="pretraining").eval()
print("GPT:", type(gpt).__name__, "->", type(gpt(torch.tensor([[5, 6, 7]]))).__name__)
out = bert(torch.tensor([[2, 5, 6, 3, 7, 3]]))
print("BERT:", type(bert).__name__, "-> MLM logits", tuple(out.prediction_logits.shape), "and NSP logits",
      tuple(out.seq_relationship_logits.shape))  # fmt: skip

tokens = torch.tensor([[2, 10, 11, 12, 13, 14, 15, 3]])
changed = tokens.clone()
changed[0, 6] = 20
with torch.no_grad():
    gpt_reacts = not torch.allclose(gpt(tokens).logits[0, :6], gpt(changed).logits[0, :6])
    bert_reacts = not torch.allclose(
        bert(tokens).prediction_logits[0, :6], bert(changed).prediction_logits[0, :6], atol=1e-6
    )
print(f"a change at position 6 moves earlier outputs: GPT {gpt_reacts}, BERT {bert_reacts}")
assert not gpt_reacts and bert_reacts

# %% [markdown]
# **In hf_bigmodel**: each model is a `PreTrainedModel` whose `forward` connects its layers (mistake 1); GPT and
# BERT have a learned position table of `max_position_embeddings` rows, or rotary embeddings (mistake 2); the GPT
# always applies the causal mask, with logits equal to `GPT2LMHeadModel`'s at the same weights (mistake 3); BERT
# is bidirectional and pretrained with MLM and NSP (mistake 4). See [01_gpt](01_gpt.ipynb) for the causal mask in
# the attention weights of a trained GPT.
