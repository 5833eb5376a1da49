"""Conversion between stock `MarianMTModel` folders and `bigmodel_transformer`: identical logits and beam outputs
both ways (with final_logits_bias, each embedding-sharing setting), side files copied, refusals that name the
offending setting, and the `hf-bigmodel convert` command."""

import json

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, MarianConfig, MarianMTModel
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from hf_bigmodel.conversion.common import ConversionError
from hf_bigmodel.conversion.convert_transformer import (
    convert_bigmodel_to_marian,
    convert_marian_to_bigmodel,
    marian_config_to_bigmodel,
)
from hf_bigmodel.convert import main as convert_main
from hf_bigmodel.convert import resolve_route
from hf_bigmodel.models.transformer import (
    BigModelTransformerConfig,
    BigModelTransformerForConditionalGeneration,
    cpu_kernels_transformer,
)

PAD = 98


def marian_model(**overrides) -> MarianMTModel:
    config = MarianConfig(
        **{
            "vocab_size": 99,
            "d_model": 32,
            "encoder_layers": 2,
            "decoder_layers": 2,
            "encoder_attention_heads": 4,
            "decoder_attention_heads": 4,
            "encoder_ffn_dim": 64,
            "decoder_ffn_dim": 64,
            "max_position_embeddings": 64,
            "pad_token_id": PAD,
            "eos_token_id": 0,
            "decoder_start_token_id": PAD,
            "scale_embedding": True,
            "activation_function": "swish",
            "init_std": 0.1,
            **overrides,
        }
    )
    model = MarianMTModel(config).eval()
    with torch.no_grad():
        model.final_logits_bias.normal_()  # exercised: a converted model must keep it
    return model


def inputs() -> dict[str, torch.Tensor]:
    ids = torch.randint(1, PAD, (2, 9))
    ids[1, 6:] = PAD
    return {
        "input_ids": ids,
        "attention_mask": (ids != PAD).long(),
        "decoder_input_ids": torch.randint(1, PAD, (2, 5)),
    }


def assert_same_function(a, b) -> None:
    batch = inputs()
    with torch.no_grad():
        torch.testing.assert_close(a(**batch).logits, b(**batch).logits, rtol=1e-5, atol=1e-5)
    src = {k: batch[k] for k in ("input_ids", "attention_mask")}
    beams = dict(num_beams=3, num_return_sequences=2, max_new_tokens=10)
    assert torch.equal(a.generate(**src, **beams), b.generate(**src, **beams))


@pytest.mark.parametrize(
    "overrides",
    [{}, {"share_encoder_decoder_embeddings": False}, {"tie_word_embeddings": False}, {"scale_embedding": False}],
    ids=["shared-tied", "separate", "untied", "unscaled"],
)
def test_marian_to_bigmodel_and_back(tmp_path, overrides):
    marian = marian_model(**overrides)
    marian.save_pretrained(tmp_path / "marian")
    for name in ("source.spm", "target.spm", "vocab.json"):
        (tmp_path / "marian" / name).write_text("tokenizer file\n")

    convert_marian_to_bigmodel(tmp_path / "marian", tmp_path / "ours")
    ours = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ours", trust_remote_code=False).eval()
    assert type(ours) is BigModelTransformerForConditionalGeneration
    assert ours.config.lm_head_bias and ours.config.sinusoidal_layout == "split"
    # transformers shares Marian's embeddings only together with tie_word_embeddings: convert what it really does.
    marian_shares = marian.model.encoder.embed_tokens.weight is marian.model.decoder.embed_tokens.weight
    assert ours.config.share_encoder_decoder_embeddings == marian_shares
    for name in ("source.spm", "target.spm", "vocab.json", "generation_config.json"):
        assert (tmp_path / "ours" / name).is_file(), name
    assert_same_function(marian, ours)

    convert_bigmodel_to_marian(tmp_path / "ours", tmp_path / "back")
    back = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "back").eval()
    assert type(back) is MarianMTModel
    assert_same_function(marian, back)


def test_training_loss_and_grads_equal_marian(tmp_path):
    marian = marian_model(dropout=0.0)
    marian.save_pretrained(tmp_path / "marian")
    convert_marian_to_bigmodel(tmp_path / "marian", tmp_path / "ours")
    ours = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ours")
    batch = inputs()
    labels = torch.randint(1, PAD, (2, 6))
    labels[0, 4:] = -100  # padded targets: ours skips them (and the padded source) while training
    losses = []
    for model in (marian.train(), ours.train()):
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    # Marian's embedding has padding_idx (its pad row, also its decoder start, gets no gradient through lookups);
    # ours has none. Every other row gets the same gradient.
    rows = torch.arange(marian.config.vocab_size) != PAD
    torch.testing.assert_close(
        ours.model.shared.weight.grad[rows], marian.model.shared.weight.grad[rows], rtol=1e-4, atol=1e-6
    )
    for name in ("fc1", "self_attn_layer_norm"):
        ours_grad = getattr(ours.model.encoder.layers[0], name).weight.grad
        torch.testing.assert_close(
            ours_grad, getattr(marian.model.encoder.layers[0], name).weight.grad, rtol=1e-4, atol=1e-6
        )
    q, k, v = (getattr(marian.model.decoder.layers[1].self_attn, f"{n}_proj").weight.grad for n in "qkv")
    torch.testing.assert_close(
        ours.model.decoder.layers[1].self_attn.qkv_proj.weight.grad, torch.cat([q, k, v]), rtol=1e-4, atol=1e-6
    )


def test_zero_logits_bias_gives_no_bias(tmp_path):
    marian = marian_model()
    with torch.no_grad():
        marian.final_logits_bias.zero_()
    marian.save_pretrained(tmp_path / "marian")
    convert_marian_to_bigmodel(tmp_path / "marian", tmp_path / "ours")
    ours = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ours").eval()
    assert ours.lm_head.bias is None
    assert_same_function(marian, ours)


# --------------------------------------------------------------------------------------------------------------------
# Decoding: the threaded few-row products and the beam-search cache update give Marian's tokens
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def threads():
    """`threads(n)` sets torch's intra-op threads for the test; the previous count comes back afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def padded_sources(batch: int) -> dict[str, torch.Tensor]:
    """`batch` right-padded sources of 3 to 11 tokens."""
    lengths = torch.randint(3, 12, (batch,))
    ids = torch.randint(1, PAD, (batch, int(lengths.max())))
    mask = (torch.arange(ids.shape[1]) < lengths[:, None]).long()
    return {"input_ids": ids.masked_fill(mask == 0, PAD), "attention_mask": mask}


@pytest.mark.parametrize("thread_count", [1, 2, 3])  # 3: weight blocks with rows left over (vocab 99)
@pytest.mark.parametrize("batch", [1, 16])
def test_beam_search_and_greedy_equal_marian(tmp_path, monkeypatch, threads, batch, thread_count):
    """generate(num_beams=5) and greedy decoding give MarianMTModel's tokens at the converted config. At batch 1 the
    5 beams (5 rows a step) go through `few_rows_linear`; at batch 16 (80 rows) the products stay with linear().
    Untied output projection and a small logits bias: otherwise a random model repeats one token."""
    marian = marian_model(tie_word_embeddings=False)
    with torch.no_grad():
        marian.final_logits_bias.mul_(0.1)
    marian.save_pretrained(tmp_path / "marian")
    convert_marian_to_bigmodel(tmp_path / "marian", tmp_path / "ours")
    ours = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ours").eval()
    split_rows = []
    split = cpu_kernels_transformer.few_rows_linear
    monkeypatch.setattr(
        cpu_kernels_transformer, "few_rows_linear", lambda x, *rest: split_rows.append(x.shape) or split(x, *rest)
    )
    threads(thread_count)
    src = padded_sources(batch)
    beams = dict(num_beams=5, max_new_tokens=12)
    expected = marian.generate(**src, **beams)
    got = ours.generate(**src, **beams)
    assert torch.equal(got, expected)
    both = dict(
        num_beams=5, num_return_sequences=5, max_new_tokens=12, return_dict_in_generate=True, output_scores=True
    )
    expected, got = marian.generate(**src, **both), ours.generate(**src, **both)
    assert torch.equal(got.sequences, expected.sequences)  # every beam, not only the best
    assert len(set(got.sequences[:5, 1:].flatten().tolist())) > 8  # not a degenerate repetition
    torch.testing.assert_close(got.sequences_scores, expected.sequences_scores, rtol=1e-5, atol=1e-5)
    greedy = dict(do_sample=False, max_new_tokens=12)
    assert torch.equal(ours.generate(**src, **greedy), marian.generate(**src, **greedy))
    decoding_step = (5 * batch, 1, ours.config.hidden_size)
    assert (decoding_step in split_rows) == (batch == 1)
    assert any("_thread_blocks_cache" in module.__dict__ for module in ours.modules())
    ours.double()  # `.to()` lets the cached weight views of the old tensors go
    assert not any("_thread_blocks_cache" in module.__dict__ for module in ours.modules())


def test_beam_search_reorders_only_the_self_attention_cache(monkeypatch):
    """Beams move within their source sentence, whose cross-attention keys and values every beam shares: beam search
    gathers the self-attention cache only, and the tokens are those of reordering both (Marian's)."""
    ours = BigModelTransformerForConditionalGeneration(
        marian_config_to_bigmodel(marian_model(tie_word_embeddings=False).config, False)
    ).eval()
    src = padded_sources(3)
    beams = dict(num_beams=4, max_new_tokens=8)
    reordered = []
    cross_cache_class = type(EncoderDecoderCache(DynamicCache(), DynamicCache()).cross_attention_cache)
    real = cross_cache_class.reorder_cache
    monkeypatch.setattr(
        cross_cache_class, "reorder_cache", lambda cache, idx: reordered.append(cache) or real(cache, idx)
    )
    fast = ours.generate(**src, **beams)
    assert len(reordered) == 8 and len(set(map(id, reordered))) == 1  # after each step, one of the two caches
    reordered.clear()
    with monkeypatch.context() as patch:
        patch.delattr(BigModelTransformerForConditionalGeneration, "_reorder_cache")  # transformers' default
        assert torch.equal(ours.generate(**src, **beams), fast)
    assert len(reordered) == 16 and len(set(map(id, reordered))) == 2  # both caches


def test_model_trained_from_scratch_exports_to_marian(tmp_path):
    config = BigModelTransformerConfig.from_preset(
        "transformer-tiny", vocab_size=99, pad_token_id=PAD, decoder_start_token_id=PAD, eos_token_id=0
    )
    ours = BigModelTransformerForConditionalGeneration(config).eval()
    ours.save_pretrained(tmp_path / "ours")
    convert_bigmodel_to_marian(tmp_path / "ours", tmp_path / "marian")
    marian = MarianMTModel.from_pretrained(tmp_path / "marian").eval()
    assert json.loads((tmp_path / "marian" / "config.json").read_text())["model_type"] == "marian"
    assert_same_function(ours, marian)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(pre_norm=True), r"pre_norm=True \(Marian is post-norm"),
        (dict(sinusoidal_layout="interleaved"), r"sinusoidal_layout='interleaved' \(Marian's table is 'split'"),
        (dict(position_embedding_type="learned"), r"position_embedding_type='learned'"),
    ],
    ids=["pre-norm", "interleaved", "learned"],
)
def test_export_refuses_what_marian_cannot_express(tmp_path, overrides, message):
    BigModelTransformerForConditionalGeneration(
        BigModelTransformerConfig.from_preset("transformer-tiny", **overrides)
    ).save_pretrained(tmp_path / "ours")
    with pytest.raises(ConversionError, match=rf"Cannot export to stock Marian: .*{message}.*trust_remote_code"):
        convert_bigmodel_to_marian(tmp_path / "ours", tmp_path / "marian")
    assert not (tmp_path / "marian").exists()


def test_import_refuses_what_we_cannot_express(tmp_path):
    marian_model(decoder_attention_heads=2, decoder_ffn_dim=48).save_pretrained(tmp_path / "marian")
    with pytest.raises(
        ConversionError,
        match=r"encoder_attention_heads=4 != decoder_attention_heads=2.*encoder_ffn_dim=64 != decoder_ffn_dim=48",
    ):
        convert_marian_to_bigmodel(tmp_path / "marian", tmp_path / "ours")


def test_base_model_checkpoint_is_refused(tmp_path):
    from hf_bigmodel.models.transformer import BigModelTransformerModel

    BigModelTransformerModel(BigModelTransformerConfig.from_preset("transformer-tiny")).save_pretrained(tmp_path / "b")
    with pytest.raises(ConversionError, match=r"BigModelTransformerModel checkpoint: only .*ForConditionalGeneration"):
        convert_bigmodel_to_marian(tmp_path / "b", tmp_path / "marian")


def test_cli_picks_the_direction(tmp_path, capsys):
    marian = marian_model()
    marian.save_pretrained(tmp_path / "marian")
    assert resolve_route(tmp_path / "marian").target == "bigmodel_transformer"
    assert convert_main([str(tmp_path / "marian"), str(tmp_path / "ours")]) == 0
    assert "(marian) ->" in capsys.readouterr().out
    assert resolve_route(tmp_path / "ours").target == "marian"
    assert convert_main([str(tmp_path / "ours"), str(tmp_path / "back")]) == 0
    assert "AutoModelForSeq2SeqLM.from_pretrained" in capsys.readouterr().out
    assert convert_main([str(tmp_path / "ours"), str(tmp_path / "back")]) == 2  # DST not empty
    assert "pass --overwrite" in capsys.readouterr().err
