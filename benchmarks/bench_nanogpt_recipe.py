"""nanoGPT's CPU recipe on tiny-shakespeare, character level: nanoGPT's own `train.py` against `hf-bigmodel pretrain
gpt`, side by side in one invocation.

Recipe (nanoGPT README, "I only have a macbook"): `config/train_shakespeare_char.py` with `--device=cpu
--compile=False --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4
--n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0`, i.e. 4 layers, 4 heads, 128 wide, no bias,
context 64, batch 12, 2000 iterations, AdamW (beta2 0.99, weight decay 0.1) at 1e-3 with 100 warm-up steps and
cosine decay to 1e-4, gradient clipping at 1.0. The first 90% of input.txt trains, the last 10% validates.

nanoGPT side: its `data/shakespeare_char/prepare.py` and `train.py` run unchanged from the nanoGPT checkout
(`--nanogpt`, default ../shared/anchors/nanoGPT) as subprocesses in a temporary directory that holds the prepared
data and its checkpoint; nothing of nanoGPT is copied into this repository. Its validation loss is what train.py
prints at the last iteration (20 random batches of 12, its own estimate).

Our side: `python -m hf_bigmodel.cli pretrain gpt` with the same recipe (`--validation_split_percentage 10` cuts the
character stream where nanoGPT's prepare.py does), bf16 autocast by default where the CPU computes bfloat16
natively, fp32 elsewhere (`--precision bf16|fp32` to choose); its validation loss is the mean over every
64-character block of the held-out 10%. The command trains the character tokenizer, trains, evaluates, saves the
model folder with its card and prints a sample: all inside the wall time.

Each run times both sides (nanoGPT first in odd runs, ours first in even ones, so that a burst of load from other
processes hits both), each as a fresh process, from start to exit. Peak RSS is that of the whole process tree:
the largest sum of the tree's resident memory sampled every 20 ms, or the largest single process's `ru_maxrss`,
whichever is higher. The ratio is nanoGPT's wall time over ours in the same run.

    python benchmarks/bench_nanogpt_recipe.py                      # one run of each side (bf16 on ours if native)
    python benchmarks/bench_nanogpt_recipe.py --runs 2             # interleaved: nanoGPT, ours, ours, nanoGPT
    python benchmarks/bench_nanogpt_recipe.py --precision fp32     # our float32 path
    python benchmarks/bench_nanogpt_recipe.py --threads 1          # both sides on one thread (a busy machine)
    python benchmarks/bench_nanogpt_recipe.py --quick              # smoke test: 20 iterations, nothing judged
    python benchmarks/bench_nanogpt_recipe.py --profile --threads 1  # where one of our training steps goes

On a machine whose cores other jobs keep busy, torch's threads wait for each other at every operator and both sides
slow down many times over, unevenly; `--threads 1` gives steadier ratios there. The summary prints the load average.

Targets (issue #15): ours at least 2x faster than nanoGPT, validation loss <= 1.88, peak RSS <= 600 MiB.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TARGET_RATIO, TARGET_LOSS, TARGET_RSS_MIB = 2.0, 1.88, 600.0
NANOGPT_CONFIG = "config/train_shakespeare_char.py"


def find_shared(*parts: str) -> Path:
    """../shared/<parts> next to the repository, or higher up (a worktree sits one level deeper)."""
    for parent in Path(__file__).resolve().parents[1:]:
        if (parent / "shared" / parts[0]).exists():
            return parent.joinpath("shared", *parts)
    return Path(__file__).resolve().parents[2].joinpath("shared", *parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=find_shared("data", "tiny_shakespeare", "input.txt"))
    parser.add_argument("--nanogpt", type=Path, default=find_shared("anchors", "nanoGPT"), help="nanoGPT checkout")
    parser.add_argument("--runs", type=int, default=1, help="runs of each side, interleaved")
    parser.add_argument("--max_steps", type=int, default=None, help="iterations of both sides (default 2000)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="our side's precision (auto: bf16 where the CPU computes bfloat16 natively, AVX-512 "
                        "BF16 or AMX, else fp32: emulated bfloat16 is slower than fp32)")  # fmt: skip
    parser.add_argument("--eval_batch_size", type=int, default=64, help="our side's evaluation batch size")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of both sides (OMP_NUM_THREADS; default: torch's, one per core)")  # fmt: skip
    parser.add_argument("--sides", nargs="+", choices=["nanogpt", "ours"], default=["nanogpt", "ours"])
    parser.add_argument("--keep", type=Path, default=None, help="keep both sides' files here (default: a temp dir)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead: where one training step of our side goes (process time per part, fp32 and bf16)",
    )
    parser.add_argument("--profile_steps", type=int, default=100, help="steps per measurement of --profile")
    parser.add_argument("--quick", action="store_true", help="smoke test: 20 iterations, targets not judged")
    args = parser.parse_args(argv)
    if args.precision == "auto":
        from hf_bigmodel.hardware import native_bf16  # torch only, not the models

        args.precision = "bf16" if native_bf16() else "fp32"
    if args.max_steps is None:
        args.max_steps = 20 if args.quick else 2000
    if args.runs < 1 or args.max_steps < 1:
        parser.error("--runs and --max_steps must be at least 1")
    return args


def nanogpt_command(args: argparse.Namespace) -> list[str]:
    """nanoGPT's README CPU line, with the iteration count of this run (evaluations every 250 iterations as in
    its config, or only at the start and the end of a run whose length is no multiple of 250)."""
    eval_interval = 250 if args.max_steps % 250 == 0 else args.max_steps
    return [
        sys.executable, str(args.nanogpt / "train.py"), str(args.nanogpt / NANOGPT_CONFIG),
        "--device=cpu", "--compile=False", f"--eval_iters={2 if args.quick else 20}", "--log_interval=1",
        "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128",
        f"--max_iters={args.max_steps}", f"--lr_decay_iters={args.max_steps}", "--dropout=0.0",
        f"--eval_interval={eval_interval}",
    ]  # fmt: skip


def ours_command(args: argparse.Namespace, output_dir: Path) -> list[str]:
    """`hf-bigmodel pretrain gpt` with nanoGPT's recipe and split."""
    return [
        sys.executable, "-m", "hf_bigmodel.cli", "pretrain", "gpt",
        "--preset", "nanogpt-cpu", "--tokenizer_kind", "char",
        "--train_file", str(args.data), "--validation_split_percentage", "10",
        "--block_size", "64", "--per_device_train_batch_size", "12",
        "--per_device_eval_batch_size", str(args.eval_batch_size),
        "--max_steps", str(args.max_steps), "--learning_rate", "1e-3",
        "--lr_scheduler_type", "cosine_with_min_lr", "--lr_scheduler_kwargs", '{"min_lr": 1e-4}',
        "--warmup_steps", str(min(100, args.max_steps // 2)), "--weight_decay", "0.1", "--adam_beta2", "0.99",
        "--max_grad_norm", "1.0", "--bf16", str(args.precision == "bf16").lower(),
        "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "100", "--disable_tqdm", "true",
        "--output_dir", str(output_dir), "--report_to", "none",
        "--use_cpu", "true", "--seed", "1337", "--dataloader_num_workers", "0",
        "--sample_max_new_tokens", "0" if args.quick else "200",
    ]  # fmt: skip


def child_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment of both sides: this one, with `--threads` as OMP_NUM_THREADS (torch follows it)."""
    return {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and all its descendants, read from /proc (0 once the process is gone)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    total, todo = 0, [pid]
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError, IndexError):
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * page
        todo.extend(children.get(current, []))
    return total


@dataclass
class Measured:
    wall: float
    peak_mib: float
    log: str


def run_measured(command: list[str], cwd: Path, log_path: Path, label: str, env: dict[str, str]) -> Measured:
    """Run `command` to its end with its output in `log_path`; time it and follow its process tree's memory.
    Every 10 s a progress line shows the last line the command logged."""
    peak = 0
    with open(log_path, "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            last_report = time.perf_counter()
            while not done.is_set():
                peak = max(peak, tree_rss_bytes(process.pid))
                if time.perf_counter() - last_report >= 10:
                    last_report = time.perf_counter()
                    lines = log_path.read_text(errors="replace").strip().splitlines()
                    last = lines[-1][:90] if lines else ""
                    print(f"    {label}: {last_report - start:5.0f} s  {last}", flush=True)
                done.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # wait4 rather than Popen.wait: it also returns the child's ru_maxrss (its largest resident size, and that
        # of any process it waited for), which catches a peak shorter than the sampling interval.
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
    output = log_path.read_text(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{label} exited with {process.returncode}; the end of its output:\n{output[-3000:]}")
    peak_mib = max(peak / 2**20, usage.ru_maxrss / 1024)  # ru_maxrss is in KiB on Linux
    return Measured(wall, peak_mib, output)


def prepare_nanogpt(args: argparse.Namespace, workdir: Path) -> None:
    """nanoGPT's working directory: its configurator (train.py execs it from the current directory) and its
    shakespeare_char/prepare.py, run there on our copy of input.txt (it only downloads when input.txt is missing,
    so `requests`, which it imports, is stubbed when it is not installed)."""
    data_dir = workdir / "data" / "shakespeare_char"
    data_dir.mkdir(parents=True)
    (workdir / "configurator.py").symlink_to(args.nanogpt / "configurator.py")
    (data_dir / "prepare.py").symlink_to(args.nanogpt / "data" / "shakespeare_char" / "prepare.py")
    shutil.copyfile(args.data, data_dir / "input.txt")
    stub = "" if importlib.util.find_spec("requests") else "sys.modules['requests'] = types.ModuleType('requests'); "
    code = f"import runpy, sys, types; {stub}runpy.run_path('data/shakespeare_char/prepare.py', run_name='__main__')"
    subprocess.run([sys.executable, "-c", code], cwd=workdir, check=True, capture_output=True, text=True)


def run_nanogpt(args: argparse.Namespace, workdir: Path, index: int) -> dict:
    measured = run_measured(
        nanogpt_command(args), workdir, workdir / f"train-{index}.log", "nanoGPT train.py", child_env(args)
    )
    evals = re.findall(r"step (\d+): train loss ([0-9.]+), val loss ([0-9.]+)", measured.log)
    if not evals or int(evals[-1][0]) != args.max_steps:
        raise RuntimeError(f"nanoGPT printed no evaluation at iteration {args.max_steps}:\n{measured.log[-2000:]}")
    # The loop time: the sum of train.py's per-iteration times (evaluations included), without start-up.
    loop = sum(float(ms) for ms in re.findall(r"^iter \d+: .*time ([0-9.]+)ms", measured.log, re.M)) / 1e3
    return {"wall": measured.wall, "peak_mib": measured.peak_mib, "val_loss": float(evals[-1][2]), "train": loop}


def run_ours(args: argparse.Namespace, workdir: Path, index: int) -> dict:
    output_dir = workdir / f"ours-{index}"
    repo = Path(__file__).resolve().parents[1]
    measured = run_measured(
        ours_command(args, output_dir), repo, workdir / f"ours-{index}.log", "hf-bigmodel", child_env(args)
    )
    metrics = json.loads((output_dir / "all_results.json").read_text())
    shutil.rmtree(output_dir)  # the next run starts fresh (an existing output_dir would resume)
    return {"wall": measured.wall, "peak_mib": measured.peak_mib, "val_loss": metrics["eval_loss"],
            "train": metrics["train_runtime"]}  # fmt: skip


def profile_step(args: argparse.Namespace) -> None:
    """Where a training step of our side goes: data collation, forward (with the loss), backward, gradient clipping
    and the fused AdamW step, each summed over `--profile_steps` steps as process time (CPU seconds of this process,
    so that other processes' load counts less than in wall time), then the same number of steps through `Trainer`
    (the recipe's arguments): the difference is Trainer's own per-step work (scheduler, callbacks, logging checks)."""
    import contextlib

    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator
    from transformers.utils import logging

    import hf_bigmodel
    from hf_bigmodel.data import pack_token_stream

    logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    text = args.data.read_text(encoding="utf-8")
    vocabulary = {char: index for index, char in enumerate(sorted(set(text)))}
    tokens = np.array([vocabulary[char] for char in text[: int(len(text) * 0.9)]], dtype=np.int32)
    dataset = pack_token_stream(tokens, 64)
    config = hf_bigmodel.create_config("nanogpt-cpu", vocab_size=128)  # the char tokenizer's 65 ids, padded to 64s
    n = args.profile_steps
    print(f"one training step of `pretrain gpt` on nanoGPT's recipe (batch 12 x 64), process time per step over "
          f"{n} steps; {torch.get_num_threads()} torch threads, load average {load_average()}")  # fmt: skip
    print(f"{'precision':<9} {'collate':>8} {'forward':>8} {'backward':>9} {'clip':>6} {'AdamW':>6} {'sum':>7} "
          f"{'Trainer':>8} {'overhead':>9}")  # fmt: skip
    top_ops = {}
    for precision in ("fp32", "bf16"):
        autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else None
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1, fused=True)
        loader = iter(torch.utils.data.DataLoader(dataset, batch_size=12, shuffle=True,
                                                  collate_fn=default_data_collator))  # fmt: skip
        parts = [0.0] * 5
        for step in range(n + 10):  # 10 untimed warm-up steps
            times = [time.process_time()]
            batch = next(loader)
            times.append(time.process_time())
            with autocast() if autocast else contextlib.nullcontext():
                loss = model(**batch).loss
            times.append(time.process_time())
            loss.backward()
            times.append(time.process_time())
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            times.append(time.process_time())
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(time.process_time())
            if step >= 10:
                parts = [total + after - before for total, after, before in zip(parts, times[1:], times)]
        with tempfile.TemporaryDirectory() as output_dir:
            training_args = TrainingArguments(
                output_dir, max_steps=n, per_device_train_batch_size=12, learning_rate=1e-3, warmup_steps=100,
                lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr": 1e-4}, weight_decay=0.1,
                adam_beta2=0.99, max_grad_norm=1.0, bf16=precision == "bf16", eval_strategy="no", save_strategy="no",
                logging_steps=100, report_to="none", use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
            )  # fmt: skip
            trainer = Trainer(model=AutoModelForCausalLM.from_config(config), args=training_args,
                              train_dataset=dataset, data_collator=default_data_collator)  # fmt: skip
            start = time.process_time()
            trainer.train()
            trainer_step = (time.process_time() - start) / n
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
            for _ in range(10):
                with autocast() if autocast else contextlib.nullcontext():
                    loss = model(**next(loader)).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        events = sorted(profiler.key_averages(), key=lambda event: event.self_cpu_time_total, reverse=True)
        total = sum(event.self_cpu_time_total for event in events)
        top_ops[precision] = ", ".join(f"{e.key} {e.self_cpu_time_total / total:.0%}" for e in events[:6])
        ms = [part / n * 1e3 for part in parts]
        print(f"{precision:<9} {ms[0]:>6.2f}ms {ms[1]:>6.1f}ms {ms[2]:>7.1f}ms {ms[3]:>4.1f}ms {ms[4]:>4.1f}ms "
              f"{sum(ms):>5.1f}ms {trainer_step * 1e3:>6.1f}ms {trainer_step * 1e3 - sum(ms):>7.1f}ms")  # fmt: skip
    print(
        "(Trainer: a whole step through Trainer.train; overhead: Trainer minus the sum of the parts, which includes "
        "its first-step set-up spread over the steps)"
    )
    for precision, ops in top_ops.items():
        print(f"{precision} operators by self CPU time (torch.profiler, 10 steps): {ops}")


def load_average() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.data.is_file():
        print(f"tiny-shakespeare not found at {args.data}; pass --data PATH/input.txt", file=sys.stderr)
        return 2
    if args.profile:
        profile_step(args)
        return 0
    if "nanogpt" in args.sides and not (args.nanogpt / "train.py").is_file():
        print(f"nanoGPT's train.py not found in {args.nanogpt}; pass --nanogpt DIR (a nanoGPT checkout) or "
              "--sides ours", file=sys.stderr)  # fmt: skip
        return 2
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="nanogpt-recipe-"))
    workdir.mkdir(parents=True, exist_ok=True)
    threads = args.threads or "default"
    print(f"nanoGPT CPU recipe, tiny-shakespeare character level, {args.max_steps} iterations; our side in "
          f"{args.precision}; {threads} threads on {os.cpu_count()} CPUs, load average {load_average()} at the start")  # fmt: skip
    sides = {"nanogpt": run_nanogpt, "ours": run_ours}
    results: dict[str, list[dict]] = {side: [] for side in args.sides}
    try:
        if "nanogpt" in args.sides:
            prepare_nanogpt(args, workdir)
        for index in range(args.runs):
            order = args.sides if index % 2 == 0 else args.sides[::-1]
            for side in order:
                print(f"  run {index + 1}/{args.runs}: {side} (load average {load_average()})", flush=True)
                results[side].append(sides[side](args, workdir, index))
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)

    labels = {"nanogpt": "nanoGPT train.py (fp32)", "ours": f"hf-bigmodel pretrain gpt ({args.precision})"}
    print(f"\n{'run':<4} {'side':<34} {'val loss':>9} {'wall':>8} {'training':>9} {'peak RSS':>10} {'ratio':>7}")
    ratios = []
    for index in range(args.runs):
        for side in args.sides:
            r = results[side][index]
            ratio = ""
            if side == "ours" and "nanogpt" in results:
                ratios.append(results["nanogpt"][index]["wall"] / r["wall"])
                ratio = f"{ratios[-1]:.2f}x"
            print(f"{index + 1:<4} {labels[side]:<34} {r['val_loss']:>9.4f} {r['wall']:>7.1f}s {r['train']:>8.1f}s "
                  f"{r['peak_mib']:>6.0f} MiB {ratio:>7}")  # fmt: skip
    print(
        "(ratio = nanoGPT's wall time / ours, same run; training = Trainer's train_runtime for ours, the sum of "
        f"train.py's iteration times for nanoGPT; load average at the end {load_average()})"
    )
    if args.quick or "ours" not in results or args.max_steps != 2000:
        why = "--quick smoke test" if args.quick else "the targets are for 2000 iterations"
        print(f"not judged ({why if 'ours' in results else 'our side did not run'})")
        return 0
    ours = results["ours"]
    checks = [(f"validation loss <= {TARGET_LOSS}", max(r["val_loss"] for r in ours) <= TARGET_LOSS),
              (f"peak RSS <= {TARGET_RSS_MIB:.0f} MiB", max(r["peak_mib"] for r in ours) <= TARGET_RSS_MIB)]  # fmt: skip
    if ratios:
        checks.append((f"median ratio {statistics.median(ratios):.2f}x >= {TARGET_RATIO:.0f}x",
                       statistics.median(ratios) >= TARGET_RATIO))  # fmt: skip
    for name, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
