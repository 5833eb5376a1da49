"""Checkpoint conversion of the GPT: stock GPT-2 <-> bigmodel_gpt, bigmodel_gpt -> stock Llama (and back), nanoGPT
ckpt.pt -> bigmodel_gpt. Every route is checked on outputs (logits to 1e-5, identical greedy tokens), the stock
exports in a fresh interpreter that never imports hf_bigmodel."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from hf_bigmodel import BigModelGPTConfig, BigModelGPTForCausalLM, BigModelGPTForSequenceClassification
from hf_bigmodel.cli import main as cli_main
from hf_bigmodel.conversion.common import ConversionError, fuse_projections, split_projection
from hf_bigmodel.conversion.convert_gpt import (
    convert_bigmodel_to_gpt2,
    convert_bigmodel_to_llama,
    convert_gpt2_to_bigmodel,
    convert_llama_to_bigmodel,
    convert_nanogpt_to_bigmodel,
)
from hf_bigmodel.convert import convert, resolve_route

VOCAB = 97
# torch.compile (used only to produce nanoGPT's `_orig_mod.` keys) imports TorchScript, which warns on import.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("single_thread"),
]
NEW_TOKENS = 12


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter a distinct random value (norm weights and biases included, so a swapped key would
    show) at scales where greedy decoding of a tiny model is not stuck on one token."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            for pname, param in module.named_parameters(recurse=False):
                if isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or "norm" in type(module).__name__.lower():
                    value = (1.0 if pname == "weight" else 0.0) + 0.3 * torch.randn(param.shape, generator=gen)
                elif isinstance(module, nn.Embedding):
                    scale = 3.0 if ("pos" in name or "wpe" in name) else 1.0
                    value = scale * torch.randn(param.shape, generator=gen)
                else:
                    value = 0.4 * torch.randn(param.shape, generator=gen)
                param.copy_(value)
    return model.eval()


def prompt_ids(seed: int = 1, batch: int = 4, length: int = 8) -> torch.Tensor:
    return torch.randint(3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def logits_and_greedy(model: nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    greedy = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)
    return model(ids).logits, greedy


def assert_same_outputs(reference: tuple, converted: tuple, prompt_len: int = 8) -> None:
    # Logits of O(1) after two layers of random weights: float32 rounding depends on the CPU's kernels (an AMD EPYC
    # with AVX2 only differed by 1.3e-5 in one of 3,104 logits), so 1e-4 as transformers' own tests use; the greedy
    # tokens below must still be identical.
    torch.testing.assert_close(converted[0], reference[0], atol=1e-4, rtol=1e-5)
    assert torch.equal(converted[1], reference[1])
    # The comparison is only meaningful if the continuation is not one repeated token.
    new = reference[1][:, prompt_len:]
    assert len(set(new.flatten().tolist())) >= 8, new


def state_dict_of(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


# Loads a folder with plain transformers in a fresh interpreter and reports logits and greedy tokens; fails if
# anything from this repository got imported or if the class is not transformers' own.
STOCK_LOADER = r"""
import sys, torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM
folder, ids_path, out_path, expected = sys.argv[1:5]
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=False).eval()
assert type(model).__name__ == expected and type(model).__module__.startswith("transformers.models."), type(model)
ids = load_file(ids_path)["ids"]
with torch.no_grad():
    greedy = model.generate(ids, max_new_tokens=int(sys.argv[5]), do_sample=False, pad_token_id=0)
    logits = model(ids).logits
leaked = sorted(m for m in sys.modules if m.split(".")[0] == "hf_bigmodel")
assert not leaked, leaked
save_file({"logits": logits.contiguous(), "greedy": greedy.contiguous()}, out_path)
"""


def run_stock(folder: Path, ids: torch.Tensor, expected_class: str, tmp_path: Path) -> tuple:
    save_file({"ids": ids}, tmp_path / "ids.safetensors")
    out = tmp_path / "stock_out.safetensors"
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")}
    result = subprocess.run(
        [sys.executable, "-c", STOCK_LOADER, str(folder), str(tmp_path / "ids.safetensors"), str(out),
         expected_class, str(NEW_TOKENS)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    tensors = load_file(out)
    return tensors["logits"], tensors["greedy"]


def assert_stock_folder(folder: Path) -> None:
    """No code files and no auto_map: the folder cannot pull in remote code."""
    assert not list(folder.glob("*.py"))
    assert "auto_map" not in json.loads((folder / "config.json").read_text())


# ---------------------------------------------------------------------------------------------------------------
# Fixtures


def tiny_gpt2(tie: bool = True, **overrides) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=tie, **overrides,
    )  # fmt: skip
    return randomize_(GPT2LMHeadModel(config))


def ours(**overrides) -> BigModelGPTForCausalLM:
    config = BigModelGPTConfig.from_preset(
        "gpt-tiny", vocab_size=VOCAB, max_position_embeddings=64, pad_token_id=0, **overrides
    )
    return randomize_(BigModelGPTForCausalLM(config))


LLAMA_STYLE = dict(
    position_embedding_type="rope", norm_type="rmsnorm", mlp_type="swiglu", num_key_value_heads=2,
    bias=False, tie_word_embeddings=False, layer_norm_eps=1e-6,
)  # fmt: skip


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory) -> tuple[Path, GPT2LMHeadModel]:
    from hf_bigmodel.conversion.convert_gpt import char_tokenizer

    folder = tmp_path_factory.mktemp("gpt2")
    model = tiny_gpt2()
    model.save_pretrained(folder)
    char_tokenizer("".join(chr(32 + i) for i in range(VOCAB))).save_pretrained(folder)
    return folder, model


# ---------------------------------------------------------------------------------------------------------------
# GPT-2


def test_gpt2_to_bigmodel_same_logits_and_greedy(gpt2_folder, tmp_path):
    src, reference = gpt2_folder
    dst = convert_gpt2_to_bigmodel(src, tmp_path / "ours")
    assert dst == tmp_path / "ours"
    model = AutoModelForCausalLM.from_pretrained(dst).eval()
    assert isinstance(model, BigModelGPTForCausalLM)
    assert model.config.hidden_act == "gelu_pytorch_tanh" and model.config.bias and model.config.tie_word_embeddings
    assert model.lm_head.weight is model.model.embed_tokens.weight
    ids = prompt_ids()
    assert_same_outputs(logits_and_greedy(reference, ids), logits_and_greedy(model, ids))
    # Code files for trust_remote_code, and the tokenizer of SRC, travel with the weights.
    assert {"configuration_gpt.py", "modeling_gpt.py", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in dst.iterdir()
    }
    assert AutoTokenizer.from_pretrained(dst)("!#")["input_ids"] == [1, 3]
    assert [p.name for p in tmp_path.iterdir()] == ["ours"]  # no temporary folder left behind


def test_gpt2_round_trip_is_exact(gpt2_folder, tmp_path):
    src, reference = gpt2_folder
    convert_gpt2_to_bigmodel(src, tmp_path / "ours")
    back = convert_bigmodel_to_gpt2(tmp_path / "ours", tmp_path / "back")
    original, round_trip = state_dict_of(src), state_dict_of(back)
    assert original.keys() == round_trip.keys()
    for key in original:
        assert torch.equal(original[key], round_trip[key]), key
    ignored = {"transformers_version", "dtype"}
    config_a = {k: v for k, v in json.loads((src / "config.json").read_text()).items() if k not in ignored}
    config_b = {k: v for k, v in json.loads((back / "config.json").read_text()).items() if k not in ignored}
    assert config_a == config_b


def test_untied_gpt2_and_bare_body_checkpoints(tmp_path):
    reference = tiny_gpt2(tie=False)
    reference.save_pretrained(tmp_path / "untied", max_shard_size="20KB")  # sharded, with an index
    assert (tmp_path / "untied" / "model.safetensors.index.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(convert_gpt2_to_bigmodel(tmp_path / "untied", tmp_path / "a"))
    assert not model.config.tie_word_embeddings
    ids = prompt_ids()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, atol=1e-5, rtol=1e-5)

    # The original `openai-community/gpt2` files hold the bare GPT2Model (no `transformer.` prefix) plus the
    # causal-mask buffers `h.N.attn.bias`, in a legacy pytorch_model.bin: all must be understood.
    tied = tiny_gpt2()
    body = {k.removeprefix("transformer."): v for k, v in tied.state_dict().items() if k != "lm_head.weight"}
    body |= {f"h.{i}.attn.bias": torch.tril(torch.ones(1, 1, 64, 64)) for i in range(2)}
    (tmp_path / "bare").mkdir()
    torch.save(body, tmp_path / "bare" / "pytorch_model.bin")
    tied.config.save_pretrained(tmp_path / "bare")
    model = AutoModelForCausalLM.from_pretrained(convert_gpt2_to_bigmodel(tmp_path / "bare", tmp_path / "b"))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, tied(ids).logits, atol=1e-5, rtol=1e-5)


def test_gpt2_export_loads_in_stock_transformers_without_hf_bigmodel(tmp_path):
    model = ours()
    model.save_pretrained(tmp_path / "ours")
    assert resolve_route(tmp_path / "ours").target == "gpt2"
    dst = convert(tmp_path / "ours", tmp_path / "gpt2")  # direction picked from SRC
    assert_stock_folder(dst)
    config = json.loads((dst / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"]
    assert config["activation_function"] == "gelu_new"
    ids = prompt_ids()
    assert_same_outputs(logits_and_greedy(model, ids), run_stock(dst, ids, "GPT2LMHeadModel", tmp_path))


def test_gpt2_export_of_bias_free_model_writes_zero_biases(tmp_path):
    model = ours(bias=False, hidden_act="gelu")
    model.save_pretrained(tmp_path / "ours")
    dst = convert_bigmodel_to_gpt2(tmp_path / "ours", tmp_path / "gpt2")
    stock = GPT2LMHeadModel.from_pretrained(dst).eval()
    assert stock.config.activation_function == "gelu"
    assert not stock.transformer.h[0].attn.c_attn.bias.any() and not stock.transformer.ln_f.bias.any()
    ids = prompt_ids()
    assert_same_outputs(logits_and_greedy(model, ids), logits_and_greedy(stock, ids))


def test_gpt2_input_with_unsupported_options_is_refused(tmp_path):
    for field, message in [
        ("scale_attn_by_inverse_layer_idx", "scale_attn_by_inverse_layer_idx=True"),
        ("add_cross_attention", "add_cross_attention=True"),
    ]:
        model = tiny_gpt2()
        setattr(model.config, field, True)
        model.config.save_pretrained(tmp_path / field)
        tensors = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
        save_file(tensors, tmp_path / field / "model.safetensors")
        with pytest.raises(ConversionError, match=message):
            convert_gpt2_to_bigmodel(tmp_path / field, tmp_path / "out")
        assert not (tmp_path / "out").exists()


def test_gpt2_reorder_and_upcast_attn_is_accepted_as_the_same_function(tmp_path, caplog):
    reference = tiny_gpt2(reorder_and_upcast_attn=True)
    reference.set_attn_implementation("eager")  # the only path where GPT-2 applies the option
    assert reference.transformer.h[0].attn.reorder_and_upcast_attn
    reference.save_pretrained(tmp_path / "gpt2")
    with caplog.at_level("INFO", logger="hf_bigmodel.conversion"):
        model = AutoModelForCausalLM.from_pretrained(convert(tmp_path / "gpt2", tmp_path / "ours")).eval()
    assert "reorder_and_upcast_attn=True" in caplog.text
    ids = prompt_ids()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Llama


def test_llama_export_of_rope_rmsnorm_swiglu_gqa_model(tmp_path):
    model = ours(**LLAMA_STYLE)
    model.save_pretrained(tmp_path / "ours")
    assert resolve_route(tmp_path / "ours").target == "llama"
    assert cli_main(["convert", str(tmp_path / "ours"), str(tmp_path / "llama")]) == 0
    dst = tmp_path / "llama"
    assert_stock_folder(dst)
    config = json.loads((dst / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_key_value_heads"] == 2
    assert config["architectures"] == ["LlamaForCausalLM"] and not config.get("attention_bias", False)
    ids = prompt_ids()
    assert_same_outputs(logits_and_greedy(model, ids), run_stock(dst, ids, "LlamaForCausalLM", tmp_path))

    # Llama -> ours gives back the very same tensors (q/k/v re-fused in order).
    back = convert_llama_to_bigmodel(dst, tmp_path / "back")
    original, round_trip = state_dict_of(tmp_path / "ours"), state_dict_of(back)
    assert original.keys() == round_trip.keys()
    assert all(torch.equal(original[k], round_trip[k]) for k in original)


def test_llama_export_with_biases_and_tied_embeddings(tmp_path):
    model = ours(**{**LLAMA_STYLE, "bias": True, "tie_word_embeddings": True})
    model.save_pretrained(tmp_path / "ours")
    stock = LlamaForCausalLM.from_pretrained(convert_bigmodel_to_llama(tmp_path / "ours", tmp_path / "llama"))
    assert stock.config.attention_bias and stock.config.mlp_bias and stock.config.tie_word_embeddings
    ids = prompt_ids()
    assert_same_outputs(logits_and_greedy(model, ids), logits_and_greedy(stock.eval(), ids))


LLAMA3_ROPE = {
    "rope_type": "llama3", "rope_theta": 500.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}  # fmt: skip


@pytest.mark.parametrize("rope", [{"rope_type": "default", "rope_theta": 500.0}, LLAMA3_ROPE])
def test_stock_llama_import(tmp_path, rope):
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True,
        rope_parameters=dict(rope),
    )  # fmt: skip
    reference = randomize_(LlamaForCausalLM(config))
    reference.save_pretrained(tmp_path / "llama")
    model = AutoModelForCausalLM.from_pretrained(convert(tmp_path / "llama", tmp_path / "ours")).eval()
    assert model.config.rope_parameters == rope and model.config.num_key_value_heads == 1
    ids = prompt_ids()
    assert_same_outputs(logits_and_greedy(reference, ids), logits_and_greedy(model, ids))


def test_export_refusals_name_the_field(tmp_path):
    # A rope model cannot be GPT-2; the message names the field and points at the Llama export.
    ours(**LLAMA_STYLE).save_pretrained(tmp_path / "rope")
    with pytest.raises(ConversionError, match=r"position_embedding_type='rope'.*--to llama"):
        convert_bigmodel_to_gpt2(tmp_path / "rope", tmp_path / "out")
    # A GPT-2-style model cannot be Llama; the message points at the GPT-2 export.
    ours().save_pretrained(tmp_path / "learned")
    with pytest.raises(ConversionError, match=r"position_embedding_type='learned'.*norm_type='layernorm'.*--to gpt2"):
        convert_bigmodel_to_llama(tmp_path / "learned", tmp_path / "out")
    # A mix of both has no stock equivalent at all.
    ours(position_embedding_type="rope").save_pretrained(tmp_path / "mixed")
    with pytest.raises(ConversionError, match="no stock transformers equivalent.*trust_remote_code=True"):
        convert(tmp_path / "mixed", tmp_path / "out")
    # GQA has no GPT-2 form.
    ours(num_key_value_heads=2).save_pretrained(tmp_path / "gqa")
    with pytest.raises(ConversionError, match="num_key_value_heads=2 != num_attention_heads=4"):
        convert_bigmodel_to_gpt2(tmp_path / "gqa", tmp_path / "out")
    # Only language models: a classifier's `score` head has no place in GPT2LMHeadModel.
    classifier = BigModelGPTForSequenceClassification(BigModelGPTConfig.from_preset("gpt-tiny", num_labels=3))
    classifier.save_pretrained(tmp_path / "classifier")
    with pytest.raises(ConversionError, match="BigModelGPTForSequenceClassification checkpoint: only language models"):
        convert(tmp_path / "classifier", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


# ---------------------------------------------------------------------------------------------------------------
# nanoGPT: a faithful minimal copy of karpathy/nanoGPT model.py's forward, written for this test.


class NanoLayerNorm(nn.Module):
    def __init__(self, ndim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class NanoSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int, bias: bool, flash: bool):
        super().__init__()
        self.n_head, self.n_embd, self.flash = n_head, n_embd, flash
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        if not flash:  # nanoGPT registers the causal mask as a (persistent) buffer named `bias`
            self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, -1))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.flash:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class NanoMLP(nn.Module):
    def __init__(self, n_embd: int, bias: bool):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class NanoBlock(nn.Module):
    def __init__(self, n_embd, n_head, block_size, bias, flash):
        super().__init__()
        self.ln_1 = NanoLayerNorm(n_embd, bias)
        self.attn = NanoSelfAttention(n_embd, n_head, block_size, bias, flash)
        self.ln_2 = NanoLayerNorm(n_embd, bias)
        self.mlp = NanoMLP(n_embd, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, n_layer, n_head, n_embd, block_size, bias, vocab_size, dropout=0.0, flash=True):
        super().__init__()
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab_size, n_embd),
                wpe=nn.Embedding(block_size, n_embd),
                drop=nn.Dropout(dropout),
                h=nn.ModuleList([NanoBlock(n_embd, n_head, block_size, bias, flash) for _ in range(n_layer)]),
                ln_f=NanoLayerNorm(n_embd, bias),
            )
        )
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as nanoGPT does

    def forward(self, idx):
        pos = torch.arange(0, idx.size(1), dtype=torch.long)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))  # all positions (nanoGPT's training path)


def save_nanogpt_ckpt(path: Path, bias: bool, compiled: bool, flash: bool = True) -> NanoGPT:
    model_args = dict(n_layer=2, n_head=4, n_embd=32, block_size=64, bias=bias, vocab_size=VOCAB, dropout=0.0)
    model = randomize_(NanoGPT(**model_args, flash=flash))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    model(prompt_ids()).sum().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    # torch.compile wraps the module lazily (nothing is compiled here); its state dict has the `_orig_mod.` prefix.
    state_dict = (torch.compile(model) if compiled else model).state_dict()
    ckpt = {
        "model": state_dict,
        "optimizer": optimizer.state_dict(),
        "model_args": model_args,
        "iter_num": 250,
        "best_val_loss": torch.tensor(1.4697),
        "config": {"dataset": "shakespeare_char", "batch_size": 12, "compile": compiled, "learning_rate": 1e-3},
    }
    torch.save(ckpt, path)
    return model.eval()


@torch.no_grad()
def nanogpt_greedy(model: NanoGPT, ids: torch.Tensor) -> torch.Tensor:
    for _ in range(NEW_TOKENS):
        ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids


@pytest.mark.parametrize(
    "bias, compiled, flash", [(True, False, True), (False, True, True), (True, True, False), (False, False, False)]
)
def test_nanogpt_checkpoint(tmp_path, bias, compiled, flash):
    reference = save_nanogpt_ckpt(tmp_path / "ckpt.pt", bias=bias, compiled=compiled, flash=flash)
    if compiled:
        assert all(k.startswith("_orig_mod.") for k in torch.load(tmp_path / "ckpt.pt", weights_only=True)["model"])
    dst = convert_nanogpt_to_bigmodel(tmp_path / "ckpt.pt", tmp_path / "ours")
    model = AutoModelForCausalLM.from_pretrained(dst).eval()
    assert model.config.bias is bias and model.config.hidden_act == "gelu"
    assert model.config.max_position_embeddings == 64 and model.config.bos_token_id is None
    ids = prompt_ids()
    with torch.no_grad():
        expected = (reference(ids), nanogpt_greedy(reference, ids))
    assert_same_outputs(expected, logits_and_greedy(model, ids))


def test_nanogpt_cli_with_char_vocabulary_from_text(tmp_path):
    text = "".join(chr(c) for c in range(32, 32 + VOCAB - 1)) + "\n"  # 97 distinct characters
    (tmp_path / "input.txt").write_text(text * 3, encoding="utf-8")
    reference = save_nanogpt_ckpt(tmp_path / "ckpt.pt", bias=False, compiled=True)
    # SRC may be the nanoGPT out_dir holding ckpt.pt.
    code = cli_main(
        ["convert", str(tmp_path), str(tmp_path / "ours"), "--vocab-chars-from", str(tmp_path / "input.txt")]
    )
    assert code == 0
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "ours")
    chars = sorted(set(text))
    ids = tokenizer("Hi!\nyou")["input_ids"]
    assert ids == [chars.index(c) for c in "Hi!\nyou"] and tokenizer.decode(ids) == "Hi!\nyou"
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    batch = torch.tensor([ids])
    with torch.no_grad():
        torch.testing.assert_close(model(batch).logits, reference(batch), atol=1e-5, rtol=1e-5)


def test_nanogpt_refuses_pickled_objects_without_running_them(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:  # unpickling this would create `marker`
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model": {}, "model_args": {}, "extra": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ConversionError, match=r"contains arbitrary Python objects.*will not unpickle"):
        convert_nanogpt_to_bigmodel(tmp_path / "evil.pt", tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_nanogpt_bad_inputs(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"definitely not a checkpoint" * 10)
    with pytest.raises(ConversionError, match="not a readable PyTorch checkpoint"):
        convert_nanogpt_to_bigmodel(tmp_path / "garbage.pt", tmp_path / "out")

    torch.save({"weights": {"w": torch.zeros(1)}}, tmp_path / "plain.pt")
    with pytest.raises(ConversionError, match=r"not a nanoGPT checkpoint.*'model_args'.*\['weights'\]"):
        convert_nanogpt_to_bigmodel(tmp_path / "plain.pt", tmp_path / "out")

    save_nanogpt_ckpt(tmp_path / "ckpt.pt", bias=True, compiled=False)
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    torch.save({**ckpt, "model_args": {**ckpt["model_args"], "n_kv_head": 2}}, tmp_path / "fork.pt")
    with pytest.raises(ConversionError, match="does not know: n_kv_head"):
        convert_nanogpt_to_bigmodel(tmp_path / "fork.pt", tmp_path / "out")

    torch.save({**ckpt, "model_args": {**ckpt["model_args"], "n_layer": 3}}, tmp_path / "wrong.pt")
    with pytest.raises(ConversionError, match=r"does not match its config.*missing model\.layers\.2\."):
        convert_nanogpt_to_bigmodel(tmp_path / "wrong.pt", tmp_path / "out")

    with pytest.raises(ConversionError, match="vocab_chars has 3 characters but the checkpoint's vocab_size is 97"):
        convert_nanogpt_to_bigmodel(tmp_path / "ckpt.pt", tmp_path / "out", vocab_chars="abc")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# CLI and writes


def test_cli_errors_and_overwrite(gpt2_folder, tmp_path, capsys):
    src, _ = gpt2_folder
    dst = tmp_path / "ours"
    assert cli_main(["convert", str(src), str(dst), "--dtype", "bfloat16"]) == 0
    out = capsys.readouterr().out
    assert "(gpt2)" in out and "(bigmodel_gpt)" in out and "trust_remote_code=True" in out
    with safe_open(dst / "model.safetensors", "pt") as f:
        assert f.get_slice("model.embed_tokens.weight").get_dtype() == "BF16"

    # A non-empty DST is kept unless --overwrite.
    assert cli_main(["convert", str(src), str(dst)]) == 2
    assert "exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert cli_main(["convert", str(src), str(dst), "--overwrite"]) == 0
    with safe_open(dst / "model.safetensors", "pt") as f:
        assert f.get_slice("model.embed_tokens.weight").get_dtype() == "F32"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours"]  # the replaced folder is gone, no leftovers

    # A rope model forced to GPT-2: named field and the way out.
    ours(**LLAMA_STYLE).save_pretrained(tmp_path / "rope")
    assert cli_main(["convert", str(tmp_path / "rope"), str(tmp_path / "x"), "--to", "gpt2"]) == 2
    err = capsys.readouterr().err
    assert "Cannot export to stock GPT-2" in err and "position_embedding_type='rope'" in err and "--to llama" in err

    # Route and input errors.
    assert cli_main(["convert", str(src), str(tmp_path / "x"), "--to", "llama"]) == 2
    assert "Cannot convert a 'gpt2' checkpoint to 'llama'" in capsys.readouterr().err
    assert cli_main(["convert", str(tmp_path / "missing"), str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "weights.bin").write_bytes(b"\0")
    assert cli_main(["convert", str(tmp_path / "weights.bin"), str(tmp_path / "x")]) == 2
    assert "not a nanoGPT checkpoint (*.pt)" in capsys.readouterr().err
    assert cli_main(["convert", str(src), str(tmp_path / "x"), "--vocab-chars", "ab"]) == 2
    assert "apply to nanoGPT checkpoints only" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

    # nanoGPT has no tokenizer files; --tokenizer copies those of a folder (here a GPT-2-style one).
    save_nanogpt_ckpt(tmp_path / "ckpt.pt", bias=True, compiled=False)
    assert cli_main(["convert", str(tmp_path / "ckpt.pt"), str(tmp_path / "nano"), "--tokenizer", str(src)]) == 0
    assert (tmp_path / "nano" / "tokenizer.json").read_bytes() == (src / "tokenizer.json").read_bytes()


def test_fused_projections_split_and_fuse_back():
    prefix, parts = r"model\.layers\.\d+\.self_attn\.", ("q_proj", "k_proj", "v_proj")
    sizes = [8, 4, 4]  # grouped-query: smaller k and v
    tensors = {"model.layers.0.self_attn.qkv_proj.weight": torch.randn(16, 6), "other.weight": torch.randn(2)}
    tensors["model.layers.1.self_attn.qkv_proj.bias"] = torch.randn(16)
    split = split_projection(tensors, prefix, "qkv_proj", parts, sizes)
    assert split["model.layers.1.self_attn.k_proj.bias"].shape == (4,)
    assert torch.equal(
        split["model.layers.0.self_attn.v_proj.weight"], tensors["model.layers.0.self_attn.qkv_proj.weight"][12:]
    )
    fused = fuse_projections(split, prefix, parts, "qkv_proj", "ckpt")
    assert fused.keys() == tensors.keys() and all(torch.equal(fused[k], tensors[k]) for k in tensors)
    del split["model.layers.1.self_attn.k_proj.bias"]
    with pytest.raises(ConversionError, match=r"ckpt lacks model\.layers\.1\.self_attn\.k_proj\.bias"):
        fuse_projections(split, prefix, parts, "qkv_proj", "ckpt")
