"""Model cards generated from a training run: metadata the Hub reads, content, the PNG loss curve, and what is
never published (local paths, tokens). The run folder is a saved tiny GPT plus Trainer's JSON records."""

import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard, ModelCardData, metadata_load
from PIL import Image
from transformers import TrainingArguments

import hf_bigmodel
from hf_bigmodel.models import ARCHITECTURES
from hf_bigmodel.models.bert import configuration_bert
from hf_bigmodel.models.gpt import configuration_gpt
from hf_bigmodel.publish import loss_curve
from hf_bigmodel.publish.card import (
    CARD_SPECS,
    GENERATED_MARKER,
    LOSS_CURVE,
    RUN_FILE,
    ModelCardError,
    build_model_card,
    count_parameters,
    describe_tokenizer,
    head_of,
    record_training_run,
    render_loss_curve,
    template_dir,
    write_model_card,
)
from hf_bigmodel.publish.loss_curve import EVAL_COLOR, TRAIN_COLOR
from hf_bigmodel.testing.hub_server import validate_card_metadata
from hf_bigmodel.tokenization import train_tokenizer
from hf_bigmodel.training.pretrain_gpt import DataArguments, ModelArguments

TRAIN_LOSSES = [(step, 6.0 - 0.4 * step) for step in range(1, 11)]
EVAL_LOSSES = [(5, 4.1), (10, 2.2)]
SECRET = "hf_do_not_publish_me"


def _parse_png(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGB pixels) of a PNG, decoded by Pillow."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        image.load()  # decodes every chunk: a corrupt file fails here
        rgb = image.convert("RGB")
    return rgb.width, rgb.height, rgb.tobytes()


def _count_color(pixels: bytes, color: tuple[int, int, int]) -> int:
    target = bytes(color)
    return sum(pixels[i : i + 3] == target for i in range(0, len(pixels), 3))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A saved tiny GPT with a character tokenizer and the JSON records a 10-step Trainer run leaves."""
    root = tmp_path_factory.mktemp("card")
    text = root / "train.txt"
    text.write_text("to be or not to be, that is the question.\n" * 30, encoding="utf-8")
    folder = root / "run"
    tokenizer = train_tokenizer(kind="char", files=[text], output_dir=folder, show_progress=False)
    torch.manual_seed(0)
    model = hf_bigmodel.create_model("gpt-tiny", "causal-lm", vocab_size=len(tokenizer))
    model.save_pretrained(folder)
    history = [{"step": s, "loss": loss, "learning_rate": 1e-3, "epoch": s / 10} for s, loss in TRAIN_LOSSES]
    history += [{"step": s, "eval_loss": loss, "eval_perplexity": math.exp(loss)} for s, loss in EVAL_LOSSES]
    state = {"global_step": 10, "epoch": 1.0, "max_steps": 10, "train_batch_size": 4, "log_history": history}
    (folder / "trainer_state.json").write_text(json.dumps(state))
    results = {"eval_loss": 2.2, "eval_perplexity": math.exp(2.2), "train_loss": 3.8, "train_runtime": 12.5}
    (folder / "all_results.json").write_text(json.dumps(results))
    args = TrainingArguments(
        output_dir=str(folder), learning_rate=1e-3, per_device_train_batch_size=4, gradient_accumulation_steps=2,
        max_steps=10, seed=7, report_to="none", use_cpu=True, hub_token=SECRET, lr_scheduler_type="cosine",
    )  # fmt: skip
    model_args = ModelArguments(preset="gpt-tiny", tokenizer_kind="char")
    data_args = DataArguments(train_file=[str(text)], block_size=32, validation_split_percentage=10.0)
    write_model_card(folder, model_args, data_args, args, extra={"train_tokens": 1234})
    return folder


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_metadata_is_valid_and_carries_the_evaluation(run_folder):
    text = (run_folder / "README.md").read_text()
    front = _front_matter(text)
    assert front == metadata_load(run_folder / "README.md")
    assert front["license"] == "apache-2.0" and front["library_name"] == "transformers"
    assert front["pipeline_tag"] == "text-generation"
    assert front["tags"] == ["hf_bigmodel", "bigmodel_gpt", "gpt", "custom_code"]
    assert "datasets" not in front  # local files are not Hub datasets
    [entry] = front["model-index"]
    assert entry["name"] == "run"
    [result] = entry["results"]
    assert result["task"] == {"type": "text-generation", "name": "Causal language modeling"}
    assert result["dataset"] == {"name": "last 10.0% of train.txt", "type": "text", "split": "validation"}
    assert [(m["type"], m["value"]) for m in result["metrics"]] == [
        ("perplexity", round(math.exp(2.2), 6)),
        ("loss", 2.2),
    ]
    # huggingface_hub parses it back into evaluation results, and the Hub's checks (as the test server runs them) pass.
    card = ModelCard.load(run_folder / "README.md")
    assert isinstance(card.data, ModelCardData)
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [
        ("perplexity", round(math.exp(2.2), 6)),
        ("loss", 2.2),
    ]
    assert validate_card_metadata(text) == []


def test_validator_catches_broken_metadata():
    assert validate_card_metadata("---\nlicense: [1, 2]\n---\n") == ['"license" must be a string']
    errors = validate_card_metadata("---\nmodel-index:\n- name: x\n  results:\n  - task: {}\n    metrics: []\n---\n")
    assert errors == [
        '"model-index[0]".results[0].task.type must be a string',
        '"model-index[0]".results[0].dataset must have string type and name',
        '"model-index[0]".results[0].metrics must be a non-empty list',
    ]
    assert validate_card_metadata("---\n: [\n---\n")[0].startswith("Invalid YAML in the README front matter")


def test_body_covers_every_section(run_folder):
    text = (run_folder / "README.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == [
        "# run",
        "## Model details",
        "## Tokenizer",
        "## Training data",
        "## Training procedure",
        "### Hyperparameters",
        "### Loss curve",
        "## Evaluation results",
        "## How to use",
        "## Intended use and limitations",
        "## License",
        "## Citation",
        "## Framework versions",
    ]
    assert GENERATED_MARKER in text
    params = hf_bigmodel.create_model(
        "gpt-tiny", "causal-lm", vocab_size=json.loads((run_folder / "config.json").read_text())["vocab_size"]
    ).num_parameters()
    assert f"| Parameters | {params / 1e6:.2f}M ({params:,}) |" in text
    assert "| Layers | 2 |" in text and "| Attention | 4 heads of 8 |" in text
    assert "GPT-2 recipe: learned positions, LayerNorm, GELU MLP" in text
    assert "- Kind: character-level" in text and "- `pad_token`: `<|pad|>`" in text
    assert "- Training text: `train.txt`" in text and "- Training tokens: 1,234" in text
    assert "| `learning_rate` | 0.001 |" in text and "| `lr_scheduler_type` | cosine |" in text
    assert "| `weight_decay` | 0 |" in text and "`warmup_steps`" not in text
    assert "`num_train_epochs`" not in text  # max_steps overrides it
    assert "- Trained for this model with: `tokenizer_kind=char`\n" in text
    assert "- Effective batch size: 8 sequences" in text  # 4 per device x 2 accumulation x 1 process
    assert "- Optimizer steps: 10 (1 epochs)" in text
    assert (
        f"![Training loss (blue) and evaluation loss (orange, dots) against the optimizer step]({LOSS_CURVE})" in text
    )
    assert "| Perplexity | 9.02501 |" in text
    assert 'AutoModelForCausalLM.from_pretrained("<your-username>/run", trust_remote_code=True)' in text
    assert "hf-bigmodel convert run/ run-gpt2/ --to gpt2" in text  # GPT-2 settings: exportable to stock GPT-2
    assert "released under the `apache-2.0` license" in text and "@inproceedings{wolf-etal-2020-transformers" in text
    import transformers

    assert f"transformers {transformers.__version__}" in text.split("## Framework versions")[1]
    assert f"hf_bigmodel {hf_bigmodel.__version__}" in text.split("## Framework versions")[1]


def test_nothing_private_is_published(run_folder):
    record = (run_folder / RUN_FILE).read_text()
    readme = (run_folder / "README.md").read_text()
    for text in (record, readme):
        assert SECRET not in text
        assert str(run_folder.parent) not in text  # no local paths, only file names
    data = json.loads(record)
    assert data["arguments"]["train_file"] == ["train.txt"]
    assert "hub_token" not in data["training_args"] and "output_dir" not in data["training_args"]
    assert data["world_size"] == 1 and data["train_tokens"] == 1234


def test_loss_curve_png(run_folder):
    png = (run_folder / LOSS_CURVE).read_bytes()
    width, height, pixels = _parse_png(png)
    assert (width, height) == (640, 360)
    assert _count_color(pixels, TRAIN_COLOR) > 200 and _count_color(pixels, EVAL_COLOR) > 50
    assert render_loss_curve(TRAIN_LOSSES, EVAL_LOSSES) == png  # deterministic: re-pushing changes nothing
    # Only training losses, or a single point: still a valid plot.
    _, _, only_train = _parse_png(render_loss_curve(TRAIN_LOSSES, [], width=200, height=100))
    assert _count_color(only_train, EVAL_COLOR) == 0 and _count_color(only_train, TRAIN_COLOR) > 0
    _, _, single = _parse_png(render_loss_curve([(3, 1.0)], []))
    assert _count_color(single, TRAIN_COLOR) > 0
    # No loss at all: the plotting module raises ValueError, which the card reports as a ModelCardError.
    with pytest.raises(ValueError, match="No loss values to plot") as raised:
        loss_curve.render_loss_curve([], [])
    assert type(raised.value) is ValueError
    with pytest.raises(ModelCardError, match="No loss values to plot"):
        render_loss_curve([], [])


def test_matplotlib_is_imported_only_to_draw():
    code = (
        "import sys, hf_bigmodel, hf_bigmodel.publish.push, hf_bigmodel.training.pretrain\n"
        "assert 'matplotlib' not in sys.modules, 'importing the package loaded matplotlib'\n"
        "from hf_bigmodel.publish.loss_curve import render_loss_curve\n"
        "render_loss_curve([(1, 2.0), (2, 1.0)], [])\n"
        "assert 'matplotlib' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_drawing_pictures_leaves_the_callers_matplotlib_backend_alone():
    """A notebook's inline backend must survive a training run (loss curve), an explanation and an evaluation
    (confusion matrix): switching it to Agg would make every later plt.show() draw nothing."""
    code = (
        "import matplotlib, numpy, torch\n"
        "matplotlib.use('svg')  # stands for the backend a notebook or GUI chose\n"
        "from hf_bigmodel.publish.loss_curve import render_loss_curve\n"
        "from hf_bigmodel.metrics import render_confusion_matrix\n"
        "from hf_bigmodel.explanation.core import Explanation\n"
        "from hf_bigmodel.explanation.render import render_png\n"
        "assert render_loss_curve([(1, 2.0), (2, 1.0)], [])[:4] == b'\\x89PNG'\n"
        "assert render_confusion_matrix(numpy.eye(2, dtype=int), ['a', 'b'])[:4] == b'\\x89PNG'\n"
        "e = Explanation('image-classification', 'grad_cam', 'logit', 0, '0', [1.0], torch.rand(4, 4),\n"
        "                image=numpy.zeros((4, 4, 3), numpy.uint8))\n"
        "assert render_png(e)[:4] == b'\\x89PNG'\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_parameter_count_and_tokenizer_description(run_folder, tmp_path):
    model = hf_bigmodel.create_model("gpt-tiny", "causal-lm", tie_word_embeddings=False)
    model.save_pretrained(tmp_path)
    assert count_parameters([tmp_path / "model.safetensors"]) == (model.num_parameters(), ["F32"])
    char = describe_tokenizer(run_folder)
    assert char["kind"].startswith("character-level") and char["padding_side"] == "left"
    text = tmp_path / "t.txt"
    text.write_text("hello world " * 50)
    train_tokenizer(kind="bpe", files=[text], vocab_size=300, output_dir=tmp_path / "bpe", show_progress=False)
    bpe = describe_tokenizer(tmp_path / "bpe")
    assert bpe["kind"] == "byte-level BPE (as GPT-2)" and bpe["size"] <= 300
    assert describe_tokenizer(tmp_path / "missing") is None


def test_hand_written_readme_is_kept(run_folder, tmp_path):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    (folder / "README.md").write_text("# My own card\n")
    assert write_model_card(folder) is None
    assert (folder / "README.md").read_text() == "# My own card\n"
    assert write_model_card(folder, overwrite=True) == folder / "README.md"
    assert GENERATED_MARKER in (folder / "README.md").read_text()
    # Trainer's auto-generated card is replaced, as is ours.
    (folder / "README.md").write_text(
        "<!-- This model card has been generated automatically according to the information the Trainer had access "
        "to. You should probably proofread and complete it, then remove this comment. -->\n"
    )
    write_model_card(folder, repo_id="someone/model")
    assert 'from_pretrained("someone/model", trust_remote_code=True)' in (folder / "README.md").read_text()


def test_folder_without_a_run(tmp_path):
    model = hf_bigmodel.create_model(
        "gpt-tiny",
        "causal-lm",
        position_embedding_type="rope",
        norm_type="rmsnorm",
        mlp_type="swiglu",
        bias=False,
        tie_word_embeddings=False,
    )
    model.save_pretrained(tmp_path)
    card = build_model_card(tmp_path, repo_id="me/tiny")
    assert "model-index" not in card.metadata and card.files == {}
    assert "Not recorded: this folder holds no training run" in card.text
    assert "No tokenizer was saved with this model." in card.text
    assert "Llama recipe: rotary positions, RMSNorm, SwiGLU MLP" in card.text
    assert "hf-bigmodel convert tiny/ tiny-llama/ --to llama" in card.text
    assert _front_matter(card.text)["license"] == "apache-2.0"


def test_classification_head_card(tmp_path):
    model = hf_bigmodel.create_model("gpt-tiny", "sequence-classification", num_labels=2)
    model.save_pretrained(tmp_path)
    (tmp_path / "all_results.json").write_text(json.dumps({"eval_accuracy": 0.75, "eval_f1": 0.5, "eval_loss": 0.6}))
    card = build_model_card(tmp_path, repo_id="me/sst2", license="mit")
    assert card.metadata["pipeline_tag"] == "text-classification" and card.metadata["license"] == "mit"
    metrics = card.metadata["model-index"][0]["results"][0]["metrics"]
    assert [(m["type"], m["value"]) for m in metrics] == [("loss", 0.6), ("accuracy", 0.75), ("f1", 0.5)]
    assert 'AutoModelForSequenceClassification.from_pretrained("me/sst2", trust_remote_code=True)' in card.text
    assert "head (`BigModelGPTForSequenceClassification`) with the labels\n`LABEL_0`, `LABEL_1`." in card.text
    assert "continues a text prompt" not in card.text and "fine-tuning a small pretrained GPT" in card.text


@pytest.mark.parametrize("residual", [True, False])
def test_resnet_card_says_whether_the_network_is_residual(tmp_path, residual):
    model = hf_bigmodel.create_model("resnet-tiny", "image-classification", use_residual_connection=residual)
    model.save_pretrained(tmp_path)
    card = build_model_card(tmp_path, repo_id="me/digits")
    plain = "plain 11-layer network: ResNet's bottleneck blocks without the residual connection"
    assert (plain in card.text) is not residual
    assert ("ResNet-11, bottleneck residual blocks" in card.text) is residual


def test_unknown_architecture_and_missing_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelCardError, match=r"No model card template for model_type 'bert'; known: bigmodel_gpt"):
        build_model_card(tmp_path)
    with pytest.raises(ModelCardError, match="has no config.json"):
        build_model_card(tmp_path / "nowhere")
    # Every architecture of the zoo has a card template, and nothing else does.
    assert set(CARD_SPECS) == {arch.model_type for arch in ARCHITECTURES.values()}
    for name, arch in ARCHITECTURES.items():
        spec = CARD_SPECS[arch.model_type]
        assert spec.template == f"card_{name}.md" and (spec.folder / spec.template).is_file()
        assert spec.folder == Path(hf_bigmodel.__file__).parent / "models" / name  # the architecture's own folder
        assert spec.describe.__module__ == f"hf_bigmodel.models.{name}.card_{name}"


def test_record_training_run_rejects_other_objects(tmp_path):
    with pytest.raises(TypeError, match="Expected a dataclass or a dict of run arguments, got int"):
        record_training_run(tmp_path, 3)


def test_head_of_our_and_stock_class_names():
    """Our heads are found through config.json's auto_map, stock ones by their class-name suffix."""
    ours = {
        "architectures": ["BigModelBertForNextSentencePrediction"],
        "auto_map": configuration_bert.AUTO_MAP,
    }
    assert head_of(ours) == ("AutoModelForNextSentencePrediction", "text-classification")
    base = {"architectures": ["BigModelGPTModel"], "auto_map": configuration_gpt.AUTO_MAP}
    assert head_of(base) == ("AutoModel", "feature-extraction")
    assert head_of({"architectures": ["GPT2LMHeadModel"]}) == ("AutoModelForCausalLM", "text-generation")
    assert head_of({"architectures": ["BertForMaskedLM"]}) == ("AutoModelForMaskedLM", "fill-mask")
    assert head_of({"architectures": ["MarianMTModel"]}) == ("AutoModel", "feature-extraction")
    assert head_of({"architectures": ["T5ForConditionalGeneration"]}) == ("AutoModelForSeq2SeqLM", "translation")
    assert head_of({}) == ("AutoModel", "feature-extraction")


WHEEL_CARD = """
import json, os, shutil, sys
from pathlib import Path
import torch
import hf_bigmodel
from hf_bigmodel.publish.card import template_dir, write_model_card

folder = Path(sys.argv[1])
torch.manual_seed(0)
hf_bigmodel.create_model("gpt-tiny", "causal-lm").save_pretrained(folder)
write_model_card(folder, repo_id="me/tiny")
first = (folder / "README.md").read_text()
installed = template_dir()
# HF_BIGMODEL_MODEL_CARDS still points the cards at other templates.
custom = folder.parent / "custom_cards"
shutil.copytree(installed, custom)
gpt = (Path(hf_bigmodel.__file__).parent / "models" / "gpt" / "card_gpt.md").read_text()
(custom / "card_gpt.md").write_text(gpt.replace("It continues a text prompt", "CUSTOM TEMPLATE LINE: it continues a prompt"))
os.environ["HF_BIGMODEL_MODEL_CARDS"] = str(custom)
write_model_card(folder, repo_id="me/tiny", overwrite=True)
print("RESULTS" + json.dumps({"package": hf_bigmodel.__file__, "templates": str(installed),
                              "custom": str(template_dir()), "card": first}))
"""


@pytest.mark.slow
def test_installed_wheel_writes_full_cards(tmp_path):
    """`pip wheel .` ships the card templates (and the lm-eval task files) as package data, and no top-level package but hf_bigmodel: a copy
    installed from the wheel, in a fresh interpreter that cannot see the source tree, writes a full card."""
    import zipfile

    source = tmp_path / "source"
    root = Path(__file__).resolve().parents[1]
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    shutil.copytree(root / "hf_bigmodel", source / "hf_bigmodel", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    [wheel] = (tmp_path / "dist").glob("hf_bigmodel-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"hf_bigmodel", wheel.name.split("-py")[0] + ".dist-info"}
    templates = {name for name in names if name.endswith(".md") and name.startswith("hf_bigmodel/")}
    assert templates == {
        "hf_bigmodel/model_cards/base.md",
        *(f"hf_bigmodel/models/{a}/card_{a}.md" for a in ARCHITECTURES),
    }
    harness_tasks = root / "hf_bigmodel" / "harness_tasks"  # the offline lm-eval tasks of `evaluate --harness`
    shipped = {f"hf_bigmodel/harness_tasks/{p.name}" for p in harness_tasks.iterdir() if p.suffix in (".yaml", ".py")}
    assert shipped and {n for n in names if n.startswith("hf_bigmodel/harness_tasks/")} == shipped

    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_BIGMODEL_MODEL_CARDS")}
    result = subprocess.run(
        [sys.executable, "-c", WHEEL_CARD, str(tmp_path / "run" / "tiny")],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    paths = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULTS"))[7:])
    assert Path(paths["package"]).is_relative_to(target) and Path(paths["templates"]).is_relative_to(target)
    assert paths["custom"] == str(tmp_path / "run" / "custom_cards")
    assert "CUSTOM TEMPLATE LINE: it continues a prompt" in (tmp_path / "run" / "tiny" / "README.md").read_text()
    text = paths["card"]  # written with the installed templates
    assert GENERATED_MARKER in text and "CUSTOM TEMPLATE LINE" not in text
    for section in ("## Model details", "## Tokenizer", "## Training data", "## How to use", "## License",
                    "## Framework versions"):  # fmt: skip
        assert section in text, section
    # The GPT template's own parts: its summary, its usage block and the stock class it exports to.
    assert "is a decoder-only Transformer language model (GPT) from hf_bigmodel" in text
    assert "It continues a text prompt one token at a time." in text
    assert 'AutoModelForCausalLM.from_pretrained("me/tiny", trust_remote_code=True)' in text
    assert "hf-bigmodel convert tiny/ tiny-gpt2/ --to gpt2" in text


def test_a_templates_folder_overrides_the_architecture_template(tmp_path):
    """`templates=` (or $HF_BIGMODEL_MODEL_CARDS) gives base.md and may override an architecture's template, under
    its name in the architecture folder (card_gpt.md) or the name it had in model_cards/ before (gpt.md)."""
    torch.manual_seed(0)
    folder = tmp_path / "tiny"
    hf_bigmodel.create_model("gpt-tiny", "causal-lm").save_pretrained(folder)
    package = Path(hf_bigmodel.__file__).parent
    custom = tmp_path / "custom"
    custom.mkdir()
    shutil.copy(template_dir() / "base.md", custom / "base.md")
    assert "It continues a text prompt one token at a time." in build_model_card(folder, templates=custom).text
    gpt = (package / "models" / "gpt" / "card_gpt.md").read_text()
    for name in ("gpt.md", "card_gpt.md"):  # the second wins when both are there
        (custom / name).write_text(gpt.replace("It continues a text prompt", f"FROM {name}: it continues a prompt"))
        assert f"FROM {name}: it continues a prompt" in build_model_card(folder, templates=custom).text
    (custom / "base.md").unlink()
    with pytest.raises(ModelCardError, match=r"Model card template 'base.md' not found in .*custom or .*gpt"):
        build_model_card(folder, templates=custom)
