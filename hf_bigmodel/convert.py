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

`ROUTES` is the table (source kind, target kind) -> converter; converters for later architectures plug in by adding
rows to it and to `DEFAULT_TARGETS`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conversion_scripts.common import DTYPES, ConversionError, load_config, read_config_json
from conversion_scripts.convert_bert import convert_bert_to_bigmodel, convert_bigmodel_to_bert
from conversion_scripts.convert_gpt import (
    choose_export_target,
    convert_bigmodel_to_gpt2,
    convert_bigmodel_to_llama,
    convert_gpt2_to_bigmodel,
    convert_llama_to_bigmodel,
    convert_nanogpt_to_bigmodel,
)
from conversion_scripts.convert_resnet import convert_bigmodel_to_resnet, convert_resnet_to_bigmodel
from conversion_scripts.convert_transformer import convert_bigmodel_to_marian, convert_marian_to_bigmodel

NANOGPT = "nanogpt"


@dataclass(frozen=True)
class Route:
    """One conversion: `function(src, dst, **options)` turns a `source` checkpoint into a `target` folder."""

    source: str
    target: str
    function: Callable[..., Path]
    loads_with: str  # how to load the result, shown to the user; DST stands for the output folder


_OURS = "AutoModelForCausalLM.from_pretrained(DST, trust_remote_code=True) (or after `import hf_bigmodel`)"
_STOCK = "AutoModelForCausalLM.from_pretrained(DST), plain transformers, no remote code"
_OURS_BERT = "AUTO.from_pretrained(DST, trust_remote_code=True) (or after `import hf_bigmodel`)"
_STOCK_BERT = "AUTO.from_pretrained(DST), plain transformers, no remote code"
_OURS_SEQ2SEQ = "AutoModelForSeq2SeqLM.from_pretrained(DST, trust_remote_code=True) (or after `import hf_bigmodel`)"
_STOCK_SEQ2SEQ = "AutoModelForSeq2SeqLM.from_pretrained(DST), plain transformers, no remote code"
_OURS_IMAGE = (
    "AutoModelForImageClassification.from_pretrained(DST, trust_remote_code=True) and "
    "AutoImageProcessor.from_pretrained(DST, trust_remote_code=True) (or after `import hf_bigmodel`)"
)
_STOCK_IMAGE = "AutoModelForImageClassification.from_pretrained(DST), plain transformers, no remote code"

ROUTES: dict[tuple[str, str], Route] = {
    (route.source, route.target): route
    for route in (
        Route("gpt2", "bigmodel_gpt", convert_gpt2_to_bigmodel, _OURS),
        Route("llama", "bigmodel_gpt", convert_llama_to_bigmodel, _OURS),
        Route(NANOGPT, "bigmodel_gpt", convert_nanogpt_to_bigmodel, _OURS),
        Route("bigmodel_gpt", "gpt2", convert_bigmodel_to_gpt2, _STOCK),
        Route("bigmodel_gpt", "llama", convert_bigmodel_to_llama, _STOCK),
        Route("bert", "bigmodel_bert", convert_bert_to_bigmodel, _OURS_BERT),
        Route("bigmodel_bert", "bert", convert_bigmodel_to_bert, _STOCK_BERT),
        Route("marian", "bigmodel_transformer", convert_marian_to_bigmodel, _OURS_SEQ2SEQ),
        Route("bigmodel_transformer", "marian", convert_bigmodel_to_marian, _STOCK_SEQ2SEQ),
        Route("resnet", "bigmodel_resnet", convert_resnet_to_bigmodel, _OURS_IMAGE),
        Route("bigmodel_resnet", "resnet", convert_bigmodel_to_resnet, _STOCK_IMAGE),
    )
}


def _bigmodel_gpt_target(src: Path) -> str:
    from hf_bigmodel.models.gpt import BigModelGPTConfig

    return choose_export_target(load_config(BigModelGPTConfig, src))


# Source kind -> function(SRC) giving the target kind when the user does not choose one.
DEFAULT_TARGETS: dict[str, Callable[[Path], str]] = {
    "gpt2": lambda src: "bigmodel_gpt",
    "llama": lambda src: "bigmodel_gpt",
    NANOGPT: lambda src: "bigmodel_gpt",
    "bigmodel_gpt": _bigmodel_gpt_target,
    "bert": lambda src: "bigmodel_bert",
    "bigmodel_bert": lambda src: "bert",
    "marian": lambda src: "bigmodel_transformer",
    "bigmodel_transformer": lambda src: "marian",
    "resnet": lambda src: "bigmodel_resnet",
    "bigmodel_resnet": lambda src: "resnet",
}


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


def resolve_route(src: str | Path, to: str | None = None) -> Route:
    """The route for SRC: from its detected kind to `to`, or to the default target of that kind."""
    source = detect_source(src)
    targets = sorted(t for s, t in ROUTES if s == source)
    if not targets:
        known = sorted({s for s, _ in ROUTES})
        raise ConversionError(f"No converter for {source!r} checkpoints. Supported sources: {', '.join(known)}.")
    target = to if to is not None else DEFAULT_TARGETS[source](Path(src))
    if (source, target) not in ROUTES:
        raise ConversionError(
            f"Cannot convert a {source!r} checkpoint to {target!r}: possible targets are {', '.join(targets)}."
        )
    return ROUTES[(source, target)]


def convert(src: str | Path, dst: str | Path, *, to: str | None = None, **options) -> Path:
    """Convert SRC to DST along `resolve_route(src, to)`; `options` (overwrite, dtype, tokenizer, vocab_chars) go
    to the converter. Returns DST."""
    return resolve_route(src, to).function(src, dst, **options)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `hf-bigmodel convert`."""
    targets = sorted({target for _, target in ROUTES})
    parser = argparse.ArgumentParser(
        prog="hf-bigmodel convert",
        description=__doc__.split("\n\nThe direction")[0],
        epilog=f"Sources: {', '.join(sorted(DEFAULT_TARGETS))}. Targets: {', '.join(targets)}.",
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of `hf-bigmodel convert`; returns 0 on success and 2 on a user error."""
    args = build_parser().parse_args(argv)
    handler = _NoteHandler(logging.INFO)
    notes = logging.getLogger("conversion_scripts")
    previous_level = notes.level
    notes.addHandler(handler)
    notes.setLevel(logging.INFO)
    try:
        route = resolve_route(args.src, args.to)
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
    except ConversionError as err:
        print(f"hf-bigmodel convert: error: {err}", file=sys.stderr)
        return 2
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
    "convert_bert_to_bigmodel",
    "convert_bigmodel_to_bert",
    "convert_bigmodel_to_gpt2",
    "convert_bigmodel_to_llama",
    "convert_bigmodel_to_marian",
    "convert_gpt2_to_bigmodel",
    "convert_llama_to_bigmodel",
    "convert_marian_to_bigmodel",
    "convert_nanogpt_to_bigmodel",
    "detect_source",
    "main",
    "resolve_route",
]

if __name__ == "__main__":
    sys.exit(main())
