"""Helpers shared by the checkpoint converters: safe tensor loading, bidirectional key maps, shape checks against
the target class, and atomic writes of the output folder.

Nothing here unpickles arbitrary objects: folders are read with safetensors (or `torch.load(weights_only=True)` for
legacy `pytorch_model.bin`), single `.pt` files with `torch.load(weights_only=True)` only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .. import _io
from .._io import safetensors_header

logger = logging.getLogger("hf_bigmodel.conversion")

# Tokenizer and generation files that are independent of the model's parameter names, copied as they are.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
)
GENERATION_CONFIG_FILE = "generation_config.json"

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ConversionError(ValueError):
    """A checkpoint cannot be converted as asked. The message names the offending field or file and what to do."""


@dataclass(frozen=True)
class Route:
    """One conversion: `function(src, dst, **options)` turns a `source` checkpoint into a `target` folder.

    Each `convert_<arch>.py` lists its own in `ROUTES`, and `hf_bigmodel.convert` merges those of every
    architecture."""

    source: str
    target: str
    function: Callable[..., Path]
    loads_with: str  # how to load the result, shown to the user; DST stands for the output folder


NANOGPT = "nanogpt"  # the source kind of a nanoGPT `ckpt.pt`, the one source that is a file, not a folder


# ---------------------------------------------------------------------------------------------------------------
# Reading


def read_config_json(folder: str | os.PathLike) -> dict[str, Any]:
    """The raw `config.json` of a model folder, as a dict."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ConversionError(f"{folder} has no config.json: expected a model folder written by `save_pretrained`.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConversionError(f"{path} is not valid JSON ({err}).") from err
    if not isinstance(config, dict):
        raise ConversionError(f"{path} holds a {type(config).__name__}, not a JSON object: it is not a model config.")
    return config


def load_config(config_class: type, folder: str | os.PathLike) -> Any:
    """`config_class.from_pretrained(folder)`, with a malformed config.json reported as a `ConversionError`."""
    try:
        return config_class.from_pretrained(folder)
    except (ValueError, TypeError, OSError) as err:  # @strict validation, or an unreadable file
        raise ConversionError(f"{folder}/config.json is not a valid {config_class.__name__}: {err}") from err


def torch_load_tensors_only(path: str | os.PathLike) -> Any:
    """`torch.load(path, weights_only=True)` with errors that say what is wrong. Never unpickles arbitrary objects:
    a file that needs them (e.g. an `argparse.Namespace` saved in the checkpoint) is refused."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path} does not exist or is not a file.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        match = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if match is None:  # a corrupt or foreign file, not a refused object
            detail = re.search(r"WeightsUnpickler error: ([^\n]*)", str(err))
            reason = detail.group(1) if detail else str(err).splitlines()[0]
            raise ConversionError(f"{path} is not a readable PyTorch checkpoint (torch.load: {reason}).") from err
        raise ConversionError(
            f"{path} contains arbitrary Python objects (it references `{match.group(1)}`), and hf-bigmodel will "
            f"not unpickle it: loading it could run any code. Only tensors, numbers, strings, lists and dicts are accepted "
            f"(torch.load(weights_only=True)). If you trust the file, re-save its tensors in plain containers, "
            f"e.g. `ck = torch.load(p, weights_only=False); torch.save({{'model': ck['model'], "
            f"'model_args': dict(ck['model_args'])}}, 'clean.pt')`, and convert that."
        ) from err
    except Exception as err:  # torch raises KeyError / EOFError / RuntimeError for files that are not checkpoints
        raise ConversionError(
            f"{path} is not a readable PyTorch checkpoint (torch.load failed with {type(err).__name__}: {err})."
        ) from err


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """`load_file`, with the file named when it is damaged (safetensors' own message does not name it)."""
    try:
        safetensors_header(path)
        return load_file(path)
    except (ValueError, SafetensorError, OSError) as err:
        raise ConversionError(f"{path} cannot be read: {err}") from None


def load_folder_tensors(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a model folder: `model.safetensors`, sharded safetensors (with their index), or the legacy
    `pytorch_model.bin` (loaded with `weights_only=True`)."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        return _load_safetensors(folder / "model.safetensors")
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            tensors.update(_load_safetensors(folder / shard))
        return tensors
    if (folder / "pytorch_model.bin").is_file():
        state_dict = torch_load_tensors_only(folder / "pytorch_model.bin")
        if not isinstance(state_dict, dict):
            raise ConversionError(f"{folder / 'pytorch_model.bin'} does not hold a state dict.")
        return state_dict
    raise ConversionError(
        f"{folder} has no weights: expected model.safetensors, model.safetensors.index.json (sharded) or "
        f"pytorch_model.bin."
    )


def floating_dtype(tensors: dict[str, torch.Tensor]) -> torch.dtype:
    """The dtype of the first floating-point tensor (the checkpoint's dtype), float32 if there is none."""
    for tensor in tensors.values():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def resolve_dtype(dtype: str | torch.dtype | None, tensors: dict[str, torch.Tensor]) -> torch.dtype:
    """`None`/"auto" keeps the checkpoint's dtype; a name from `DTYPES` or a torch dtype forces one."""
    if dtype is None or dtype == "auto":
        return floating_dtype(tensors)
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ConversionError(f"Unknown dtype {dtype!r}: use one of auto, {', '.join(DTYPES)}.")
    return DTYPES[dtype]


# ---------------------------------------------------------------------------------------------------------------
# Key maps


@dataclass(frozen=True)
class KeyRule:
    """One parameter name in our layout and in the other one. `{i}` stands for a layer index and `{p}` for
    `weight` or `bias`; `transpose` marks 2-D weights stored as (in, out) on the other side (GPT-2's `Conv1D`)."""

    ours: str
    theirs: str
    transpose: bool = False


def _template_regex(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
    return re.compile(pattern)


class KeyMap:
    """A bidirectional rename table between our parameter names and another library's."""

    def __init__(self, rules: Iterable[KeyRule]):
        self.rules = tuple(rules)
        self._ours = [(_template_regex(r.ours), r) for r in self.rules]
        self._theirs = [(_template_regex(r.theirs), r) for r in self.rules]

    def _rename(
        self,
        tensors: dict[str, torch.Tensor],
        to_ours: bool,
        transpose: bool,
        ignore: Callable[[str], bool] | None,
        source: str,
    ) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        unknown = []
        patterns = self._theirs if to_ours else self._ours
        for key, tensor in tensors.items():
            if ignore is not None and ignore(key):
                continue
            for regex, rule in patterns:
                match = regex.fullmatch(key)
                if match is None:
                    continue
                target = rule.ours if to_ours else rule.theirs
                new_key = target.format(**match.groupdict())
                if transpose and rule.transpose and tensor.dim() == 2:
                    tensor = tensor.t()
                out[new_key] = tensor.contiguous()
                break
            else:
                unknown.append(key)
        if unknown:
            shown = ", ".join(unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
            raise ConversionError(
                f"{source} has tensors this converter does not know: {shown}. Only the language-model weights "
                f"can be converted (no extra heads or adapters)."
            )
        return out

    def to_ours(
        self,
        tensors: dict[str, torch.Tensor],
        *,
        transpose: bool = True,
        ignore: Callable[[str], bool] | None = None,
        source: str = "The checkpoint",
    ) -> dict[str, torch.Tensor]:
        """Rename their tensors to ours (transposing `Conv1D` weights when `transpose`)."""
        return self._rename(tensors, True, transpose, ignore, source)

    def to_theirs(
        self,
        tensors: dict[str, torch.Tensor],
        *,
        transpose: bool = True,
        ignore: Callable[[str], bool] | None = None,
        source: str = "The checkpoint",
    ) -> dict[str, torch.Tensor]:
        """Rename our tensors to theirs (transposing `Conv1D` weights when `transpose`)."""
        return self._rename(tensors, False, transpose, ignore, source)


# ---------------------------------------------------------------------------------------------------------------
# Building the target model


def expected_shapes(model_class: type, config: Any) -> dict[str, torch.Size]:
    """Parameter and persistent-buffer shapes of `model_class(config)`, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = model_class(config)
    return {key: tensor.shape for key, tensor in model.state_dict().items()}


def tied_keys(model_class: type, config: Any) -> set[str]:
    """Parameters that are tied to another one (and so may be absent from the checkpoint)."""
    if not getattr(config, "tie_word_embeddings", False):
        return set()
    return set(getattr(model_class, "_tied_weights_keys", None) or {})


def drop_tied(
    tensors: dict[str, torch.Tensor], model_class: type, config: Any, source: str
) -> dict[str, torch.Tensor]:
    """Remove tied copies (e.g. `lm_head.weight`), refusing if a copy differs from the weight it is tied to."""
    mapping = getattr(model_class, "_tied_weights_keys", None) or {}
    for target in tied_keys(model_class, config):
        if target in tensors:
            source_key = mapping[target]
            if source_key in tensors and not torch.equal(tensors[target], tensors[source_key]):
                raise ConversionError(
                    f"{source} sets tie_word_embeddings=True but its `{target}` differs from `{source_key}`. Set "
                    f"tie_word_embeddings=False in its config if the output projection is a separate matrix."
                )
            tensors = {k: v for k, v in tensors.items() if k != target}
    return tensors


def check_tensors(tensors: dict[str, torch.Tensor], model_class: type, config: Any, source: str) -> None:
    """Raise a `ConversionError` naming every missing, unexpected or wrongly shaped tensor."""
    expected = expected_shapes(model_class, config)
    optional = tied_keys(model_class, config)
    missing = sorted(set(expected) - set(tensors) - optional)
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [
        f"{key} {tuple(tensors[key].shape)} (expected {tuple(expected[key])})"
        for key in sorted(set(expected) & set(tensors))
        if tensors[key].shape != expected[key]
    ]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:8])}" + (" ..." if len(unexpected) > 8 else ""))
    if mismatched:
        problems.append(f"wrong shapes {', '.join(mismatched[:8])}" + (" ..." if len(mismatched) > 8 else ""))
    if problems:
        raise ConversionError(
            f"{source} does not match its config ({model_class.__name__}): {'; '.join(problems)}. Check that the "
            f"config.json (or the checkpoint's model arguments) belongs to these weights."
        )


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """Silence transformers' per-file progress bars (loading / writing shards) for the duration."""
    from transformers.utils import logging as hf_logging

    bar_was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bar_was_enabled:
            hf_logging.enable_progress_bar()


def build_model(
    model_class: type, config: Any, tensors: dict[str, torch.Tensor], dtype: torch.dtype, source: str
) -> Any:
    """Instantiate `model_class` with exactly `tensors` (checked first) through `from_pretrained`, which handles
    meta-device loading, tied weights and non-persistent buffers (rotary frequencies)."""
    tensors = drop_tied(tensors, model_class, config, source)
    check_tensors(tensors, model_class, config, source)
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()}
    with quiet_progress():
        model, info = model_class.from_pretrained(
            None, config=config, state_dict=tensors, dtype=dtype, output_loading_info=True
        )
    leftovers = {k: v for k, v in info.items() if v}
    if leftovers:  # check_tensors should have caught this; never write a half-initialised model
        raise ConversionError(f"Loading the converted weights into {model_class.__name__} failed: {leftovers}.")
    return model.eval()


# ---------------------------------------------------------------------------------------------------------------
# Writing


def check_destination(src: Path, dst: Path, overwrite: bool) -> None:
    """Refuse to write over SRC, over a file, or into a non-empty folder without `overwrite`."""
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise ConversionError(f"DST ({dst}) must be outside SRC ({src}): pick another output folder.")
    if dst.exists() and not dst.is_dir():
        raise ConversionError(f"DST ({dst}) is an existing file; give a folder path.")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise ConversionError(f"DST ({dst}) exists and is not empty; pass --overwrite (overwrite=True) to replace it.")


def check_inputs(src: Path, dst: Path, overwrite: bool, tokenizer: str | os.PathLike | None) -> None:
    """Everything a conversion can refuse before reading any tensor: the destination, and `--tokenizer`."""
    check_destination(src, dst, overwrite)
    if tokenizer is not None and not Path(tokenizer).is_dir():
        raise ConversionError(f"tokenizer={tokenizer} (--tokenizer) is not a folder.")


def expect_model_type(src: Path, raw: dict[str, Any], expected: str) -> None:
    """Refuse a config.json (`raw`) of another model type than the conversion reads."""
    found = raw.get("model_type")
    if found != expected:
        raise ConversionError(
            f"{src} holds a {found!r} model, not {expected!r}. `hf-bigmodel convert` picks the direction from "
            f"config.json's model_type."
        )


@contextlib.contextmanager
def atomic_output_dir(dst: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `dst`; on success it replaces `dst` in one rename (a crash or an error leaves
    `dst` as it was and no partial folder behind)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    try:
        yield tmp
        _io.default_mode(tmp)
        if dst.is_dir() and any(dst.iterdir()):
            if not overwrite:
                raise ConversionError(f"DST ({dst}) was filled while converting; not overwriting it.")
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
            os.replace(dst, old / "old")
            os.replace(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if dst.is_dir():
                dst.rmdir()
            os.replace(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def copy_side_files(
    src_folder: str | os.PathLike | None,
    dst_folder: Path,
    generation_config: bool = True,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """Copy the tokenizer files (and `generation_config.json`, and the `extra` names) of `src_folder`, which do
    not depend on parameter names. Returns the copied file names."""
    if src_folder is None or not Path(src_folder).is_dir():
        return []
    names = TOKENIZER_FILES + ((GENERATION_CONFIG_FILE,) if generation_config else ()) + extra
    copied = []
    for name in names:
        path = Path(src_folder) / name
        if path.is_file():
            shutil.copyfile(path, dst_folder / name)
            copied.append(name)
    return copied


def write_converted(
    model: Any,
    dst: Path,
    overwrite: bool,
    side_files: Iterable[tuple[str | os.PathLike | None, bool]] = (),
    extra: tuple[str, ...] = (),
    finish: Callable[[Path], None] | None = None,
) -> Path:
    """Save a converted `model` into `dst` atomically, with the tokenizer files of each `(folder, generation_config)`
    of `side_files` (see `copy_side_files`; a None folder is skipped) and `finish(folder)` for anything else the
    format needs (an image processor config). Returns `dst`."""
    copied: list[str] = []
    with atomic_output_dir(dst, overwrite) as tmp, quiet_progress():
        model.save_pretrained(tmp)
        for folder, generation_config in side_files:
            copied += copy_side_files(folder, tmp, generation_config=generation_config, extra=extra)
        if finish is not None:
            finish(tmp)
    if copied:
        logger.info(f"copied {', '.join(sorted(set(copied)))}")
    return dst


def strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove `prefix` from every key that has it (e.g. `_orig_mod.` added by `torch.compile`)."""
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in tensors.items()}


def fuse_projections(
    tensors: dict[str, torch.Tensor], layer_prefix: str, parts: tuple[str, ...], fused: str, source: str
) -> dict[str, torch.Tensor]:
    """Concatenate separate projections into one fused one, per layer and per weight/bias: the keys
    `<prefix><part>.<kind>` of every layer (`layer_prefix` is a regex ending at the module holding them, e.g.
    `model\\.layers\\.\\d+\\.self_attn\\.`) become `<prefix><fused>.<kind>`, the parts stacked in the order given.
    A layer with only some of the parts is an error naming the missing keys."""
    pattern = re.compile(f"({layer_prefix})({'|'.join(map(re.escape, parts))})\\.(weight|bias)")
    out, groups = {}, {}
    for key, tensor in tensors.items():
        match = pattern.fullmatch(key)
        if match is None:
            out[key] = tensor
        else:
            groups.setdefault((match.group(1), match.group(3)), {})[match.group(2)] = tensor
    for (prefix, kind), group in groups.items():
        if set(group) != set(parts):
            missing = sorted(set(parts) - set(group))
            raise ConversionError(f"{source} lacks {', '.join(f'{prefix}{m}.{kind}' for m in missing)}.")
        out[f"{prefix}{fused}.{kind}"] = torch.cat([group[name] for name in parts], dim=0)
    return out


def split_projection(
    tensors: dict[str, torch.Tensor],
    layer_prefix: str,
    fused: str,
    parts: tuple[str, ...],
    sizes: list[int] | None = None,
) -> dict[str, torch.Tensor]:
    """The inverse of `fuse_projections`: `<prefix><fused>.<kind>` becomes `<prefix><part>.<kind>` for each part,
    cut along the output dimension into `sizes` rows (equal parts when None)."""
    pattern = re.compile(f"({layer_prefix}){re.escape(fused)}\\.(weight|bias)")
    out = {}
    for key, tensor in tensors.items():
        match = pattern.fullmatch(key)
        if match is None:
            out[key] = tensor
            continue
        pieces = tensor.chunk(len(parts), dim=0) if sizes is None else tensor.split(sizes, dim=0)
        for name, part in zip(parts, pieces):
            out[f"{match.group(1)}{name}.{match.group(2)}"] = part.contiguous()
    return out


__all__ = [
    "ConversionError",
    "DTYPES",
    "KeyMap",
    "KeyRule",
    "atomic_output_dir",
    "build_model",
    "check_destination",
    "check_inputs",
    "check_tensors",
    "copy_side_files",
    "expect_model_type",
    "expected_shapes",
    "fuse_projections",
    "load_config",
    "load_folder_tensors",
    "quiet_progress",
    "read_config_json",
    "resolve_dtype",
    "split_projection",
    "strip_prefix",
    "torch_load_tensors_only",
    "write_converted",
]
