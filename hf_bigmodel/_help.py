"""`hf-bigmodel COMMAND --help` without importing torch or transformers, for the commands whose parsers need them.

The training commands build their parsers from transformers' `TrainingArguments` (every Trainer flag is an option),
and `convert`, `evaluate`, `push` and `train-tokenizer` list what the zoo's modules define; building any of them
imports torch and transformers, seconds before a line of help. Their help texts are therefore kept in `cli_help.json`,
written by the live parsers (`python -m hf_bigmodel._help` rewrites it) at a fixed width of 80 columns, and stamped
with the Python and transformers versions that wrote them. The dispatcher (`hf_bigmodel.cli`) prints the stored text
when the stamp matches what is installed, and otherwise runs the live parser, so a newer transformers never gets a
stale list of flags. `tests/test_cli_startup.py` fails when the stored texts differ from the live ones.

`demo`, `generate` and `explain` build their parsers from argparse alone and always answer live.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("cli_help.json")
WIDTH = 80  # argparse wraps at COLUMNS - 2; 80 is its width without a terminal, and fits any terminal
CACHED_COMMANDS = ("pretrain", "finetune", "convert", "evaluate", "push", "train-tokenizer")
_HELP_FLAGS = ("-h", "--help")


def help_key(argv: list[str]) -> str | None:
    """The snapshot key of a command line that asks for help (`["pretrain", "gpt", "--help"]` -> "pretrain gpt"),
    or None when it does not ask for help or its command always answers live."""
    args = argv[: argv.index("--")] if "--" in argv else argv
    if not args or args[0] not in CACHED_COMMANDS or not any(arg in _HELP_FLAGS for arg in args[1:]):
        return None
    if args[0] == "pretrain" and len(args) > 1 and args[1] not in _HELP_FLAGS:
        return f"pretrain {args[1]}"  # the architecture's pretrainer, with its own options
    return args[0]


def stamp() -> dict[str, str]:
    """What the stored texts depend on besides hf_bigmodel's own code: argparse's layout changes with Python, and
    the Trainer flags with transformers."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        transformers_version = version("transformers")
    except PackageNotFoundError:  # pragma: no cover - a dependency
        transformers_version = "none"
    return {"python": f"{sys.version_info[0]}.{sys.version_info[1]}", "transformers": transformers_version}


def cached_help(argv: list[str]) -> str | None:
    """The stored help text for this command line, or None (no help asked, a live command, an unknown key, no
    snapshot, or a snapshot written with other versions)."""
    key = help_key(argv)
    if key is None or not SNAPSHOT.is_file():
        return None
    try:
        snapshot = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if snapshot.get("stamp") != stamp():
        return None
    return snapshot.get("help", {}).get(key)


def snapshot_keys() -> list[str]:
    """Every key the snapshot holds: the cached commands, and `pretrain ARCH` for each architecture's pretrainer."""
    from .training.pretrain import pretrainers

    return [*CACHED_COMMANDS, *(f"pretrain {arch}" for arch in pretrainers())]


def live_help(key: str) -> str:
    """What the command's own parser prints for `--help`, at `WIDTH` columns."""
    from .cli import COMMANDS

    command, *rest = key.split()
    module = __import__(COMMANDS[command][0], fromlist=["main"])
    out = io.StringIO()
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            module.main([*rest, "--help"])
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return out.getvalue()


def write_snapshot(path: Path = SNAPSHOT) -> dict:
    """Write the live help texts of every key, with the current stamp, to `path` (atomically)."""
    from ._io import atomic_write_text

    snapshot = {"stamp": stamp(), "width": WIDTH, "help": {key: live_help(key) for key in snapshot_keys()}}
    atomic_write_text(path, json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    return snapshot


if __name__ == "__main__":
    written = write_snapshot()
    print(f"wrote {len(written['help'])} help texts to {SNAPSHOT} ({written['stamp']})")
