"""The benchmark scripts run end to end (`--quick`: tiny sizes, ratios printed but not judged), so the commands the
README quotes keep working. The speed figures themselves are measured on demand, not asserted here."""

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
@pytest.mark.parametrize(
    "script",
    [
        "bench_gpt_train.py",
        "bench_gpt_generate.py",
        "bench_transformer_generate.py",
        "bench_bert_train.py",
        "bench_resnet50.py",
    ],
)
def test_benchmark_quick_mode_runs(script):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    ratios = re.findall(r": ([0-9.]+)x +not judged", result.stdout)
    assert ratios and all(float(r) > 0 for r in ratios), result.stdout
    assert "not judged" in result.stdout


def load_benchmark(name: str):
    """A benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_nanogpt_recipe_commands_run_the_same_recipe(tmp_path, monkeypatch):
    bench = load_benchmark("bench_nanogpt_recipe")
    args = bench.parse_args(["--nanogpt", str(tmp_path), "--precision", "fp32"])
    assert (args.max_steps, args.runs) == (2000, 1)
    nanogpt = bench.nanogpt_command(args)
    assert nanogpt[1:3] == [str(tmp_path / "train.py"), str(tmp_path / "config/train_shakespeare_char.py")]
    for flag in ("--device=cpu", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128",
                 "--max_iters=2000", "--lr_decay_iters=2000", "--dropout=0.0", "--eval_interval=250"):  # fmt: skip
        assert flag in nanogpt
    ours = bench.ours_command(args, tmp_path / "out")
    options = dict(zip(ours[5::2], ours[6::2]))
    assert ours[3:5] == ["pretrain", "gpt"]
    assert options["--max_steps"] == "2000" and options["--per_device_train_batch_size"] == "12"
    assert options["--block_size"] == "64" and options["--validation_split_percentage"] == "10"
    assert options["--bf16"] == "false"
    for native, bf16 in ((True, "true"), (False, "false")):  # bf16 autocast by default where the CPU has it
        monkeypatch.setattr("hf_bigmodel.hardware.native_bf16", lambda native=native: native)
        default = bench.ours_command(bench.parse_args([]), tmp_path)
        assert dict(zip(default[5::2], default[6::2]))["--bf16"] == bf16
    assert bench.parse_args(["--precision", "bf16"]).precision == "bf16"
    quick = bench.parse_args(["--quick"])
    assert quick.max_steps == 20 and "--eval_interval=20" in bench.nanogpt_command(quick)


def test_nanogpt_recipe_without_nanogpt_says_where_to_get_it(tmp_path, capsys):
    bench = load_benchmark("bench_nanogpt_recipe")
    assert bench.main(["--nanogpt", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"nanoGPT's train.py not found in {tmp_path}" in err and "--nanogpt DIR" in err


def test_tree_rss_counts_child_processes():
    bench = load_benchmark("bench_nanogpt_recipe")
    own = bench.tree_rss_bytes(os.getpid())
    # The child holds 64 MiB of its own; the tree's resident size must count it on top of this process's.
    child = subprocess.Popen([sys.executable, "-c", "import sys; b = bytearray(64 << 20); sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while bench.tree_rss_bytes(os.getpid()) < own + (64 << 20) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bench.tree_rss_bytes(os.getpid()) >= own + (64 << 20)
    finally:
        child.communicate(b"")
    assert bench.tree_rss_bytes(child.pid) == 0  # a process that is gone holds nothing


@pytest.mark.slow
def test_nanogpt_recipe_quick_mode_runs_both_sides():
    bench = load_benchmark("bench_nanogpt_recipe")
    if not (bench.parse_args([]).nanogpt / "train.py").is_file():
        pytest.skip("nanoGPT checkout (../shared/anchors/nanoGPT) not present")
    result = subprocess.run([sys.executable, str(BENCHMARKS / "bench_nanogpt_recipe.py"), "--quick", "--threads", "1"],
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = re.findall(r"^1 +(nanoGPT|hf-bigmodel).*? ([0-9.]+) +([0-9.]+)s +([0-9.]+)s +([0-9]+) MiB", result.stdout,
                      re.M)  # fmt: skip
    assert [row[0] for row in rows] == ["nanoGPT", "hf-bigmodel"], result.stdout
    assert all(float(loss) < 5.0 and float(wall) > 0 and int(rss) > 50 for _, loss, wall, _, rss in rows)
    assert re.search(r"^1 +hf-bigmodel.* ([0-9.]+)x$", result.stdout, re.M), result.stdout


@pytest.mark.slow
def test_lime_benchmark_quick_mode_runs():
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_explain_lime.py"), "--quick", "--unbatched"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    times = re.findall(r"^ +([0-9.]+) s +\d+ tokens", result.stdout, flags=re.MULTILINE)
    assert len(times) == 2 and all(float(t) > 0 for t in times), result.stdout
    assert re.search(r"median: [0-9.]+ s per sentence .*\nunbatched .*: [0-9.]+ s, [0-9.]+x", result.stdout)


@pytest.mark.slow
def test_seqrec_benchmark_quick_mode_runs(tmp_path):
    """bench_seqrec.py end to end on a toy file: training, the three protocols, the wall time and sequences/s."""
    lines = [f"{user} {(user * 7 + step) % 300 + 1}" for user in range(1, 151) for step in range(6)]
    data = tmp_path / "toy.txt"
    data.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_seqrec.py"), "--data", str(data), "--quick", "--no-bf16"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for protocol in ("sampled-uniform", "sampled-popularity", "full"):
        assert f"{protocol}: " in result.stdout
    assert re.search(r"time to best validation epoch \d+ s, wall time \d+ s, \d+ training sequences/s", result.stdout)
    assert re.search(r"most-popular ranker \(training counts\), full ranking, NDCG@10 / HR@10: validation [0-9.]+ / "
                     r"[0-9.]+, test [0-9.]+ / [0-9.]+", result.stdout)  # fmt: skip


def test_seqrec_benchmark_uses_bf16_only_where_the_cpu_has_it(monkeypatch):
    """Emulated bfloat16 made a BERT4Rec epoch several times slower than fp32 on a CPU without AVX-512 BF16 or AMX."""
    bench = load_benchmark("bench_seqrec")
    for native in (True, False):
        monkeypatch.setattr(bench, "native_bf16", lambda native=native: native)
        assert bench.parse_args([]).bf16 is native
        assert bench.parse_args(["--bf16"]).bf16 is True and bench.parse_args(["--no-bf16"]).bf16 is False


def test_seqrec_benchmark_mask_probability_is_bert4recs(capsys):
    from types import SimpleNamespace

    bench = load_benchmark("bench_seqrec")
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(["--model", "sasrec", "--mask_probability", "0.6"])
    assert exit_info.value.code == 2 and "--mask_probability is BERT4Rec's" in capsys.readouterr().err
    args = bench.parse_args(["--model", "bert4rec", "--mask_probability", "0.6", "--no-bf16"])
    split = SimpleNamespace(num_items=30, item_map=SimpleNamespace(item_ids=[str(i) for i in range(1, 31)]))
    assert bench.build_model(args, split).config.mask_probability == 0.6
    assert bench.build_model(bench.parse_args(["--model", "bert4rec"]), split).config.mask_probability == 0.2


def test_heading_retrieval_keeps_a_training_pair_out_of_its_own_article():
    """bench_summarization_headings --retrieve: a test section retrieves from every training article, a training pair
    only from the others (a test section's article is never in training), and the candidates lead the document."""
    pytest.importorskip("sklearn")
    bench = load_benchmark("bench_summarization_headings")
    train = [
        {"document": "the storm made landfall with strong winds", "summary": "Meteorological history", "article": "A"},
        {"document": "the storm caused damage and deaths", "summary": "Impact", "article": "A"},
        {"document": "a storm made landfall with heavy winds", "summary": "Storm history", "article": "B"},
        {"document": "the album was released to good reviews", "summary": "Reception", "article": "C"},
    ]
    query = [{"document": "the storm made landfall with strong winds", "summary": "?"}]
    assert bench.retrieved_headings(train, query, k=2) == [["Meteorological history", "Storm history"]]
    own = bench.retrieved_headings(train, train[:1], k=2, exclude_own=True)
    assert own[0][0] == "Storm history" and not {"Meteorological history", "Impact"} & set(own[0])
    assert bench.with_candidates(query, [["A b", "C"]])[0]["document"] == f"A b ; C || {query[0]['document']}"


def test_heading_classifier_learns_headings_across_articles():
    """bench_summarization_headings' second reference: a classifier over the training headings, C chosen by
    cross-validation grouped by article, answers an unseen section with the heading of its topic."""
    pytest.importorskip("sklearn")
    bench = load_benchmark("bench_summarization_headings")
    topics = {"Reception": "critics praised the album review score", "Early life": "born childhood school parents"}
    train = [
        {"document": f"{words} {article}", "summary": heading, "article": article}
        for article in ("a", "b", "c", "d")
        for heading, words in topics.items()
    ]
    queries = [{"document": "the critics gave the album a review"}, {"document": "he was born and went to school"}]
    predicted, c = bench.classified_headings(train, queries)
    assert predicted == ["Reception", "Early life"] and c in (1.0, 10.0, 100.0)
    one_article = [pair for pair in train if pair["article"] == "a"]
    assert bench.classified_headings(one_article, queries) is None  # no article left out to choose C on


def _toy_seqrec_file(tmp_path: Path) -> Path:
    lines = [f"{user} {(user * 7 + step) % 300 + 1}" for user in range(1, 151) for step in range(6)]
    data = tmp_path / "toy.txt"
    data.write_text("\n".join(lines) + "\n")
    return data


@pytest.fixture
def seqrec_bench():
    """bench_seqrec as a module. Its main() sets torch's thread count (to --threads, 1), also when it then exits on an
    error; the count is put back afterwards, or every later test in this process would compute on one thread and
    differ in the last bits from the subprocesses that tests compare it with."""
    import torch

    threads = torch.get_num_threads()
    yield load_benchmark("bench_seqrec")
    torch.set_num_threads(threads)


def _run_seqrec(bench, argv: list[str], capsys) -> str:
    assert bench.main(argv) == 0
    return capsys.readouterr().out


def test_seqrec_benchmark_resumes_epoch_for_epoch(tmp_path, capsys, seqrec_bench):
    """Stopped after epoch 1 and resumed, BERT4Rec (dropout, random masking, random batches) ends epoch 2 with the
    same weights, validation scores and test report as a run that never stopped."""
    import torch
    from safetensors.torch import load_file

    bench = seqrec_bench
    common = ["--data", str(_toy_seqrec_file(tmp_path)), "--model", "bert4rec", "--no-bf16", "--patience", "5",
              "--validation_protocol", "full", "--hidden_size", "16"]  # fmt: skip
    straight = _run_seqrec(bench, [*common, "--epochs", "2", "--checkpoint_dir", str(tmp_path / "a")], capsys)
    _run_seqrec(bench, [*common, "--epochs", "1", "--checkpoint_dir", str(tmp_path / "b")], capsys)
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["epoch-1"]
    resumed = _run_seqrec(bench, [*common, "--epochs", "2", "--checkpoint_dir", str(tmp_path / "b"), "--resume"],
                          capsys)  # fmt: skip
    assert "resumed from" in resumed and "epoch-1: epoch 1" in resumed
    # Only the newest epoch is kept, and no half-written temporary folder is left behind.
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["epoch-2"]
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["epoch-2"]
    weights = [load_file(tmp_path / run / "epoch-2" / "model.safetensors") for run in ("a", "b")]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key

    def scores(out: str) -> list[str]:  # every line but the timings
        return [re.sub(r", \d+ s$", "", line) for line in out.splitlines()
                if line.startswith(("epoch ", "  HR@", "  NDCG@", "  MRR@"))]  # fmt: skip

    assert scores(straight) == scores(resumed)
    assert len([line for line in scores(resumed) if line.startswith("epoch ")]) == 2


def test_seqrec_benchmark_refuses_to_resume_the_wrong_run(tmp_path, capsys, seqrec_bench):
    bench = seqrec_bench
    folder = tmp_path / "run"
    common = ["--data", str(_toy_seqrec_file(tmp_path)), "--model", "sasrec", "--no-bf16", "--epochs", "1",
              "--hidden_size", "16", "--checkpoint_dir", str(folder)]  # fmt: skip

    def error(argv: list[str]) -> str:
        with pytest.raises(SystemExit) as exit_info:
            bench.main(argv)
        assert exit_info.value.code == 2
        return capsys.readouterr().err

    with pytest.raises(SystemExit):
        bench.parse_args(["--resume"])
    assert "--resume continues from a --checkpoint_dir" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit):
        bench.parse_args(["--checkpoint_dir", str(tmp_path / "a_file")])
    assert "a_file is a file: name a folder" in capsys.readouterr().err
    assert f"--resume: no saved epoch in {folder}. Drop --resume to start afresh." in error([*common, "--resume"])
    _run_seqrec(bench, common, capsys)
    assert "already holds a saved epoch (epoch-1). Add --resume to continue it" in error(common)
    message = error([*common, "--resume", "--lr", "0.002"])
    assert "was trained with other settings: lr (saved 0.001, now 0.002)" in message
    # --patience may change. The saved epoch already reaches --epochs 1, so the resumed run trains no further and
    # tests the saved model: epoch 1's line is the one reprinted from the checkpoint.
    out = _run_seqrec(bench, [*common, "--resume", "--patience", "3"], capsys)
    assert "resumed from" in out and out.count("epoch 1: ") == 1 and "epoch 2: " not in out and "  NDCG@10" in out


def test_seqrec_benchmark_lr_decay_follows_validation(tmp_path, capsys, seqrec_bench, monkeypatch):
    """--lr_decay multiplies the learning rate after each epoch that does not improve validation NDCG@10, and only
    then; the decayed rate is saved with the optimizer. A checkpoint written before --lr_decay and --adam_beta2
    existed resumes as trained with the values that were fixed then."""
    import json

    bench = seqrec_bench
    with pytest.raises(SystemExit):
        bench.parse_args(["--lr_decay", "0"])
    assert "--lr_decay 0.0 is not in (0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(["--adam_beta2", "1"])
    assert "--adam_beta2 1.0 is not in [0, 1)" in capsys.readouterr().err
    real_evaluate = bench.evaluate_recommender
    validation_scores = iter([0.5, 0.4, 0.6, 0.3])  # epochs 2 and 4 do not improve

    def evaluate(model, split, which, **kwargs):
        report = real_evaluate(model, split, which, **kwargs)
        if which == "valid":
            report.metrics["full"]["NDCG@10"] = next(validation_scores)
        return report

    monkeypatch.setattr(bench, "evaluate_recommender", evaluate)
    folder = tmp_path / "run"
    common = ["--data", str(_toy_seqrec_file(tmp_path)), "--model", "sasrec", "--no-bf16", "--hidden_size", "16",
              "--validation_protocol", "full", "--lr_decay", "0.5", "--checkpoint_dir", str(folder)]  # fmt: skip
    rates = []
    for epochs in (1, 2, 3, 4):
        _run_seqrec(bench, [*common, "--epochs", str(epochs), *(["--resume"] if epochs > 1 else [])], capsys)
        state = json.loads((folder / f"epoch-{epochs}" / "state.json").read_text())
        rates.append(state["optimizer_param_groups"][0]["lr"])
    assert rates == pytest.approx([1e-3, 5e-4, 5e-4, 2.5e-4], rel=1e-12)
    assert state["best_epoch"] == 3 and state["flags"]["lr_decay"] == 0.5

    old = tmp_path / "old"
    plain = [*common[: common.index("--lr_decay")], "--checkpoint_dir", str(old), "--epochs", "1"]
    monkeypatch.setattr(bench, "evaluate_recommender", real_evaluate)
    _run_seqrec(bench, plain, capsys)
    state_file = old / "epoch-1" / "state.json"
    state = json.loads(state_file.read_text())
    del state["flags"]["lr_decay"], state["flags"]["adam_beta2"]
    state_file.write_text(json.dumps(state))
    assert "resumed from" in _run_seqrec(bench, [*plain, "--resume"], capsys)
    with pytest.raises(SystemExit):
        bench.main([*plain, "--resume", "--adam_beta2", "0.999"])
    assert "adam_beta2 (saved 0.98, now 0.999)" in capsys.readouterr().err
