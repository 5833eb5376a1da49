"""`hf-bigmodel pretrain transformer`: parallel-text loading and its errors, translation training with sacreBLEU/chrF
evaluation and beam-search predictions, resume, gradient accumulation, and the denoising objectives."""

import gzip
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from hf_bigmodel.cli import main as cli_main
from hf_bigmodel.data import DataError
from hf_bigmodel.data.seq2seq import (
    TokenBudgetBatchSampler,
    infilling_noise,
    permute_sentences,
    read_lines,
    read_parallel,
    t5_span_corruption,
)
from hf_bigmodel.metrics import translation_scores
from hf_bigmodel.testing import logged_losses, shared_data
from hf_bigmodel.training.pretrain_seq2seq import PREDICTIONS_FILE

MULTI30K = shared_data("multi30k_de_en")

# Written for these tests: template sentences, German and English line by line.
_SUBJECTS = [("Ein Mann", "A man"), ("Eine Frau", "A woman"), ("Zwei Kinder", "Two children"),
             ("Der alte Hund", "The old dog"), ("Ein kleines Mädchen", "A little girl")]  # fmt: skip
_VERBS = [("sitzt", "sits"), ("wartet", "waits"), ("schläft", "sleeps"), ("spielt", "plays")]
_PLACES = [("auf einer Bank", "on a bench"), ("im Garten", "in the garden"), ("vor dem Café", "in front of the café"),
           ("unter einem Baum", "under a tree")]  # fmt: skip
PAIRS = [(f"{s[0]} {v[0]} {p[0]}.", f"{s[1]} {v[1]} {p[1]}.") for s, v, p in itertools.product(_SUBJECTS, _VERBS,
                                                                                               _PLACES)]  # fmt: skip


def write_pairs(directory: Path, name: str, pairs, gz: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for index, lang in enumerate(("de", "en")):
        text = "".join(pair[index] + "\n" for pair in pairs).encode("utf-8")
        path = directory / f"{name}.{lang}{'.gz' if gz else ''}"
        path.write_bytes(gzip.compress(text) if gz else text)
    return directory / name


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("parallel")
    return {
        "train": write_pairs(directory, "train", PAIRS * 2),
        "valid": write_pairs(directory, "valid", PAIRS[:12], gz=True),  # .gz files are read too
    }


def seq2seq_args(data, output_dir, *extra: str) -> list[str]:
    return [
        "pretrain", "transformer", "--preset", "transformer-tiny", "--source_lang", "de", "--target_lang", "en",
        "--train_file", str(data["train"]), "--validation_file", str(data["valid"]), "--output_dir", str(output_dir),
        "--tokenizer_kind", "bpe", "--tokenizer_vocab_size", "300", "--do_train",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16", "--learning_rate", "3e-3",
        "--logging_steps", "1", "--report_to", "none", "--use_cpu", "true", "--seed", "3",
        "--dataloader_num_workers", "0", "--train_sampling_strategy", "sequential", "--save_strategy", "no", *extra,
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------ data errors


def test_parallel_files_errors_name_the_file_and_line(tmp_path):
    src, tgt = tmp_path / "a.de", tmp_path / "a.en"
    src.write_text("eins\nzwei\ndrei\n", encoding="utf-8")
    tgt.write_text("one\ntwo\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"different line counts: .*a\.de has 3 lines but .*a\.en has 2"):
        read_parallel(src, tgt)

    tgt.write_text("one\n  \nthree\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"Empty line pair: line 2 of .*a\.en is empty.*--skip_empty_pairs"):
        read_parallel(src, tgt)
    sources, targets, lines = read_parallel(src, tgt, skip_empty=True)
    assert (sources, targets, lines) == (["eins", "drei"], ["one", "three"], [1, 3])

    # CRLF endings and a byte-order mark are not text; a final line without "\n" is still a line.
    src.write_bytes(b"\xef\xbb\xbfeins\r\nzwei")
    assert read_lines(src) == ["eins", "zwei"]
    src.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"a\.de is not valid UTF-8: byte b'\\xe9' at line 1"):
        read_lines(src)
    with pytest.raises(FileNotFoundError, match="Data file not found"):
        read_lines(tmp_path / "missing.de")


def test_cli_data_errors_exit_2_with_a_message(data, tmp_path, capsys):
    bad = write_pairs(tmp_path / "bad", "train", PAIRS[:5])
    (tmp_path / "bad" / "train.en").write_text("only one line\n", encoding="utf-8")
    long_pairs = [(" ".join(["Wort"] * 80), "word")] + PAIRS[:4]
    long = write_pairs(tmp_path / "long", "train", long_pairs)
    cases = {
        "train.de has 5 lines but": ["--train_file", str(bad)],
        "No file": ["--train_file", str(tmp_path / "nothing")],
        "The train source at": ["--train_file", str(long), "--max_source_length", "32"],
    }
    for expected, extra in cases.items():
        args = seq2seq_args(data, tmp_path / "out", "--max_steps", "1")
        at = args.index("--train_file")
        del args[at : at + 2]
        assert cli_main([*args, *extra]) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, err
    # The long-source message says the limit, the model's maximum and both ways out.
    assert "more than the maximum --max_source_length 32. Raise --max_source_length (up to the model's " in err
    assert "max_position_embeddings, 64) or pass --truncate_long_sequences" in err
    args = seq2seq_args(data, tmp_path / "truncated", "--max_steps", "1", "--max_source_length", "32")
    args[args.index("--train_file") + 1] = str(long)
    assert cli_main([*args, "--truncate_long_sequences"]) == 0


# ---------------------------------------------------------------------------------------------------- metrics


def test_translation_scores_conventions():
    refs = ["The dog doesn't run.", "A man sits on a bench, outside."]
    perfect = translation_scores(refs, refs, lowercase_bleu="sacrebleu")
    assert perfect["bleu"] == pytest.approx(100) and perfect["chrf"] == pytest.approx(100)
    lower = [r.lower() for r in refs]
    cased = translation_scores(lower, refs, lowercase_bleu="sacrebleu")
    assert cased["bleu"] < 90 and cased["bleu_lc"] == pytest.approx(100)
    moses = translation_scores(lower, refs, lowercase_bleu="moses")
    assert moses["bleu_lc_tok"] == pytest.approx(100) and "bleu_lc" not in moses
    partial = translation_scores(["The dog runs.", "A man sits on a bench."], refs)
    assert 0 < partial["bleu"] < 100 and 0 < partial["chrf"] < 100


@pytest.mark.skipif(not (MULTI30K / "tok").is_dir(), reason="Multi30k not available")
def test_moses_lowercase_tokenization_reproduces_the_multi30k_tok_files():
    from hf_bigmodel.metrics import moses_lowercase_tokenize

    raw = read_lines(MULTI30K / "raw" / "test_2016_flickr.en.gz")[:300]
    tok = read_lines(MULTI30K / "tok" / "test_2016_flickr.lc.norm.tok.en.gz")[:300]
    assert moses_lowercase_tokenize(raw, "en") == tok


# ------------------------------------------------------------------------------------------------- training


def test_translation_end_to_end_with_beam_search_predictions(data, tmp_path, capsys):
    out = tmp_path / "run"
    args = seq2seq_args(data, out, "--max_steps", "30", "--do_eval", "--do_predict", "--test_file",
                        str(data["valid"]), "--predict_with_generate", "--generation_num_beams", "3",
                        "--length_penalty", "0.8", "--lowercase_bleu", "sacrebleu", "--label_smoothing_factor", "0.1",
                        "--eval_strategy", "steps", "--eval_steps", "15")  # fmt: skip
    assert cli_main(args) == 0
    assert "eval_bleu=" in capsys.readouterr().out
    metrics = json.loads((out / "all_results.json").read_text())
    for key in ("eval_bleu", "eval_chrf", "eval_bleu_lc", "eval_loss", "test_bleu", "test_chrf", "test_gen_len"):
        assert math.isfinite(metrics[key]), key
    assert 0 <= metrics["test_bleu"] <= 100 and metrics["test_chrf"] > 0
    losses = logged_losses(out)
    assert len(losses) == 30 and np.mean(losses[-5:]) < np.mean(losses[:5])
    # Periodic evaluation during training reports BLEU too.
    state = json.loads((out / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "eval_bleu" in e][:2] == [15, 30]

    # One prediction per test line, the same as generating with the saved model and its generation config.
    predictions = (out / PREDICTIONS_FILE).read_text(encoding="utf-8").splitlines()
    assert len(predictions) == 12
    model = AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.generation_config.num_beams == 3 and model.generation_config.length_penalty == 0.8
    assert model.config.label_smoothing == 0.1  # the model's own loss smooths (exact under accumulation)
    assert (model.config.pad_token_id, model.config.eos_token_id) == (tokenizer.pad_token_id, tokenizer.eos_token_id)
    sources = [pair[0] for pair in PAIRS[:4]]
    batch = tokenizer(sources, return_tensors="pt", padding=True)
    with torch.no_grad():
        generated = model.generate(**batch)
    assert [t.strip() for t in tokenizer.batch_decode(generated, skip_special_tokens=True)] == predictions[:4]
    assert {"configuration_transformer.py", "modeling_transformer.py"} <= {p.name for p in out.glob("*.py")}
    # The model card reports the BLEU and chrF of the last evaluation, also as model-index metadata.
    import yaml

    card = (out / "README.md").read_text()
    results = yaml.safe_load(card.split("---")[1])["model-index"][0]["results"][0]["metrics"]
    assert {(m["name"], m["value"]) for m in results} >= {
        ("BLEU (sacreBLEU, detokenized, 13a)", round(metrics["eval_bleu"], 6)),
        ("chrF (sacreBLEU)", round(metrics["eval_chrf"], 6)),
    }


def test_predict_without_targets_and_from_a_datasets_dataset(data, tmp_path):
    import datasets

    rows = [{"de": de, "en": en} for de, en in PAIRS]
    dataset = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"translation": rows * 2}),
         "validation": datasets.Dataset.from_dict({"translation": rows[:8]})}
    )  # fmt: skip
    dataset.save_to_disk(tmp_path / "data")
    first = tmp_path / "first"
    args = seq2seq_args(data, first, "--max_steps", "3", "--do_eval")
    at = args.index("--train_file")
    del args[at : at + 4]
    assert cli_main([*args, "--dataset_name", str(tmp_path / "data")]) == 0
    assert "eval_loss" in json.loads((first / "all_results.json").read_text())

    # Translate a source-only file with the saved model: predictions, no BLEU (nothing to compare with).
    test = tmp_path / "test.de"
    test.write_text("Ein Mann sitzt im Garten.\nZwei Kinder spielen.\n", encoding="utf-8")
    out = tmp_path / "predict"
    args = ["pretrain", "transformer", "--model_name_or_path", str(first), "--test_source_file", str(test),
            "--output_dir", str(out), "--do_predict", "--predict_with_generate", "--report_to", "none",
            "--use_cpu", "true", "--generation_max_length", "12"]  # fmt: skip
    assert cli_main(args) == 0
    assert len((out / PREDICTIONS_FILE).read_text(encoding="utf-8").splitlines()) == 2
    assert not any(k.startswith("test_bleu") for k in json.loads((out / "all_results.json").read_text()))


def test_resume_from_checkpoint_continues_exactly(data, tmp_path):
    common = ("--lr_scheduler_type", "constant", "--save_steps", "3", "--save_strategy", "steps")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert cli_main(seq2seq_args(data, straight, "--max_steps", "6", *common)) == 0
    assert cli_main(seq2seq_args(data, resumed, "--max_steps", "3", *common)) == 0
    assert (resumed / "checkpoint-3" / "optimizer.pt").is_file()
    assert cli_main(seq2seq_args(data, resumed, "--max_steps", "6", "--resume_from_checkpoint", "last", *common)) == 0
    assert json.loads((resumed / "trainer_state.json").read_text())["global_step"] == 6
    assert logged_losses(resumed)[-3:] == pytest.approx(logged_losses(straight)[-3:], abs=1e-6)
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_gradient_accumulation_gives_the_full_batch_loss(data, tmp_path):
    """Batch 8 in one step vs 2 accumulated steps of 4, with label smoothing: the model normalises its loss by
    Trainer's num_items_in_batch (target tokens of the whole accumulated batch), so the logged losses agree."""
    base = ("--max_steps", "3", "--lr_scheduler_type", "constant", "--label_smoothing_factor", "0.1")
    runs = {
        "batch8": ("--per_device_train_batch_size", "8"),
        "ga2": ("--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2"),
    }
    losses = {}
    for name, extra in runs.items():
        assert cli_main(seq2seq_args(data, tmp_path / name, *base, *extra)) == 0
        losses[name] = logged_losses(tmp_path / name)
    assert len(losses["batch8"]) == 3
    assert losses["ga2"] == pytest.approx(losses["batch8"], rel=1e-5)


def test_token_budget_batches():
    rng = np.random.default_rng(0)
    sources, targets = rng.integers(3, 40, size=500).tolist(), rng.integers(3, 40, size=500).tolist()
    sampler = TokenBudgetBatchSampler(sources, targets, max_tokens=400, seed=1)
    first = list(sampler)
    assert sorted(i for batch in first for i in batch) == list(range(500))  # every pair once per epoch
    for batch in first:
        assert len(batch) * (max(sources[i] for i in batch) + max(targets[i] for i in batch)) <= 400
    assert np.mean([len(b) for b in first]) > 6  # similar lengths together: little padding, full batches
    sampler.set_epoch(1)
    second = list(sampler)
    assert len(second) == len(first) == len(sampler) and second != first  # same batches, new order
    assert sorted(map(tuple, second)) == sorted(map(tuple, first))
    sampler.set_epoch(0)
    assert list(sampler) == first  # an epoch's order is reproducible (exact resume)
    with pytest.raises(DataError, match=r"--max_tokens_per_batch 50 is smaller than the longest training pair"):
        TokenBudgetBatchSampler([30, 10], [30, 5], max_tokens=50)


def test_training_with_batches_by_tokens(data, tmp_path):
    out = tmp_path / "tokens"
    assert cli_main(seq2seq_args(data, out, "--num_train_epochs", "2", "--max_tokens_per_batch", "300")) == 0
    state = json.loads((out / "trainer_state.json").read_text())
    pairs = len(PAIRS) * 2
    steps_per_epoch = state["global_step"] // 2
    # About 10 pairs of ~30 tokens per 300-token batch.
    assert state["global_step"] == 2 * steps_per_epoch and pairs / 12 < steps_per_epoch < pairs / 5


@pytest.mark.skipif(not (MULTI30K / "raw").is_dir(), reason="Multi30k not available")
def test_multi30k_slice_end_to_end(tmp_path):
    raw = MULTI30K / "raw"
    pairs = list(zip(read_lines(raw / "train.de.gz")[:600], read_lines(raw / "train.en.gz")[:600]))
    valid = list(zip(read_lines(raw / "val.de.gz")[:16], read_lines(raw / "val.en.gz")[:16]))
    files = {
        "train": write_pairs(tmp_path / "m30k", "train", pairs),
        "valid": write_pairs(tmp_path / "m30k", "val", valid),
    }
    out = tmp_path / "run"
    args = seq2seq_args(files, out, "--max_steps", "8", "--do_eval", "--predict_with_generate",
                        "--generation_num_beams", "2", "--generation_max_length", "24", "--lowercase_bleu", "moses",
                        "--truncate_long_sequences", "--tokenizer_kind", "unigram", "--tokenizer_vocab_size", "600")  # fmt: skip
    assert cli_main(args) == 0
    metrics = json.loads((out / "all_results.json").read_text())
    assert {"eval_bleu", "eval_chrf", "eval_bleu_lc_tok"} <= metrics.keys()
    assert json.loads((out / "tokenizer.json").read_text())["model"]["type"] == "Unigram"


# ------------------------------------------------------------------------------------------------- denoising


def test_infilling_masks_30_percent_in_poisson_spans():
    rng = np.random.default_rng(0)
    mask = -1
    spans, ratios = [], []
    for n in rng.integers(20, 120, size=400):
        ids = list(range(n))
        noised, lengths = infilling_noise(ids, mask, rng, mask_ratio=0.3, poisson_lambda=3.0)
        kept = [t for t in noised if t != mask]
        assert kept == sorted(kept) and set(kept) <= set(ids)  # the kept tokens keep their order
        assert n - len(kept) == round(0.3 * n) == sum(lengths)  # exactly 30% of the tokens are masked
        assert 1 <= noised.count(mask) <= len(lengths)  # one mask per span (spans in one gap merge)
        ratios.append((n - len(kept)) / n)
        spans.extend(lengths[:-1])  # the last span is cut to hit the budget
    assert np.mean(ratios) == pytest.approx(0.3, abs=0.01)
    assert np.mean(spans) == pytest.approx(3.0, abs=0.15)  # Poisson(3) lengths
    assert np.mean(np.array(spans) == 0) == pytest.approx(math.exp(-3), abs=0.02)  # zero-length = insertion


def test_t5_span_corruption_round_trips():
    rng = np.random.default_rng(1)
    sentinels, eos = [1000 + i for i in range(100)], 999
    densities = []
    for n in rng.integers(20, 200, size=200):
        ids = list(range(n))
        inputs, targets = t5_span_corruption(ids, sentinels, eos, rng, noise_density=0.15, mean_noise_span_length=3)
        assert inputs[-1] == eos and targets[-1] == eos
        # Filling each sentinel of the input with the span after it in the target gives the original back.
        spans, current = {}, None
        for token in targets[:-1]:
            if token in sentinels:
                current = token
                spans[current] = []
            else:
                spans[current].append(token)
        rebuilt = [t for token in inputs[:-1] for t in (spans[token] if token in sentinels else [token])]
        assert rebuilt == ids
        noise = sum(len(s) for s in spans.values())
        densities.append(noise / n)
        assert noise == round(0.15 * n) and len(spans) == max(1, round(noise / 3))
    assert np.mean(densities) == pytest.approx(0.15, abs=0.01)


def test_sentence_permutation_keeps_sentences_whole():
    rng = np.random.default_rng(2)
    ends = np.zeros(20, dtype=bool)
    ends[[9]] = True  # token 9 is "."
    ids = [1, 2, 9, 3, 4, 5, 9, 6, 9, 7]
    seen = {tuple(permute_sentences(ids, ends, rng)) for _ in range(50)}
    sentences = [(1, 2, 9), (3, 4, 5, 9), (6, 9), (7,)]
    assert len(seen) > 5
    for order in seen:
        assert sorted(order) == sorted(ids)
        assert sum(1 for s in sentences if any(order[i : i + len(s)] == s for i in range(len(order)))) == 4


@pytest.mark.parametrize("noise", ["infilling", "t5"])
def test_denoising_pretraining_runs(noise, tmp_path):
    text = tmp_path / "mono.txt"
    text.write_text("".join(f"{en} {de}\n" for de, en in PAIRS), encoding="utf-8")
    out = tmp_path / noise
    args = ["pretrain", "transformer", "--objective", "denoising", "--noise", noise, "--preset", "transformer-tiny",
            "--train_file", str(text), "--validation_file", str(text), "--output_dir", str(out), "--do_train",
            "--do_eval", "--max_steps", "4", "--per_device_train_batch_size", "8", "--tokenizer_kind", "bpe",
            "--tokenizer_vocab_size", "300", "--report_to", "none", "--use_cpu", "true", "--logging_steps", "1",
            "--save_strategy", "no", "--permute_sentences", "true", "--max_eval_samples", "16"]  # fmt: skip
    assert cli_main(args) == 0
    losses = logged_losses(out)
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert math.isfinite(json.loads((out / "all_results.json").read_text())["eval_loss"])
    tokenizer = AutoTokenizer.from_pretrained(out)
    if noise == "infilling":
        assert tokenizer.mask_token == "<mask>"
    else:
        assert "<extra_id_99>" in tokenizer.get_vocab()
    assert json.loads((out / "config.json").read_text())["vocab_size"] >= len(tokenizer)


@pytest.mark.slow
@pytest.mark.skipif(not (MULTI30K / "raw").is_dir(), reason="Multi30k not available")
def test_bench_multi30k_quick_runs(tmp_path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_multi30k.py"
    result = subprocess.run([sys.executable, str(script), "--quick", "--output_dir", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sacreBLEU (detokenized, cased, 13a):" in result.stdout
    assert "lower-cased tokenized BLEU:" in result.stdout and "tokens/s" in result.stdout
    assert len((tmp_path / "run" / PREDICTIONS_FILE).read_text().splitlines()) == 200


@pytest.mark.slow  # end to end, as the GPT, BERT and ResNet push tests: the card's BLEU is checked in process above,
# Trainer's push in test_hub.py, loading the Transformer's remote code without hf_bigmodel in test_models_common.py
def test_push_to_hub_publishes_model_tokenizer_code_and_card(data, tmp_path):
    """--push_to_hub against the local Hub-compatible server: the repo gets the weights, tokenizer, generation
    config, modeling code and the model card with BLEU; a clean process loads and translates from it."""
    import os
    import subprocess
    import sys

    from hf_bigmodel.testing.hub_server import HubServer

    with HubServer(tmp_path / "hub") as hub:
        env = {**os.environ, **hub.env(), "HF_HOME": str(tmp_path / "hf_home"), "OMP_NUM_THREADS": "1"}
        repo = f"{hub.user}/tiny-translator"
        args = seq2seq_args(data, tmp_path / "run", "--max_steps", "2", "--do_eval", "--predict_with_generate",
                            "--push_to_hub", "--hub_model_id", repo)  # fmt: skip
        result = subprocess.run([sys.executable, "-m", "hf_bigmodel.cli", *args], env=env, capture_output=True,
                                text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        # Read what the server stored directly: this process may run with HF_HUB_OFFLINE=1 (CI), which blocks clients.
        files = set(hub.files(repo))
        expected = {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "README.md",
                    "configuration_transformer.py", "modeling_transformer.py"}  # fmt: skip
        # Weights as safetensors only (Trainer's own push adds its training_args.bin, as for `pretrain gpt`).
        assert expected <= files and not any(f.endswith((".bin", ".pt")) for f in files - {"training_args.bin"})
        load = (
            "import sys; from transformers import AutoModelForSeq2SeqLM, AutoTokenizer; "
            "m = AutoModelForSeq2SeqLM.from_pretrained(sys.argv[1], trust_remote_code=True); "
            "t = AutoTokenizer.from_pretrained(sys.argv[1]); "
            "print('OUT', m.generate(**t(['Ein Mann.'], return_tensors='pt'), max_new_tokens=3).shape[0], "
            "type(m).__module__)"
        )
        child = {k: v for k, v in env.items() if k != "PYTHONPATH"}
        loaded = subprocess.run([sys.executable, "-c", load, repo], env=child, capture_output=True, text=True,
                                cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=300)  # fmt: skip
        assert loaded.returncode == 0, loaded.stderr[-3000:]
        assert "OUT 1 transformers_modules." in loaded.stdout
        assert "BLEU (sacreBLEU, detokenized, 13a)" in hub.read(repo, "README.md").decode()


def test_evaluation_keeps_the_dataset_order_under_group_by_length(tmp_path):
    # transformers 5 also groups *evaluation* batches by length under group_by_length; predictions are matched with
    # references (and written to generated_predictions.txt) by position, so the trainer must keep the dataset's
    # order: a shuffled prediction file scored BLEU 1 instead of 36 on Multi30k.
    import datasets
    from transformers import Seq2SeqTrainingArguments

    import hf_bigmodel
    from hf_bigmodel.training.pretrain_seq2seq import Seq2SeqDataArguments, TranslationTrainer

    lengths = [3, 9, 1, 7, 5, 2, 8, 4, 6, 10, 2, 9]
    dataset = datasets.Dataset.from_dict({"input_ids": [[5 + i] * n for i, n in enumerate(lengths)]})
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=3, use_cpu=True,
                                    train_sampling_strategy="group_by_length", report_to="none")  # fmt: skip
    model = AutoModelForSeq2SeqLM.from_config(hf_bigmodel.create_config("transformer-tiny"))
    trainer = TranslationTrainer(model=model, args=args, references={}, data_args=Seq2SeqDataArguments())
    assert list(trainer._get_eval_sampler(dataset)) == list(range(len(lengths)))
