"""Saved GPT folders are self-contained: a fresh process that cannot import hf_bigmodel loads every head with
`trust_remote_code=True` and gets the same outputs; `import hf_bigmodel` alone (no trust flag) does too; Trainer
checkpoints carry the code. Each subprocess checks many folders at once to keep the suite fast."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file
from transformers import Trainer, TrainingArguments

from hf_bigmodel.models import ARCHITECTURES
from hf_bigmodel.models.gpt.configuration_gpt import AUTO_MAP
from hf_bigmodel.testing import WITHOUT_HF_BIGMODEL, run_python

GPT_HEADS = ARCHITECTURES["gpt"].heads
AUTO_CLASS_OF_TASK = {
    "base": "AutoModel",
    "causal-lm": "AutoModelForCausalLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
}
CODE_FILES = {"configuration_gpt.py", "modeling_gpt.py", "cpu_kernels_gpt.py"}

# Runs in the child before anything else: makes `import hf_bigmodel` fail although the package is installed
# (editable), as on a machine that only has transformers.
BLOCK_HF_BIGMODEL = (
    WITHOUT_HF_BIGMODEL
    + """
try:
    import hf_bigmodel
    raise SystemExit("hf_bigmodel is still importable")
except ImportError:
    pass
"""
)

# For each saved folder: load it with its Auto class, compare outputs with the reference the parent saved, and for
# causal LMs compare a greedy continuation too. Prints one JSON line of results.
CHECK_FOLDERS = """
import json, sys
import torch, transformers
from safetensors.torch import load_file

cases = json.loads(sys.argv[1])
trust = {"true": True, "unset": None}[sys.argv[2]]
results = {}
for folder, auto_name in cases.items():
    kwargs = {} if trust is None else {"trust_remote_code": trust}
    model = getattr(transformers, auto_name).from_pretrained(folder, **kwargs).eval()
    ref = load_file(f"{folder}/reference.safetensors")
    with torch.no_grad():
        out = model(ref["input_ids"])
        got = out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state
        result = {"module": type(model).__module__, "max_diff": (got - ref["output"]).abs().max().item()}
        # where every non-torch submodule's class came from: the modeling file and its CPU-kernel sibling
        result["modules"] = sorted({type(m).__module__ for m in model.modules() if not type(m).__module__.startswith(("torch.", "transformers."))})
        if "generated" in ref:
            generated = model.generate(ref["input_ids"][:1], max_new_tokens=5, do_sample=False)
            result["generate_equal"] = torch.equal(generated, ref["generated"])
    results[folder] = result
if trust is True:  # the opt-in is required: not passing it, or passing False, refuses to run the code
    errors = []
    for flag in ({}, {"trust_remote_code": False}):
        try:
            transformers.AutoModelForCausalLM.from_pretrained(next(iter(cases)), **flag)
            errors.append(None)
        except ValueError as error:
            errors.append(str(error))
    results["errors"] = errors
print("\\nRESULTS" + json.dumps(results))
"""


def _save_with_reference(model, folder, generate: bool) -> None:
    model.eval().save_pretrained(folder)
    ids = torch.randint(3, model.config.vocab_size, (2, 8))
    with torch.no_grad():
        out = model(ids)
        tensors = {"input_ids": ids, "output": out.logits if hasattr(out, "logits") else out.last_hidden_state}
        if generate:
            tensors["generated"] = model.generate(ids[:1], max_new_tokens=5, do_sample=False)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "reference.safetensors"))


@pytest.fixture(scope="module")
def saved_folders(tmp_path_factory, make_gpt_config) -> dict:
    """{folder: Auto class name}: every head of both variants, saved with reference outputs."""
    root = tmp_path_factory.mktemp("saved")
    torch.manual_seed(0)
    cases = {}
    for variant in ("gpt2", "llama"):
        for task, model_class in GPT_HEADS.items():
            folder = root / f"{variant}-{task}"
            config = make_gpt_config(variant, num_labels=3, initializer_range=0.5)
            _save_with_reference(model_class(config), folder, generate=task == "causal-lm")
            cases[str(folder)] = AUTO_CLASS_OF_TASK[task]
    return cases


@pytest.fixture(scope="module")
def trainer_outputs(tmp_path_factory, make_gpt_config) -> dict:
    """A 2-step Trainer run on a tiny causal LM: its checkpoint folder and its save_model folder."""
    root = tmp_path_factory.mktemp("trainer")
    torch.manual_seed(0)
    model = GPT_HEADS["causal-lm"](make_gpt_config("llama"))
    data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(3, 256, (8, 16))]
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
    trainer = Trainer(model=model, args=args, train_dataset=data)
    trainer.train()
    trainer.save_model(str(root / "final"))
    _save_with_reference(model, root / "final", generate=True)  # same weights: adds the reference outputs
    return {"checkpoint": root / "run" / "checkpoint-2", "final": root / "final", "log": trainer.state.log_history}


def test_saved_folder_is_self_contained(saved_folders):
    for folder in saved_folders:
        names = {p.name for p in os.scandir(folder)}
        assert names >= CODE_FILES
        with open(os.path.join(folder, "config.json")) as f:
            config = json.load(f)
        assert config["auto_map"] == AUTO_MAP
        assert config["model_type"] == "bigmodel_gpt"


def test_remote_code_without_hf_bigmodel(saved_folders, trainer_outputs, tmp_path):
    cases = {**saved_folders, str(trainer_outputs["final"]): "AutoModelForCausalLM"}
    results = run_python(
        BLOCK_HF_BIGMODEL + CHECK_FOLDERS,
        json.dumps(cases),
        "true",
        cwd=tmp_path,
        env={"HF_HOME": str(tmp_path / "hf")},
    )
    for folder in cases:
        assert results[folder]["module"].startswith("transformers_modules."), folder
        package = results[folder]["module"].rsplit(".", 1)[0]  # the folder's code, as transformers imported it
        assert results[folder]["modules"] == [f"{package}.cpu_kernels_gpt", f"{package}.modeling_gpt"], folder
        assert results[folder]["max_diff"] == 0.0, folder
        if "generate_equal" in results[folder]:
            assert results[folder]["generate_equal"], folder
    assert sum("generate_equal" in r for r in results.values() if isinstance(r, dict)) == 3
    # Without the opt-in (flag unset or False) loading refuses and says how to allow it.
    assert len(results["errors"]) == 2
    for error in results["errors"]:
        assert error is not None and "contains custom code" in error and "trust_remote_code=True" in error


def test_import_hf_bigmodel_loads_without_trust_flag(saved_folders, tmp_path):
    code = "import hf_bigmodel\n" + CHECK_FOLDERS
    results = run_python(code, json.dumps(saved_folders), "unset", cwd=tmp_path, env={"HF_HOME": str(tmp_path / "hf")})
    for folder in saved_folders:
        assert results[folder]["module"] == "hf_bigmodel.models.gpt.modeling_gpt", folder
        assert results[folder]["max_diff"] == 0.0, folder
        assert results[folder].get("generate_equal", True), folder


def test_trainer_checkpoints_contain_the_code(trainer_outputs):
    assert [entry["step"] for entry in trainer_outputs["log"] if "loss" in entry] == [1, 2]
    for folder in (trainer_outputs["checkpoint"], trainer_outputs["final"]):
        names = {p.name for p in folder.iterdir()}
        assert CODE_FILES | {"config.json", "model.safetensors"} <= names, folder
        config = json.loads((folder / "config.json").read_text())
        assert config["auto_map"] == AUTO_MAP
        for reference in config["auto_map"].values():
            assert (folder / f"{reference.split('.')[0]}.py").is_file()


def test_run_python_reports_what_went_wrong_in_the_child(tmp_path):
    assert run_python("import json, sys; print('RESULTS' + json.dumps(sys.argv[1:]))", "a", "b", cwd=tmp_path) == [
        "a",
        "b",
    ]
    with pytest.raises(AssertionError, match="exit 3"):
        run_python("import sys; sys.exit(3)", cwd=tmp_path)
    with pytest.raises(AssertionError, match="no RESULTS line:\nhello"):
        run_python("print('hello')", cwd=tmp_path)
