"""What is the encoder-decoder Transformer's own: config names and presets, its errors, attention implementations and
the math-attention kernel, output capture, tying switches, the label-smoothed unshifted loss (values, gradients,
`num_items_in_batch`), bf16 autocast, the seq2seq collator, and the model card. The generic checks that every
architecture shares (Auto classes, config round trip, invalid configs, save/load with the sinusoidal table rebuilt,
sharded save, activation checkpointing, gradient accumulation in the Trainer, remote code in a fresh process with
beam-search generation) run in test_models_common.py."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors.torch import load_file
from torch.nn import functional as F
from transformers import AutoConfig, AutoModelForSeq2SeqLM, DataCollatorForSeq2Seq

import hf_bigmodel
from hf_bigmodel.models import ARCHITECTURES
from hf_bigmodel.models.transformer import BigModelTransformerConfig, cpu_kernels_transformer
from hf_bigmodel.models.transformer import modeling_transformer as mt
from hf_bigmodel.testing.model_cases import TRANSFORMER_PAD as PAD
from hf_bigmodel.testing.model_cases import transformer_batch as batch
from hf_bigmodel.testing.model_cases import transformer_config as make_config

HEADS = ARCHITECTURES["transformer"].heads
PRESETS = ARCHITECTURES["transformer"].presets
Seq2Seq = HEADS["seq2seq-lm"]


def _output(out) -> torch.Tensor:
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


# --------------------------------------------------------------------------------------------------------------------
# Registration, config, presets, errors
# --------------------------------------------------------------------------------------------------------------------


def test_config_names_and_num_hidden_layers():
    config = AutoConfig.for_model(
        "bigmodel_transformer",
        vocab_size=100,
        hidden_size=48,
        encoder_layers=3,
        decoder_layers=2,
        num_attention_heads=6,
        intermediate_size=96,
        max_position_embeddings=40,
    )
    assert config.num_hidden_layers == 2 and config.head_dim == 8  # the decoder depth: what caches are sized by
    config.num_hidden_layers = 4
    assert config.decoder_layers == 4 and config.encoder_layers == 3
    assert config.is_encoder_decoder and config.decoder_start_token_id == 1
    assert config.get_text_config(decoder=True).num_hidden_layers == 4
    model = Seq2Seq(config)
    assert len(model.model.encoder.layers) == 3 and len(model.model.decoder.layers) == 4
    assert model.model.decoder.layers[0].fc1.weight.shape == (96, 48)
    assert model.model.decoder.layers[0].self_attn.qkv_proj.weight.shape == (3 * 48, 48)
    assert model.model.decoder.layers[0].encoder_attn.kv_proj.weight.shape == (2 * 48, 48)
    assert model.get_encoder() is model.model.encoder


@pytest.mark.parametrize("task", list(HEADS))
@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_builds(preset, task):
    config = hf_bigmodel.create_config(preset)
    with torch.device("meta"):
        model = HEADS[task](config)
    body = model if task == "base" else model.model
    assert len(body.encoder.layers) == config.encoder_layers and len(body.decoder.layers) == config.decoder_layers
    assert body.shared.weight.shape == (config.vocab_size, config.hidden_size)
    assert body.encoder.layers[0].fc1.weight.shape == (config.intermediate_size, config.hidden_size)


def test_paper_presets():
    base, big = (BigModelTransformerConfig.from_preset(n) for n in ("transformer-base", "transformer-big"))
    assert (base.hidden_size, base.num_attention_heads, base.intermediate_size, base.dropout) == (512, 8, 2048, 0.1)
    assert (big.hidden_size, big.num_attention_heads, big.intermediate_size, big.dropout) == (1024, 16, 4096, 0.3)
    assert base.encoder_layers == base.decoder_layers == big.encoder_layers == 6
    assert not base.pre_norm and base.scale_embedding and base.position_embedding_type == "sinusoidal"
    assert base.label_smoothing == 0.1
    with torch.device("meta"):
        model = Seq2Seq(base)
    # The paper's base model has about 65M parameters (37k shared vocabulary).
    assert 60e6 < model.num_parameters() < 66e6


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"Unknown Transformer preset 'transformer-huge'.*transformer-tiny"):
        BigModelTransformerConfig.from_preset("transformer-huge")


def test_odd_hidden_size_with_sinusoids_raises():
    with pytest.raises(StrictDataclassError, match=r"`hidden_size` must be even, got 33"):
        make_config(hidden_size=33, num_attention_heads=3)
    make_config(hidden_size=33, num_attention_heads=3, position_embedding_type="learned")  # fine without sinusoids


@pytest.mark.parametrize("side", ["source", "target"])
def test_too_long_input_raises(side):
    model = Seq2Seq(make_config()).eval()
    long = torch.randint(3, 100, (1, 65))
    short = long[:, :5]
    kwargs = (
        {"input_ids": long, "decoder_input_ids": short}
        if side == "source"
        else {"input_ids": short, "decoder_input_ids": long}
    )
    with pytest.raises(
        ValueError, match=rf"The {side} is 65 tokens long, more than max_position_embeddings=64.*truncation=True"
    ):
        model(**kwargs)


def test_sinusoidal_table_matches_the_paper_formula():
    table = mt.sinusoidal_table(50, 16, "interleaved")
    pos, i = 37, 3
    angle = pos / 10000 ** (2 * i / 16)
    assert table[pos, 2 * i].item() == pytest.approx(torch.tensor(angle).sin().item(), abs=1e-6)
    assert table[pos, 2 * i + 1].item() == pytest.approx(torch.tensor(angle).cos().item(), abs=1e-6)
    split = mt.sinusoidal_table(50, 16, "split")
    assert torch.equal(split[:, :8], table[:, 0::2]) and torch.equal(split[:, 8:], table[:, 1::2])


# --------------------------------------------------------------------------------------------------------------------
# Forward: attention implementations, outputs, dummy inputs
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides", [{}, {"pre_norm": True, "position_embedding_type": "learned"}], ids=["post", "pre"]
)
def test_eager_equals_sdpa_with_padding(overrides):
    config = make_config(**overrides)
    sdpa = Seq2Seq._from_config(config, attn_implementation="sdpa").eval()
    eager = Seq2Seq._from_config(config, attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    inputs = batch(config)
    with torch.no_grad():
        a, b = sdpa(**inputs), eager(**inputs)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.loss, b.loss)


@pytest.mark.parametrize("case", ["bool-mask", "causal", "float-mask", "no-mask"])
def test_math_attention_equals_sdpa(case):
    query, key, value = (torch.randn(2, 4, 6, 8, requires_grad=True) for _ in range(3))
    mask = torch.rand(2, 1, 6, 6) > 0.3
    mask[..., 0] = True  # every query sees a key
    sdpa_mask = {"bool-mask": mask, "float-mask": torch.zeros(2, 1, 6, 6).masked_fill(~mask, float("-inf"))}
    attn_mask = sdpa_mask.get(case)
    expected = F.scaled_dot_product_attention(query, key, value, attn_mask, is_causal=case == "causal", scale=0.3)
    got = cpu_kernels_transformer.math_attention(query, key, value, attn_mask, 0.3, 0.0, is_causal=case == "causal")
    torch.testing.assert_close(got, expected.transpose(1, 2), rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(got.sum(), (query, key, value))
    for grad, reference in zip(grads, torch.autograd.grad(expected.sum(), (query, key, value))):
        torch.testing.assert_close(grad, reference, rtol=1e-5, atol=1e-5)


def test_training_with_attention_dropout_runs_and_is_stochastic():
    config = make_config(attention_dropout=0.5, dropout=0.1)
    model = Seq2Seq(config).train()
    inputs = batch(config)
    first, second = model(**inputs).loss, model(**inputs).loss
    assert torch.isfinite(first) and first.item() != second.item()
    first.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_padding_does_not_change_a_row():
    config = make_config()
    model = Seq2Seq(config).eval()
    inputs = batch(config, src_lengths=(7, 4), tgt_lengths=(5, 5))
    with torch.no_grad():
        both = model(**inputs).logits
        alone = model(input_ids=inputs["input_ids"][1:, :4], labels=inputs["labels"][1:]).logits
    torch.testing.assert_close(both[1], alone[0], rtol=1e-5, atol=1e-5)


def test_attentions_and_hidden_states():
    config = make_config()
    model = Seq2Seq._from_config(config, attn_implementation="eager").eval()
    inputs = batch(config)
    out = model(**inputs, output_attentions=True, output_hidden_states=True)
    n_layers = config.encoder_layers
    assert len(out.encoder_hidden_states) == n_layers + 1 and len(out.decoder_hidden_states) == n_layers + 1
    assert len(out.encoder_attentions) == len(out.decoder_attentions) == len(out.cross_attentions) == n_layers
    assert out.encoder_attentions[0].shape == (2, 4, 7, 7)
    assert out.decoder_attentions[0].shape == (2, 4, 5, 5)
    assert out.cross_attentions[0].shape == (2, 4, 5, 7)
    # Padded source positions get no cross-attention; the decoder never attends to later positions.
    assert torch.all(out.cross_attentions[0][1, :, :, 4:] == 0)
    assert torch.all(out.decoder_attentions[0][0].triu(1) == 0)
    assert torch.equal(out.encoder_hidden_states[-1], out.encoder_last_hidden_state)
    tuple_out = model(**inputs, return_dict=False)
    assert isinstance(tuple_out, tuple) and torch.equal(tuple_out[1], out.logits)


@pytest.mark.parametrize("task", list(HEADS))
def test_dummy_inputs_forward(task):
    model = HEADS[task](make_config()).eval()
    assert set(model.dummy_inputs) >= {"input_ids", "decoder_input_ids"}
    out = model(**model.dummy_inputs)
    assert _output(out).shape[:2] == (2, 3)


# --------------------------------------------------------------------------------------------------------------------
# Tying switches
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("share", [True, False], ids=["shared", "separate"])
def test_embedding_switches_survive_save_and_load(tmp_path, tie, share):
    model = Seq2Seq(make_config(tie_word_embeddings=tie, share_encoder_decoder_embeddings=share)).eval()

    def ties(m):
        enc, dec, head = m.model.encoder.embed_tokens.weight, m.model.decoder.embed_tokens.weight, m.lm_head.weight
        return (enc is dec, head is dec)

    assert ties(model) == (share, tie)
    assert hasattr(model.model, "shared") == share
    model.save_pretrained(tmp_path)
    stored = set(load_file(tmp_path / "model.safetensors"))
    embeddings = {k for k in stored if "embed_tokens" in k or "shared" in k or k.startswith("lm_head")}
    expected = (
        {"model.shared.weight"}
        if share
        else {"model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"}
    )
    assert embeddings == expected | (set() if tie else {"lm_head.weight"})
    loaded, info = AutoModelForSeq2SeqLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values())
    assert ties(loaded) == (share, tie)
    saved = model.state_dict()
    assert all(torch.equal(tensor, saved[name]) for name, tensor in loaded.state_dict().items())
    inputs = batch(model.config)
    with torch.no_grad():
        # The same weights, but the loaded ones sit in memory-mapped safetensors at 8-byte alignment, and MKL's batched
        # product (`few_rows_linear`, on these few rows) rounds differently on unaligned data: equal to float rounding.
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------------------------------


def test_labels_are_not_shifted_and_eval_loss_is_plain_cross_entropy():
    config = make_config(label_smoothing=0.1)
    model = Seq2Seq(config).eval()
    inputs = batch(config)
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(inputs["labels"])
    assert torch.equal(decoder_input_ids[:, 0], torch.full((2,), config.decoder_start_token_id))
    assert torch.equal(decoder_input_ids[0, 1:5], inputs["labels"][0, :4])
    assert decoder_input_ids[1, 4].item() == PAD  # -100 became pad
    with torch.no_grad():
        out = model(**inputs)
        explicit = model(**inputs, decoder_input_ids=decoder_input_ids)
    expected = F.cross_entropy(out.logits.flatten(0, 1), inputs["labels"].flatten(), ignore_index=-100)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.equal(explicit.logits, out.logits)
    # transformers' default loss for *ForConditionalGeneration would shift the labels again: a different number.
    shifted = F.cross_entropy(out.logits[:, :-1].flatten(0, 1), inputs["labels"][:, 1:].flatten(), ignore_index=-100)
    assert abs(shifted.item() - out.loss.item()) > 1e-3


@pytest.mark.parametrize("chunk_elements", [2**21, 300], ids=["one-chunk", "many-chunks"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_training_loss_and_grads_equal_torch_label_smoothed_cross_entropy(monkeypatch, chunk_elements, smoothing):
    monkeypatch.setattr(cpu_kernels_transformer, "LOSS_CHUNK_ELEMENTS", chunk_elements)
    config = make_config(label_smoothing=smoothing)
    model = Seq2Seq(config).train()  # dropout 0 in the tiny preset: train and eval compute the same function
    # The reference runs in eval mode: full padded computation, full logits, torch's loss. Ours in training mode
    # skips padding (TokenPacking) and computes logits for labelled positions only.
    reference = Seq2Seq(config).eval()
    reference.load_state_dict(model.state_dict())
    inputs = batch(config)
    out = model(**inputs)
    assert out.logits is None  # training with labels: logits only for labelled positions, inside the loss
    logits = reference(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        decoder_input_ids=reference.prepare_decoder_input_ids_from_labels(inputs["labels"]),
    ).logits
    expected = F.cross_entropy(
        logits.flatten(0, 1), inputs["labels"].flatten(), ignore_index=-100, label_smoothing=smoothing
    )
    torch.testing.assert_close(out.loss, expected, rtol=1e-6, atol=1e-6)
    out.loss.backward()
    expected.backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-5, msg=name)


def test_bf16_autocast_loss_is_close_to_fp32():
    config = make_config(label_smoothing=0.1)
    model = Seq2Seq(config).train()
    inputs = batch(config)
    fp32 = model(**inputs).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model(**inputs).loss
    assert bf16.dtype == torch.float32
    assert bf16.item() == pytest.approx(fp32.item(), rel=2e-2)
    bf16.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_num_items_in_batch_divides_the_sum():
    config = make_config(label_smoothing=0.1)
    model = Seq2Seq(config).train()
    inputs = batch(config)
    mean = model(**inputs).loss
    total = model(**inputs, num_items_in_batch=torch.tensor(20)).loss
    labelled = (inputs["labels"] != -100).sum().item()
    assert total.item() == pytest.approx(mean.item() * labelled / 20, rel=1e-6)


def test_data_collator_builds_decoder_inputs():
    model = Seq2Seq(make_config())
    features = [{"input_ids": [5, 6, 2], "labels": [7, 8, 9, 2]}, {"input_ids": [5, 2], "labels": [7, 2]}]

    class _Pad:  # the collator only needs pad() from the tokenizer for this
        padding_side = "right"
        pad_token_id = PAD

        def pad(self, features, return_tensors=None, **kwargs):
            width = max(len(f["input_ids"]) for f in features)
            ids = torch.tensor([f["input_ids"] + [PAD] * (width - len(f["input_ids"])) for f in features])
            out = {"input_ids": ids, "attention_mask": (ids != PAD).long()}
            if "labels" in features[0]:
                out["labels"] = torch.tensor([f["labels"] for f in features])
            return out

    collated = DataCollatorForSeq2Seq(_Pad(), model=model)(features)
    assert collated["labels"].tolist() == [[7, 8, 9, 2], [7, 2, -100, -100]]
    assert collated["decoder_input_ids"].tolist() == [[1, 7, 8, 9], [1, 7, 2, PAD]]


# --------------------------------------------------------------------------------------------------------------------
# Model card
# --------------------------------------------------------------------------------------------------------------------


def test_model_card(tmp_path):
    from hf_bigmodel.publish.card import build_model_card

    Seq2Seq(make_config()).save_pretrained(tmp_path)
    card = build_model_card(tmp_path, repo_id="someone/tiny-transformer")
    assert card.metadata["pipeline_tag"] == "translation"
    assert {"transformer", "seq2seq", "custom_code"} <= set(card.metadata["tags"])
    assert "| Layers | 2 encoder + 2 decoder |" in card.text
    assert "post-norm (as the paper)" in card.text and "Attention Is All You Need" in card.text
    assert 'AutoModelForSeq2SeqLM.from_pretrained("someone/tiny-transformer", trust_remote_code=True)' in card.text
    assert "--to marian" in card.text  # default settings convert to stock MarianMTModel
    Seq2Seq(make_config(pre_norm=True)).save_pretrained(tmp_path / "pre")
    assert "--to marian" not in build_model_card(tmp_path / "pre").text


# --------------------------------------------------------------------------------------------------------------------
# Benchmark smoke test
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_benchmark_quick_mode_runs():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_transformer_train.py"
    result = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    ratios = re.findall(r": ([0-9.]+)x +not judged", result.stdout)
    assert len(ratios) == 2 and all(float(r) > 0 for r in ratios), result.stdout
