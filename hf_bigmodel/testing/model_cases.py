"""One tiny test case per architecture: what `tests/test_models_common.py` needs to run its generic checks.

A new architecture gets every generic test (Auto classes, config round trip, invalid configs, save/load, sharded
save, head from a base checkpoint, activation checkpointing, gradient accumulation in the Trainer, bf16,
compile/export, LoRA, remote code in a fresh process) by registering in `hf_bigmodel.models` and adding one
`ModelCase` to `MODEL_CASES`; the optional fields switch on the checks that need more than a config and inputs. An architecture without a case fails
`test_every_architecture_has_a_model_case` and every test that asks for it (`model_case`), naming what to add.
"""

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import transformers
from huggingface_hub.errors import StrictDataclassError
from transformers import PreTrainedConfig, PreTrainedModel

from hf_bigmodel.testing import randomize_batch_norm_

__all__ = ["GPT_VARIANTS", "MODEL_CASES", "ModelCase", "auto_class", "auto_map", "model_case"]

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ModelCase:
    """How to build a tiny model of one architecture and feed each of its heads."""

    # A fresh tiny config (never shared between models), e.g. `make_config("llama", initializer_range=0.5)`: the
    # first argument names one of `variants`.
    make_config: Callable[..., PreTrainedConfig]
    # Forward inputs for the head of `task` (no labels): a padded batch where the architecture has padding.
    make_inputs: Callable[[str, PreTrainedConfig], Batch]
    # Four labelled rows for the head of `task`, with different numbers of labelled items per row, so that a loss
    # averaged per micro-batch differs from the loss of the whole batch. Tasks not in `trainer_tasks` are not asked.
    make_rows: Callable[[str, PreTrainedConfig], list[Batch]]
    # The prefix of the body's parameters inside a head ("model." for `model.model.layers...`).
    body_prefix: str
    # The task whose loss activation checkpointing is checked on, and a module inside a checkpointed layer (its
    # forward runs again in backward when checkpointing is on).
    checkpoint_task: str
    checkpoint_probe: Callable[[PreTrainedModel], torch.nn.Module]
    # The code files save_pretrained must copy next to the weights.
    code_files: frozenset[str]
    # (overrides, message regex) pairs that the config must reject, and one invalid field set after construction
    # that save_pretrained must catch again: (attribute, value, message regex).
    invalid_configs: dict[str, tuple[dict, str]]
    invalid_at_save: tuple[str, object, str]
    # The error type that an invalid config raises (strict dataclasses raise StrictDataclassError, which is not a
    # ValueError; checks outside the dataclass validators raise ValueError).
    invalid_error: type[Exception] | tuple[type[Exception], ...] = StrictDataclassError
    # Non-default config fields for the config round trip, and values config.json must then hold.
    round_trip_overrides: dict = field(default_factory=dict)
    round_trip_saved: dict = field(default_factory=dict)
    # Config variants that every generic test runs over (name -> overrides of the tiny preset).
    variants: dict[str, dict] = field(default_factory=lambda: {"default": {}})
    # Heads that are loaded from a base checkpoint in `test_head_from_base_checkpoint_...`.
    head_from_base_tasks: tuple[str, ...] = ()
    # Heads trained by the Trainer in the gradient-accumulation test, and the relative tolerance of that test.
    trainer_tasks: tuple[str, ...] = ()
    trainer_rel: float = 1e-3
    # (variant, overrides) of the model the Trainer trains.
    trainer_config: tuple[str, dict] = ("default", {})
    # Whether the Trainer's expected loss is computed in eval mode (BERT's sparse MLM head computes only the
    # labelled positions in training, eval mode all of them) or training mode (label smoothing applies only there).
    trainer_reference_mode: str = "eval"
    # Config overrides of the models saved and reloaded (larger weights make a wrongly loaded one show), and the
    # largest absolute difference between a model and its reloaded copy (0: bit-exact).
    reload_overrides: dict = field(default_factory=dict)
    reload_atol: float = 0.0
    # Shard size that splits the tiny model's checkpoint into several files.
    shard_size: str = "20KB"
    # Tolerances of the activation-checkpointing gradient comparison (None: torch.testing's defaults) and whether
    # it also runs with reentrant checkpointing.
    checkpoint_grad_tol: dict[str, float] | None = None
    checkpoint_reentrant: tuple[bool, ...] = (False,)
    # Remote code: config overrides of the folders a fresh process loads, the largest difference it may see (0:
    # bit-exact; CPU kernels may split a reduction differently in another process), and for heads that generate,
    # the generate() inputs (taken from the forward inputs) and arguments whose result must be the same there.
    remote_overrides: dict = field(default_factory=dict)
    process_atol: float = 0.0
    generate_inputs: Callable[[Batch], Batch] | None = None
    generate_kwargs: dict = field(default_factory=dict)
    # Config overrides for the bf16 and LoRA tests: weights large enough that bf16 rounding and an adapter's update
    # show in the outputs. Then the bf16 output compared with float32, and the tolerance of that comparison.
    init_overrides: dict = field(default_factory=dict)
    bf16_output: str = "logits"
    bf16_tol: float = 0.1
    # The head whose inference forward must compile as one graph (torch.compile fullgraph) and export
    # (torch.export), and what to do to a fresh model first so that every path shows (None: nothing).
    compile_task: str | None = None
    compile_inputs: dict = field(default_factory=dict)  # added to the forward inputs
    prepare: Callable[[PreTrainedModel], PreTrainedModel] | None = None
    # LoRA (PEFT): the head adapted, its PEFT task type, and the modules besides the adapters that PEFT trains for
    # that task type (e.g. the classifier for SEQ_CLS). None: not tested.
    lora_task: str | None = None
    lora_task_type: str = ""
    lora_also_trains: tuple[str, ...] = ()
    # Body parameters that a head may legitimately drop when loaded from a base checkpoint (BERT's token-level heads
    # have no pooler).
    droppable_body_keys: frozenset[str] = frozenset()
    # Architecture-specific checks of a reloaded model: (saved model, reloaded model, folder).
    check_reloaded: Callable | None = None


# --------------------------------------------------------------------------------------------------------------------
# GPT: the two families it covers, GPT-2 (learned positions, LayerNorm, GELU, tied, biases) and Llama-style (rotary
# positions, RMSNorm, SwiGLU, grouped-query attention, untied, no biases).

GPT_VARIANTS = {
    "gpt2": dict(position_embedding_type="learned", norm_type="layernorm", mlp_type="gelu", bias=True),
    "llama": dict(
        position_embedding_type="rope",
        norm_type="rmsnorm",
        mlp_type="swiglu",
        num_key_value_heads=2,
        bias=False,
        tie_word_embeddings=False,
    ),
}


def _gpt_config(variant: str = "gpt2", **overrides) -> PreTrainedConfig:
    from hf_bigmodel.models.gpt import BigModelGPTConfig

    return BigModelGPTConfig.from_preset("gpt-tiny", **{**GPT_VARIANTS[variant], **overrides})


def _gpt_inputs(task: str, config: PreTrainedConfig) -> Batch:
    # Ids >= 3 keep clear of the pad/bos/eos ids of the tiny preset.
    return {"input_ids": torch.randint(3, config.vocab_size, (2, 9))}


def _gpt_rows(task: str, config: PreTrainedConfig) -> list[Batch]:
    ids = torch.randint(3, config.vocab_size, (4, 8))
    if task == "sequence-classification":
        labels = torch.tensor([0, 2, 1, 2])
    else:
        labels = torch.randint(0, config.num_labels, (4, 8)) if task == "token-classification" else ids.clone()
        labels[0, :5] = -100  # rows with different numbers of labelled tokens
        labels[3, :2] = -100
    return [{"input_ids": i, "labels": lab} for i, lab in zip(ids, labels)]


# --------------------------------------------------------------------------------------------------------------------
# BERT

BERT_VOCAB = 101


def bert_config(variant: str = "default", **overrides) -> PreTrainedConfig:
    """A tiny config with a vocabulary of BERT_VOCAB ids and 3 labels."""
    from hf_bigmodel.models.bert import BigModelBertConfig

    return BigModelBertConfig.from_preset("bert-tiny", **{"vocab_size": BERT_VOCAB, "num_labels": 3, **overrides})


def bert_inputs(task: str, batch: int = 3, seq: int = 9, seed: int = 1) -> Batch:
    """A padded sentence-pair batch (row 1 padded after 6 tokens); (batch, 2 choices, seq) for multiple choice."""
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, 2, seq) if task == "multiple-choice" else (batch, seq)
    input_ids = torch.randint(5, BERT_VOCAB, shape, generator=gen)
    input_ids[..., 0] = 2  # [CLS]
    token_type_ids = (torch.arange(seq) >= seq // 2).long().expand(shape).contiguous()
    attention_mask = torch.ones(shape, dtype=torch.long)
    attention_mask[1, ..., 6:] = 0
    input_ids[1, ..., 6:] = 0
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}


def bert_rows(task: str, config: PreTrainedConfig | None = None) -> list[Batch]:
    """Four examples; MLM rows have 2, 4, 3, 3 labels (micro-batches of 2 hold 6 each)."""
    inputs = bert_inputs(task, batch=4, seed=5)
    inputs["attention_mask"][1] = 1
    if task in ("pretraining", "masked-lm", "token-classification"):
        labels = torch.full(inputs["input_ids"].shape, -100)
        for row, count in enumerate((2, 4, 3, 3)):
            positions = torch.arange(1, 1 + count) * 2
            values = inputs["input_ids"][row, positions] if task != "token-classification" else positions % 3
            labels[row, positions] = values
        inputs["labels"] = labels
        if task == "pretraining":
            inputs["next_sentence_label"] = torch.tensor([0, 1, 1, 0])
    else:
        inputs["labels"] = torch.tensor([0, 2, 1, 1] if task == "sequence-classification" else [0, 1, 1, 0])
    return [{k: v[i] for k, v in inputs.items()} for i in range(4)]


# --------------------------------------------------------------------------------------------------------------------
# The encoder-decoder Transformer

TRANSFORMER_PAD = 0
# The paper's post-norm layers with one shared embedding, and pre-norm layers with separate embeddings.
TRANSFORMER_VARIANTS = {
    "post-norm": {},
    "pre-norm": {"pre_norm": True, "share_encoder_decoder_embeddings": False},
}


def transformer_config(variant: str = "post-norm", **overrides) -> PreTrainedConfig:
    from hf_bigmodel.models.transformer import BigModelTransformerConfig

    settings = {"initializer_range": 0.3, **TRANSFORMER_VARIANTS[variant], **overrides}
    return BigModelTransformerConfig.from_preset("transformer-tiny", **settings)


def transformer_batch(config: PreTrainedConfig, src_lengths=(7, 4), tgt_lengths=(5, 3)) -> Batch:
    """Right-padded sources and labels (-100 after each target's end)."""
    src = torch.full((len(src_lengths), max(src_lengths)), TRANSFORMER_PAD)
    labels = torch.full((len(tgt_lengths), max(tgt_lengths)), -100)
    for i, (s, t) in enumerate(zip(src_lengths, tgt_lengths)):
        src[i, :s] = torch.randint(3, config.vocab_size, (s,))
        labels[i, :t] = torch.randint(3, config.vocab_size, (t,))
    return {"input_ids": src, "attention_mask": (src != TRANSFORMER_PAD).long(), "labels": labels}


def _transformer_inputs(task: str, config: PreTrainedConfig) -> Batch:
    inputs = transformer_batch(config)
    del inputs["labels"]
    inputs["decoder_input_ids"] = torch.tensor([[1, 5, 6], [1, 7, TRANSFORMER_PAD]])
    return inputs


def _transformer_rows(task: str, config: PreTrainedConfig) -> list[Batch]:
    inputs = transformer_batch(config, src_lengths=(7, 4, 6, 3), tgt_lengths=(5, 2, 4, 3))
    return [{k: v[i] for k, v in inputs.items()} for i in range(4)]


def _transformer_check_reloaded(model: PreTrainedModel, loaded: PreTrainedModel, folder) -> None:
    from safetensors.torch import load_file

    from hf_bigmodel.models.transformer.modeling_transformer import sinusoidal_table

    # The sinusoidal table is not stored; after meta-device loading it must be rebuilt, not left as garbage.
    assert not any("embed_positions" in key for key in load_file(folder / "model.safetensors"))
    body = loaded.model if hasattr(loaded, "model") else loaded
    assert torch.equal(body.decoder.embed_positions.weight, sinusoidal_table(64, 32))


# --------------------------------------------------------------------------------------------------------------------
# ResNet


# The plain variant (no shortcuts, the ResNet paper's baselines) runs every generic test too: save/load, remote code,
# checkpointing, compile and export must not depend on the blocks having a shortcut.
RESNET_VARIANTS = {
    "residual": {},
    "plain": {"use_residual_connection": False},
}


def resnet_config(variant: str = "residual", **overrides) -> PreTrainedConfig:
    from hf_bigmodel.models.resnet import BigModelResNetConfig

    return BigModelResNetConfig.from_preset("resnet-tiny", **{**RESNET_VARIANTS[variant], **overrides})


def _resnet_inputs(task: str, config: PreTrainedConfig) -> Batch:
    return {"pixel_values": torch.randn(2, config.num_channels, 40, 40)}


def _resnet_rows(task: str, config: PreTrainedConfig) -> list[Batch]:
    pixels, labels = torch.randn(4, config.num_channels, 40, 40), torch.tensor([0, 1, 2, 1])
    return [{"pixel_values": p, "labels": lab} for p, lab in zip(pixels, labels)]


MODEL_CASES: dict[str, ModelCase] = {
    "gpt": ModelCase(
        make_config=_gpt_config,
        make_inputs=_gpt_inputs,
        make_rows=_gpt_rows,
        body_prefix="model.",
        checkpoint_task="causal-lm",
        checkpoint_probe=lambda model: model.model.layers[0].self_attn.qkv_proj,
        code_files=frozenset({"configuration_gpt.py", "modeling_gpt.py", "cpu_kernels_gpt.py"}),
        invalid_configs={
            "heads": (
                dict(hidden_size=30),
                r"`hidden_size` \(30\) must be divisible by `num_attention_heads` \(4\).*e\.g\. 3",
            ),
            "kv-heads": (
                dict(num_key_value_heads=3),
                r"`num_attention_heads` \(4\) must be a multiple of `num_key_value_heads` \(3\)",
            ),
            "norm": (
                dict(norm_type="batchnorm"),
                r"`norm_type` must be one of \('layernorm', 'rmsnorm'\), got 'batchnorm'",
            ),
            "mlp": (dict(mlp_type="relu"), r"`mlp_type` must be one of \('gelu', 'swiglu'\), got 'relu'"),
            "positions": (
                dict(position_embedding_type="alibi"),
                r"`position_embedding_type` must be one of \('learned', 'rope'\)",
            ),
            "rope-odd": (
                dict(position_embedding_type="rope", hidden_size=36),
                r"Rotary positions need an even head size.*= 9",
            ),
            "dropout": (dict(hidden_dropout=1.0), r"`hidden_dropout` must be in \[0, 1\), got 1.0"),
            "vocab": (dict(vocab_size=0), r"`vocab_size` must be a positive integer, got 0"),
            "type": (dict(hidden_size="32"), r"Field 'hidden_size' expected int"),
        },
        invalid_at_save=("norm_type", "groupnorm", r"`norm_type` must be one of"),
        variants=GPT_VARIANTS,
        round_trip_overrides={"num_labels": 3},
        trainer_config=("llama", {"num_labels": 3}),
        remote_overrides={"num_labels": 3, "initializer_range": 0.5},
        generate_inputs=lambda inputs: {"input_ids": inputs["input_ids"][:1]},
        generate_kwargs={"max_new_tokens": 5, "do_sample": False},
        # Without a cache: a DynamicCache in the output is no pytree that torch.export knows. Compiled cached
        # generation is tested in test_generation_gpt.py.
        compile_task="causal-lm",
        lora_task="causal-lm",
        lora_task_type="CAUSAL_LM",
        compile_inputs={"use_cache": False},
        head_from_base_tasks=("sequence-classification", "token-classification", "causal-lm"),
        trainer_tasks=("causal-lm", "sequence-classification", "token-classification"),
    ),
    "bert": ModelCase(
        make_config=bert_config,
        make_inputs=lambda task, config: bert_inputs(task),
        make_rows=bert_rows,
        body_prefix="bert.",
        checkpoint_task="pretraining",
        checkpoint_probe=lambda model: model.bert.layers[0].attention.qkv_proj,
        code_files=frozenset({"configuration_bert.py", "modeling_bert.py"}),
        invalid_configs={
            "heads": (
                dict(hidden_size=30),
                r"`hidden_size` \(30\) must be divisible by `num_attention_heads` \(4\).*e\.g\. 3",
            ),
            "dropout": (dict(hidden_dropout_prob=1.0), r"`hidden_dropout_prob` must be in \[0, 1\), got 1.0"),
            "classifier-dropout": (dict(classifier_dropout=1.5), r"`classifier_dropout` must be in \[0, 1\) or None"),
            "type-vocab": (dict(type_vocab_size=0), r"`type_vocab_size` must be a positive integer, got 0"),
            "act": (
                dict(hidden_act="swish2"),
                r"`hidden_act` must be the name of a transformers activation.*'swish2'",
            ),
            "pad": (dict(pad_token_id=101), r"`pad_token_id` \(101\) must be a token id in \[0, vocab_size=101\)"),
            "type": (dict(hidden_size="32"), r"Field 'hidden_size' expected int"),
        },
        invalid_at_save=("num_attention_heads", 5, r"must be divisible by `num_attention_heads` \(5\)"),
        head_from_base_tasks=("pretraining", "masked-lm", "sequence-classification", "question-answering"),
        trainer_tasks=(
            "pretraining",
            "masked-lm",
            "token-classification",
            "sequence-classification",
            "multiple-choice",
        ),
        trainer_rel=1e-4,
        trainer_config=("default", {"initializer_range": 0.2}),
        round_trip_overrides={"classifier_dropout": 0.2, "id2label": {0: "neg", 1: "neu", 2: "pos"}},
        round_trip_saved={"model_type": "bigmodel_bert", "tie_word_embeddings": True, "type_vocab_size": 2},
        droppable_body_keys=frozenset({"pooler.dense.weight", "pooler.dense.bias"}),
        # Bit-exact except for the last bit at most: a (1, hidden) weight mapped from an unaligned file offset can
        # take another matmul kernel than the freshly allocated one.
        reload_atol=1e-6,
        reload_overrides={"initializer_range": 0.3},
        remote_overrides={"initializer_range": 0.3},
        # The same weights and inputs in another process: CPU kernels may split a reduction differently there
        # (thread count, load), which moves float32 results by a few ulps (2e-7 seen in CI), never by more.
        process_atol=1e-6,
        init_overrides={"initializer_range": 0.2},
        bf16_output="prediction_logits",
        compile_task="masked-lm",
        lora_task="sequence-classification",
        lora_task_type="SEQ_CLS",
        lora_also_trains=("classifier",),
        shard_size="10KB",
    ),
    "transformer": ModelCase(
        make_config=transformer_config,
        make_inputs=_transformer_inputs,
        make_rows=_transformer_rows,
        body_prefix="model.",
        checkpoint_task="seq2seq-lm",
        checkpoint_probe=lambda model: model.model.decoder.layers[0].fc1,
        code_files=frozenset(
            {"configuration_transformer.py", "modeling_transformer.py", "cpu_kernels_transformer.py"}
        ),
        invalid_configs={
            "heads": (dict(hidden_size=30), r"`hidden_size` \(30\) must be divisible by `num_attention_heads` \(4\)"),
            "positions": (
                dict(position_embedding_type="rope"),
                r"`position_embedding_type` must be one of \('sinusoidal', 'learned'\)",
            ),
            "layout": (
                dict(sinusoidal_layout="zigzag"),
                r"`sinusoidal_layout` must be one of \('split', 'interleaved'\)",
            ),
            "dropout": (dict(dropout=1.0), r"`dropout` must be in \[0, 1\), got 1.0"),
            "smoothing": (dict(label_smoothing=-0.1), r"`label_smoothing` must be in \[0, 1\)"),
            "layers": (dict(decoder_layers=0), r"`decoder_layers` must be a positive integer, got 0"),
            "start": (dict(decoder_start_token_id=None), r"`decoder_start_token_id` is required.*bos"),
            "pad": (dict(pad_token_id=500), r"`pad_token_id` \(500\) must be a token id in \[0, vocab_size=128\)"),
            "type": (dict(hidden_size="32"), r"Field 'hidden_size' expected int"),
        },
        invalid_at_save=("sinusoidal_layout", "zigzag", r"`sinusoidal_layout` must be one of"),
        head_from_base_tasks=("seq2seq-lm",),
        trainer_tasks=("seq2seq-lm",),
        # Label smoothing (0.1 in the trainer test) applies in training mode only.
        trainer_reference_mode="train",
        trainer_config=("post-norm", {"label_smoothing": 0.1}),
        check_reloaded=_transformer_check_reloaded,
        # Equal to float rounding: the inputs' few rows go through `few_rows_linear`, and MKL's batched product rounds
        # differently on weights memory-mapped from the file at 8-byte alignment than on freshly allocated ones.
        reload_atol=1e-5,
        process_atol=1e-5,  # the same rounding, in the fresh process that loads the remote code
        variants=TRANSFORMER_VARIANTS,
        generate_inputs=lambda inputs: {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]},
        generate_kwargs={"num_beams": 2, "max_new_tokens": 6},
        # Without a cache, as for GPT; compiled cached generation is tested in test_generation_transformer.py.
        compile_task="seq2seq-lm",
        compile_inputs={"use_cache": False},
    ),
    "resnet": ModelCase(
        make_config=resnet_config,
        make_inputs=_resnet_inputs,
        make_rows=_resnet_rows,
        body_prefix="resnet.",
        checkpoint_task="image-classification",
        checkpoint_probe=lambda model: model.resnet.stages[1].layers[1].conv1,
        variants=RESNET_VARIANTS,
        trainer_config=("residual", {}),
        # The processor's file comes with the processor (see test_modeling_resnet.py).
        code_files=frozenset({"configuration_resnet.py", "modeling_resnet.py", "cpu_kernels_resnet.py"}),
        shard_size="10KB",
        invalid_configs={
            "depths": (dict(depths=[1, 1, 1]), r"`depths` has 3 entries but `hidden_sizes` has 2: give one depth"),
            "layer-type": (
                dict(layer_type="wide"),
                r"`layer_type` must be one of \('basic', 'bottleneck'\), got 'wide'",
            ),
            "stem": (dict(stem_type="tiny"), r"`stem_type` must be one of \('imagenet', 'cifar'\), got 'tiny'"),
            "widths": (dict(hidden_sizes=[16, 30]), r"multiple of 4; \[30\] are not"),
            "depth-zero": (dict(depths=[1, 0]), r"Every entry of `depths` must be a positive integer"),
            "act": (dict(hidden_act="nope"), r"`hidden_act` 'nope' is not a transformers activation"),
            "smoothing": (dict(label_smoothing=1.0), r"`label_smoothing` must be in \[0, 1\)"),
            "channels": (dict(num_channels=0), r"`num_channels` must be a positive integer"),
            "zero-init-plain": (
                dict(zero_init_residual=True, use_residual_connection=False),
                r"`zero_init_residual=True` needs `use_residual_connection=True`",
            ),
        },
        invalid_at_save=("layer_type", "wide", r"`layer_type` must be one of"),
        head_from_base_tasks=("image-classification",),
        # No Trainer test: BatchNorm normalizes each micro-batch by its own statistics, so two micro-batches of 2
        # do not compute the loss of the batch of 4 (by design, not a gradient-accumulation bug).
        checkpoint_grad_tol={"rtol": 1e-5, "atol": 1e-6},
        checkpoint_reentrant=(False, True),
        invalid_error=(ValueError, StrictDataclassError),
        process_atol=1e-5,
        bf16_tol=0.05,
        compile_task="image-classification",
        # BatchNorm statistics away from their init, so that the folded-BatchNorm inference path shows.
        prepare=randomize_batch_norm_,
        round_trip_overrides={
            "num_channels": 1,
            "stem_type": "cifar",
            "downsample_in_bottleneck": True,  # zero_init_residual would be refused by the plain variant
            "label_smoothing": 0.1,
            "num_labels": 3,
        },
        round_trip_saved={"model_type": "bigmodel_resnet", "hidden_sizes": [16, 32]},
    ),
}


def model_case(arch: str) -> ModelCase:
    """The test case of `arch`; an architecture registered without one fails here, saying what to add."""
    if arch not in MODEL_CASES:
        raise KeyError(
            f"Architecture {arch!r} is registered in hf_bigmodel.models.ARCHITECTURES but has no test case: add a "
            f"ModelCase for it to MODEL_CASES in {__name__} (tiny config, inputs and labelled rows per head)."
        )
    return MODEL_CASES[arch]


def auto_map(arch: str) -> dict[str, str]:
    """The `AUTO_MAP` of `arch`'s configuration module: the one list of its heads (Auto class -> code reference)."""
    from hf_bigmodel.models import ARCHITECTURES

    return sys.modules[ARCHITECTURES[arch].config_class.__module__].AUTO_MAP


def auto_class(arch: str, task: str) -> type:
    """The transformers Auto class that loads the `task` head of `arch` (e.g. AutoModelForCausalLM for causal-lm)."""
    from hf_bigmodel.models import TASKS

    names = [name for name in auto_map(arch) if name in TASKS and TASKS[name][0] == task]
    if len(names) != 1:
        raise KeyError(f"{arch} has no {task!r} head in its AUTO_MAP (it has {', '.join(auto_map(arch))}).")
    return getattr(transformers, names[0])
