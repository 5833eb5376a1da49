"""Throughput of the hf_bigmodel ResNet-50 vs transformers' ResNetForImageClassification at the identical config.

Both models are ResNet-50 (bottleneck blocks, depths 3-4-6-3, widths 256-2048, 1000 classes) with the same random
weights layout and the same inputs. Two measurements, each model in its own worker process, timed in interleaved
rounds and compared by median:

- inference: `model.eval()` forward under `torch.inference_mode()` (as pipelines and evaluation run it), batch 8;
- training step: forward with labels (cross-entropy) + backward + SGD with momentum 0.9 (the ImageNet ResNet recipe),
  batch 8, in training mode (BatchNorm batch statistics).

bf16 runs the forward under torch.autocast("cpu", dtype=torch.bfloat16) on both sides.

    python benchmarks/bench_resnet50.py                  # 224x224, batch 8 (inference) and 8 (training), fp32
    python benchmarks/bench_resnet50.py --threads 1      # steadier figures on a machine busy with other work
    python benchmarks/bench_resnet50.py --precision fp32 bf16
    python benchmarks/bench_resnet50.py --quick          # 64x64 images, batch 2, a few steps: a smoke test
"""

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import compare_in_workers, environment_line, verdict  # noqa: E402

TARGETS = {"inference": 1.2, "train": 1.1}
MODELS = {"reference": "ResNetForImageClassification", "ours": "ours"}


def build_model(name: str) -> torch.nn.Module:
    """transformers' ResNet-50 ("reference") or ours ("ours"), both with 1000 classes."""
    torch.manual_seed(0)
    if name == "reference":
        from transformers import ResNetConfig, ResNetForImageClassification

        return ResNetForImageClassification(ResNetConfig(num_labels=1000))  # ResNetConfig() is ResNet-50
    from hf_bigmodel.models.resnet import BigModelResNetConfig, BigModelResNetForImageClassification

    return BigModelResNetForImageClassification(BigModelResNetConfig.from_preset("resnet-50"))


def make_runner(name: str, settings: dict[str, Any]):
    """Runs in a worker: build the model and return a closure doing one inference batch or one training step."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    model = build_model(name)
    generator = torch.Generator().manual_seed(0)
    batch = settings["batch"] if settings["mode"] == "inference" else settings["train_batch"]
    pixels = torch.randn(batch, 3, settings["image_size"], settings["image_size"], generator=generator)
    labels = torch.randint(0, 1000, (batch,), generator=generator)
    bf16 = settings["precision"] == "bf16"

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    if settings["mode"] == "inference":
        model.eval()

        def infer() -> None:
            with torch.inference_mode(), autocast():
                model(pixel_values=pixels)

        return infer

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = model(pixel_values=pixels, labels=labels).loss
        loss.backward()
        optimizer.step()

    return step


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=224, help="image height and width")
    parser.add_argument("--batch", type=int, default=8, help="images per inference batch")
    parser.add_argument("--train-batch", type=int, default=8, help="images per training step")
    parser.add_argument("--mode", choices=["inference", "train"], nargs="+", default=["inference", "train"])
    parser.add_argument("--precision", choices=["fp32", "bf16"], nargs="+", default=["fp32"])
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds per model")
    parser.add_argument("--steps-per-round", type=int, default=2, help="timed calls per model per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per model first")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="64x64 images, batch 2, few steps: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.image_size, args.batch, args.train_batch = 64, 2, 2
        args.rounds, args.steps_per_round, args.warmup = 2, 1, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(environment_line(args.threads))
    print(
        f"config: ResNet-50, {args.image_size}x{args.image_size} images, batch {args.batch} (inference) / "
        f"{args.train_batch} (training); {args.rounds} rounds x {args.steps_per_round} calls, warmup {args.warmup}"
    )
    print(f"{'mode':<9} {'precision':<9} {'model':<28} {'ms/call':>9} {'images/s':>9} {'peak RSS':>10}")
    results = []
    for mode in args.mode:
        images = args.batch if mode == "inference" else args.train_batch
        for precision in args.precision:
            settings = {**vars(args), "mode": mode, "precision": precision}
            measured = compare_in_workers(
                make_runner, list(MODELS), settings, args.rounds, args.steps_per_round, args.warmup
            )
            for name, (seconds, peak_mib) in measured.items():
                print(
                    f"{mode:<9} {precision:<9} {MODELS[name]:<28} {seconds * 1e3:>9.1f} {images / seconds:>9.1f} "
                    f"{peak_mib:>7.0f} MiB"
                )
            ratio = measured["reference"][0] / measured["ours"][0]
            results.append((mode, precision, ratio))
            print(f"{mode:<9} {precision:<9} {'speed-up':<28} {ratio:>8.2f}x")

    print("summary (speed-up = our images/s / reference images/s; peak RSS is each model's own worker process):")
    for mode, precision, ratio in results:
        print(f"  {mode} {precision}: {ratio:.2f}x  {verdict(ratio, TARGETS[mode], args.quick)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
