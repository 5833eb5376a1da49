"""The zoo's models next to the stock transformers models of the same shape, in the tools users combine them with
(issue 14): the old `past_key_values=` keyword, bfloat16 loading, padding-free packed rows, PEFT's default target
modules, dynamic quantization, and config errors. Each test runs the same step on a tiny stock model (GPT-2, BERT,
Marian) where stock has a behaviour to match, and fails where ours differs.
"""

import warnings

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    MarianConfig,
    MarianMTModel,
)

from hf_bigmodel.models import ARCHITECTURES

peft = pytest.importorskip("peft")


def _tiny(arch: str, task: str, **overrides):
    row = ARCHITECTURES[arch]
    config = row.config_class.from_preset(f"{arch}-tiny", **overrides)
    return row.heads[task](config).eval()


def _stock(arch: str):
    """The tiny stock model of the same shape as `_tiny(arch, ...)`'s."""
    if arch == "gpt":
        return GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=256, n_positions=128)).eval()
    if arch == "bert":
        config = BertConfig(
            vocab_size=256, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
        )
        return BertForSequenceClassification(config).eval()
    config = MarianConfig(
        vocab_size=128,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=0,
        decoder_start_token_id=0,
    )
    return MarianMTModel(config).eval()


# --------------------------------------------------------------------------------------------------------------------
# 1. the pre-5.x keyword `past_key_values=`
# --------------------------------------------------------------------------------------------------------------------


def _decoder_inputs(model, ids: torch.Tensor) -> dict:
    if model.config.is_encoder_decoder:
        source = torch.arange(5, 10).expand(ids.shape[0], 5)  # the same source for every call
        return {"input_ids": source, "decoder_input_ids": ids}
    return {"input_ids": ids}


def _step_inputs(model, prefix: dict, ids: torch.Tensor) -> dict:
    if model.config.is_encoder_decoder:
        return {"input_ids": prefix["input_ids"], "decoder_input_ids": ids}
    return {"input_ids": ids}


@pytest.mark.parametrize("arch,task", [("gpt", "causal-lm"), ("transformer", "seq2seq-lm")])
def test_old_past_key_values_keyword_decodes_with_the_cache(arch, task):
    """A hand-written decoding loop that passes the cache as `past_key_values=` gets the logits of the full forward
    (with a FutureWarning), as stock models do; before, ours ignored the keyword and decoded without the cache."""
    for model in (_tiny(arch, task), _stock(arch)):
        ids = torch.randint(3, 100, (1, 6))
        full = model(**_decoder_inputs(model, ids)).logits
        prefix = _decoder_inputs(model, ids[:, :4])
        cache = model(**prefix, use_cache=True).cache
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step = model(**_step_inputs(model, prefix, ids[:, 4:5]), past_key_values=cache).logits
        torch.testing.assert_close(step[:, -1], full[:, 4], rtol=1e-4, atol=1e-4)
        assert any("past_key_values" in str(w.message) for w in caught), type(model).__name__


def test_peft_prefix_tuning_reaches_the_attention():
    """PEFT prefix tuning passes its virtual tokens' keys and values as `past_key_values=`: its output must be the
    model's output with that prefix passed as `cache=` (it was the output without the prefix when the keyword was
    ignored), for ours as for GPT-2."""
    for model in (_tiny("gpt", "causal-lm"), _stock("gpt")):
        ids = torch.randint(3, 100, (1, 6))
        config = peft.PrefixTuningConfig(task_type=peft.TaskType.CAUSAL_LM, num_virtual_tokens=3)
        tuned = peft.get_peft_model(model, config)
        with torch.no_grad():
            for parameter in tuned.prompt_encoder.parameters():
                parameter.normal_()
        out = tuned(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        prefix = tuned.get_prompt(batch_size=1)
        expected = model(input_ids=ids, attention_mask=torch.ones(1, 3 + 6, dtype=torch.long), cache=prefix).logits
        torch.testing.assert_close(out, expected)
        assert not torch.allclose(out, model(ids).logits, atol=1e-3), type(model).__name__


# --------------------------------------------------------------------------------------------------------------------
# 3. loading in bfloat16
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["dtype", "saved"])
def test_transformer_runs_after_loading_in_bfloat16(tmp_path, how):
    """`from_pretrained(dtype=torch.bfloat16)` and a folder saved in bfloat16 both run and generate, as Marian does;
    the fixed sinusoidal table stays float32 and is cast where it is added."""
    model = _tiny("transformer", "seq2seq-lm")
    if how == "dtype":
        model.save_pretrained(tmp_path)
        loaded = type(model).from_pretrained(tmp_path, dtype=torch.bfloat16)
    else:
        model.to(torch.bfloat16).save_pretrained(tmp_path)
        loaded = type(model).from_pretrained(tmp_path)
    assert loaded.dtype == torch.bfloat16
    inputs = loaded.dummy_inputs
    logits = loaded(**inputs).logits
    assert logits.dtype == torch.bfloat16
    reference = model.float()(**inputs).logits
    torch.testing.assert_close(logits.float(), reference, rtol=0.1, atol=0.1)  # bfloat16 rounding only
    assert (
        loaded.generate(inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=3).shape[0] == 2
    )


# --------------------------------------------------------------------------------------------------------------------
# 4. padding-free packed rows (TRL's packing=True)
# --------------------------------------------------------------------------------------------------------------------


def test_packed_row_longer_than_max_positions_runs_like_gpt2():
    """A row of two packed sequences (100 + 60 tokens, max_position_embeddings=128) with restarting position_ids runs,
    as GPT-2 runs it; the first sequence's logits are those it has alone."""
    ids = torch.randint(3, 200, (1, 160))
    position_ids = torch.cat([torch.arange(100), torch.arange(60)]).unsqueeze(0)
    for model in (_tiny("gpt", "causal-lm"), _stock("gpt")):
        assert model.config.max_position_embeddings == 128
        logits = model(ids, position_ids=position_ids).logits
        assert logits.shape == (1, 160, model.config.vocab_size)
        torch.testing.assert_close(logits[:, :100], model(ids[:, :100]).logits, rtol=1e-4, atol=1e-4)


def test_packed_row_with_an_invalid_position_is_refused():
    model = _tiny("gpt", "causal-lm")
    ids = torch.randint(3, 200, (1, 10))
    with pytest.raises(ValueError, match=r"position_ids go up to 130, beyond max_position_embeddings=128"):
        model(ids, position_ids=torch.arange(121, 131).unsqueeze(0))
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=128"):
        model(torch.randint(3, 200, (1, 129)))  # without position_ids the row is one sequence: still refused


# --------------------------------------------------------------------------------------------------------------------
# 7. PEFT's default target modules
# --------------------------------------------------------------------------------------------------------------------

PEFT_CASES = {
    "gpt": ("causal-lm", peft.TaskType.CAUSAL_LM),
    "bert": ("sequence-classification", peft.TaskType.SEQ_CLS),
    "transformer": ("seq2seq-lm", peft.TaskType.SEQ_2_SEQ_LM),
}


@pytest.mark.parametrize("arch", [name for name in ARCHITECTURES if name in PEFT_CASES])
def test_lora_without_target_modules_adapts_the_attention(arch):
    """`LoraConfig(task_type=...)` alone works, as for the stock model: LoRA lands on the attention projections and
    starts as the identity (B = 0). Stock Marian has no entry in PEFT's table (BART has, `q_proj`/`v_proj`): ours
    follows BART's, so the Transformer is checked alone."""
    task, task_type = PEFT_CASES[arch]
    for model in (_tiny(arch, task), _stock(arch)) if arch != "transformer" else (_tiny(arch, task),):
        inputs = _decoder_inputs(model, torch.randint(3, 100, (2, 6)))
        before = model(**inputs).logits
        tuned = peft.get_peft_model(model, peft.LoraConfig(task_type=task_type, r=4))
        adapted = {name.rsplit(".", 1)[-1] for name, module in tuned.named_modules() if hasattr(module, "lora_A")}
        assert adapted, type(model).__name__
        if model.config.model_type.startswith("bigmodel"):
            assert adapted <= {"qkv_proj", "q_proj", "kv_proj"}
        torch.testing.assert_close(tuned(**inputs).logits, before)


def test_every_text_architecture_has_peft_targets():
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as table

    for name, row in ARCHITECTURES.items():
        if name != "resnet":  # stock ResNet has no entry either: image models name their targets
            assert row.model_type in table, name


# --------------------------------------------------------------------------------------------------------------------
# 9. config errors
# --------------------------------------------------------------------------------------------------------------------

BAD_FIELDS = {
    "gpt": dict(hidden_size=30),
    "bert": dict(hidden_size=30),
    "transformer": dict(hidden_size=30),
    "resnet": dict(embedding_size=0),
}


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_inconsistent_config_raises_a_value_error(arch, tmp_path):
    """`except ValueError` catches a bad config, and so does `except StrictDataclassError` (what Llama's config
    raises); the message names the field. The check also runs before `save_pretrained`."""
    assert arch in BAD_FIELDS, f"add a bad field for {arch} to BAD_FIELDS"
    row = ARCHITECTURES[arch]
    field = next(iter(BAD_FIELDS[arch]))
    with pytest.raises(ValueError, match=f"`{field}`") as caught:
        row.config_class.from_preset(f"{arch}-tiny", **BAD_FIELDS[arch])
    assert isinstance(caught.value, StrictDataclassError)
    config = row.config_class.from_preset(f"{arch}-tiny")
    setattr(config, field, BAD_FIELDS[arch][field])
    with pytest.raises(ValueError, match=f"`{field}`"):
        config.save_pretrained(tmp_path)


# --------------------------------------------------------------------------------------------------------------------
# 5. dynamic quantization
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch,task", [("gpt", "causal-lm"), ("bert", "sequence-classification")])
def test_quantize_dynamic_replaces_every_linear_layer(arch, task):
    """`torch.ao.quantization.quantize_dynamic` matches exact `nn.Linear` types: it must replace every linear layer
    of ours, as of GPT-2 (whose Conv1D it skips) and BERT, and the quantized model stays close to the float one and
    generates."""
    from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear

    model = _tiny(arch, task)
    linear_names = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    ids = torch.randint(3, 200, (2, 8))
    with torch.no_grad():
        expected = model(ids).logits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization's own deprecation notice
        quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    modules = dict(quantized.named_modules())
    assert linear_names and all(isinstance(modules[name], QuantizedLinear) for name in linear_names)
    with torch.no_grad():
        torch.testing.assert_close(quantized(ids).logits, expected, rtol=0.1, atol=0.1)
    if arch == "gpt":
        assert quantized.generate(ids[:1], max_new_tokens=3, do_sample=False).shape == (1, 11)


def test_few_rows_path_steps_aside_for_hooks_and_wrappers(monkeypatch):
    """The GPT's fast decoding products apply only to a plain `nn.Linear`: a layer with a forward hook (accelerate,
    FSDP) or a quantized one runs its own forward, so the hook sees every call."""
    from hf_bigmodel.models.gpt import cpu_kernels_gpt

    layer = torch.nn.Linear(24, 48)
    x = torch.randn(1, 24)
    calls = []
    real = cpu_kernels_gpt.few_rows_linear
    monkeypatch.setattr(cpu_kernels_gpt, "few_rows_linear", lambda *args: calls.append(1) or real(*args))
    with torch.no_grad():
        torch.testing.assert_close(cpu_kernels_gpt.fast_linear(layer, x), layer(x), rtol=1e-5, atol=1e-5)
        assert calls == [1]
        seen = []
        layer.register_forward_hook(lambda module, args, out: seen.append(out.shape))
        cpu_kernels_gpt.fast_linear(layer, x)
    assert calls == [1] and seen == [(1, 48)]


# --------------------------------------------------------------------------------------------------------------------
# 2. accelerate: disk offload
# --------------------------------------------------------------------------------------------------------------------

OFFLOAD_CASES = {
    "gpt": "causal-lm",
    "bert": "sequence-classification",
    "transformer": "seq2seq-lm",
    "resnet": "image-classification",
}


def _inputs(arch: str, model) -> dict:
    if arch == "resnet":
        return {"pixel_values": torch.randn(2, model.config.num_channels, 32, 32)}
    if arch == "transformer":
        return model.dummy_inputs
    return {"input_ids": torch.randint(3, 200, (2, 7))}


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_disk_offloaded_model_gives_the_same_outputs(arch, tmp_path):
    """`from_pretrained(device_map="auto", max_memory=..., offload_folder=...)` with every weight on disk: accelerate's
    hooks load each module's weights when its forward runs, so nothing may read a weight outside its module's
    forward (BERT's position slice and ResNet's BatchNorm folding did). The output equals the model in memory."""
    assert arch in OFFLOAD_CASES, f"add {arch}'s head to OFFLOAD_CASES"
    model = _tiny(arch, OFFLOAD_CASES[arch])
    model.save_pretrained(tmp_path / "model")
    inputs = _inputs(arch, model)
    with torch.no_grad():
        expected = model(**inputs).logits
        offloaded = type(model).from_pretrained(
            tmp_path / "model", device_map="auto", max_memory={"cpu": 1000}, offload_folder=tmp_path / "offload"
        )
        assert set(offloaded.hf_device_map.values()) == {"disk"}
        torch.testing.assert_close(offloaded(**inputs).logits, expected)


def test_stock_bert_runs_disk_offloaded(tmp_path):
    """The behaviour ours must match: stock BERT runs with every weight on disk."""
    model = _stock("bert")
    model.save_pretrained(tmp_path / "model")
    inputs = {"input_ids": torch.randint(3, 200, (2, 7))}
    with torch.no_grad():
        expected = model(**inputs).logits
        offloaded = type(model).from_pretrained(
            tmp_path / "model", device_map="auto", max_memory={"cpu": 1000}, offload_folder=tmp_path / "offload"
        )
        torch.testing.assert_close(offloaded(**inputs).logits, expected)


# --------------------------------------------------------------------------------------------------------------------
# 6. the legacy ONNX exporter
# --------------------------------------------------------------------------------------------------------------------


class _Seq2SeqLogits(torch.nn.Module):
    """(input_ids, attention_mask, decoder_input_ids) -> logits, the signature an ONNX graph takes."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, decoder_input_ids):
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids, use_cache=False
        ).logits


def test_transformer_exports_with_the_legacy_onnx_exporter(tmp_path):
    """`torch.onnx.export(..., dynamo=False)` exports ours as it exports Marian (it failed on `aten::diff`, from the
    packed-sequence detection that the decoder's causal mask ran on its always-contiguous positions)."""
    onnx = pytest.importorskip("onnx")
    ours = _tiny("transformer", "seq2seq-lm")
    inputs = ours.dummy_inputs
    for name, model in (("ours", ours), ("marian", _stock("transformer"))):
        path = tmp_path / f"{name}.onnx"
        args = (inputs["input_ids"], inputs["attention_mask"], inputs["decoder_input_ids"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's tracer warnings
            torch.onnx.export(_Seq2SeqLogits(model), args, str(path), dynamo=False, opset_version=17)
        onnx.checker.check_model(onnx.load(str(path)))


# --------------------------------------------------------------------------------------------------------------------
# 8. converting a Marian checkpoint with its own position table
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("edited", ["none", "encoder", "both"])
def test_marian_position_tables_survive_conversion(tmp_path, edited):
    """An (old) Marian checkpoint that saves its position tables, one of them not the sinusoidal formula, loads in
    stock Marian with that table; the converted model keeps it as learned positions and gives Marian's logits.
    Tables equal to the formula convert to plain sinusoidal positions, as before."""
    from safetensors.torch import load_file, save_file

    from hf_bigmodel.conversion.convert_transformer import convert_marian_to_bigmodel
    from hf_bigmodel.models.transformer import BigModelTransformerForConditionalGeneration

    marian = _stock("transformer")
    with torch.no_grad():
        for side in ("encoder", "decoder"):
            if edited == side or edited == "both":
                getattr(marian.model, side).embed_positions.weight.add_(torch.randn(64, 32) * 0.5)
    marian.save_pretrained(tmp_path / "marian")
    weights = load_file(tmp_path / "marian" / "model.safetensors")
    for side in ("encoder", "decoder"):  # what old checkpoints hold (transformers 5 no longer saves them)
        weights[f"model.{side}.embed_positions.weight"] = getattr(marian.model, side).embed_positions.weight.clone()
    save_file(weights, tmp_path / "marian" / "model.safetensors", metadata={"format": "pt"})
    stock = MarianMTModel.from_pretrained(tmp_path / "marian").eval()
    torch.testing.assert_close(stock.model.encoder.embed_positions.weight, marian.model.encoder.embed_positions.weight)

    convert_marian_to_bigmodel(tmp_path / "marian", tmp_path / "ours")
    ours = BigModelTransformerForConditionalGeneration.from_pretrained(tmp_path / "ours").eval()
    assert ours.config.position_embedding_type == ("sinusoidal" if edited == "none" else "learned")
    batch = _tiny("transformer", "seq2seq-lm").dummy_inputs  # ids below both vocabularies
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, stock(**batch).logits, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------------------------
# accelerate launch on CPU processes
# --------------------------------------------------------------------------------------------------------------------


def _pretrain_gpt_args(train: str, output_dir, batch: int) -> list[str]:
    return [
        "pretrain", "gpt", "--preset", "gpt-tiny", "--tokenizer_kind", "char", "--train_file", train,
        "--output_dir", str(output_dir), "--block_size", "32", "--per_device_train_batch_size", str(batch),
        "--learning_rate", "1e-3", "--logging_steps", "1", "--report_to", "none", "--use_cpu", "true", "--seed", "7",
        "--sample_max_new_tokens", "0", "--dataloader_num_workers", "0", "--train_sampling_strategy", "sequential",
        "--max_steps", "3", "--lr_scheduler_type", "constant", "--eval_strategy", "no",
    ]  # fmt: skip


@pytest.mark.slow  # two training processes
def test_accelerate_launch_two_cpu_processes_match_one(tmp_path):
    """`accelerate launch --cpu --num_processes 2` starts ONE process (accelerate's `--cpu` means its simple launcher,
    for stock models too); `accelerate launch --multi_gpu --num_processes 2` starts two gloo processes on a machine
    without GPUs, and they give the losses of one process with the same global batch (docs/usage.md)."""
    import json
    import os
    import subprocess
    import sys

    from hf_bigmodel.cli import main as cli_main
    from hf_bigmodel.corpus import builtin_corpus_text

    train = tmp_path / "train.txt"
    train.write_text(builtin_corpus_text()[:40_000], encoding="utf-8")
    assert cli_main(_pretrain_gpt_args(str(train), tmp_path / "single", 4)) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--main_process_port", "29561", "-m", "hf_bigmodel.cli"]  # fmt: skip
    result = subprocess.run(
        [*launch, *_pretrain_gpt_args(str(train), tmp_path / "double", 2)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    def losses(name: str) -> list[float]:
        state = json.loads((tmp_path / name / "trainer_state.json").read_text())
        return [entry["loss"] for entry in state["log_history"] if "loss" in entry]

    assert len(losses("single")) == 3
    assert losses("double") == pytest.approx(losses("single"), rel=1e-4)


# --------------------------------------------------------------------------------------------------------------------
# FSDP through Trainer's --fsdp options
# --------------------------------------------------------------------------------------------------------------------


def _fsdp_gpt(data, output_dir, batch: int) -> list[str]:
    if not (data / "train.txt").is_file():
        from hf_bigmodel.corpus import builtin_corpus_text

        (data / "train.txt").write_text(builtin_corpus_text()[:40_000], encoding="utf-8")
    return _pretrain_gpt_args(str(data / "train.txt"), output_dir, batch)


def _fsdp_bert(data, output_dir, batch: int) -> list[str]:
    """MLM with dynamic masking: the masks are drawn per example, so two processes must mask as one."""
    if not (data / "tokenizer").is_dir():  # one WordPiece for every run (its training breaks ties in no fixed order)
        from hf_bigmodel.corpus import builtin_corpus_text
        from hf_bigmodel.tokenization import train_tokenizer

        (data / "train.txt").write_text(builtin_corpus_text()[:30_000], encoding="utf-8")
        tokenizer = train_tokenizer("wordpiece", files=[data / "train.txt"], vocab_size=1000, show_progress=False)
        tokenizer.save_pretrained(data / "tokenizer")
    return [
        "pretrain", "bert", "--preset", "bert-tiny", "--tokenizer_name_or_path", str(data / "tokenizer"),
        "--train_file", str(data / "train.txt"), "--objective", "mlm", "--max_seq_length", "64",
        "--output_dir", str(output_dir), "--per_device_train_batch_size", str(batch), "--learning_rate", "2e-3",
        "--logging_steps", "1", "--report_to", "none", "--use_cpu", "true", "--seed", "5",
        "--dataloader_num_workers", "0", "--train_sampling_strategy", "sequential", "--max_steps", "3",
        "--lr_scheduler_type", "constant", "--eval_strategy", "no",
    ]  # fmt: skip


def _fsdp_transformer(data, output_dir, batch: int) -> list[str]:
    """Translation of template sentences; the tokenizer the first run trains serves the others."""
    if not (data / "train.de").is_file():
        subjects = [("Ein Mann", "A man"), ("Eine Frau", "A woman"), ("Zwei Kinder", "Two children")]
        places = [("auf einer Bank", "on a bench"), ("im Garten", "in the garden"), ("am Fluss", "by the river")]
        verbs = [("sitzt", "sits"), ("wartet", "waits"), ("spielt", "plays")]
        pairs = [(f"{s[0]} {v[0]} {p[0]}.", f"{s[1]} {v[1]} {p[1]}.") for s in subjects for v in verbs for p in places]
        for index, lang in enumerate(("de", "en")):
            (data / f"train.{lang}").write_text("".join(pair[index] + "\n" for pair in pairs * 2), encoding="utf-8")
    tokenizer = ["--tokenizer_name_or_path", str(data / "first")] if (data / "first").is_dir() else []
    return [
        "pretrain", "transformer", "--preset", "transformer-tiny", "--source_lang", "de", "--target_lang", "en",
        "--train_file", str(data / "train"), *tokenizer, "--tokenizer_kind", "bpe", "--tokenizer_vocab_size", "300",
        "--do_train", "--output_dir", str(output_dir), "--per_device_train_batch_size", str(batch),
        "--learning_rate", "3e-3", "--logging_steps", "1", "--report_to", "none", "--use_cpu", "true", "--seed", "3",
        "--dataloader_num_workers", "0", "--train_sampling_strategy", "sequential", "--max_steps", "3",
        "--lr_scheduler_type", "constant", "--eval_strategy", "no",
    ]  # fmt: skip


# architecture: (the head pretraining trains, whose _no_split_modules FSDP wraps; its pretrain arguments)
FSDP_CASES = {
    "gpt": ("causal-lm", _fsdp_gpt),
    "bert": ("masked-lm", _fsdp_bert),
    "transformer": ("seq2seq-lm", _fsdp_transformer),
}


def test_every_text_architecture_has_an_fsdp_case():
    for name in ARCHITECTURES:
        if name != "resnet":  # image pretraining is not a text pipeline; DDP covers it
            assert name in FSDP_CASES, f"add {name} to FSDP_CASES"


@pytest.mark.parametrize("arch", list(FSDP_CASES))
def test_no_split_modules_are_the_repeated_layers(arch):
    """FSDP wraps, and `device_map="auto"` keeps whole, the classes of `_no_split_modules`: each must name a module of
    the head (a misspelt name is silently never wrapped), and together they must hold every layer's weights."""
    task, _ = FSDP_CASES[arch]
    model = _tiny(arch, task)
    names = set(model._no_split_modules)
    classes = {type(module).__name__ for module in model.modules()}
    assert names <= classes, names - classes
    inside = {
        f"{prefix}.{name}"
        for prefix, module in model.named_modules()
        if type(module).__name__ in names
        for name, _ in module.named_parameters()
    }
    in_layers = {name for name, _ in model.named_parameters() if ".layers." in name}
    assert in_layers and in_layers <= inside, sorted(in_layers - inside)[:5]


@pytest.mark.slow  # three training runs, two of them with two processes
@pytest.mark.parametrize("arch", list(FSDP_CASES))
def test_fsdp_on_two_cpu_processes_matches_one_and_resumes(arch, tmp_path):
    """`--fsdp "full_shard auto_wrap"`, wrapping the head's `_no_split_modules`, on two gloo processes: the losses
    of one process with the same global batch (the same examples and, for BERT's dynamic masking, the same masks);
    a run stopped at its step-2 checkpoint resumes (sharded optimizer state included) to the same step-4 losses."""
    import json
    import os
    import subprocess
    import sys

    from hf_bigmodel.cli import main as cli_main

    task, make_args = FSDP_CASES[arch]
    wrap = json.dumps({"transformer_layer_cls_to_wrap": ARCHITECTURES[arch].heads[task]._no_split_modules})

    def args(name: str, batch: int, steps: int) -> list[str]:
        plain = make_args(tmp_path, tmp_path / name, batch)
        plain[plain.index("--max_steps") + 1] = str(steps)
        return [*plain, "--save_steps", "2"]

    def sharded(name: str, steps: int) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29573",
                   "-m", "hf_bigmodel.cli", *args(name, 2, steps), "--fsdp", "full_shard auto_wrap",
                   "--fsdp_config", wrap]  # fmt: skip
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]

    def losses(name: str) -> list[float]:
        state = json.loads((tmp_path / name / "trainer_state.json").read_text())
        return [entry["loss"] for entry in state["log_history"] if "loss" in entry]

    assert cli_main(args("first", 4, 4)) == 0  # global batch 4 = 2 processes x 2
    sharded("fsdp", 2)
    assert (tmp_path / "fsdp" / "checkpoint-2").is_dir()
    assert losses("fsdp") == pytest.approx(losses("first")[:2], rel=1e-4)
    # Mark the checkpoint's log: a resumed run continues the checkpoint's log history, a fresh one starts anew.
    checkpoint_state = tmp_path / "fsdp" / "checkpoint-2" / "trainer_state.json"
    state = json.loads(checkpoint_state.read_text())
    state["log_history"][0]["from_checkpoint"] = True
    checkpoint_state.write_text(json.dumps(state))
    sharded("fsdp", 4)  # the same output_dir: auto-resume from checkpoint-2
    assert json.loads((tmp_path / "fsdp" / "trainer_state.json").read_text())["log_history"][0]["from_checkpoint"]
    assert losses("fsdp") == pytest.approx(losses("first"), rel=1e-4)
    assert (tmp_path / "fsdp" / "model.safetensors").is_file()


@pytest.mark.slow  # two training runs, one with two processes
@pytest.mark.parametrize("noise", ["infilling", "t5"])
def test_denoising_on_two_fsdp_processes_matches_one(noise, tmp_path):
    """The Transformer's denoising objective draws its noise per example (seed, epoch, index), so two FSDP processes
    with 2 rows each noise the rows as one process with 4 does, and log its losses (one generator per process made
    them differ)."""
    import json
    import os
    import subprocess
    import sys

    from hf_bigmodel.cli import main as cli_main
    from hf_bigmodel.corpus import builtin_corpus_text

    lines = [line for line in builtin_corpus_text()[:30_000].splitlines() if len(line.split()) > 4]
    (tmp_path / "train.txt").write_text("\n".join(lines[:200]) + "\n", encoding="utf-8")

    def args(name: str, batch: int) -> list[str]:
        tokenizer = ["--tokenizer_name_or_path", str(tmp_path / "first")] if name != "first" else []
        return [
            "pretrain", "transformer", "--objective", "denoising", "--noise", noise, "--preset", "transformer-tiny",
            "--train_file", str(tmp_path / "train.txt"), *tokenizer, "--tokenizer_kind", "bpe",
            "--tokenizer_vocab_size", "400", "--do_train", "--output_dir", str(tmp_path / name),
            "--per_device_train_batch_size", str(batch), "--learning_rate", "3e-3", "--logging_steps", "1",
            "--report_to", "none", "--use_cpu", "true", "--seed", "3", "--dataloader_num_workers", "0",
            "--train_sampling_strategy", "sequential", "--max_steps", "3", "--lr_scheduler_type", "constant",
            "--eval_strategy", "no", "--save_strategy", "no",
        ]  # fmt: skip

    def losses(name: str) -> list[float]:
        state = json.loads((tmp_path / name / "trainer_state.json").read_text())
        return [entry["loss"] for entry in state["log_history"] if "loss" in entry]

    assert cli_main(args("first", 4)) == 0
    wrap = json.dumps(
        {"transformer_layer_cls_to_wrap": ARCHITECTURES["transformer"].heads["seq2seq-lm"]._no_split_modules}
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29575",
               "-m", "hf_bigmodel.cli", *args("fsdp", 2), "--fsdp", "full_shard auto_wrap", "--fsdp_config", wrap]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(losses("first")) == 3
    assert losses("fsdp") == pytest.approx(losses("first"), rel=1e-4)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_model_split_between_memory_and_disk_gives_the_same_outputs(arch, tmp_path):
    """With 70% of the weights' size as memory, `device_map="auto"` splits the model at its `_no_split_modules` between
    memory and disk; every module that reads another's output or weights must sit inside one unit, so the outputs
    equal the model's in memory."""
    model = _tiny(arch, OFFLOAD_CASES[arch])
    model.save_pretrained(tmp_path / "model")
    inputs = _inputs(arch, model)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    with torch.no_grad():
        expected = model(**inputs).logits
        split = type(model).from_pretrained(
            tmp_path / "model",
            device_map="auto",
            max_memory={"cpu": size * 7 // 10},
            offload_folder=tmp_path / "offload",
        )
        assert set(split.hf_device_map.values()) == {"cpu", "disk"}, split.hf_device_map
        torch.testing.assert_close(split(**inputs).logits, expected)


# --------------------------------------------------------------------------------------------------------------------
# tensor- and pipeline-parallel plans
# --------------------------------------------------------------------------------------------------------------------

# Every head of every text architecture, and the GPT's gated MLP (whose gate_proj has a rule of its own).
PLAN_CASES = [(arch, task, "gelu") for arch in FSDP_CASES for task in ARCHITECTURES[arch].heads]
PLAN_CASES += [("gpt", task, "swiglu") for task in ARCHITECTURES["gpt"].heads]


@pytest.mark.parametrize("arch,task,mlp_type", PLAN_CASES)
def test_parallel_plans_name_real_modules(arch, task, mlp_type):
    """Every rule of the model's `tp_plan` (the config's `base_model_tp_plan` under the base model's prefix, and the
    head's `_tp_plan`) names a module of the model with a style transformers knows, every linear layer of the
    repeated layers is covered, and every `pp_plan` stage names a module whose forward takes those inputs."""
    import inspect
    import re

    from transformers.distributed.parallel_utils import ALL_PARALLEL_STYLES

    overrides = {"mlp_type": mlp_type} if arch == "gpt" else {}
    model = _tiny(arch, task, **overrides)
    modules = dict(model.named_modules())
    plan = model.tp_plan
    assert plan, f"{type(model).__name__} has no tensor-parallel plan"
    for rule, style in plan.items():
        assert style in ALL_PARALLEL_STYLES, (rule, style)
        pattern = re.compile(re.escape(rule).replace(r"\*", r"\d+") + "$")
        assert any(pattern.match(name) for name in modules), f"{rule} names no module of {type(model).__name__}"
    covered = {name for name in modules if any(re.fullmatch(r.replace(".", r"\.").replace("*", r"\d+"), name)
                                                for r in plan)}  # fmt: skip
    linear_in_layers = {
        name
        for name, module in modules.items()
        if isinstance(module, torch.nn.Linear) and re.search(r"(^|\.)layers\.", name)
    }
    assert linear_in_layers and linear_in_layers <= covered, sorted(linear_in_layers - covered)
    base = model.base_model
    for name, (inputs, outputs) in base.config.base_model_pp_plan.items():
        module = base.get_submodule(name)
        module = module[0] if isinstance(module, torch.nn.ModuleList) else module
        assert outputs
        if type(module).__module__.startswith("torch."):
            continue  # an nn.Embedding's input is named by what it is (`input_ids`), as in Llama's plan
        parameters = inspect.signature(module.forward).parameters
        assert set(inputs) <= set(parameters), (name, set(inputs) - set(parameters))


def test_gpt_with_learned_positions_refuses_pipeline_stages():
    """transformers' pipeline parallelism swaps other stages' layers for identities and feeds each stage the previous
    one's hidden states as `inputs_embeds`; a GPT with learned positions would add them again, so it refuses (a RoPE
    GPT runs: see the slow two-process test)."""
    from transformers.distributed.pipeline_parallel import PipelineIdentityLayer

    model = _tiny("gpt", "causal-lm")
    ids = torch.randint(3, 100, (1, 5))
    model.model.norm = PipelineIdentityLayer()  # what a stage other than the last holds
    with pytest.raises(ValueError, match=r"learned absolute positions would be added a second time.*rope"):
        model(ids)
    rope = _tiny("gpt", "causal-lm", position_embedding_type="rope")
    rope.model.norm = PipelineIdentityLayer()
    assert rope(ids).logits.shape == (1, 5, rope.config.vocab_size)


@pytest.mark.slow  # one torchrun of two processes
def test_tensor_parallel_on_two_cpu_processes_gives_the_same_logits(tmp_path):
    """`from_pretrained(distributed_config=DistributedConfig(tp_size=2, tp_plan="auto"))` on two gloo processes
    shards the weights the plans name (DTensors) and gives the logits of the model in one process."""
    import os
    import subprocess
    import sys

    cases = {"gpt": "causal-lm", "bert": "masked-lm", "transformer": "seq2seq-lm"}
    assert set(cases) == set(FSDP_CASES)
    for arch, task in cases.items():
        torch.manual_seed(0)
        _tiny(arch, task).save_pretrained(tmp_path / arch)
    script = tmp_path / "tp.py"
    script.write_text(
        f"""
import sys, torch
from torch.distributed.tensor import DTensor
from transformers.distributed import DistributedConfig
from hf_bigmodel.models import ARCHITECTURES

for arch, task in {cases!r}.items():
    cls = ARCHITECTURES[arch].heads[task]
    full = cls.from_pretrained({str(tmp_path)!r} + "/" + arch).eval()
    sharded = cls.from_pretrained({str(tmp_path)!r} + "/" + arch,
                                  distributed_config=DistributedConfig(tp_size=2, tp_plan="auto")).eval()
    dtensors = sum(isinstance(p, DTensor) or isinstance(p.data, DTensor) for p in sharded.parameters())
    ids = torch.arange(3, 17).reshape(2, 7)
    inputs = {{"input_ids": ids, "decoder_input_ids": ids[:, :5]}} if arch == "transformer" else {{"input_ids": ids}}
    with torch.no_grad():
        diff = (full(**inputs).logits - sharded(**inputs).logits).abs().max().item()
    if torch.distributed.get_rank() == 0:  # the two processes' lines would interleave
        print("RESULT", arch, dtensors, diff, flush=True)
""",
        encoding="utf-8",
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29581",
               str(script)]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("RESULT")]
    assert len(rows) == len(cases), result.stdout[-2000:]
    for arch, dtensors, diff in rows:
        assert int(dtensors) >= 8, (arch, dtensors)  # every layer's projections are sharded
        assert float(diff) < 1e-5, (arch, diff)


@pytest.mark.slow  # two torchruns of two processes
def test_pipeline_parallel_gpt_on_two_cpu_processes(tmp_path):
    """`DistributedConfig(pp_size=2)` (transformers' pipeline stages, 1 layer each) gives the one-process logits for
    a RoPE GPT; a GPT with learned positions, which the stages would feed its positions twice, is refused with a
    message (on the first stage, which ends the run) instead of giving wrong logits."""
    import os
    import subprocess
    import sys

    for variant, overrides in (("rope", {"position_embedding_type": "rope"}), ("learned", {})):
        torch.manual_seed(0)
        _tiny("gpt", "causal-lm", **overrides).save_pretrained(tmp_path / variant)
    script = tmp_path / "pp.py"
    script.write_text(
        """
import sys, torch
from transformers.distributed import DistributedConfig
from hf_bigmodel.models import ARCHITECTURES

cls = ARCHITECTURES["gpt"].heads["causal-lm"]
ids = torch.arange(3, 17).reshape(2, 7)
full = cls.from_pretrained(sys.argv[1]).eval()
staged = cls.from_pretrained(sys.argv[1], distributed_config=DistributedConfig(pp_size=2)).eval()
with torch.no_grad():
    diff = (full(ids).logits - staged(ids).logits).abs().max().item()
if torch.distributed.get_rank() == 0:
    print("RESULT", diff, flush=True)
""",
        encoding="utf-8",
    )

    def run(variant: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29583",
                   str(script), str(tmp_path / variant)]  # fmt: skip
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)

    rope = run("rope")
    assert rope.returncode == 0, rope.stderr[-3000:]
    assert float(rope.stdout.split("RESULT")[1].split()[0]) < 1e-5, rope.stdout[-2000:]
    learned = run("learned")
    assert learned.returncode != 0
    assert "learned absolute positions would be added a second time" in learned.stderr, learned.stderr[-3000:]
