"""Generic model properties, run over every registered architecture, config variant and head, as timm's
`test_models.py` loops over `list_models()`.

Each architecture brings one `ModelCase` (`hf_bigmodel.testing.model_cases`): a tiny config, inputs and labelled
rows per head. Registering an architecture and adding its case is all it takes to run these tests on it; what is
specific to one architecture (stock parity, its own layers and losses) stays in `test_modeling_<arch>.py`.
"""

import json

import pytest
import torch
from transformers import AutoConfig, Trainer, TrainingArguments

import hf_bigmodel
from hf_bigmodel.models import ARCHITECTURES
from hf_bigmodel.testing.model_cases import MODEL_CASES, auto_class, auto_map, model_case

GENERATION_PARAMS = {"max_length", "num_beams", "do_sample", "temperature"}


def _variants(arch: str) -> list[str]:
    # An architecture without a case still shows up (as "default"): its tests then fail in model_case(arch).
    return list(MODEL_CASES[arch].variants) if arch in MODEL_CASES else ["default"]


def _case_attr(arch: str, name: str) -> tuple:
    return tuple(getattr(MODEL_CASES[arch], name)) if arch in MODEL_CASES else ("?",)


ARCHS = list(ARCHITECTURES)
HEADS = [(arch, task) for arch, row in ARCHITECTURES.items() for task in row.heads]
VARIANTS = [(arch, variant) for arch in ARCHS for variant in _variants(arch)]
VARIANT_HEADS = [(arch, variant, task) for arch, variant in VARIANTS for task in ARCHITECTURES[arch].heads]
INVALID = [(arch, name) for arch in ARCHS for name in _case_attr(arch, "invalid_configs")]
FROM_BASE = [(arch, variant, task) for arch, variant in VARIANTS for task in _case_attr(arch, "head_from_base_tasks")]
TRAINER = [(arch, task) for arch in ARCHS for task in _case_attr(arch, "trainer_tasks")]
CHECKPOINTING = [
    (arch, variant, reentrant) for arch, variant in VARIANTS for reentrant in _case_attr(arch, "checkpoint_reentrant")
]


def _tensors(out) -> dict[str, torch.Tensor]:
    return {k: v for k, v in out.items() if torch.is_tensor(v)}


# --------------------------------------------------------------------------------------------------------------------
# Every architecture has a case; registration and Auto classes
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_has_a_model_case(arch):
    case = model_case(arch)
    assert set(case.head_from_base_tasks) <= set(ARCHITECTURES[arch].heads)
    assert set(case.trainer_tasks) <= set(ARCHITECTURES[arch].heads)
    assert case.checkpoint_task in ARCHITECTURES[arch].heads


def test_a_missing_case_names_what_to_add():
    with pytest.raises(KeyError, match=r"'lstm' is registered .* has no test case: add a ModelCase .*MODEL_CASES"):
        model_case("lstm")


@pytest.mark.parametrize(("arch", "task"), HEADS)
def test_auto_classes_resolve(arch, task):
    row, case = ARCHITECTURES[arch], model_case(arch)
    auto = auto_class(arch, task)
    # AUTO_MAP (written into every config.json) names exactly the heads of the row, and nothing else.
    assert set(auto_map(arch)) == {"AutoConfig"} | {auto_class(arch, t).__name__ for t in row.heads}
    assert type(AutoConfig.for_model(row.model_type)) is row.config_class
    model = auto.from_config(case.make_config(next(iter(case.variants))))
    assert type(model) is row.heads[task]
    # register_for_auto_class makes save_pretrained copy the code next to the weights.
    assert row.heads[task]._auto_class == auto.__name__
    assert type(hf_bigmodel.create_model(f"{arch}-tiny", task=task)) is row.heads[task]
    if row.image_processor is not None:
        assert row.image_processor._auto_class == "AutoImageProcessor"
    with torch.no_grad():
        out = model.eval()(**model.dummy_inputs)  # valid for every head (3-D for multiple choice)
    assert all(torch.isfinite(t).all() for t in _tensors(out).values())


# --------------------------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("arch", "variant"), VARIANTS)
def test_config_round_trip(tmp_path, arch, variant):
    row, case = ARCHITECTURES[arch], model_case(arch)
    config = case.make_config(variant, **case.round_trip_overrides)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == row.model_type
    assert saved["auto_map"] == auto_map(arch)
    assert not GENERATION_PARAMS & set(saved)  # generation params stay out of config.json
    if hasattr(config, "tie_word_embeddings"):
        assert saved["tie_word_embeddings"] == config.tie_word_embeddings
    for key, value in case.round_trip_saved.items():
        assert saved[key] == value, key
    for loaded in (row.config_class.from_pretrained(tmp_path), AutoConfig.from_pretrained(tmp_path)):
        assert type(loaded) is row.config_class
        assert loaded.to_diff_dict() == config.to_diff_dict()
        for key, value in case.round_trip_overrides.items():
            assert getattr(loaded, key) == value, key
        for key in ("head_dim", "num_labels"):
            if hasattr(config, key):
                assert getattr(loaded, key) == getattr(config, key), key
    assert row.config_class.from_dict(config.to_dict()).to_dict() == config.to_dict()


def test_generation_params_are_not_config_fields():
    for arch, case in MODEL_CASES.items():
        config = case.make_config(next(iter(case.variants)), num_beams=4, do_sample=True)
        assert not hasattr(config, "num_beams"), arch


@pytest.mark.parametrize(("arch", "name"), INVALID)
def test_invalid_config_raises(arch, name):
    case = model_case(arch)
    overrides, message = case.invalid_configs[name]
    with pytest.raises(case.invalid_error, match=message):
        case.make_config(next(iter(case.variants)), **overrides)


@pytest.mark.parametrize("arch", ARCHS)
def test_invalid_config_is_caught_again_at_save(tmp_path, arch):
    case = model_case(arch)
    config = case.make_config(next(iter(case.variants)))
    attribute, value, message = case.invalid_at_save
    setattr(config, attribute, value)
    with pytest.raises(case.invalid_error, match=message):
        config.save_pretrained(tmp_path)
    assert not (tmp_path / "config.json").exists()


# --------------------------------------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("arch", "variant", "task"), VARIANT_HEADS)
def test_save_load_round_trip(tmp_path, arch, variant, task):
    row, case = ARCHITECTURES[arch], model_case(arch)
    model = row.heads[task](case.make_config(variant, **case.reload_overrides)).eval()
    inputs = case.make_inputs(task, model.config)
    model.save_pretrained(tmp_path)

    files = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors"} | case.code_files <= files
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"] == auto_map(arch) and saved["model_type"] == row.model_type
    for reference in saved["auto_map"].values():
        assert (tmp_path / f"{reference.split('.')[0]}.py").is_file()

    loaded, info = auto_class(arch, task).from_pretrained(tmp_path, output_loading_info=True, trust_remote_code=False)
    assert type(loaded) is row.heads[task]
    assert info == {"missing_keys": set(), "unexpected_keys": set(), "mismatched_keys": set(), "error_msgs": []}
    if case.check_reloaded is not None:
        case.check_reloaded(model, loaded, tmp_path)
    with torch.no_grad():
        expected, got = _tensors(model(**inputs)), _tensors(loaded.eval()(**inputs))
    assert expected and expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=case.reload_atol, msg=name)


@pytest.mark.parametrize(("arch", "variant"), VARIANTS)
def test_sharded_save_reloads_identically(tmp_path, arch, variant):
    row, case = ARCHITECTURES[arch], model_case(arch)
    task = case.checkpoint_task
    model = row.heads[task](case.make_config(variant, **case.reload_overrides)).eval()
    model.save_pretrained(tmp_path, max_shard_size=case.shard_size)
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and not (tmp_path / "model.safetensors").exists()
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {s.name for s in shards}

    loaded, info = auto_class(arch, task).from_pretrained(tmp_path, output_loading_info=True, trust_remote_code=False)
    assert not any(info.values())
    inputs = case.make_inputs(task, model.config)
    with torch.no_grad():
        expected, got = _tensors(model(**inputs)), _tensors(loaded.eval()(**inputs))
    assert expected and expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=name)


@pytest.mark.parametrize(("arch", "variant", "task"), FROM_BASE)
def test_head_from_base_checkpoint_reports_only_head_params_missing(tmp_path, arch, variant, task):
    row, case = ARCHITECTURES[arch], model_case(arch)
    prefix = case.body_prefix
    base = row.heads["base"](case.make_config(variant))
    base.save_pretrained(tmp_path)
    head, info = auto_class(arch, task).from_pretrained(tmp_path, output_loading_info=True, trust_remote_code=False)

    body_params = [p for name, p in head.named_parameters() if name.startswith(prefix)]
    expected_missing = {
        name
        for name, param in head.named_parameters(remove_duplicate=False)
        if not name.startswith(prefix) and not any(param is p for p in body_params)  # tied ones come loaded
    }
    assert info["missing_keys"] == expected_missing
    # A head without some body part (BERT's token-level heads have no pooler) drops exactly that part.
    head_state = head.state_dict()
    dropped = {key for key in base.state_dict() if f"{prefix}{key}" not in head_state}
    assert dropped <= case.droppable_body_keys
    assert info["unexpected_keys"] == dropped
    assert not info["mismatched_keys"]
    for name, param in base.state_dict().items():
        if name not in dropped:
            torch.testing.assert_close(head_state[f"{prefix}{name}"], param, rtol=0, atol=0, msg=name)


# --------------------------------------------------------------------------------------------------------------------
# Training: activation checkpointing, gradient accumulation
# --------------------------------------------------------------------------------------------------------------------


def _stack(rows: list[dict]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([row[key] for row in rows]) for key in rows[0]}


@pytest.mark.parametrize(("arch", "variant", "reentrant"), CHECKPOINTING)
def test_activation_checkpointing_gives_same_loss_and_grads(arch, variant, reentrant):
    row, case = ARCHITECTURES[arch], model_case(arch)
    head = row.heads[case.checkpoint_task]
    reference = head(case.make_config(variant)).train()
    checkpointed = head(case.make_config(variant)).train()
    checkpointed.load_state_dict(reference.state_dict())
    checkpointed.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": reentrant})
    assert checkpointed.is_activation_checkpointing
    assert any(getattr(m, "gradient_checkpointing", False) for m in checkpointed.modules())

    calls = []
    case.checkpoint_probe(checkpointed).register_forward_hook(lambda *args: calls.append(1))
    batch = _stack(case.make_rows(case.checkpoint_task, reference.config))
    results = []
    for model in (reference, checkpointed):
        loss = model(**batch).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads, dict(model.named_buffers())))
    assert len(calls) == 2  # forward, then recomputed in backward: checkpointing is really on
    torch.testing.assert_close(results[1][0], results[0][0])
    assert results[1][1].keys() == results[0][1].keys() == {n for n, p in reference.named_parameters()}
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, msg=name, **(case.checkpoint_grad_tol or {}))
    # The recomputation in backward must not update running statistics (BatchNorm) a second time.
    for name, buffer in results[0][2].items():
        torch.testing.assert_close(results[1][2][name], buffer, rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize(("arch", "task"), TRAINER)
def test_trainer_gradient_accumulation_logs_the_full_batch_loss(tmp_path, arch, task):
    row, case = ARCHITECTURES[arch], model_case(arch)
    variant, overrides = case.trainer_config
    model = row.heads[task](case.make_config(variant, **overrides))
    rows = case.make_rows(task, model.config)
    with torch.no_grad():
        model.train(case.trainer_reference_mode == "train")
        expected = model(**_stack(rows)).loss.item()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        learning_rate=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model.train(), args=args, train_dataset=rows)
    trainer.train()
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    # Two micro-batches of 2 must log the loss of the whole batch of 4, not gradient_accumulation_steps times it.
    assert logged == [pytest.approx(expected, rel=case.trainer_rel)]
