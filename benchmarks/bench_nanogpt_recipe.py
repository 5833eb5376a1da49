"""nanoGPT's CPU recipe on tiny-shakespeare, character level, through `hf-bigmodel pretrain gpt`.

Recipe (nanoGPT README, "I only have a macbook"): 4 layers, 4 heads, 128 wide, context 64, batch 12, 2000 iterations,
dropout 0, learning rate 1e-3 with cosine decay over 2000 steps (nanoGPT's config/train_shakespeare_char.py also sets
100 warmup steps, min_lr 1e-4, beta2 0.99, weight decay 0.1, grad clip 1.0). The first 90% of input.txt trains, the
last 10% validates (nanoGPT's split: `--validation_split_percentage 10` cuts the character stream there).

Reference: nanoGPT's own train.py reaches validation loss 1.886 in 2 min 50 s on this 2-core machine (issue figure).
Target: validation loss <= 1.88, in less wall time. Prints loss, wall time, ratio and peak memory.

    python benchmarks/bench_nanogpt_recipe.py [--data ../shared/data/tiny_shakespeare/input.txt] [--max_steps 2000]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

REFERENCE_LOSS, REFERENCE_SECONDS = 1.886, 170.0
TARGET_LOSS = 1.88
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny_shakespeare" / "input.txt"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--max_steps", type=int, default=2000)
    parser.add_argument("--output_dir", type=Path, default=None, help="keep the run here (default: a temp dir)")
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"tiny-shakespeare not found at {args.data}; pass --data PATH/input.txt", file=sys.stderr)
        return 2

    from hf_bigmodel.cli import main as cli_main

    output_dir = args.output_dir or Path(tempfile.mkdtemp(prefix="nanogpt-recipe-"))
    argv = [
        "pretrain", "gpt",
        "--preset", "nanogpt-cpu", "--tokenizer_kind", "char",
        "--train_file", str(args.data), "--validation_split_percentage", "10",
        "--block_size", "64", "--per_device_train_batch_size", "12", "--per_device_eval_batch_size", "256",
        "--max_steps", str(args.max_steps), "--learning_rate", "1e-3",
        "--lr_scheduler_type", "cosine_with_min_lr", "--lr_scheduler_kwargs", '{"min_lr": 1e-4}',
        "--warmup_steps", "100", "--weight_decay", "0.1", "--adam_beta2", "0.99", "--max_grad_norm", "1.0",
        "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "100",
        "--output_dir", str(output_dir), "--report_to", "none",
        "--use_cpu", "true", "--seed", "1337", "--dataloader_num_workers", "0", "--sample_max_new_tokens", "200",
    ]  # fmt: skip
    start = time.perf_counter()
    status = cli_main(argv)
    wall = time.perf_counter() - start
    if status:
        return status
    metrics = json.loads((output_dir / "all_results.json").read_text())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    loss = metrics["eval_loss"]
    print("\nnanoGPT CPU recipe, tiny-shakespeare char-level, via `hf-bigmodel pretrain gpt`")
    print(f"  validation loss   {loss:.4f}   (target <= {TARGET_LOSS}; nanoGPT reaches {REFERENCE_LOSS})")
    print(f"  wall time         {wall:.1f} s (training {metrics['train_runtime']:.1f} s)   "
          f"nanoGPT {REFERENCE_SECONDS:.0f} s -> ratio {REFERENCE_SECONDS / wall:.2f}x")  # fmt: skip
    print(f"  peak memory (RSS) {peak_mib:.0f} MiB")
    ok = loss <= TARGET_LOSS and wall < REFERENCE_SECONDS
    print(f"  {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
