"""lm-evaluation-harness, offline: the package's task YAMLs (WikiText-2 documents, tiny-shakespeare bits per byte,
SST-2 multiple choice) run through `lm_eval`'s `hf` model on a saved folder; our perplexity and lm-eval's agree; a
GPT exported to GPT2LMHeadModel gets the same lm-eval numbers; lm-eval picks the causal backend for the GPT and the
seq2seq one for the encoder-decoder, without a warning, from a folder loaded with trust_remote_code only. Tiny
models on a few synthetic documents; the tests take seconds each (lm-eval's import is the slow part)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from hf_bigmodel import create_model
from hf_bigmodel.conversion.convert_gpt import convert_bigmodel_to_gpt2
from hf_bigmodel.evaluation import HARNESS_TASKS, harness_task_dir, harness_tasks_for, main
from hf_bigmodel.testing import WITHOUT_HF_BIGMODEL, run_python
from hf_bigmodel.tokenization import sync_config_with_tokenizer, train_tokenizer

pytest.importorskip("lm_eval")

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "tree", "good", "bad", "very", "not", "film"]


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + " ."


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """A GPT causal LM (context 32), its GPT2LMHeadModel export, a tiny encoder-decoder, all with one BPE tokenizer,
    and a data folder laid out as the shared one (wikitext2/, tiny_shakespeare/, sst2/) with synthetic text."""
    root = tmp_path_factory.mktemp("harness")
    rng = random.Random(0)
    data = root / "data"
    for folder in ("wikitext2", "tiny_shakespeare", "sst2"):
        (data / folder).mkdir(parents=True)
    for split in ("valid", "test"):
        articles = []
        for title in range(3):
            body = "".join(f" {sentence(rng)} {sentence(rng)} \n \n" for _ in range(3))
            articles.append(f" \n = Title {split} {title} = \n \n{body} \n = = Part = = \n \n {sentence(rng)} \n")
        (data / "wikitext2" / f"{split}.txt").write_text("".join(articles), encoding="utf-8")
    speeches = [f"Speaker {i % 3}:\n{sentence(rng)}\n{sentence(rng)}" for i in range(60)]
    (data / "tiny_shakespeare" / "input.txt").write_text("\n\n".join(speeches) + "\n", encoding="utf-8")
    rows = [f"{sentence(rng)} \t{rng.randint(0, 1)}" for _ in range(6)]
    (data / "sst2" / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")

    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(sentence(rng) for _ in range(300)) + "\nSpeaker 0 1 2 Title valid test Part =\n")
    tokenizer = train_tokenizer(kind="bpe", files=[corpus], vocab_size=300, show_progress=False)
    torch.manual_seed(0)
    gpt = create_model("gpt-tiny", "causal-lm", hidden_size=32, num_attention_heads=2, max_position_embeddings=32)
    seq2seq = create_model("transformer-tiny", "seq2seq-lm", max_position_embeddings=64)
    out = {"data": data}
    for name, model in (("gpt", gpt), ("transformer", seq2seq)):
        sync_config_with_tokenizer(model.config, tokenizer)
        model.resize_token_embeddings(model.config.vocab_size, mean_resizing=False)
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        out[name] = root / name
    out["gpt2"] = convert_bigmodel_to_gpt2(out["gpt"], root / "gpt2")
    return out


def harness(folder: Path, data: Path, *tasks: str, output: Path, card: bool = False) -> dict[str, dict]:
    argv = [str(folder), "--harness", "--data", str(data), "--output_dir", str(output), "--harness_tasks", *tasks]
    argv += ["--update_card"] if card else []
    assert main(argv) == 0
    return json.loads((output / "eval_results.json").read_text())


def test_our_perplexity_and_lm_evals_agree(setup, tmp_path):
    """The same documents (tiny-shakespeare's validation speeches) scored by `hf-bigmodel evaluate --task perplexity`
    (disjoint windows, its default stride) and by lm-eval's rolling loglikelihood: word and byte perplexity and bits
    per byte within 1e-4 relative."""
    theirs = harness(setup["gpt"], setup["data"], "tinyshakespeare", output=tmp_path / "lm_eval")
    entry = theirs["harness/tinyshakespeare"]
    # The validation split as the task defines it: the speeches from the 90% mark of the characters on.
    speeches = (setup["data"] / "tiny_shakespeare" / "input.txt").read_text().split("\n\n")
    total, start, documents = sum(len(s) + 2 for s in speeches), 0, []
    for speech in speeches:
        if start >= 0.9 * total:
            documents.append(speech)
        start += len(speech) + 2
    assert entry["harness"]["samples"] == len(documents) > 1
    rows = tmp_path / "documents.jsonl"
    rows.write_text("".join(json.dumps({"text": d}) + "\n" for d in documents), encoding="utf-8")
    assert main([str(setup["gpt"]), "--task", "perplexity", "--data", str(rows), "--output_dir", str(tmp_path)]) == 0
    ours = json.loads((tmp_path / "eval_results.json").read_text())["perplexity"]["metrics"]
    for name in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert entry["metrics"][name] == pytest.approx(ours[name], rel=1e-4), name
    assert ours["tokens"] > 2 * 32  # documents longer than the context: several windows each


def test_gpt2_export_gets_the_same_lm_eval_numbers(setup, tmp_path):
    tasks = ("wikitext2", "sst2")
    ours = harness(setup["gpt"], setup["data"], *tasks, output=tmp_path / "gpt", card=True)
    stock = harness(setup["gpt2"], setup["data"], *tasks, output=tmp_path / "gpt2")
    for task in tasks:
        key = f"harness/{task}"
        assert ours[key]["metrics"].keys() == stock[key]["metrics"].keys()
        for name, value in ours[key]["metrics"].items():
            assert stock[key]["metrics"][name] == pytest.approx(value, rel=1e-5), (task, name)
    wikitext = ours["harness/wikitext2"]
    assert wikitext["harness"]["samples"] == 3 and wikitext["split"] == "test"  # 3 articles, sections inside them
    assert set(wikitext["metrics"]) == {"word_perplexity", "byte_perplexity", "bits_per_byte"}
    assert set(ours["harness/sst2"]["metrics"]) == {"acc", "f1"}
    # --update_card: each task is a model-index result of its own, with lm-eval's metric names.
    import yaml

    [index] = yaml.safe_load((setup["gpt"] / "README.md").read_text().split("---")[1])["model-index"]
    recorded = {(r["dataset"]["name"], m["type"]): m["value"] for r in index["results"] for m in r["metrics"]}
    wikitext_name = "wikitext2 (bigmodel_wikitext2, lm-evaluation-harness)"
    assert recorded[(wikitext_name, "bits_per_byte")] == pytest.approx(wikitext["metrics"]["bits_per_byte"], rel=1e-5)
    assert ("sst2 (bigmodel_sst2, lm-evaluation-harness)", "acc") in recorded


def test_lm_eval_picks_the_backend_without_hf_bigmodel(setup, tmp_path):
    """In a Python that never imports hf_bigmodel, lm-eval's `hf` model loads each folder with trust_remote_code
    alone: the GPT as a causal LM, the encoder-decoder as seq2seq, and logs no warning."""
    code = """
import json, logging, sys
records = []
handler = logging.Handler(level=logging.WARNING)
handler.emit = records.append
logging.getLogger().addHandler(handler)
from lm_eval.models.huggingface import HFLM
out = {}
for folder in sys.argv[1:]:
    lm = HFLM(pretrained=folder, trust_remote_code=True, device="cpu", batch_size=1)
    out[folder] = [lm.backend, type(lm.model).__name__]
out["warnings"] = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
out["hf_bigmodel"] = "hf_bigmodel" in sys.modules
print("RESULTS" + json.dumps(out))
"""
    result = run_python(WITHOUT_HF_BIGMODEL + code, str(setup["gpt"]), str(setup["transformer"]), cwd=tmp_path)
    assert result[str(setup["gpt"])] == ["causal", "BigModelGPTForCausalLM"]
    assert result[str(setup["transformer"])] == ["seq2seq", "BigModelTransformerForConditionalGeneration"]
    assert not result["hf_bigmodel"]
    assert not [w for w in result["warnings"] if "model type" in w.lower() or "backend" in w.lower()], result


def test_the_encoder_decoder_runs_the_harness_as_seq2seq(setup, tmp_path):
    results = harness(setup["transformer"], setup["data"], "sst2", "wikitext2", output=tmp_path)
    assert 0.0 <= results["harness/sst2"]["metrics"]["acc"] <= 1.0
    assert results["harness/wikitext2"]["metrics"]["bits_per_byte"] > 0


def test_task_yamls_are_package_data_and_point_at_the_shared_data():
    names = {path.name for path in harness_task_dir().iterdir()}
    assert {f"{task}.yaml" for task, _, _ in HARNESS_TASKS.values()} <= names and "documents.py" in names
    text = (harness_task_dir() / "bigmodel_wikitext2.yaml").read_text()
    assert "../shared/data/wikitext2/test.txt" in text


def test_missing_harness_data_is_one_clear_error(setup, tmp_path, capsys):
    assert main([str(setup["gpt"]), "--harness", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "hf-bigmodel evaluate: error: The harness tasks' data is not under" in err
    assert "wikitext2/test.txt" in err and "Give --data" in err
    with pytest.raises(Exception, match="is not under"):
        harness_tasks_for(tmp_path / "nowhere", tmp_path / "tasks")


def test_task_and_harness_exclude_each_other(setup, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(setup["gpt"])])
    assert exit_info.value.code == 2
    assert "give either --task TASK --data DATA, or --harness" in capsys.readouterr().err


def test_without_lm_eval_the_error_gives_the_pip_line(setup, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # `import lm_eval` raises ImportError, as when not installed
    assert main([str(setup["gpt"]), "--harness", "--data", str(setup["data"])]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        "--harness (lm-evaluation-harness) needs the lm-eval package, which is not installed: pip install lm-eval"
        in err
    )
