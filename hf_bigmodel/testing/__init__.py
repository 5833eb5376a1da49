"""Testing utilities shipped with hf_bigmodel.

`HubServer` is a Hub-compatible HTTP server (standard library only) that runs on 127.0.0.1: point the unmodified
`huggingface_hub` / `transformers` clients at it to test publishing (`push_to_hub`, `hf-bigmodel push`, Trainer's
`--push_to_hub`) and loading (`from_pretrained("user/repo")`) offline. See `hf_bigmodel.testing.hub_server`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["HubServer", "WITHOUT_HF_BIGMODEL", "run_python"]

# Python source to run first in a child process (`python -c WITHOUT_HF_BIGMODEL + code`): from then on
# `import hf_bigmodel` fails although the package is installed, as on a machine that only has transformers. Tests use
# it to prove that a saved or pushed folder loads with `trust_remote_code=True` from its own code files.
WITHOUT_HF_BIGMODEL = """
import importlib.abc, sys
class _BlockHfBigmodel(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "hf_bigmodel":
            raise ImportError(f"{name} is blocked: this process must work without hf_bigmodel")
        return None
sys.meta_path.insert(0, _BlockHfBigmodel())
"""


def run_python(
    code: str,
    *args: str,
    cwd: str | os.PathLike,
    env: dict[str, str] | None = None,
    with_package: bool = False,
    timeout: float = 300,
) -> Any:
    """Run `python -c code *args` in a fresh interpreter and return what it printed as `RESULTS<json>`.

    The child is offline (`HF_HUB_OFFLINE=1`, unless `env` says otherwise), has no stdin (a remote-code prompt
    gets EOF instead of waiting) and no `PYTHONPATH`, so it imports whatever is installed; `with_package=True`
    puts the source tree of this hf_bigmodel first instead. A failing child raises AssertionError with its stderr.
    """
    child_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    child_env.pop("PYTHONPATH", None)
    if with_package:
        child_env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=child_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"child process failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}")
    line = next((line for line in proc.stdout.splitlines() if line.startswith("RESULTS")), None)
    if line is None:
        raise AssertionError(f"child process printed no RESULTS line:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULTS") :])


def __getattr__(name: str):
    # Imported on first use, so that `python -m hf_bigmodel.testing.hub_server` runs the module only once.
    if name == "HubServer":
        from .hub_server import HubServer

        return HubServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
