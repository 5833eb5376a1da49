"""Testing utilities shipped with hf_bigmodel.

`run_python` runs code in a fresh interpreter (optionally without hf_bigmodel importable); `randomize_`,
`randomize_batch_norm_`, `pad_rows` and `logged_losses` are the small helpers the tests share; `model_cases` holds one tiny test
case per architecture for the generic model tests. `HubServer` is a Hub-compatible HTTP server (standard library only) that runs on 127.0.0.1: point the unmodified
`huggingface_hub` / `transformers` clients at it to test publishing (`push_to_hub`, `hf-bigmodel push`, Trainer's
`--push_to_hub`) and loading (`from_pretrained("user/repo")`) offline. See `hf_bigmodel.testing.hub_server`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "HubServer",
    "WITHOUT_HF_BIGMODEL",
    "logged_losses",
    "pad_rows",
    "randomize_",
    "randomize_batch_norm_",
    "run_python",
    "shared_data",
]

# Python source to run first in a child process (`python -c WITHOUT_HF_BIGMODEL + code`): from then on
# `import hf_bigmodel` fails although the package is installed, as on a machine that only has transformers. Tests use
# it to prove that a saved or pushed folder loads with `trust_remote_code=True` from its own code files. The child
# exits at once if the block does not hold, so that such a proof cannot pass by accident.
WITHOUT_HF_BIGMODEL = """
import importlib.abc, sys
class _BlockHfBigmodel(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "hf_bigmodel":
            raise ImportError(f"{name} is blocked: this process must work without hf_bigmodel")
        return None
sys.meta_path.insert(0, _BlockHfBigmodel())
try:
    import hf_bigmodel
    raise SystemExit("hf_bigmodel is still importable")
except ImportError:
    pass
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


def randomize_(model: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Give every parameter a distinct random value, LayerNorm weights around 1 and biases too, so that a swapped or
    dropped key changes the outputs (at init, all LayerNorms are alike and all biases zero). Returns the model."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            base = 1.0 if name.endswith("LayerNorm.weight") or name.endswith("layer_norm.weight") else 0.0
            param.copy_(base + std * torch.randn(param.shape, generator=gen))
    return model


def randomize_batch_norm_(model: torch.nn.Module) -> torch.nn.Module:
    """Move every BatchNorm's running statistics and affine parameters far from their init (mean 0, variance 1,
    weight 1, bias 0), so that a mixed-up or skipped BatchNorm shows in the outputs. Returns the model."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
                module.num_batches_tracked.fill_(7)
    return model


def pad_rows(
    rows: list[torch.Tensor], pad_token_id: int = 0, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack rows of different lengths into (input_ids, attention_mask), padded on the `side` ("left" for decoders
    that generate, "right" for encoders)."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}.")
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_token_id)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[i, span], mask[i, span] = row, 1
    return ids, mask


def logged_losses(output_dir: str | os.PathLike) -> list[float]:
    """The training losses a Trainer run logged, in order, read from its `trainer_state.json`."""
    state = json.loads((Path(output_dir) / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def shared_data(name: str) -> Path:
    """`shared/data/<name>`, the project's real data sets, next to the checkout (as CI clones it) or, from a
    worktree further down, in the nearest folder above that has one; the path next to the checkout if none does
    (tests skip on a missing folder)."""
    here = Path(__file__).resolve().parents[2]  # the checkout
    found = next((p / "shared" / "data" for p in (here, *here.parents) if (p / "shared" / "data").is_dir()), None)
    return (found or here.parent / "shared" / "data") / name


def __getattr__(name: str):
    # Imported on first use, so that `python -m hf_bigmodel.testing.hub_server` runs the module only once.
    if name == "HubServer":
        from .hub_server import HubServer

        return HubServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
