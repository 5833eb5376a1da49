"""Start-up time of the command line and of `import hf_bigmodel`, each in a fresh interpreter.

Every case is a new process, run `--rounds` times in interleaved rounds (the order of the cases is shuffled every
round, so a burst of load from another process does not land on one case only); the table gives the median wall
time, and each case's ratio to the reference measured in the same run: a bare interpreter (`python -c pass`).
Target: every `--help` at most 1 s.

    python benchmarks/bench_startup.py             # 5 rounds
    python benchmarks/bench_startup.py --rounds 9  # steadier on a busy machine
"""

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 1.0
ROOT = Path(__file__).resolve().parents[1]


def cli_prefix() -> list[str]:
    """The installed `hf-bigmodel` script of this interpreter's environment, else the module (same code path)."""
    script = Path(sys.executable).with_name("hf-bigmodel")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "hf_bigmodel.cli"]


def cases() -> dict[str, list[str]]:
    """name -> command line. Importing the source tree's hf_bigmodel lists the commands and architectures."""
    sys.path.insert(0, str(ROOT))
    from hf_bigmodel.cli import COMMANDS

    cli = cli_prefix()
    help_cases = {"hf-bigmodel --help": [*cli, "--help"]}
    help_cases.update({f"hf-bigmodel {name} --help": [*cli, name, "--help"] for name in COMMANDS})
    for arch in ("gpt", "bert", "transformer", "resnet"):
        help_cases[f"hf-bigmodel pretrain {arch} --help"] = [*cli, "pretrain", arch, "--help"]
    return {
        "python -c pass (reference)": [sys.executable, "-c", "pass"],
        "import hf_bigmodel": [sys.executable, "-c", "import hf_bigmodel"],
        "import hf_bigmodel + registration": [
            sys.executable,
            "-c",
            "import hf_bigmodel, transformers; transformers.AutoConfig.for_model('bigmodel_gpt')",
        ],
        **help_cases,
    }


def time_once(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="runs of every case, interleaved")
    args = parser.parse_args(argv)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env["HF_HUB_OFFLINE"] = "1"
    commands = cases()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"python {platform.python_version()} on {os.cpu_count()} CPUs, load average {load}, {args.rounds} rounds")
    print(f"hf-bigmodel: {' '.join(cli_prefix())}")
    for command in commands.values():  # warm the file cache: the first run of a process reads its files from disk
        time_once(command, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    rng = random.Random(0)
    for _ in range(args.rounds):
        order = list(commands)
        rng.shuffle(order)
        for name in order:
            times[name].append(time_once(commands[name], env))

    medians = {name: statistics.median(values) for name, values in times.items()}
    reference = medians["python -c pass (reference)"]
    width = max(map(len, commands))
    print(f"{'case'.ljust(width)}  median s  x reference   target")
    failed = []
    for name, median in medians.items():
        is_help = name.endswith("--help")
        verdict = ("PASS" if median <= TARGET_S else "FAIL") if is_help else ""
        if verdict == "FAIL":
            failed.append(name)
        print(f"{name.ljust(width)}  {median:8.3f}  {median / reference:11.1f}   {verdict}")
    print(
        f"summary: {len(medians) - 3 - len(failed)} of {len(medians) - 3} --help cases within {TARGET_S:g} s"
        + (f"; over: {', '.join(failed)}" if failed else "")
    )
    print(f"load average after: {', '.join(f'{value:.1f}' for value in os.getloadavg())}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
