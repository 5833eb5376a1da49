"""Greedy generation speed of the hf_bigmodel GPT vs transformers' GPT2LMHeadModel at the identical config.

Both models run `model.generate(input_ids, attention_mask=..., do_sample=False, max_new_tokens=N)` with a KV cache
at batch 1 (no end-of-sequence token, so every call produces exactly N tokens), in fp32, each in its own worker
process; the calls are timed in interleaved rounds and the ratio compares median new tokens per second.

    python benchmarks/bench_gpt_generate.py              # GPT-2 architecture, 6x384, vocab 8192, 128 new tokens
    python benchmarks/bench_gpt_generate.py --threads 1  # steadier figures on a machine busy with other work
    python benchmarks/bench_gpt_generate.py --quick      # tiny sizes, a smoke test (seconds)
"""

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import add_model_size_args, build_gpt_pair_model, compare_in_workers, environment_line, verdict  # noqa: E402

TARGET = 1.5
MODELS = {"reference": "GPT2LMHead", "ours": "ours"}


def build_model(name: str, settings: dict[str, Any]) -> torch.nn.Module:
    """GPT2LMHeadModel ("reference") or our model ("ours") with the sizes in `settings`, without an EOS token."""
    return build_gpt_pair_model(name, settings, dropout=0.0, eos_token_id=None)


def make_generate(name: str, settings: dict[str, Any]):
    """Runs in a worker: build the model and return a closure doing one greedy `generate` call."""
    model = build_model(name, settings).eval()
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, settings["vocab"], (1, settings["prompt_length"]), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    expected_length = input_ids.shape[1] + settings["new_tokens"]

    @torch.inference_mode()
    def generate() -> None:
        output = model.generate(
            input_ids, attention_mask=attention_mask, do_sample=False, max_new_tokens=settings["new_tokens"]
        )
        if output.shape[1] != expected_length:
            raise RuntimeError(f"{name} generated {output.shape[1]} tokens in total, expected {expected_length}.")

    return generate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_size_args(parser)
    parser.add_argument("--prompt-length", type=int, default=16, help="random prompt tokens")
    parser.add_argument("--new-tokens", type=int, default=128, help="max_new_tokens (all are generated)")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed generate calls per model first")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few calls, for a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.hidden, args.heads, args.vocab, args.max_positions = 2, 64, 2, 512, 64
        args.prompt_length, args.new_tokens, args.rounds, args.warmup = 8, 16, 2, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(environment_line(args.threads))
    print(
        f"config: {args.layers} layers, hidden {args.hidden}, {args.heads} heads, vocab {args.vocab}; greedy, fp32, "
        f"batch 1, prompt {args.prompt_length}, {args.new_tokens} new tokens; {args.rounds} rounds, "
        f"warmup {args.warmup}"
    )
    measured = compare_in_workers(make_generate, list(MODELS), vars(args), args.rounds, 1, args.warmup)
    print(f"{'model':<10} {'ms/call':>9} {'ms/token':>9} {'tokens/s':>9} {'peak RSS':>10}")
    for name, (seconds, peak_mib) in measured.items():
        print(
            f"{MODELS[name]:<10} {seconds * 1e3:>9.1f} {seconds * 1e3 / args.new_tokens:>9.2f} "
            f"{args.new_tokens / seconds:>9.1f} {peak_mib:>7.0f} MiB"
        )
    ratio = measured["reference"][0] / measured["ours"][0]
    print(f"generate speed-up (our tokens/s / reference tokens/s): {ratio:.2f}x  {verdict(ratio, TARGET, args.quick)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
