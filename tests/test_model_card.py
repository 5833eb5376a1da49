"""Model cards generated from a training run: metadata the Hub reads, content, the PNG loss curve, and what is
never published (local paths, tokens). The run folder is a saved tiny GPT plus Trainer's JSON records."""

import json
import math
import struct
import zlib
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard, ModelCardData, metadata_load
from transformers import TrainingArguments

import hf_bigmodel
from hf_bigmodel.model_card import (
    CARD_SPECS,
    EVAL_COLOR,
    GENERATED_MARKER,
    LOSS_CURVE,
    RUN_FILE,
    TRAIN_COLOR,
    ModelCardError,
    build_model_card,
    count_parameters,
    describe_tokenizer,
    record_training_run,
    render_loss_curve,
    write_model_card,
)
from hf_bigmodel.models import ARCHITECTURES
from hf_bigmodel.testing.hub_server import validate_card_metadata
from hf_bigmodel.tokenization import train_tokenizer
from hf_bigmodel.training.pretrain_gpt import DataArguments, ModelArguments

TRAIN_LOSSES = [(step, 6.0 - 0.4 * step) for step in range(1, 11)]
EVAL_LOSSES = [(5, 4.1), (10, 2.2)]
SECRET = "hf_do_not_publish_me"


def _parse_png(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGB pixels) of an 8-bit RGB PNG without filters, checking every chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF, tag
        chunks[tag] = body
        pos += 12 + length
    width, height, depth, color, *_ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, color) == (8, 2) and b"IEND" in chunks
    raw = zlib.decompress(chunks[b"IDAT"])
    assert len(raw) == height * (1 + 3 * width)
    rows = [raw[y * (1 + 3 * width) : (y + 1) * (1 + 3 * width)] for y in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, b"".join(row[1:] for row in rows)


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
    _parse_png(render_loss_curve([(3, 1.0)], []))
    with pytest.raises(ModelCardError, match="No loss values to plot"):
        render_loss_curve([], [])


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


def test_unknown_architecture_and_missing_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelCardError, match=r"No model card template for model_type 'bert'; known: bigmodel_gpt"):
        build_model_card(tmp_path)
    with pytest.raises(ModelCardError, match="has no config.json"):
        build_model_card(tmp_path / "nowhere")
    # Every architecture of the zoo has a card template, and nothing else does.
    assert set(CARD_SPECS) == {arch.model_type for arch in ARCHITECTURES.values()}


def test_record_training_run_rejects_other_objects(tmp_path):
    with pytest.raises(TypeError, match="Expected a dataclass or a dict of run arguments, got int"):
        record_training_run(tmp_path, 3)
