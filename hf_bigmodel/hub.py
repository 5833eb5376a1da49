"""`hf-bigmodel push FOLDER REPO_ID`: publish a saved model folder (weights, config, tokenizer, modeling code and a
model card) to a Hub repo in one commit.

    hf-bigmodel push runs/shakespeare you/shakespeare-gpt              new repo (refuses an existing one)
    hf-bigmodel push runs/shakespeare you/shakespeare-gpt --exist-ok   add a commit to an existing repo
    hf-bigmodel push runs/shakespeare you/shakespeare-gpt --revision v2 --exist-ok   push to branch v2
    hf-bigmodel push runs/shakespeare you/shakespeare-gpt --private    private repo (readable with your token only)
    hf-bigmodel push runs/shakespeare you/shakespeare-gpt --dry-run    list what would be pushed, contact nothing

What is pushed: every file of FOLDER except Trainer's `checkpoint-*` folders (optimizer state; Trainer's
`hub_strategy` pushes those), pickles (`training_args.bin`, `*.bin`/`*.pt`: only safetensors weights are
published, since unpickling can run code), pretrain's spare `tokenizer/` copy, and hidden/temporary files.
The modeling code named by config.json's `auto_map` goes along, re-saved from the installed hf_bigmodel if the
`.py` files are missing, so that `AutoModel*.from_pretrained(REPO_ID, trust_remote_code=True)` works where
hf_bigmodel is not installed. If the folder holds a training run, README.md (the model card, with `model-index`
evaluation metadata) and loss_curve.png are regenerated from it (`hf_bigmodel.model_card`); a hand-written
README.md is kept.

Safety: the token is checked first, the commit names its parent (a concurrent push makes it fail rather than be
overwritten), and the Hub applies a commit all at once, so a failed push leaves the repo at its previous commit.
FOLDER is only read; after a successful push the regenerated card and any re-saved code files are written back
into it, so that the folder matches the repo.

The token comes from --token, else HF_TOKEN, else `hf auth login`; the Hub from --endpoint, else HF_ENDPOINT.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import model_card
from ._io import atomic_write_text

try:  # the HTTP client of huggingface_hub 2.x (1.x used httpx)
    import httpx2 as _httpx
except ImportError:  # pragma: no cover
    import httpx as _httpx

# Never pushed, with why: resumable Trainer state (pushed by Trainer's hub_strategy="checkpoint" instead), pickles
# (weights are published as safetensors only; training_args.bin is a pickle), pretrain's second copy of the
# tokenizer, Python caches, hidden and underscore files (Trainer ignores "_*" too) and temporary files.
EXCLUDED_DIRS = ("checkpoint-*", "tokenizer", "__pycache__", ".*", "_*")
EXCLUDED_FILES = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle", "*.tmp", ".*", "_*")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


# ----------------------------------------------------------------------------------------------------------------
# Errors: one class per failure, each message says what happened and what to do


class PushError(RuntimeError):
    """A push failed; the message says why and how to fix it."""


class InvalidFolderError(PushError, ValueError):
    """FOLDER is not a publishable model folder (no config.json, no safetensors weights, missing code)."""


class InvalidRepoIdError(PushError, ValueError):
    """REPO_ID is not `namespace/name` with allowed characters."""


class MissingTokenError(PushError):
    """No token was given or found."""


class InvalidTokenError(PushError, PermissionError):
    """The Hub rejected the token."""


class PermissionDeniedError(PushError, PermissionError):
    """The token is valid but may not write there (read-only token, someone else's namespace)."""


class RepoExistsError(PushError, FileExistsError):
    """The repo exists and `exist_ok` was not given."""


class HubConnectionError(PushError, ConnectionError):
    """The Hub could not be reached, or the connection broke."""


class HubUnreachableError(HubConnectionError):
    """Nothing answered at the endpoint."""


class UploadInterruptedError(HubConnectionError):
    """The connection dropped during the upload; the repo was left at its previous commit."""


# ----------------------------------------------------------------------------------------------------------------
# The folder


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    from fnmatch import fnmatchcase

    return any(fnmatchcase(name, pattern) for pattern in patterns)


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
    weights = model_card.weight_files(folder)
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
    return config


def folder_files(folder: str | os.PathLike) -> dict[str, Path]:
    """{path in repo: local path} of the files of FOLDER that are pushed (see EXCLUDED_DIRS / EXCLUDED_FILES)."""
    folder = Path(folder)
    files = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _matches(d, EXCLUDED_DIRS))
        for name in sorted(names):
            path = Path(root) / name
            if not _matches(name, EXCLUDED_FILES) and path.is_file():
                files[path.relative_to(folder).as_posix()] = path
    return files


def code_files_needed(config: dict) -> list[str]:
    """The .py files that config.json's `auto_map` (and `custom_pipelines`) point at, in this repo."""
    references: list[str] = []
    for value in (config.get("auto_map") or {}).values():
        references += value if isinstance(value, list) else [value]
    for pipeline in (config.get("custom_pipelines") or {}).values():
        references += [pipeline[k] for k in ("impl",) if isinstance(pipeline, dict) and pipeline.get(k)]
    # "module.Class" is in this repo; "other/repo--module.Class" points at another repo's code.
    return sorted({f"{ref.rsplit('.', 1)[0]}.py" for ref in references if isinstance(ref, str) and "--" not in ref})


def _model_class_for(config: dict):
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


def resave_code(folder: str | os.PathLike, config: dict) -> tuple[dict[str, bytes], dict]:
    """({file name: source} of the modeling code, auto_map), written by the installed hf_bigmodel for this model.

    The model is built on the meta device (no memory for weights, nothing loaded) and saved through transformers'
    `custom_object_save`, the code path of `save_pretrained`."""
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


@dataclass
class PushPlan:
    """What a push uploads: files from the folder, plus generated bytes (card, plot, code, config)."""

    folder: Path
    config: dict
    files: dict[str, Path]
    generated: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def paths(self) -> list[str]:
        return sorted(set(self.files) | set(self.generated))


def plan_push(
    folder: str | os.PathLike,
    *,
    repo_id: str | None = None,
    card: bool = True,
    overwrite_card: bool = False,
    license: str = model_card.DEFAULT_LICENSE,
) -> PushPlan:
    """Check FOLDER and work out the files to push, generating the card and any missing code (nothing written)."""
    folder = Path(folder)
    config = read_config(folder)
    plan = PushPlan(folder, config, folder_files(folder))

    pipeline_files = code_files_needed({"custom_pipelines": config.get("custom_pipelines")})
    absent = [name for name in pipeline_files if name not in plan.files]
    if absent:
        raise InvalidFolderError(
            f"config.json's custom_pipelines need {', '.join(absent)}, which {folder} lacks. Save the pipeline with "
            f"pipe.save_pretrained(FOLDER), which copies its code, or remove custom_pipelines from config.json."
        )
    needed = code_files_needed(config)
    missing = [name for name in needed if name not in plan.files]
    if missing or (not needed and config.get("model_type", "").startswith("bigmodel_")):
        sources, auto_map = resave_code(folder, config)
        absent = sorted(set(code_files_needed({"auto_map": auto_map})) - set(sources))
        if absent:
            raise InvalidFolderError(f"Could not re-save the modeling code: {', '.join(absent)} missing.")
        plan.generated.update({n: s for n, s in sources.items() if n not in plan.files})
        if config.get("auto_map") != {**(config.get("auto_map") or {}), **auto_map}:
            config = {**config, "auto_map": {**(config.get("auto_map") or {}), **auto_map}}
            plan.generated["config.json"] = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
            plan.config = config
        plan.notes.append(f"modeling code re-saved from the installed hf_bigmodel: {', '.join(sorted(sources))}")

    if card and config.get("model_type") in model_card.CARD_SPECS:
        try:
            model_card.template_dir()
        except model_card.ModelCardError as err:  # an install without the templates still pushes, cardless
            plan.notes.append(f"no model card generated: {err}")
            card = False
    if card and config.get("model_type") in model_card.CARD_SPECS:
        readme = folder / model_card.README
        existing = readme.read_text(encoding="utf-8", errors="replace") if readme.is_file() else None
        if existing is None or overwrite_card or model_card.is_generated_card(existing):
            generated = model_card.build_model_card(folder, repo_id=repo_id, license=license)
            plan.generated.update(generated.all_files())
            plan.notes.append(
                "model card generated" + (" from the training run" if model_card.has_training_run(folder) else "")
            )
        else:
            plan.notes.append("kept the hand-written README.md (pass --overwrite-card to replace it)")
    if not any(name in plan.files for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json")):
        plan.notes.append("no tokenizer or preprocessor in the folder: only the model is pushed")
    return plan


# ----------------------------------------------------------------------------------------------------------------
# The push


@dataclass
class PushResult:
    """Where a push went: `commit` is the new head of `revision` (the old one if nothing changed)."""

    repo_id: str
    url: str
    revision: str
    commit: str
    changed: bool
    files: list[str]
    notes: list[str]


def _describe_http_error(err: Exception) -> str:
    response = getattr(err, "response", None)
    message = ""
    if response is not None:
        message = response.headers.get("X-Error-Message") or ""
        if not message:
            try:
                message = response.json().get("error", "")
            except Exception:
                message = ""
    return message or str(err).strip().splitlines()[0]


def _status(err: Exception) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _connection_error(endpoint: str, err: Exception) -> HubConnectionError:
    if isinstance(err, (_httpx.ConnectError, _httpx.ConnectTimeout)):
        return HubUnreachableError(
            f"Cannot reach the Hub at {endpoint}: {err}. Check the address (--endpoint / HF_ENDPOINT), that the "
            f"server is up, and your network or proxy settings."
        )
    return HubConnectionError(f"The connection to the Hub at {endpoint} broke: {type(err).__name__}: {err}. Retry.")


def _http_error(endpoint: str, what: str, err: Exception) -> PushError:
    status, message = _status(err), _describe_http_error(err)
    if status == 401:
        return InvalidTokenError(
            f"The Hub at {endpoint} rejected the token: {message}. Use a valid write token: --token, HF_TOKEN, or "
            f"`hf auth login` (tokens: https://huggingface.co/settings/tokens)."
        )
    if status == 403:
        return PermissionDeniedError(f"Not allowed to {what} on {endpoint}: {message}.")
    return PushError(f"Could not {what} on {endpoint}: HTTP {status}: {message}.")


@contextmanager
def _translate_errors(endpoint: str, what: str):
    """Turn the client's exceptions into `PushError`s whose message says what failed and what to do."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        yield
    except PushError:
        raise
    except _httpx.TransportError as err:
        raise _connection_error(endpoint, err) from err
    except OfflineModeIsEnabled as err:
        raise PushError(f"HF_HUB_OFFLINE is set: unset it to push ({err}).") from err
    except HfHubHTTPError as err:
        raise _http_error(endpoint, what, err) from err


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    endpoint: str | None = None,
    revision: str | None = None,
    private: bool | None = None,
    exist_ok: bool = False,
    commit_message: str | None = None,
    card: bool = True,
    overwrite_card: bool = False,
    license: str = model_card.DEFAULT_LICENSE,
) -> PushResult:
    """Push a saved model folder to `repo_id` in one commit (see the module docstring); raises a `PushError`
    subclass naming the problem. `private` sets the visibility (of a new repo, or of an existing one when given)."""
    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError
    from huggingface_hub.utils import validate_repo_id

    import hf_bigmodel

    folder = Path(folder)
    read_config(folder)  # fail on a bad folder before any network traffic
    token = token or get_token()
    if not token:
        raise MissingTokenError(
            "No Hugging Face token: pass --token (token=...), set HF_TOKEN, or run `hf auth login`. It needs write "
            "access (https://huggingface.co/settings/tokens)."
        )
    api = HfApi(endpoint=endpoint, token=token, library_name="hf_bigmodel", library_version=hf_bigmodel.__version__)
    endpoint = api.endpoint
    with _translate_errors(endpoint, "check the token"):
        who = api.whoami()
    if (who.get("auth", {}).get("accessToken") or {}).get("role") == "read":
        raise PermissionDeniedError(f"The token of {who['name']!r} is read-only: pushing needs a write token.")
    if "/" not in repo_id:
        repo_id = f"{who['name']}/{repo_id}"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise InvalidRepoIdError(f"Invalid REPO_ID {repo_id!r}: {err}") from None
    # Everything local (card, code) is prepared before the repo is touched.
    plan = plan_push(folder, repo_id=repo_id, card=card, overwrite_card=overwrite_card, license=license)

    with _translate_errors(endpoint, f"create {repo_id}"):
        if api.repo_exists(repo_id):
            if not exist_ok:
                raise RepoExistsError(
                    f"{repo_id} already exists on {endpoint}. Pass --exist-ok (exist_ok=True) to add a commit to it, "
                    f"or choose another REPO_ID."
                )
            if private is not None:
                api.update_repo_settings(repo_id, private=private)
        else:
            try:
                api.create_repo(repo_id, private=bool(private), exist_ok=False)
            except HfHubHTTPError as err:
                if _status(err) == 409:
                    raise RepoExistsError(
                        f"{repo_id} already exists on {endpoint} (created meanwhile, or private to someone else). "
                        f"Pass --exist-ok to add a commit to it, or choose another REPO_ID."
                    ) from None
                raise
    branch = revision or "main"
    with _translate_errors(endpoint, f"create branch {branch} of {repo_id}"):
        if branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        head = api.repo_info(repo_id, revision=branch).sha

    operations = [
        CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(f))
        for p, f in plan.files.items()
        if p not in plan.generated
    ]
    operations += [CommitOperationAdd(path_in_repo=p, path_or_fileobj=data) for p, data in plan.generated.items()]
    message = (
        commit_message or f"Upload {plan.config.get('model_type')} model with hf_bigmodel {hf_bigmodel.__version__}"
    )
    try:
        info = api.create_commit(repo_id, operations, commit_message=message, revision=branch, parent_commit=head)
    except _httpx.TransportError as err:
        raise _interrupted(api, repo_id, branch, head, folder, endpoint, err) from err
    except HfHubHTTPError as err:
        if _status(err) == 412:
            raise PushError(
                f"{repo_id}@{branch} moved while pushing (someone else committed). Nothing was committed; run the "
                f"push again."
            ) from err
        raise _http_error(endpoint, f"commit to {repo_id}@{branch}", err) from err
    except ValueError as err:  # invalid README metadata, reported by the Hub's validator
        raise PushError(f"The Hub refused the model card: {err}") from err

    _write_back(folder, plan)
    url = f"{endpoint.rstrip('/')}/{repo_id}" + (f"/tree/{branch}" if branch != "main" else "")
    return PushResult(repo_id, url, branch, info.oid, info.oid != head, plan.paths(), plan.notes)


def _interrupted(api, repo_id: str, branch: str, head: str, folder: Path, endpoint: str, err: Exception) -> PushError:
    if isinstance(err, (_httpx.ConnectError, _httpx.ConnectTimeout)):
        return _connection_error(endpoint, err)
    try:
        now = api.repo_info(repo_id, revision=branch).sha
        state = (
            f"Nothing was committed: {repo_id}@{branch} is still at commit {head[:12]}."
            if now == head
            else f"{repo_id}@{branch} is now at commit {now[:12]} (it was {head[:12]}): check it."
        )
    except Exception:
        state = f"The repo could not be checked afterwards; before the push {repo_id}@{branch} was at {head[:12]}."
    return UploadInterruptedError(
        f"The connection to {endpoint} dropped while uploading to {repo_id} ({type(err).__name__}: {err}). {state} "
        f"{folder} was not modified. Run the same command again to retry (unchanged files are skipped)."
    )


def _write_back(folder: Path, plan: PushPlan) -> None:
    """After a successful push, store the generated files locally too, so that FOLDER matches the repo."""
    for name, data in plan.generated.items():
        path = folder / name
        if name == model_card.README or name.endswith((".json", ".py")):
            atomic_write_text(path, data.decode("utf-8"))
        else:
            model_card.atomic_write_bytes(path, data)


# ----------------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-bigmodel push",
        description="Push a saved model folder (weights, config, tokenizer, modeling code, model card) to a Hub repo.",
    )
    parser.add_argument("folder", help="saved model folder, e.g. the --output_dir of `hf-bigmodel pretrain`")
    parser.add_argument("repo_id", help="namespace/name (or just name, in your namespace)")
    parser.add_argument("--revision", help="branch to push to (created from main if missing); default main")
    parser.add_argument("--private", action="store_true", default=None, help="make the repo private")
    parser.add_argument("--exist-ok", action="store_true", help="push to the repo even if it exists already")
    parser.add_argument("--token", help="Hub token with write access (default: HF_TOKEN, then `hf auth login`)")
    parser.add_argument("--endpoint", help="Hub URL (default: HF_ENDPOINT, then https://huggingface.co)")
    parser.add_argument("--commit-message", help="commit title")
    parser.add_argument("--license", default=model_card.DEFAULT_LICENSE, help="license id for the model card")
    parser.add_argument("--no-card", action="store_true", help="do not generate README.md")
    parser.add_argument("--overwrite-card", action="store_true", help="replace a hand-written README.md")
    parser.add_argument("--dry-run", action="store_true", help="list the files that would be pushed, then stop")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    card = not args.no_card
    try:
        if args.dry_run:
            plan = plan_push(
                args.folder, repo_id=args.repo_id, card=card, overwrite_card=args.overwrite_card, license=args.license
            )
            print(f"Would push {len(plan.paths())} files from {args.folder} to {args.repo_id}:")
            for path in plan.paths():
                print(f"  {path}" + ("  (generated)" if path in plan.generated else ""))
            for note in plan.notes:
                print(f"note: {note}")
            return 0
        result = push_folder(
            args.folder,
            args.repo_id,
            token=args.token,
            endpoint=args.endpoint,
            revision=args.revision,
            private=args.private,
            exist_ok=args.exist_ok,
            commit_message=args.commit_message,
            card=card,
            overwrite_card=args.overwrite_card,
            license=args.license,
        )
    except (InvalidFolderError, InvalidRepoIdError, model_card.ModelCardError) as err:
        print(f"hf-bigmodel push: error: {err}", file=sys.stderr)
        return 2
    except PushError as err:
        print(f"hf-bigmodel push: error: {err}", file=sys.stderr)
        return 1
    for note in result.notes:
        print(f"note: {note}")
    what = (
        f"Pushed {len(result.files)} files" if result.changed else "Nothing changed; the repo already has these files"
    )
    print(f"{what}: {result.url} (branch {result.revision}, commit {result.commit[:12]}).")
    auto_class, _ = model_card.head_of(_load_json(Path(args.folder) / "config.json"))
    revision = f', revision="{result.revision}"' if result.revision != "main" else ""
    print(f'Load it with: {auto_class}.from_pretrained("{result.repo_id}"{revision}, trust_remote_code=True)')
    return 0


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


if __name__ == "__main__":
    sys.exit(main())
