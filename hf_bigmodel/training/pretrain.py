"""`hf-bigmodel pretrain ARCH [options]`: runs the pretrainer of ARCH, the module named by
`ARCHITECTURES[ARCH].pretrainer` or `RECOMMENDERS[ARCH].pretrainer` (its `main(argv)`, or the function named after a
colon, `module:function`), imported only when asked for. `hf-bigmodel pretrain ARCH --help`
lists that pretrainer's options.
"""

from __future__ import annotations

import importlib
import sys

from .._cli import command
from ..models import ARCHITECTURES, RECOMMENDERS


def pretrainers() -> dict[str, str]:
    """arch -> module of its pretrainer, for the architectures that have one."""
    rows = {**ARCHITECTURES, **RECOMMENDERS}
    return {arch: row.pretrainer for arch, row in rows.items() if row.pretrainer}


@command("hf-bigmodel pretrain")
def main(argv: list[str] | None = None) -> int:
    modules = pretrainers()
    if not argv or argv[0] in ("-h", "--help"):
        print(
            f"usage: hf-bigmodel pretrain ARCH [options]   (ARCH: {', '.join(modules)}; options of ARCH: ARCH --help)"
        )
        return 0
    arch, rest = argv[0], argv[1:]
    if arch not in modules:
        print(f"hf-bigmodel pretrain: error: unknown architecture {arch!r}; choose from {', '.join(modules)}.",
              file=sys.stderr)  # fmt: skip
        return 2
    module, _, function = modules[arch].partition(":")
    return getattr(importlib.import_module(module), function or "main")(rest)
