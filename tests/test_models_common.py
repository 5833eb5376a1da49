"""Generic model properties, run over every registered architecture, config variant and head, as timm's
`test_models.py` loops over `list_models()`.

Each architecture brings one `ModelCase` (`hf_bigmodel.testing.model_cases`): a tiny config, inputs and labelled
rows per head. Registering an architecture and adding its case is all it takes to run these tests on it; what is
specific to one architecture (stock parity, its own layers and losses) stays in `test_modeling_<arch>.py`.
"""

import json
import os
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoConfig, Trainer, TrainingArguments

import hf_bigmodel
from hf_bigmodel.models import ARCHITECTURES
from hf_bigmodel.testing import WITHOUT_HF_BIGMODEL, run_python
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
    for name in expected:  # (the shards are memory-mapped too: the same tolerance as the single-file reload)
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=case.reload_atol, msg=name)


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


# --------------------------------------------------------------------------------------------------------------------
# bf16, compile and export
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("arch", "variant"), VARIANTS)
def test_bf16_weights_and_autocast_stay_close_to_float32(arch, variant):
    row, case = ARCHITECTURES[arch], model_case(arch)
    task = case.checkpoint_task
    model = row.heads[task](case.make_config(variant, **case.init_overrides)).eval()
    inputs = case.make_inputs(task, model.config)
    with torch.no_grad():
        reference = model(**inputs)[case.bf16_output]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = model(**inputs)[case.bf16_output]
        bf16 = model.to(torch.bfloat16)(**inputs)[case.bf16_output]
    assert autocast.dtype == bf16.dtype == torch.bfloat16
    for got in (autocast, bf16):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got.float(), reference, rtol=case.bf16_tol, atol=case.bf16_tol)


COMPILED = [(arch, variant) for arch, variant in VARIANTS if arch not in MODEL_CASES or MODEL_CASES[arch].compile_task]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(("arch", "variant"), COMPILED)
def test_compile_fullgraph_and_export_of_the_inference_forward(arch, variant):
    row, case = ARCHITECTURES[arch], model_case(arch)
    task = case.compile_task
    model = row.heads[task](case.make_config(variant, **case.reload_overrides)).eval()
    if case.prepare is not None:
        case.prepare(model)
    inputs = {**case.make_inputs(task, model.config), **case.compile_inputs}
    torch._dynamo.reset()  # a fresh compile cache: models of one class compiled by earlier tests count too
    with torch.no_grad():
        expected = _tensors(model(**inputs))
        compiled = torch.compile(model, fullgraph=True, backend="eager")(**inputs)
        exported = torch.export.export(model, (), kwargs=inputs).module()(**inputs)
    assert expected
    for name, tensor in expected.items():
        torch.testing.assert_close(compiled[name], tensor, rtol=1e-5, atol=1e-5, msg=name)
        torch.testing.assert_close(exported[name], tensor, rtol=1e-5, atol=1e-5, msg=name)


LORA = [(arch, variant) for arch, variant in VARIANTS if arch not in MODEL_CASES or MODEL_CASES[arch].lora_task]


@pytest.mark.parametrize(("arch", "variant"), LORA)
def test_lora_trains_and_merges(arch, variant):
    peft = pytest.importorskip("peft")
    row, case = ARCHITECTURES[arch], model_case(arch)
    task = case.lora_task
    model = row.heads[task](case.make_config(variant, **case.init_overrides))
    inputs = case.make_inputs(task, model.config)
    batch = _stack(case.make_rows(task, model.config))
    with torch.no_grad():
        base_logits = model.eval()(**inputs).logits
    lora = peft.get_peft_model(
        model,
        peft.LoraConfig(target_modules=["qkv_proj", "o_proj"], task_type=case.lora_task_type, r=4, lora_alpha=8),
    )
    trainable = {name for name, p in lora.named_parameters() if p.requires_grad}
    assert any("qkv_proj.lora_A" in name for name in trainable) and any("o_proj.lora_B" in name for name in trainable)
    assert all("lora_" in name or any(m in name for m in case.lora_also_trains) for name in trainable)

    optimizer = torch.optim.SGD([p for p in lora.parameters() if p.requires_grad], lr=0.5)
    lora.train()
    for _ in range(2):  # lora_B starts at zero: step so the adapter changes the output
        lora(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    lora.eval()
    with torch.no_grad():
        adapted = lora(**inputs).logits
        merged_model = lora.merge_and_unload()
        merged = merged_model(**inputs).logits
    assert type(merged_model) is row.heads[task]
    assert not torch.allclose(adapted, base_logits, atol=1e-4)  # the adapter did something
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------------------------------
# Remote code: saved folders load in a fresh process without hf_bigmodel, and with it but without the trust flag.
# One child process checks every folder of every architecture, which keeps the suite fast.
# --------------------------------------------------------------------------------------------------------------------

# For each saved folder: load it with its Auto class, compare every output with the reference the parent saved, and
# for heads that generate, compare a generation too. With the trust flag, also check that loading without it (unset
# or False) refuses. Prints one JSON line of results.
CHECK_FOLDERS = """
import json, sys
import torch, transformers
from safetensors.torch import load_file

spec = json.loads(sys.argv[1])
trust = {"true": True, "unset": None}[sys.argv[2]]
kwargs = {} if trust is None else {"trust_remote_code": trust}
results = {}
for folder, case in spec["folders"].items():
    model = getattr(transformers, case["auto_class"]).from_pretrained(folder, **kwargs).eval()
    ref = load_file(f"{folder}/reference.safetensors")
    inputs = {k[3:]: v for k, v in ref.items() if k.startswith("in.")}
    with torch.no_grad():
        out = model(**inputs)
        diffs = {k[4:]: (out[k[4:]] - v).abs().max().item() for k, v in ref.items() if k.startswith("out.")}
        result = {"module": type(model).__module__, "diffs": diffs}
        # where every layer's class came from: the modeling file and its CPU-kernel sibling, never hf_bigmodel
        own = {type(m).__module__ for m in model.modules() if not type(m).__module__.startswith(("torch.", "transformers."))}
        result["submodules"] = sorted(own)
        if case["generate"] is not None:
            generated = model.generate(**{k[4:]: v for k, v in ref.items() if k.startswith("gen.")}, **case["generate"])
            result["generate_equal"] = torch.equal(generated, ref["generated"])
    results[folder] = result
if trust is True:
    errors = {}
    for folder, auto_name in spec["refusals"].items():
        errors[folder] = []
        for flag in ({}, {"trust_remote_code": False}):
            try:
                getattr(transformers, auto_name).from_pretrained(folder, **flag)
                errors[folder].append(None)
            except ValueError as error:
                errors[folder].append(str(error))
    results["errors"] = errors
print("\\nRESULTS" + json.dumps(results))
"""


def _save_with_reference(model, folder, inputs: dict, case) -> dict:
    """Save `model` with its inputs and outputs (and a generation, for heads that generate) next to the weights;
    returns the folder's entry for the child: its Auto class and generate() arguments."""
    model.eval().save_pretrained(folder)
    tensors = {f"in.{k}": v for k, v in inputs.items()}
    generate = None
    with torch.no_grad():
        tensors.update({f"out.{k}": v for k, v in _tensors(model(**inputs)).items()})
        if model.can_generate() and case.generate_inputs is not None:
            generate = case.generate_kwargs
            gen_inputs = case.generate_inputs(inputs)
            tensors.update({f"gen.{k}": v for k, v in gen_inputs.items()})
            tensors["generated"] = model.generate(**gen_inputs, **generate)
    save_file({k: v.contiguous().clone() for k, v in tensors.items()}, str(folder / "reference.safetensors"))
    return {"auto_class": getattr(transformers, type(model)._auto_class).__name__, "generate": generate}


@pytest.fixture(scope="module")
def saved_folders(tmp_path_factory) -> dict:
    """{folder: (arch, task, child entry)}: every head of every variant of every architecture, saved with
    reference outputs."""
    root = tmp_path_factory.mktemp("saved")
    torch.manual_seed(0)
    folders = {}
    for arch, variant, task in VARIANT_HEADS:
        case = model_case(arch)
        model = ARCHITECTURES[arch].heads[task](case.make_config(variant, **case.remote_overrides))
        folder = root / f"{arch}-{variant}-{task}"
        folders[str(folder)] = (
            arch,
            task,
            _save_with_reference(model, folder, case.make_inputs(task, model.config), case),
        )
    return folders


@pytest.fixture(scope="module")
def trainer_outputs(tmp_path_factory) -> dict:
    """{arch: {"checkpoint", "final", "log", "entry"}}: a 2-step Trainer run on each architecture's tiny model, its
    checkpoint folder and its save_model folder (with reference outputs for the child)."""
    outputs = {}
    for arch, row in ARCHITECTURES.items():
        case = model_case(arch)
        root = tmp_path_factory.mktemp(f"trainer-{arch}")
        torch.manual_seed(0)
        variant, overrides = case.trainer_config
        task = case.checkpoint_task
        model = row.heads[task](case.make_config(variant, **overrides))
        rows = case.make_rows(task, model.config) * 2
        args = TrainingArguments(
            output_dir=str(root / "run"),
            max_steps=2,
            per_device_train_batch_size=4,
            save_steps=2,
            report_to="none",
            use_cpu=True,
            logging_steps=1,
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=rows)
        trainer.train()
        trainer.save_model(str(root / "final"))
        inputs = case.make_inputs(task, model.config)
        entry = _save_with_reference(model, root / "final", inputs, case)  # same weights: adds the references
        outputs[arch] = {
            "checkpoint": root / "run" / "checkpoint-2",
            "final": root / "final",
            "log": trainer.state.log_history,
            "entry": entry,
        }
    return outputs


def test_saved_folders_are_self_contained(saved_folders):
    for folder, (arch, _, _) in saved_folders.items():
        names = {p.name for p in os.scandir(folder)}
        assert names >= model_case(arch).code_files, folder
        config = json.loads(Path(folder, "config.json").read_text())
        assert config["auto_map"] == auto_map(arch), folder
        assert config["model_type"] == ARCHITECTURES[arch].model_type, folder


def test_trainer_checkpoints_contain_the_code(trainer_outputs):
    for arch, run in trainer_outputs.items():
        assert [entry["step"] for entry in run["log"] if "loss" in entry] == [1, 2], arch
        for folder in (run["checkpoint"], run["final"]):
            names = {p.name for p in folder.iterdir()}
            assert model_case(arch).code_files | {"config.json", "model.safetensors"} <= names, folder
            config = json.loads((folder / "config.json").read_text())
            assert config["auto_map"] == auto_map(arch), folder
            for reference in config["auto_map"].values():
                assert (folder / f"{reference.split('.')[0]}.py").is_file(), folder


def _check_results(results: dict, cases: dict, module_of) -> None:
    for folder, (arch, task, entry) in cases.items():
        got = results[folder]
        assert module_of(arch, task, got["module"]), (folder, got["module"])
        assert got["diffs"], folder
        assert max(got["diffs"].values()) <= model_case(arch).process_atol, (folder, got["diffs"])
        assert got.get("generate_equal", entry["generate"] is None) is True, folder
        package = got["module"].rsplit(".", 1)[0]  # the folder's code as transformers imported it, or hf_bigmodel's
        layer_files = sorted(
            f[:-3] for f in model_case(arch).code_files if f.startswith(("modeling_", "cpu_kernels_"))
        )
        assert got["submodules"] == [f"{package}.{name}" for name in layer_files], (folder, got["submodules"])
        assert ("generate_equal" in got) == (entry["generate"] is not None), folder


def test_remote_code_without_hf_bigmodel(saved_folders, trainer_outputs, tmp_path):
    cases = dict(saved_folders)
    for arch, run in trainer_outputs.items():
        cases[str(run["final"])] = (arch, model_case(arch).checkpoint_task, run["entry"])
    # Without the opt-in, loading refuses: one folder of each architecture is asked.
    refusals = {}
    for folder, (arch, _, entry) in saved_folders.items():
        refusals.setdefault(arch, (folder, entry["auto_class"]))
    spec = {
        "folders": {folder: entry for folder, (_, _, entry) in cases.items()},
        "refusals": dict(refusals.values()),
    }
    results = run_python(
        WITHOUT_HF_BIGMODEL + CHECK_FOLDERS,
        json.dumps(spec),
        "true",
        cwd=tmp_path,
        env={"HF_HOME": str(tmp_path / "hf")},
    )
    _check_results(results, cases, lambda arch, task, module: module.startswith("transformers_modules."))
    generating = [arch for arch, task, entry in cases.values() if entry["generate"] is not None]
    assert generating.count("gpt") == 3 and generating.count("transformer") == 3
    assert results["errors"].keys() == {folder for folder, _ in refusals.values()} and len(refusals) == len(ARCHS)
    for errors in results["errors"].values():
        assert len(errors) == 2  # flag unset, and trust_remote_code=False
        for error in errors:
            assert error is not None and "contains custom code" in error and "trust_remote_code=True" in error


def test_import_hf_bigmodel_loads_without_trust_flag(saved_folders, tmp_path):
    spec = {"folders": {folder: entry for folder, (_, _, entry) in saved_folders.items()}, "refusals": {}}
    results = run_python(
        "import hf_bigmodel\n" + CHECK_FOLDERS,
        json.dumps(spec),
        "unset",
        cwd=tmp_path,
        env={"HF_HOME": str(tmp_path / "hf")},
        with_package=True,
    )
    _check_results(
        results, saved_folders, lambda arch, task, module: module == ARCHITECTURES[arch].heads[task].__module__
    )


def test_run_python_reports_what_went_wrong_in_the_child(tmp_path):
    assert run_python("import json, sys; print('RESULTS' + json.dumps(sys.argv[1:]))", "a", "b", cwd=tmp_path) == [
        "a",
        "b",
    ]
    with pytest.raises(AssertionError, match="exit 3"):
        run_python("import sys; sys.exit(3)", cwd=tmp_path)
    with pytest.raises(AssertionError, match="no RESULTS line:\nhello"):
        run_python("print('hello')", cwd=tmp_path)
