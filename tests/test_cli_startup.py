"""Start-up: `hf-bigmodel --help` and `COMMAND --help` answer without importing torch or transformers, with the same
text as the commands' own parsers; `import hf_bigmodel` stays cheap and still registers the zoo with transformers.

No timing here (benchmarks/bench_startup.py prints the times): what makes start-up slow is importing torch and
transformers, and that is what these tests check, in fresh interpreters."""

import json
import sys

import pytest

from hf_bigmodel import _help
from hf_bigmodel.cli import COMMANDS, _usage
from hf_bigmodel.cli import main as cli_main
from hf_bigmodel.models.gpt import configuration_gpt
from hf_bigmodel.testing import run_python
from hf_bigmodel.training.pretrain import pretrainers

HELP_COMMAND_LINES = [[], *([name] for name in COMMANDS), *(["pretrain", arch] for arch in pretrainers())]


def _live_help(argv: list[str]) -> str:
    """What the command's own parser prints for `--help` at the snapshot's width (the dispatcher's usage for [])."""
    return _usage() + "\n" if not argv else _help.live_help(" ".join(argv))


def test_help_of_every_command_imports_neither_torch_nor_transformers(tmp_path):
    code = """
import contextlib, io, json, sys
from hf_bigmodel.cli import main
answers = []
for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    code = None
    with contextlib.redirect_stdout(out):
        try:
            code = main([*argv, "--help"])
        except SystemExit as exit:
            code = exit.code
    heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
    answers.append({"argv": argv, "code": code, "out": out.getvalue(), "heavy": heavy})
print("RESULTS" + json.dumps(answers))
"""
    answers = run_python(code, json.dumps(HELP_COMMAND_LINES), cwd=tmp_path, with_package=True,
                         env={"COLUMNS": str(_help.WIDTH)})  # fmt: skip
    assert [answer["argv"] for answer in answers] == HELP_COMMAND_LINES
    for answer in answers:
        argv = answer["argv"]
        assert answer["heavy"] == [], f"`hf-bigmodel {' '.join(argv)} --help` imported {answer['heavy']}"
        assert answer["code"] in (0, None), argv
        # the same text as the command's own parser prints: a stale snapshot would show here
        assert answer["out"] == _live_help(argv), f"`hf-bigmodel {' '.join(argv)} --help` differs from its parser"


def test_stored_help_texts_match_the_parsers():
    snapshot = json.loads(_help.SNAPSHOT.read_text(encoding="utf-8"))
    assert snapshot["stamp"] == _help.stamp(), "cli_help.json was written with other versions"
    assert sorted(snapshot["help"]) == sorted(_help.snapshot_keys())
    stale = [key for key, text in snapshot["help"].items() if text != _help.live_help(key)]
    assert stale == [], f"the stored --help of {stale} is stale: run `python -m hf_bigmodel._help` and commit it"
    assert (
        "--learning_rate" in snapshot["help"]["pretrain gpt"]
        and "--tokenizer_kind" in snapshot["help"]["pretrain gpt"]
    )


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["pretrain", "gpt", "--help"], "pretrain gpt"),
        (["pretrain", "-h"], "pretrain"),
        (["finetune", "--output_dir", "x", "--help"], "finetune"),
        (["finetune", "--output_dir", "x"], None),  # no help asked
        (["finetune", "--", "--help"], None),  # after `--`, --help is a value
        (["demo", "--help"], None),  # argparse only: answered live
        (["generate", "--help"], None),
    ],
)
def test_help_key(argv, key):
    assert _help.help_key(argv) == key


def test_a_snapshot_from_other_versions_is_not_used(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "cli_help.json"
    stale.write_text(json.dumps({"stamp": {**_help.stamp(), "transformers": "0.0.1"}, "help": {"push": "STALE\n"}}))
    monkeypatch.setattr(_help, "SNAPSHOT", stale)
    assert _help.cached_help(["push", "--help"]) is None
    with pytest.raises(SystemExit) as exited:  # the live parser answers instead
        cli_main(["push", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "STALE" not in out and out.startswith("usage: hf-bigmodel push")

    stale.write_text(json.dumps({"stamp": _help.stamp(), "help": {"push": "CURRENT\n"}}))
    assert cli_main(["push", "--help"]) == 0 and capsys.readouterr().out == "CURRENT\n"


REGISTERED = """
import json, sys
from transformers import AutoConfig, AutoModelForCausalLM, pipelines
print("RESULTS" + json.dumps({
    "heavy_after_import": HEAVY,
    "configs": [type(AutoConfig.for_model(t)).__name__ for t in
                ("bigmodel_gpt", "bigmodel_bert", "bigmodel_transformer", "bigmodel_resnet")],
    "causal_lm": AutoModelForCausalLM.from_config(AutoConfig.for_model("bigmodel_gpt", num_hidden_layers=1,
                                                                       hidden_size=32, num_attention_heads=2,
                                                                       vocab_size=64)).__class__.__name__,
    "pipelines": sorted(set(pipelines.PIPELINE_REGISTRY.get_supported_tasks())
                        & {"translation", "question-answering", "text2text-generation"}),
    "lora_targets": sys.modules["peft"].utils.constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(
        "bigmodel_gpt") if "peft" in sys.modules else None,
}))
"""


@pytest.mark.parametrize(
    "first",
    [
        "import hf_bigmodel",  # transformers not imported yet: registered when it is
        "import transformers\nimport hf_bigmodel",  # already imported: registered at once
        "import hf_bigmodel\nimport peft",  # PEFT imports transformers half-way through its own import
    ],
)
def test_import_registers_the_zoo_with_transformers(first, tmp_path):
    setup = f"import sys\n{first}\nHEAVY = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
    result = run_python(setup + REGISTERED, cwd=tmp_path, with_package=True)
    assert result["configs"] == ["BigModelGPTConfig", "BigModelBertConfig", "BigModelTransformerConfig",
                                 "BigModelResNetConfig"]  # fmt: skip
    assert result["causal_lm"] == "BigModelGPTForCausalLM"
    assert result["pipelines"] == ["question-answering", "text2text-generation", "translation"]
    if "peft" in first:  # registered although PEFT was half imported when transformers' import fired the hook
        assert result["lora_targets"] == configuration_gpt.PEFT_TARGET_MODULES
    if first == "import hf_bigmodel":
        assert result["heavy_after_import"] == [], "`import hf_bigmodel` imported torch or transformers"


def test_package_names_are_there_on_first_use():
    import hf_bigmodel
    from hf_bigmodel.models import ARCHITECTURES

    for name in hf_bigmodel.__all__:
        assert getattr(hf_bigmodel, name) is not None
    assert hf_bigmodel.BigModelGPTForCausalLM is ARCHITECTURES["gpt"].heads["causal-lm"]
    assert "BigModelResNetImageProcessor" in dir(hf_bigmodel)
    with pytest.raises(AttributeError, match="has no attribute 'BigModelNope'"):
        hf_bigmodel.BigModelNope  # noqa: B018
    assert sys.modules["hf_bigmodel"] is hf_bigmodel
