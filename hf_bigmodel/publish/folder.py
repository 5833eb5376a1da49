"""Reading and checking a saved model folder before it is published: its config, its weights, the files a push
takes from it, and the modeling code that `trust_remote_code=True` needs beside the weights.

Nothing here writes to the folder or talks to the Hub; `card.py` and `push.py` build on it.
"""

from __future__ import annotations

import json
import os
import tempfile
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from .. import _io

# Never pushed, with why: resumable Trainer state (pushed by Trainer's hub_strategy="checkpoint" instead), pickles
# (weights are published as safetensors only; training_args.bin is a pickle), pretrain's second copy of the
# tokenizer, Python caches, hidden and underscore files (Trainer ignores "_*" too) and temporary files.
EXCLUDED_DIRS = ("checkpoint-*", "tokenizer", "__pycache__", ".*", "_*")
EXCLUDED_FILES = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle", "*.tmp", ".*", "_*")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


class PushError(RuntimeError):
    """A push failed; the message says why and how to fix it."""


class InvalidFolderError(PushError, ValueError):
    """FOLDER is not a publishable model folder (no config.json, no safetensors weights, missing code)."""


def read_json(path: Path, error: type[Exception] = InvalidFolderError) -> Any:
    """The parsed JSON file at `path`, None if it does not exist; `error` (with the fix) if it is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path} is not valid JSON ({err}); fix or delete it.") from None


def weight_files(folder: str | os.PathLike) -> list[Path]:
    """The safetensors files of a saved model: model.safetensors, or the shards listed in its index."""
    folder = Path(folder)
    index = read_json(folder / "model.safetensors.index.json")
    if index is not None:
        return [folder / name for name in sorted(set(index.get("weight_map", {}).values()))]
    single = folder / "model.safetensors"
    return [single] if single.is_file() else []


def read_config(folder: str | os.PathLike) -> dict:
    """config.json of a model folder; `InvalidFolderError` unless FOLDER has it and safetensors weights."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidFolderError(f"{folder} is not a folder. Give the folder a model was saved to (save_pretrained).")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise InvalidFolderError(
            f"{folder} has no config.json, so it is not a saved model. Save one with model.save_pretrained(FOLDER) "
            f"or trainer.save_model(), or give the --output_dir of `hf-bigmodel pretrain`."
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidFolderError(f"{config_path} is not valid JSON: {err}.") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise InvalidFolderError(f"{config_path} has no model_type: it is not a transformers model config.")
    weights = weight_files(folder)
    if not weights:
        pickles = sorted(p.name for p in folder.glob("pytorch_model*.bin"))
        if pickles:
            raise InvalidFolderError(
                f"{folder} has only pickle weights ({', '.join(pickles)}). hf-bigmodel push publishes safetensors "
                f"only: load the model and save it again with model.save_pretrained(FOLDER) (safetensors by default)."
            )
        raise InvalidFolderError(
            f"{folder} has no weights: expected model.safetensors (or a sharded model.safetensors.index.json) next "
            f"to config.json. Did training finish? Save the model with model.save_pretrained(FOLDER) or "
            f"trainer.save_model()."
        )
    missing = [p.name for p in weights if not p.is_file()]
    if missing:
        raise InvalidFolderError(f"{folder}: model.safetensors.index.json lists missing shards: {', '.join(missing)}.")
    for path in weights:  # a truncated file would publish, then fail for everyone who downloads it
        try:
            _io.safetensors_header(path)
        except ValueError as err:
            raise InvalidFolderError(str(err)) from None
    return config


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def folder_files(folder: str | os.PathLike) -> dict[str, Path]:
    """{path in repo: local path} of the files of FOLDER that are pushed (see EXCLUDED_DIRS / EXCLUDED_FILES).
    Raises `InvalidFolderError` for a symbolic link that leads out of FOLDER: following it would publish a file
    the folder does not hold (a key, a home directory)."""
    folder = Path(folder)
    inside = folder.resolve()
    files = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _matches(d, EXCLUDED_DIRS))
        for name in sorted([*names, *(d for d in dirs if (Path(root) / d).is_symlink())]):
            path = Path(root) / name
            if _matches(name, EXCLUDED_FILES):
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(inside):
                raise InvalidFolderError(
                    f"{path} is a symbolic link to {path.resolve()}, outside {folder}: not pushed. Copy the file into "
                    "the folder, or remove the link."
                )
            if path.is_file():
                files[path.relative_to(folder).as_posix()] = path
    return files


def code_files_needed(config: dict, folder: str | os.PathLike | None = None) -> list[str]:
    """The .py files that config.json's `auto_map` (and `custom_pipelines`) point at, in this repo.

    With `folder`, also the sibling files that those files (as present in `folder`) import with single-dot relative
    imports, followed file by file: `from_pretrained(..., trust_remote_code=True)` fetches them too, so a folder
    without one of them cannot load."""
    references: list[str] = []
    for value in (config.get("auto_map") or {}).values():
        references += value if isinstance(value, list) else [value]
    for pipeline in (config.get("custom_pipelines") or {}).values():
        references += [pipeline[k] for k in ("impl",) if isinstance(pipeline, dict) and pipeline.get(k)]
    # "module.Class" is in this repo; "other/repo--module.Class" points at another repo's code.
    needed = {f"{ref.rsplit('.', 1)[0]}.py" for ref in references if isinstance(ref, str) and "--" not in ref}
    if folder is not None:
        from transformers.dynamic_module_utils import get_relative_imports

        folder, pending = Path(folder), sorted(needed)
        while pending:
            path = folder / pending.pop()
            if not path.is_file():
                continue  # missing itself: the caller re-saves the code, siblings included
            for module in get_relative_imports(str(path)):
                sibling = f"{module}.py"
                if sibling not in needed:
                    needed.add(sibling)
                    pending.append(sibling)
    return sorted(needed)


def _model_class_for(config: dict) -> tuple[type, type]:
    import hf_bigmodel  # noqa: F401  (registers every architecture)
    from hf_bigmodel.models import ARCHITECTURES

    names = config.get("architectures") or []
    for arch in ARCHITECTURES.values():
        if arch.model_type != config.get("model_type"):
            continue
        for head in arch.heads.values():
            if head.__name__ in names or not names:
                return arch.config_class, head
        return arch.config_class, next(iter(arch.heads.values()))
    known = ", ".join(arch.model_type for arch in ARCHITECTURES.values())
    raise InvalidFolderError(
        f"config.json has model_type {config.get('model_type')!r}, which hf_bigmodel does not define (it defines "
        f"{known}), so its modeling code cannot be re-saved. Save the model with save_pretrained in a process where "
        f"its code is importable, so the .py files are written next to the weights."
    )


# Files that hold a tokenizer's vocabulary: a tokenizer_config.json without one of these is half a tokenizer.
TOKENIZER_VOCAB_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model",
                         "tokenizer.model")  # fmt: skip


def check_tokenizer_files(folder: str | os.PathLike) -> None:
    """`InvalidFolderError` when FOLDER has a tokenizer config but no vocabulary: it would publish a tokenizer that
    fails to load for everyone (and transformers would blame a missing sentencepiece install)."""
    folder = Path(folder)
    if (folder / "tokenizer_config.json").is_file() and not any((folder / n).is_file() for n in TOKENIZER_VOCAB_FILES):
        raise InvalidFolderError(
            f"{folder} has tokenizer_config.json but no tokenizer.json (nor another vocabulary file): the tokenizer "
            "is incomplete. Save it again with tokenizer.save_pretrained(FOLDER), or remove tokenizer_config.json."
        )


def check_weights_match_config(folder: str | os.PathLike, config: dict) -> None:
    """`InvalidFolderError` when the safetensors weights are not those of the model config.json describes (a
    config edited or copied from another run): the model is built on the meta device, nothing is loaded, and the
    tensor names and shapes are compared with the safetensors headers. Models hf_bigmodel does not define are not
    checked."""
    import hf_bigmodel  # noqa: F401  (registers every architecture)
    from hf_bigmodel.models import ARCHITECTURES

    if config.get("model_type") not in {arch.model_type for arch in ARCHITECTURES.values()}:
        return
    import torch

    folder = Path(folder)
    config_class, model_class = _model_class_for(config)
    try:
        loaded = config_class.from_pretrained(folder)
        with torch.device("meta"):
            expected = {name: list(t.shape) for name, t in model_class(loaded).state_dict().items()}
    except Exception as err:  # a config that builds no model is as unpublishable as a mismatched one
        raise InvalidFolderError(f"{folder / 'config.json'} does not build a {model_class.__name__}: {err}") from None
    found: dict[str, tuple[list[int], str]] = {}
    for path in weight_files(folder):
        header = _io.safetensors_header(path)
        found.update({name: (entry["shape"], path.name) for name, entry in header.items() if name != "__metadata__"})
    for name, (shape, file) in sorted(found.items()):
        if name not in expected:
            raise InvalidFolderError(
                f"config.json does not match the weights: {file} holds {name}, which a {model_class.__name__} of "
                "this config does not have. Save config and weights together with model.save_pretrained(FOLDER)."
            )
        if list(shape) != expected[name]:
            raise InvalidFolderError(
                f"config.json does not match the weights: {name} is {list(shape)} in {file} but {expected[name]} for "
                "this config. Save config and weights together with model.save_pretrained(FOLDER)."
            )


def resave_code(folder: str | os.PathLike, config: dict) -> tuple[dict[str, bytes], dict]:
    """({file name: source} of the modeling code, auto_map), written by the installed hf_bigmodel for this model.

    The model is built on the meta device (no memory for weights, nothing loaded) and saved through transformers'
    `custom_object_save`, the code path of `save_pretrained`, which also copies the sibling files that the code
    imports with single-dot relative imports."""
    import torch
    from transformers.dynamic_module_utils import custom_object_save

    config_class, model_class = _model_class_for(config)
    loaded = config_class.from_pretrained(folder)
    with torch.device("meta"):
        model = model_class(loaded)
    with tempfile.TemporaryDirectory() as tmp:
        custom_object_save(model, tmp, config=loaded)
        custom_object_save(loaded, tmp)
        sources = {p.name: p.read_bytes() for p in sorted(Path(tmp).glob("*.py"))}
    return sources, dict(loaded.auto_map or {})


__all__ = [
    "EXCLUDED_DIRS",
    "EXCLUDED_FILES",
    "WEIGHT_FILES",
    "InvalidFolderError",
    "PushError",
    "check_tokenizer_files",
    "check_weights_match_config",
    "code_files_needed",
    "folder_files",
    "read_config",
    "read_json",
    "resave_code",
    "weight_files",
]
