"""`hf-bigmodel convert SRC DST`: convert checkpoints to and from stock transformers and nanoGPT.

    hf-bigmodel convert gpt2-folder/ ours/            stock GPT-2 (GPT2LMHeadModel) -> bigmodel_gpt
    hf-bigmodel convert llama-folder/ ours/           stock Llama (LlamaForCausalLM) -> bigmodel_gpt
    hf-bigmodel convert ours/ stock/                  bigmodel_gpt -> GPT2LMHeadModel (GPT-2 settings) or
                                                      LlamaForCausalLM (rope + rmsnorm + swiglu); force with --to
    hf-bigmodel convert marian-folder/ ours/          stock Marian (MarianMTModel) -> bigmodel_transformer
    hf-bigmodel convert ours-seq2seq/ stock/          bigmodel_transformer -> MarianMTModel (Marian settings)
    hf-bigmodel convert resnet-folder/ ours/          stock ResNet (ResNetForImageClassification) -> bigmodel_resnet
    hf-bigmodel convert ours-resnet/ stock/           bigmodel_resnet (ImageNet stem) -> ResNetForImageClassification
    hf-bigmodel convert out/ckpt.pt ours/ --vocab-chars-from input.txt
                                                      nanoGPT checkpoint (+ its character tokenizer) -> bigmodel_gpt
    hf-bigmodel convert bert-folder/ ours/            stock BERT (BertModel, BertForPreTraining, BertForMaskedLM,
                                                      BertForSequenceClassification, ...) -> bigmodel_bert, same head
    hf-bigmodel convert ours-bert/ stock/             bigmodel_bert -> the stock BertFor* class of its head

The direction follows from SRC (config.json's model_type, or a *.pt file for nanoGPT). Tensors are read with
safetensors or `torch.load(weights_only=True)`: no file is ever unpickled into arbitrary objects. The output is
written to a temporary folder beside DST and renamed into place at the end.

`ROUTES` is the table (source kind, target kind) -> converter. It is merged from the `ROUTES` and
`DEFAULT_TARGETS` rows of `hf_bigmodel.conversion.convert_<arch>` for every architecture in `ARCHITECTURES`, so a
new architecture brings its converter module and needs no edit here.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from ._cli import command
from .conversion.common import DTYPES, NANOGPT, ConversionError, Route, read_config_json
from .models import ARCHITECTURES


def converter_module(architecture: str) -> ModuleType | None:
    """`hf_bigmodel.conversion.convert_<architecture>`, or None for an architecture without converters."""
    name = f"hf_bigmodel.conversion.convert_{architecture}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:  # the module exists but one of its imports is missing: a real error
            raise
        return None


def _merge() -> tuple[dict[tuple[str, str], Route], dict[str, Callable[[Path], str]]]:
    routes: dict[tuple[str, str], Route] = {}
    defaults: dict[str, Callable[[Path], str]] = {}
    for architecture in ARCHITECTURES:
        module = converter_module(architecture)
        if module is None:
            continue
        routes.update({(route.source, route.target): route for route in module.ROUTES})
        defaults.update(module.DEFAULT_TARGETS)
    return routes, defaults


ROUTES: dict[tuple[str, str], Route]
# Source kind -> function(SRC) giving the target kind when the user does not choose one.
DEFAULT_TARGETS: dict[str, Callable[[Path], str]]
ROUTES, DEFAULT_TARGETS = _merge()


def detect_source(src: str | Path) -> str:
    """The source kind of SRC: "nanogpt" for a `.pt`/`.pth`/`.ckpt` file (or a nanoGPT out_dir holding `ckpt.pt`),
    else the `model_type` of its config.json."""
    src = Path(src)
    if not src.exists():
        raise ConversionError(f"SRC {src} does not exist.")
    if src.is_file():
        if src.suffix in (".pt", ".pth", ".ckpt"):
            return NANOGPT
        raise ConversionError(
            f"SRC {src} is a file but not a nanoGPT checkpoint (*.pt): give a model folder with config.json, or a "
            f"nanoGPT ckpt.pt."
        )
    if not (src / "config.json").is_file() and (src / "ckpt.pt").is_file():
        return NANOGPT
    model_type = read_config_json(src).get("model_type")
    if model_type is None:
        raise ConversionError(f"{src}/config.json has no model_type.")
    return model_type


def resolve_route(src: str | Path, to: str | None = None, *, architecture: str | None = None) -> Route:
    """The route for SRC: from its detected kind to `to`, or to the default target of that kind. With
    `architecture`, only that architecture's converter module is considered."""
    routes = ROUTES if architecture is None else _routes_of(architecture)
    source = detect_source(src)
    targets = sorted(t for s, t in routes if s == source)
    if not targets:
        known = sorted({s for s, _ in routes})
        raise ConversionError(f"No converter for {source!r} checkpoints. Supported sources: {', '.join(known)}.")
    target = to if to is not None else DEFAULT_TARGETS[source](Path(src))
    if (source, target) not in routes:
        raise ConversionError(
            f"Cannot convert a {source!r} checkpoint to {target!r}: possible targets are {', '.join(targets)}."
        )
    return routes[(source, target)]


def _routes_of(architecture: str) -> dict[tuple[str, str], Route]:
    module = converter_module(architecture)
    if module is None:
        raise ConversionError(
            f"hf_bigmodel has no converters for {architecture!r}; it has {', '.join(ARCHITECTURES)}."
        )
    return {(route.source, route.target): route for route in module.ROUTES}


def convert(src: str | Path, dst: str | Path, *, to: str | None = None, **options) -> Path:
    """Convert SRC to DST along `resolve_route(src, to)`; `options` (overwrite, dtype, tokenizer, vocab_chars) go
    to the converter. Returns DST."""
    return resolve_route(src, to).function(src, dst, **options)


def build_parser(prog: str = "hf-bigmodel convert", architecture: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of `hf-bigmodel convert` (or of `conversion_scripts/convert_<architecture>.py`)."""
    routes = ROUTES if architecture is None else _routes_of(architecture)
    targets = sorted({target for _, target in routes})
    sources = sorted({source for source, _ in routes})
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\nThe direction")[0],
        epilog=f"Sources: {', '.join(sources)}. Targets: {', '.join(targets)}.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", help="model folder (config.json + weights), or a nanoGPT ckpt.pt")
    parser.add_argument("dst", help="output folder (created; must be empty unless --overwrite)")
    parser.add_argument("--to", choices=targets, help="target format (default: chosen from SRC)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty DST")
    parser.add_argument(
        "--dtype", choices=["auto", *DTYPES], default="auto", help="dtype of the written weights (auto: as SRC)"
    )
    parser.add_argument("--tokenizer", metavar="DIR", help="also copy the tokenizer files of DIR")
    chars = parser.add_mutually_exclusive_group()
    chars.add_argument(
        "--vocab-chars",
        "--vocab_chars",
        metavar="CHARS",
        help="nanoGPT character-level models: the characters in id order, to write a matching tokenizer",
    )
    chars.add_argument(
        "--vocab-chars-from",
        "--vocab_chars_from",
        metavar="TEXT_FILE",
        help="nanoGPT character-level models: the training text; the vocabulary is sorted(set(text)), as in "
        "nanoGPT's data/shakespeare_char/prepare.py (its meta.pkl is a pickle and is never read)",
    )
    return parser


class _NoteHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        print(f"note: {record.getMessage()}", file=sys.stderr)


def main(argv: list[str] | None = None, *, prog: str = "hf-bigmodel convert", architecture: str | None = None) -> int:
    """Entry point of `hf-bigmodel convert` (all routes) and of `conversion_scripts/convert_<architecture>.py`
    (that architecture's routes); returns 0 on success and 2 on a user error (through `hf_bigmodel._cli`)."""
    return command(prog)(_convert_command)(argv, prog=prog, architecture=architecture)


def _convert_command(argv: list[str], *, prog: str, architecture: str | None) -> int:
    args = build_parser(prog, architecture).parse_args(argv)
    handler = _NoteHandler(logging.INFO)
    notes = logging.getLogger("hf_bigmodel.conversion")
    previous_level = notes.level
    notes.addHandler(handler)
    notes.setLevel(logging.INFO)
    try:
        route = resolve_route(args.src, args.to, architecture=architecture)
        options: dict = {"overwrite": args.overwrite, "dtype": args.dtype, "tokenizer": args.tokenizer}
        vocab_chars = args.vocab_chars
        if args.vocab_chars_from is not None:
            path = Path(args.vocab_chars_from)
            if not path.is_file():
                raise ConversionError(f"--vocab-chars-from {path} is not a file.")
            vocab_chars = "".join(sorted(set(path.read_text(encoding="utf-8"))))
        if vocab_chars is not None:
            if route.source != NANOGPT:
                raise ConversionError("--vocab-chars / --vocab-chars-from apply to nanoGPT checkpoints only.")
            options["vocab_chars"] = vocab_chars
        dst = route.function(args.src, args.dst, **options)
    finally:
        notes.removeHandler(handler)
        notes.setLevel(previous_level)
    print(f"Converted {args.src} ({route.source}) -> {dst} ({route.target}).")
    how = route.loads_with.replace("DST", repr(str(dst))).replace("AUTO", _auto_class_of(Path(dst)))
    print(f"Load it with {how}.")
    return 0


def _auto_class_of(folder: Path) -> str:
    """The Auto class that loads the head a converted folder holds, from its config's `architectures`."""
    try:
        architecture = json.loads((folder / "config.json").read_text())["architectures"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return "AutoModel"
    head = architecture[architecture.rfind("For") :] if "For" in architecture else ""
    return f"AutoModel{head}"


__all__ = [
    "DEFAULT_TARGETS",
    "ROUTES",
    "ConversionError",
    "Route",
    "build_parser",
    "convert",
    "converter_module",
    "detect_source",
    "main",
    "resolve_route",
]

if __name__ == "__main__":
    sys.exit(main())
