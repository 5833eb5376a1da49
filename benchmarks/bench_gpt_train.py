"""Training-step throughput of the hf_bigmodel GPT vs transformers' GPT2LMHeadModel at the identical config.

One step = forward with labels (causal LM loss) + backward + AdamW step (fused, Trainer's default), on a fixed
random batch. Both models get the same sizes, the same dropout, the same attention implementation (transformers'
default, sdpa) and the same optimizer. bf16 runs forward and loss under torch.autocast("cpu", dtype=torch.bfloat16)
on both sides. Each model trains in its own worker process; the two are timed in interleaved rounds and compared
by their median step time.

    python benchmarks/bench_gpt_train.py                 # GPT-2 architecture, 6x384, vocab 8192, batch 8x256
    python benchmarks/bench_gpt_train.py --threads 1     # steadier figures on a machine busy with other work
    python benchmarks/bench_gpt_train.py --quick         # tiny sizes, a few steps: a smoke test (seconds)
    python benchmarks/bench_gpt_train.py --precision bf16 --dropout 0.1
"""

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import add_model_size_args, build_gpt_pair_model, compare_in_workers, environment_line, verdict  # noqa: E402

TARGET = 1.2
MODELS = {"reference": "GPT2LMHead", "ours": "ours"}


def build_model(name: str, settings: dict[str, Any]) -> torch.nn.Module:
    """GPT2LMHeadModel ("reference") or our model ("ours") with the sizes and dropout in `settings`."""
    return build_gpt_pair_model(name, settings, dropout=settings["dropout"], eos_token_id=settings["vocab"] - 1)


def make_train_step(name: str, settings: dict[str, Any]):
    """Runs in a worker: build the model and return a closure doing one full training step."""
    from transformers.utils import logging

    logging.set_verbosity_error()  # GPT2LMHeadModel warns that its loss type is the default one
    model = build_model(name, settings).train()
    if model.config._attn_implementation != "sdpa":
        raise RuntimeError(f"{name} uses {model.config._attn_implementation} attention, expected sdpa.")
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, settings["vocab"], (settings["batch"], settings["seq"]), generator=generator)
    # Trainer's default optimizer (`adamw_torch_fused` for torch >= 2.8).
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    bf16 = settings["precision"] == "bf16"

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        optimizer.step()

    return step


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_size_args(parser)
    parser.add_argument("--batch", type=int, default=8, help="sequences per step")
    parser.add_argument("--seq", type=int, default=256, help="tokens per sequence")
    parser.add_argument(
        "--dropout", type=float, nargs="+", default=[0.1, 0.0], help="dropout rates to run (GPT-2 default 0.1)"
    )
    parser.add_argument("--precision", choices=["fp32", "bf16"], nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds per model")
    parser.add_argument("--steps-per-round", type=int, default=2, help="timed steps per model per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps, for a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.hidden, args.heads, args.vocab = 2, 64, 2, 512
        args.max_positions, args.batch, args.seq = 64, 2, 32
        args.rounds, args.steps_per_round, args.warmup = 2, 2, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(environment_line(args.threads))
    print(
        f"config: {args.layers} layers, hidden {args.hidden}, {args.heads} heads, vocab {args.vocab}, "
        f"batch {args.batch}x{args.seq}; {args.rounds} rounds x {args.steps_per_round} steps, warmup {args.warmup}"
    )
    tokens_per_step = args.batch * args.seq
    print(f"{'precision':<9} {'dropout':>7} {'model':<10} {'ms/step':>9} {'tokens/s':>10} {'peak RSS':>10}")
    results = []
    for dropout in args.dropout:
        for precision in args.precision:
            settings = {**vars(args), "dropout": dropout, "precision": precision}
            measured = compare_in_workers(
                make_train_step, list(MODELS), settings, args.rounds, args.steps_per_round, args.warmup
            )
            for name, (seconds, peak_mib) in measured.items():
                print(
                    f"{precision:<9} {dropout:>7.2f} {MODELS[name]:<10} {seconds * 1e3:>9.1f} "
                    f"{tokens_per_step / seconds:>10.0f} {peak_mib:>7.0f} MiB"
                )
            ratio = measured["reference"][0] / measured["ours"][0]
            results.append((precision, dropout, ratio))
            print(f"{precision:<9} {dropout:>7.2f} {'speed-up':<10} {ratio:>8.2f}x")

    print("summary (speed-up = reference ms/step / our ms/step; peak RSS is each model's own worker process):")
    for precision, dropout, ratio in results:
        print(f"  train {precision} dropout {dropout:.2f}: {ratio:.2f}x  {verdict(ratio, TARGET, args.quick)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
