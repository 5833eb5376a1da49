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
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import (  # noqa: E402
    add_model_size_args,
    add_run_args,
    build_gpt_pair_model,
    compare_training_steps,
    environment_line,
    training_step,
)

TARGET = 1.2
MODELS = {"reference": "GPT2LMHead", "ours": "ours"}


def build_model(name: str, settings: dict[str, Any]) -> torch.nn.Module:
    """GPT2LMHeadModel ("reference") or our model ("ours") with the sizes and dropout in `settings`."""
    return build_gpt_pair_model(name, settings, dropout=settings["dropout"], eos_token_id=settings["vocab"] - 1)


def make_train_step(name: str, settings: dict[str, Any]):
    """Runs in a worker: build the model and return a closure doing one full training step."""
    model = build_model(name, settings)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, settings["vocab"], (settings["batch"], settings["seq"]), generator=generator)
    return training_step(name, model, {"input_ids": input_ids, "labels": input_ids}, settings["precision"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_size_args(parser)
    parser.add_argument("--batch", type=int, default=8, help="sequences per step")
    parser.add_argument("--seq", type=int, default=256, help="tokens per sequence")
    parser.add_argument(
        "--dropout", type=float, nargs="+", default=[0.1, 0.0], help="dropout rates to run (GPT-2 default 0.1)"
    )
    add_run_args(parser)
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
    compare_training_steps(make_train_step, MODELS, args, TARGET, "train", args.dropout, args.batch * args.seq)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
