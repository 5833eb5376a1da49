"""MNIST with a CIFAR-style ResNet-20 through `hf-bigmodel pretrain resnet`, on CPU: test accuracy, wall time,
images/s.

Recipe (chosen for CPU wall time): resnet-20 (He et al. 2015, section 4.2: 3x3 stem, 3 stages of 16/32/64 channels,
0.27M parameters) with one input channel, on the 28x28 images as they are (no upscaling: 32x32 would cost 30% more
per image); shift augmentation (pad 2, random 28x28 crop; no flips, a flipped digit is another shape); label
smoothing 0.1; SGD with Nesterov momentum 0.9, batch 128, peak learning rate 0.1 after a 10% linear warmup, cosine
decay to 0, weight decay 5e-4; blocks start as the identity (zero_init_residual); bf16 autocast where the CPU computes
bfloat16 natively (about 1.8x faster than fp32 with AVX-512 BF16 / AMX; fp32 elsewhere, where it is emulated);
evaluation on the 10,000 test images at the end.
Target: >= 99.5% test accuracy. Measured on the busy 2-core VM of the issue (1 thread, bf16, seed 0): 6 epochs give
99.56% (1291 s wall, 210 s per epoch at load average ~3-5); 5 epochs gave 99.51% (334 s per epoch at load ~6), too
close to the target to be the default.

    python benchmarks/bench_mnist.py                 # the full run (6 epochs)
    python benchmarks/bench_mnist.py --quick         # smoke test: 2,000 training / 1,000 test images, ~1 min
    python benchmarks/bench_mnist.py --epochs 8 --no-bf16 --threads 2 --output_dir runs/mnist

On a quiet 2-core machine use 2 threads (the default picks the cores the load average leaves idle); on a busy one
1 thread is much faster than 2, whose threads wait for each other at every operator.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

TARGET_ACCURACY = 0.995


def default_mnist_dir() -> Path:
    """../shared/data/mnist next to the repository (or higher up, from a worktree)."""
    for parent in Path(__file__).resolve().parents[1:]:
        if (parent / "shared" / "data" / "mnist").is_dir():
            return parent / "shared" / "data" / "mnist"
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist_dir", type=Path, default=default_mnist_dir())
    parser.add_argument("--preset", default="resnet-20")
    parser.add_argument("--config_overrides", default="zero_init_residual=true")
    parser.add_argument("--epochs", type=float, default=6.0)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=0.1)
    parser.add_argument("--padding", type=int, default=2, help="shift augmentation: pad N pixels, random crop")
    parser.add_argument("--label_smoothing", type=float, default=0.1)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast (default: where the CPU computes bfloat16 natively)")  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: the cores the load leaves idle)"
    )
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", type=Path, default=None, help="keep the run here (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="2,000 training / 1,000 test images, 1 epoch")
    args = parser.parse_args()
    if args.bf16 is None:
        from hf_bigmodel.hardware import native_bf16

        args.bf16 = native_bf16()
    if not args.mnist_dir.is_dir():
        print(f"MNIST not found at {args.mnist_dir}; pass --mnist_dir with the four idx files", file=sys.stderr)
        return 2

    if args.threads is None:
        # Threads that wait for a busy core stall every operator (2 threads under load ran 9x slower than 1 here).
        args.threads = max(1, (os.cpu_count() or 1) - round(os.getloadavg()[0]))
    import torch

    torch.set_num_threads(args.threads)
    from hf_bigmodel.cli import main as cli_main

    output_dir = args.output_dir or Path(tempfile.mkdtemp(prefix="bench-mnist-"))
    argv = [
        "pretrain", "resnet", "--mnist_dir", str(args.mnist_dir),
        "--preset", args.preset, "--config_overrides", args.config_overrides,
        "--random_crop_padding", str(args.padding), "--label_smoothing", str(args.label_smoothing),
        "--num_train_epochs", str(1.0 if args.quick else args.epochs),
        "--per_device_train_batch_size", str(args.batch_size), "--per_device_eval_batch_size", "500",
        "--optim", "sgd", "--optim_args", "momentum=0.9,nesterov=True", "--weight_decay", "5e-4",
        "--learning_rate", str(args.learning_rate), "--lr_scheduler_type", "cosine", "--warmup_steps", "0.1",
        "--bf16", str(args.bf16).lower(), "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "50",
        "--dataloader_num_workers", str(args.workers), "--seed", str(args.seed), "--use_cpu", "true",
        "--report_to", "none", "--disable_tqdm", "true", "--output_dir", str(output_dir),
    ]  # fmt: skip
    if args.quick:
        argv += ["--max_train_samples", "2000", "--max_eval_samples", "1000"]
    print("command: hf-bigmodel " + shlex.join(argv), flush=True)
    start = time.perf_counter()
    status = cli_main(argv)
    wall = time.perf_counter() - start
    if status:
        return status
    metrics = json.loads((output_dir / "all_results.json").read_text())
    accuracy = metrics["eval_accuracy"]
    epochs = metrics.get("epoch") or args.epochs
    train_images = 2000 if args.quick else 60000
    images_per_s = train_images * epochs / metrics["train_runtime"]
    load = os.getloadavg()[0]
    print(
        f"\nMNIST {args.preset} ({'quick: 2,000 train / 1,000 test images' if args.quick else '60,000 / 10,000'}), "
        f"{epochs:g} epochs, {'bf16' if args.bf16 else 'fp32'}, {args.threads} threads, load average {load:.1f}\n"
        f"  test accuracy : {accuracy:.4%} (top-5 {metrics['eval_top5_accuracy']:.4%}, loss {metrics['eval_loss']:.4f})\n"
        f"  wall time     : {wall:.1f} s (training {metrics['train_runtime']:.1f} s, "
        f"{metrics['train_runtime'] / epochs:.1f} s per epoch)\n"
        f"  training speed: {images_per_s:.0f} images/s\n"
        f"  output        : {output_dir}"
    )
    if args.quick:
        print(f"  target        : >= {TARGET_ACCURACY:.1%} on the full run (quick run: not judged)")
        return 0
    verdict = "PASS" if accuracy >= TARGET_ACCURACY else "FAIL"
    print(f"  target        : >= {TARGET_ACCURACY:.1%}: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
