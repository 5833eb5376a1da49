"""Timing helpers shared by the benchmarks: one worker process per model, interleaved rounds, medians, peak memory.

Each model runs in its own worker process, as it would in a real training or generation job: two models in one
process share the memory allocator, and whichever ran before changes how the other's large tensors are served
(fresh zeroed pages or reused ones), which moved step times by 10% or more in either direction. The parent tells
the workers to run in alternating rounds (the order flipped every round), so a burst of load from another process
hits both sides instead of skewing the ratio, and compares medians. Each worker also reports its own peak RSS.
"""

import contextlib
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import torch

# A runner factory: (model name, benchmark settings) -> a zero-argument callable doing one timed unit of work.
# It must be a module-level function so that the spawned workers can import it.
RunnerFactory = Callable[[str, dict[str, Any]], Callable[[], None]]


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (`ru_maxrss` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def environment_line(threads: int | None) -> str:
    """One line describing what the numbers were measured on (the load average tells how busy the CPUs were)."""
    import transformers

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{threads or torch.get_num_threads()} torch threads on {os.cpu_count()} CPUs, load average {load}"
    )


def _worker(conn: Connection, factory: RunnerFactory, name: str, settings: dict[str, Any]) -> None:
    """Worker loop: build the runner, then answer ("run", n) with n call times and ("stop", None) with peak RSS."""
    if settings.get("threads"):
        torch.set_num_threads(settings["threads"])
    run = factory(name, settings)
    conn.send("ready")
    while True:
        command, count = conn.recv()
        if command == "stop":
            conn.send(peak_rss_mib())
            return
        times = []
        for _ in range(count):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        conn.send(times)


def compare_in_workers(
    factory: RunnerFactory,
    names: list[str],
    settings: dict[str, Any],
    rounds: int,
    calls_per_round: int,
    warmup: int,
) -> dict[str, tuple[float, float]]:
    """Run `factory(name, settings)` for each name in its own process and time it in interleaved rounds.

    Each worker first makes `warmup` untimed calls. Returns {name: (median seconds per call, peak RSS in MiB)}.
    """
    context = multiprocessing.get_context("spawn")  # a clean process per model, whatever the parent has done
    workers = {}
    for name in names:
        parent_end, child_end = context.Pipe()
        process = context.Process(target=_worker, args=(child_end, factory, name, settings), daemon=True)
        process.start()
        workers[name] = (process, parent_end)
    try:
        for _, conn in workers.values():
            if conn.recv() != "ready":
                raise RuntimeError("A benchmark worker failed to start.")
        for name in names:
            workers[name][1].send(("run", warmup))
            workers[name][1].recv()
        times: dict[str, list[float]] = {name: [] for name in names}
        for round_index in range(rounds):
            for name in names if round_index % 2 == 0 else names[::-1]:
                workers[name][1].send(("run", calls_per_round))
                times[name].extend(workers[name][1].recv())
        results = {}
        for name in names:
            workers[name][1].send(("stop", None))
            results[name] = (statistics.median(times[name]), workers[name][1].recv())
        return results
    finally:
        for process, _ in workers.values():
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def verdict(ratio: float, target: float, quick: bool = False) -> str:
    """PASS/FAIL against the target; `--quick` sizes are too small for the targets to mean anything."""
    if quick:
        return f"not judged (--quick smoke test; target >= {target:.2f}x applies to the default sizes)"
    return f"{'PASS' if ratio >= target else 'FAIL'} (target >= {target:.2f}x)"


def add_run_args(parser, rounds: int = 6, steps_per_round: int = 2, warmup: int = 2, precision: bool = True) -> None:
    """The flags every timing benchmark shares: precisions, interleaved rounds, warm-up, threads and --quick."""
    if precision:
        parser.add_argument("--precision", choices=["fp32", "bf16"], nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=rounds, help="interleaved rounds per model")
    parser.add_argument("--steps-per-round", type=int, default=steps_per_round, help="timed calls per model per round")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed calls per model first")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps, for a smoke test")


def training_step(name: str, model: torch.nn.Module, inputs: dict[str, torch.Tensor], precision: str):
    """A closure doing one full training step of `model` (in train mode, sdpa attention) on `inputs`: forward with
    the loss (under bf16 autocast for precision "bf16"), backward, and a step of Trainer's default optimizer
    (`adamw_torch_fused` for torch >= 2.8)."""
    from transformers.utils import logging

    logging.set_verbosity_error()  # stock models warn about their default loss type
    model.train()
    if model.config._attn_implementation != "sdpa":
        raise RuntimeError(f"{name} uses {model.config._attn_implementation} attention, expected sdpa.")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    bf16 = precision == "bf16"

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()

    return step


def compare_training_steps(
    make_step: RunnerFactory,
    labels: dict[str, str],
    args,
    target: float,
    task: str,
    dropouts: list[float | None],
    tokens_per_step: int | None = None,
) -> list[tuple[str, float | None, float]]:
    """Time `make_step` for both models at every (dropout, precision) of the run, print one table row per model and
    the speed-up, then a summary with verdicts; returns [(precision, dropout, speed-up)]. A dropout of None means
    the script's single setting (no dropout column)."""
    show_dropout = dropouts != [None]
    width = max(len(label) for label in labels.values())
    header = f"{'precision':<9} " + (f"{'dropout':>7} " if show_dropout else "") + f"{'model':<{width}} {'ms/step':>9}"
    print(header + (f" {'tokens/s':>10}" if tokens_per_step else "") + f" {'peak RSS':>10}")
    results = []
    for dropout in dropouts:
        for precision in args.precision:
            settings = {**vars(args), "precision": precision, **({"dropout": dropout} if show_dropout else {})}
            measured = compare_in_workers(make_step, list(labels), settings, args.rounds, args.steps_per_round,
                                          args.warmup)  # fmt: skip
            prefix = f"{precision:<9} " + (f"{dropout:>7.2f} " if show_dropout else "")
            for name, (seconds, peak_mib) in measured.items():
                rate = f" {tokens_per_step / seconds:>10.0f}" if tokens_per_step else ""
                print(f"{prefix}{labels[name]:<{width}} {seconds * 1e3:>9.1f}{rate} {peak_mib:>7.0f} MiB")
            ratio = measured["reference"][0] / measured["ours"][0]
            results.append((precision, dropout, ratio))
            print(f"{prefix}{'speed-up':<{width}} {ratio:>8.2f}x")
    print("summary (speed-up = reference ms/step / our ms/step; peak RSS is each model's own worker process):")
    for precision, dropout, ratio in results:
        setting = f" dropout {dropout:.2f}" if show_dropout else ""
        print(f"  {task} {precision}{setting}: {ratio:.2f}x  {verdict(ratio, target, args.quick)}")
    return results


def add_model_size_args(parser) -> None:
    """The model-size flags every GPT benchmark shares; defaults are the issue's GPT-2 architecture (6 x 384)."""
    parser.add_argument("--layers", type=int, default=6, help="transformer blocks")
    parser.add_argument("--hidden", type=int, default=384, help="hidden size")
    parser.add_argument("--heads", type=int, default=6, help="attention heads")
    parser.add_argument("--vocab", type=int, default=8192, help="vocabulary size")
    parser.add_argument("--max-positions", type=int, default=1024, help="position table size (GPT-2: 1024)")


def build_gpt_pair_model(name: str, settings: dict[str, Any], dropout: float = 0.0, eos_token_id: int | None = None):
    """GPT2LMHeadModel ("reference") or our model ("ours") with the same sizes (`settings`: vocab, max_positions,
    hidden, layers, heads), dropout and bos/eos id: the identical-config pair every GPT benchmark compares."""
    torch.manual_seed(0)
    if name == "reference":
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(
            vocab_size=settings["vocab"],
            n_positions=settings["max_positions"],
            n_embd=settings["hidden"],
            n_layer=settings["layers"],
            n_head=settings["heads"],
            embd_pdrop=dropout,
            resid_pdrop=dropout,
            attn_pdrop=dropout,
            bos_token_id=eos_token_id,
            eos_token_id=eos_token_id,
        )
        return GPT2LMHeadModel(config)
    from hf_bigmodel.models.gpt import BigModelGPTConfig, BigModelGPTForCausalLM

    config = BigModelGPTConfig(
        vocab_size=settings["vocab"],
        max_position_embeddings=settings["max_positions"],
        hidden_size=settings["hidden"],
        num_hidden_layers=settings["layers"],
        num_attention_heads=settings["heads"],
        embedding_dropout=dropout,
        hidden_dropout=dropout,
        attention_dropout=dropout,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
    )
    return BigModelGPTForCausalLM(config)


def marian_config(settings: dict[str, Any], **overrides):
    """The MarianConfig both Transformer benchmarks compare ours with (`settings`: vocab, max_positions, hidden,
    layers, heads, ffn): post-norm, ReLU, scaled embeddings, the same sizes on both sides of the encoder-decoder.
    `overrides`: each benchmark's tokens, dropout and tying."""
    from transformers import MarianConfig

    sizes = dict(
        vocab_size=settings["vocab"],
        max_position_embeddings=settings["max_positions"],
        d_model=settings["hidden"],
        encoder_layers=settings["layers"],
        decoder_layers=settings["layers"],
        encoder_attention_heads=settings["heads"],
        decoder_attention_heads=settings["heads"],
        encoder_ffn_dim=settings["ffn"],
        decoder_ffn_dim=settings["ffn"],
        activation_function="relu",
        scale_embedding=True,
    )
    return MarianConfig(**{**sizes, **overrides})
