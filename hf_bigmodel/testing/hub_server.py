"""A Hub-compatible HTTP server for offline tests, written with the Python standard library only.

It speaks the part of the Hugging Face Hub HTTP API that the unmodified `huggingface_hub` client (1.x/2.x) and
`transformers` use to publish and load models: create/delete repos, whoami, repo info, file trees, preupload, git-LFS
batch upload (basic transfer), commits (also to branches and as pull requests), branches, tags, settings (private),
README metadata validation and `/resolve` downloads (with ranges). Private repos need the owner's token to read.
Everything is stored under one folder (content-addressed blobs + one JSON file per repo), so a restarted server on
the same folder keeps its repos. PyYAML (a dependency of `huggingface_hub`) is used, when importable, to check and
expose README metadata (`cardData`, `model-index`); without it metadata passes unchecked.

Use it as a context manager; it listens on 127.0.0.1, on a free port, until the block ends::

    from hf_bigmodel.testing import HubServer

    with HubServer(tmp_dir) as hub:  # hub.endpoint: "http://127.0.0.1:PORT"; hub.token: a write token of "testuser"
        # transformers (`model.push_to_hub`, `from_pretrained("testuser/my-model")`, Trainer's `--push_to_hub`) reads
        # HF_ENDPOINT once, when huggingface_hub is imported: run it in a process started with `hub.env()`.
        subprocess.run([sys.executable, "publish.py"], env={**os.environ, **hub.env()}, check=True)
        assert "model.safetensors" in hub.files("testuser/my-model")

    # Clients of this process take the endpoint as an argument (inline_uploads: see below).
    with HubServer(tmp_dir, inline_uploads=True) as hub:
        from hf_bigmodel.publish.push import push_folder
        from huggingface_hub import HfApi

        push_folder("runs/my-model", "testuser/my-model", endpoint=hub.endpoint, token=hub.token)
        HfApi(endpoint=hub.endpoint, token=hub.token).list_repo_files("testuser/my-model")

`hub.env()` sets HF_ENDPOINT, HF_TOKEN, HF_HUB_DISABLE_XET=1 (this server implements git-LFS, not Xet),
HF_HUB_DISABLE_TELEMETRY=1 and NO_PROXY, and turns HF_HUB_OFFLINE off. Two settings are read once, when
huggingface_hub is imported, and matter for clients in the current process: HF_HUB_OFFLINE=1 blocks every request,
to 127.0.0.1 too (use a child process then); and with `hf_xet` installed and HF_HUB_DISABLE_XET unset, LFS files
would go through Xet: start the server with `inline_uploads=True`, so that every file travels inside the commit.

The default account is user "testuser" (token `hub.token`) in org "testorg"; pass `tokens={"hf_x": "alice"}` (or
`{"hf_r": ("alice", "read")}` for a read-only token) and `orgs={"alice": ["acme"]}` for others.

Fault injection, to test how a client handles a failing Hub: `hub.inject_fault("testuser/my-model", "commit")` makes
the next commit to that repo drop the connection halfway through the request body (as a network cut does);
`status=503` answers an HTTP error instead; `after=1` lets one such request through first; `times=None` keeps
failing until `hub.clear_faults()`. Operations: "create_repo", "info", "preupload", "lfs_batch", "lfs_upload",
"commit", "resolve".

Inspection, straight from storage (no HTTP, so it works in any process): `hub.files(repo_id, revision)`,
`hub.read(repo_id, path, revision)`, `hub.commits(repo_id, revision)`, `hub.branches(repo_id)`, `hub.head(...)`,
`hub.is_private(repo_id)`; `hub.requests` logs (method, path, status) of every request (None: connection cut).

Command line: `python -m hf_bigmodel.testing.hub_server ROOT [--port N]` serves until interrupted.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import shlex
import socket
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

try:  # a dependency of huggingface_hub, so normally present; the server works without it (no metadata checks)
    import yaml
except ImportError:  # pragma: no cover
    yaml = None

DEFAULT_TOKEN = "hf_bigmodel_testing_write_token"
DEFAULT_USER = "testuser"
DEFAULT_ORG = "testorg"

FAULT_OPERATIONS = ("create_repo", "info", "preupload", "lfs_batch", "lfs_upload", "commit", "resolve")
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")

# The .gitattributes the Hub puts in a new repo: these files are stored with LFS.
_LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*", "*.mlmodel",
    "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt",
    "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz",
    "*.zip", "*.zst", "*tfevents*",
)  # fmt: skip
DEFAULT_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in _LFS_PATTERNS)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # bigger files always go through LFS, as on the Hub


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def front_matter(text: str) -> tuple[dict | None, str | None]:
    """(metadata, error) of a README's YAML front matter: ({}, None) without one, (None, message) if invalid."""
    match = re.match(r"^\ufeff?---[ \t]*\r?\n(.*?\r?\n)?---[ \t]*(\r?\n|$)", text, re.DOTALL)
    if match is None:
        return {}, None
    if yaml is None:
        return {}, None
    try:
        data = yaml.safe_load(match.group(1) or "")
    except yaml.YAMLError as err:
        return None, f"Invalid YAML in the README front matter: {err}"
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        return None, f"The README front matter must be a YAML mapping, got {type(data).__name__}."
    return data, None


def _check_model_index(model_index: Any) -> list[str]:
    """The Hub's structural checks of `model-index` (what it needs to show evaluation results)."""
    errors = []
    if not isinstance(model_index, list):
        return ['"model-index" must be a list']
    for i, entry in enumerate(model_index):
        where = f'"model-index[{i}]"'
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            errors.append(f"{where} must be a mapping with a string name")
            continue
        results = entry.get("results")
        if not isinstance(results, list):
            errors.append(f"{where}.results must be a list")
            continue
        for j, result in enumerate(results):
            at = f"{where}.results[{j}]"
            if not isinstance(result, dict):
                errors.append(f"{at} must be a mapping")
                continue
            task = result.get("task")
            if not isinstance(task, dict) or not isinstance(task.get("type"), str):
                errors.append(f"{at}.task.type must be a string")
            dataset = result.get("dataset")
            if not (
                isinstance(dataset, dict)
                and isinstance(dataset.get("type"), str)
                and isinstance(dataset.get("name"), str)
            ):
                errors.append(f"{at}.dataset must have string type and name")
            metrics = result.get("metrics")
            if not isinstance(metrics, list) or not metrics:
                errors.append(f"{at}.metrics must be a non-empty list")
                continue
            for k, metric in enumerate(metrics):
                if not isinstance(metric, dict) or not isinstance(metric.get("type"), str) or "value" not in metric:
                    errors.append(f"{at}.metrics[{k}] must have a string type and a value")
    return errors


def validate_card_metadata(content: str) -> list[str]:
    """Errors the Hub would report for this README's metadata (empty when it is valid)."""
    metadata, error = front_matter(content)
    if error:
        return [error]
    errors = []
    for key in ("license", "library_name", "pipeline_tag", "model_name"):
        if key in metadata and not isinstance(metadata[key], str):
            errors.append(f'"{key}" must be a string')
    for key in ("tags", "datasets", "language", "metrics", "base_model"):
        value = metadata.get(key)
        if (
            value is not None
            and not isinstance(value, str)
            and not (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            errors.append(f'"{key}" must be a string or a list of strings')
    if "model-index" in metadata:
        errors += _check_model_index(metadata["model-index"])
    return errors


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


class _Dropped(Exception):
    """The connection was cut on purpose (fault injection)."""


@dataclass
class _Fault:
    repo_key: tuple[str, str]
    operation: str
    status: int | None
    remaining: int | None
    skip: int


@dataclass
class _Repo:
    type: str
    id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)  # name (or refs/pr/N) -> commit id
    tags: dict[str, dict] = field(default_factory=dict)  # name -> {"commit", "message"}
    commits: dict[str, dict] = field(default_factory=dict)  # id -> {"parents", "title", "message", "date", ...}
    next_pr: int = 1
    lfs_objects: list[str] = field(default_factory=list)  # sha256 of the LFS objects uploaded to this repo

    @property
    def namespace(self) -> str:
        return self.id.split("/")[0]


class HubServer:
    """A Hub-compatible server on `host`:`port` (0 = a free port) storing everything under `root`.

    Args:
        root: folder for blobs and repo metadata (created if missing; reused if it holds a previous server's data).
        tokens: token -> user name, or -> (user name, "read" | "write"). Default: `{hub.token: "testuser"}`.
        orgs: user -> organisations the user may write to. Default: testuser is a member of "testorg".
        inline_uploads: answer "regular" to every preupload, so clients put all files in the commit (no LFS).
        lfs_size_threshold: files at least this big go through LFS (besides the .gitattributes patterns).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        tokens: dict[str, str | tuple[str, str]] | None = None,
        orgs: dict[str, list[str]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        inline_uploads: bool = False,
        lfs_size_threshold: int = LFS_SIZE_THRESHOLD,
    ):
        self.root = Path(root)
        tokens = {DEFAULT_TOKEN: DEFAULT_USER} if tokens is None else tokens
        self.tokens = {t: (v, "write") if isinstance(v, str) else tuple(v) for t, v in tokens.items()}
        self.orgs = {DEFAULT_USER: [DEFAULT_ORG]} if orgs is None else orgs
        self.host, self.port = host, port
        self.inline_uploads = inline_uploads
        self.lfs_size_threshold = lfs_size_threshold
        self.requests: list[tuple[str, str, int | None]] = []
        self._lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._secret = secrets.token_bytes(32)
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        # Uploads in progress when a server on this root was killed: nothing will ever finish them.
        for leftover in (self.root / "tmp").iterdir():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)
        (self.root / "repos").mkdir(exist_ok=True)
        self._load()

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> HubServer:
        """Start serving in a background thread; returns self."""
        if self._httpd is not None:
            return self
        handler = type("HubRequestHandler", (_HubRequestHandler,), {"hub": self})
        self._httpd = _Server((self.host, self.port), handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"HubServer:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (the stored repos stay in `root`)."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
        self._httpd = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """Base URL for clients: HF_ENDPOINT, `HfApi(endpoint=...)`."""
        return f"http://{self.host}:{self.port}"

    @property
    def token(self) -> str:
        """The first write token (the default user's unless `tokens` was given)."""
        return next(t for t, (_, role) in self.tokens.items() if role == "write")

    @property
    def user(self) -> str:
        return self.tokens[self.token][0]

    def env(self, token: str | None = None) -> dict[str, str]:
        """Environment variables that point a fresh process's huggingface_hub / transformers at this server."""
        return {
            "HF_ENDPOINT": self.endpoint,
            "HF_TOKEN": token or self.token,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HUGGINGFACE_CO_STAGING": "0",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    # ------------------------------------------------------------------------------------------ faults
    def inject_fault(
        self,
        repo_id: str,
        operation: str,
        *,
        status: int | None = None,
        times: int | None = 1,
        after: int = 0,
        repo_type: str = "model",
    ) -> None:
        """Make `times` (None: all) `operation` requests on `repo_id` fail, once `after` of them have succeeded: by
        cutting the connection halfway through the request body, or with an HTTP `status` error if given."""
        if operation not in FAULT_OPERATIONS:
            raise ValueError(f"Unknown operation {operation!r}; choose from {', '.join(FAULT_OPERATIONS)}.")
        with self._lock:
            self._faults.append(_Fault((repo_type, repo_id), operation, status, times, after))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, repo_key: tuple[str, str], operation: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.repo_key == repo_key and fault.operation == operation:
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    # ------------------------------------------------------------------------------------------ storage
    def _repo_file(self, repo: _Repo) -> Path:
        return self.root / "repos" / f"{repo.type}s" / f"{repo.id}.json"

    def _save(self, repo: _Repo) -> None:
        path = self._repo_file(repo)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(repo.__dict__, indent=1))
        os.replace(tmp, path)

    def _load(self) -> None:
        for path in sorted((self.root / "repos").glob("*/*/*.json")):
            data = json.loads(path.read_text())
            repo = _Repo(**data)
            self._repos[(repo.type, repo.id)] = repo

    def _blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256

    def _store_blob(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self._blob_path(sha256)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        return sha256

    def _has_blob(self, sha256: str, size: int | None = None) -> bool:
        path = self._blob_path(sha256)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def _entry(self, sha256: str, size: int, lfs: bool) -> dict:
        content_sha1 = _git_blob_oid(self._blob_path(sha256).read_bytes()) if not lfs else None
        oid = _git_blob_oid(_lfs_pointer(sha256, size)) if lfs else content_sha1
        return {"sha256": sha256, "size": size, "lfs": lfs, "oid": oid}

    def _new_commit(self, repo: _Repo, parents: list[str], tree: dict, title: str, message: str, user: str) -> str:
        date = _now()
        seed = json.dumps([parents, tree, title, message, date, secrets.token_hex(8)], sort_keys=True)
        commit_id = hashlib.sha1(seed.encode()).hexdigest()
        repo.commits[commit_id] = {
            "parents": parents, "title": title, "message": message, "date": date, "author": user, "tree": tree,
        }  # fmt: skip
        return commit_id

    def create_repo(self, repo_type: str, repo_id: str, user: str, private: bool = False) -> _Repo:
        """Create a repo with the Hub's initial commit (a .gitattributes); used by the HTTP API."""
        with self._lock:
            repo = _Repo(repo_type, repo_id, private, _now())
            sha256 = self._store_blob(DEFAULT_GITATTRIBUTES.encode())
            tree = {".gitattributes": self._entry(sha256, len(DEFAULT_GITATTRIBUTES), lfs=False)}
            repo.branches["main"] = self._new_commit(repo, [], tree, "initial commit", "", user)
            self._repos[(repo_type, repo_id)] = repo
            self._save(repo)
            return repo

    # Inspection, read straight from storage (no HTTP): what a push really left on the server.
    def _get(self, repo_id: str, repo_type: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise KeyError(f"No {repo_type} repo {repo_id!r} on this server.")
        return repo

    def resolve(self, repo: _Repo, revision: str) -> str | None:
        """Commit id of a branch, tag (also as refs/heads/..., refs/tags/...) or commit id of `repo`; None if none."""
        for name in (revision, revision.removeprefix("refs/heads/")):
            if name in repo.branches:
                return repo.branches[name]
        tag = repo.tags.get(revision.removeprefix("refs/tags/"))
        if tag is not None:
            return tag["commit"]
        return revision if _HEX40.match(revision) and revision in repo.commits else None

    def head(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str | None:
        """The commit a revision of a repo points to (None if the repo or revision is missing)."""
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
            return None if repo is None else self.resolve(repo, revision)

    def _tree_at(self, repo_id: str, revision: str, repo_type: str) -> dict:
        with self._lock:
            repo = self._get(repo_id, repo_type)
            commit = self.resolve(repo, revision)
            if commit is None:
                raise KeyError(f"{repo_id} has no revision {revision!r}.")
            return repo.commits[commit]["tree"]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, dict]:
        """{path: {"sha256", "size", "lfs"}} of the files of a repo at a revision."""
        tree = self._tree_at(repo_id, revision, repo_type)
        return {p: {k: e[k] for k in ("sha256", "size", "lfs")} for p, e in sorted(tree.items())}

    def read(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> bytes:
        """The content of one file of a repo at a revision."""
        entry = self._tree_at(repo_id, revision, repo_type).get(path)
        if entry is None:
            raise KeyError(f"{repo_id}@{revision} has no file {path!r}.")
        return self._blob_path(entry["sha256"]).read_bytes()

    def commits(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[tuple[str, str]]:
        """[(commit id, title)] of the history of a revision, newest first."""
        with self._lock:
            repo = self._get(repo_id, repo_type)
            commit_id, history = self.resolve(repo, revision), []
            while commit_id is not None:
                commit = repo.commits[commit_id]
                history.append((commit_id, commit["title"]))
                commit_id = commit["parents"][0] if commit["parents"] else None
            return history

    def branches(self, repo_id: str, repo_type: str = "model") -> dict[str, str]:
        """{branch: commit id} of a repo (pull-request refs excluded)."""
        with self._lock:
            repo = self._get(repo_id, repo_type)
            return {n: c for n, c in sorted(repo.branches.items()) if not n.startswith("refs/")}

    def is_private(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return self._get(repo_id, repo_type).private

    def _can_write(self, user: str | None, namespace: str) -> bool:
        return user is not None and (namespace == user or namespace in self.orgs.get(user, ()))

    def _is_lfs(self, tree: dict, path: str, size: int, sample: bytes) -> bool:
        if self.inline_uploads or size == 0:
            return False
        if size >= self.lfs_size_threshold or b"\0" in sample:  # big or binary, as the Hub decides
            return True
        attributes = DEFAULT_GITATTRIBUTES
        if ".gitattributes" in tree:
            attributes = self._blob_path(tree[".gitattributes"]["sha256"]).read_text(errors="replace")
        name = path.rsplit("/", 1)[-1]
        for line in attributes.splitlines():
            parts = line.split()
            if len(parts) >= 2 and "filter=lfs" in parts[1:]:
                pattern = parts[0]
                if fnmatch.fnmatchcase(path if "/" in pattern else name, pattern):
                    return True
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class _HubRequestHandler(BaseHTTPRequestHandler):
    hub: HubServer  # set on the subclass made by HubServer.start
    protocol_version = "HTTP/1.1"  # keep-alive, as the Hub; every answer carries a Content-Length
    server_version = "hf_bigmodel-HubServer"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the request log is `hub.requests`
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ------------------------------------------------------------------------------------------ plumbing
    def _dispatch(self, method: str) -> None:
        self._body: bytes | None = None
        self._body_done = False
        self._status: int | None = None
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        try:
            self._route(method, url.path.split("/")[1:])
        except _HTTPError as err:
            self._drain()
            self._send_error(err)
        except _Dropped:
            self._status = None
        except (ConnectionError, BrokenPipeError, TimeoutError):
            self.close_connection = True
        except Exception as err:  # a server bug: answer 500 rather than leave the client waiting
            self._drain()
            self._send_error(_HTTPError(500, f"Internal server error: {type(err).__name__}: {err}"))
        finally:
            with self.hub._lock:
                self.hub.requests.append((method, url.path, self._status))

    def _iter_body(self, chunk_size: int = 1 << 16):
        """The request body in chunks (Content-Length or chunked transfer encoding), read at most once."""
        if self._body_done:
            return
        self._body_done = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline(65537).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield from self._read_exactly(size, chunk_size)
                self.rfile.readline()
        else:
            yield from self._read_exactly(int(self.headers.get("Content-Length") or 0), chunk_size)

    def _read_exactly(self, remaining: int, chunk_size: int):
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, chunk_size))
            if not chunk:
                raise ConnectionError("client closed the connection mid-body")
            remaining -= len(chunk)
            yield chunk

    def _read_body(self) -> bytes:
        if self._body is None:
            self._body = b"".join(self._iter_body())
        return self._body

    def _drain(self) -> None:
        # An error answer must still consume the body, or the next request on this keep-alive connection would be
        # parsed from its leftovers.
        for _ in self._iter_body():
            pass

    def _json_body(self) -> Any:
        body = self._read_body()
        try:
            return json.loads(body or b"{}")
        except json.JSONDecodeError as err:
            raise _HTTPError(400, f"Request body is not valid JSON: {err}") from None

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json", headers=()) -> None:
        self._status = status
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _send_json(self, data: Any, status: int = 200, headers=(), content_type: str = "application/json") -> None:
        self._send(status, json.dumps(data).encode(), content_type, headers)

    def _send_error(self, err: _HTTPError) -> None:
        message = err.message.replace("\r", " ").replace("\n", " ").encode("ascii", "replace").decode()
        headers = [("X-Error-Message", message)]
        if err.code:
            headers.append(("X-Error-Code", err.code))
        headers += [(k, v) for k, v in err.extra.pop("headers", [])]
        self._send_json({"error": err.message, **err.extra}, err.status, headers)

    def _drop(self) -> None:
        """Read about half of the request body, then reset the connection without answering."""
        total = int(self.headers.get("Content-Length") or 0)
        got = 0
        for chunk in self._iter_body():
            got += len(chunk)
            if got >= total // 2:
                break
        self.close_connection = True
        try:
            # SO_LINGER 0: close sends a TCP reset, as a cut network path or a killed proxy does.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        raise _Dropped

    def finish(self) -> None:
        with contextlib.suppress(OSError):  # the socket may have been reset on purpose
            super().finish()

    def _fault(self, repo_key: tuple[str, str], operation: str) -> None:
        fault = self.hub._take_fault(repo_key, operation)
        if fault is None:
            return
        if fault.status is None:
            self._drop()
        raise _HTTPError(fault.status, f"Injected failure: {operation} answered {fault.status}")

    @property
    def _base(self) -> str:
        return f"http://{self.headers.get('Host') or f'{self.hub.host}:{self.hub.port}'}"

    # ------------------------------------------------------------------------------------------ auth
    def _user(self) -> tuple[str | None, str | None]:
        """(user, role) of the Authorization header; (None, None) without one; 401 for an unknown token."""
        header = self.headers.get("Authorization")
        if not header:
            return None, None
        scheme, _, token = header.partition(" ")
        account = self.hub.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if account is None:
            raise _HTTPError(401, "Invalid credentials in Authorization header")
        return account

    def _readable(self, repo_type: str, repo_id: str) -> tuple[_Repo, str | None]:
        user, _ = self._user()
        repo = self.hub._repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not self.hub._can_write(user, repo.namespace)):
            # As the Hub: a private repo looks missing to whoever may not read it.
            raise _HTTPError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        return repo, user

    def _writable(self, repo_type: str, repo_id: str) -> tuple[_Repo, str]:
        user, role = self._user()
        if user is None:
            raise _HTTPError(401, "You must be authenticated to write to a repository: send a token.")
        repo, _ = self._readable(repo_type, repo_id)
        if not self.hub._can_write(user, repo.namespace):
            raise _HTTPError(403, f"You don't have the rights to write to {repo_id}")
        if role != "write":
            raise _HTTPError(403, "This token is read-only: use a token with write access")
        return repo, user

    def _resolve_revision(self, repo: _Repo, revision: str) -> str:
        revision = unquote(revision)
        commit = self.hub.resolve(repo, revision)
        if commit is None:
            raise _HTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # ------------------------------------------------------------------------------------------ routing
    def _route(self, method: str, seg: list[str]) -> None:
        if seg[:1] == ["api"]:
            return self._route_api(method, seg[1:])
        if seg[:1] == ["_lfs"] and len(seg) >= 5 and seg[1] in REPO_TYPES:
            repo_key = (REPO_TYPES[seg[1]], f"{unquote(seg[2])}/{unquote(seg[3])}")
            if method == "PUT" and len(seg) == 5:
                return self._lfs_put(repo_key, seg[4])
            if method == "POST" and seg[5:] == ["verify"]:
                return self._lfs_verify(repo_key, seg[4])
        repo_type = "model"
        if seg and seg[0] in ("datasets", "spaces"):
            repo_type, seg = REPO_TYPES[seg[0]], seg[1:]
        if (
            method == "POST"
            and len(seg) == 6
            and seg[1].endswith(".git")
            and seg[2:] == ["info", "lfs", "objects", "batch"]
        ):
            return self._lfs_batch((repo_type, f"{unquote(seg[0])}/{unquote(seg[1][:-4])}"))
        if method in ("GET", "HEAD") and len(seg) >= 5 and seg[2] == "resolve":
            path = "/".join(unquote(s) for s in seg[4:])
            return self._resolve((repo_type, f"{unquote(seg[0])}/{unquote(seg[1])}"), seg[3], path)
        raise _HTTPError(404, f"Not found: {method} {urlsplit(self.path).path}")

    def _route_api(self, method: str, seg: list[str]) -> None:
        simple = {
            ("GET", "whoami-v2"): self._whoami,
            ("POST", "validate-yaml"): self._validate_yaml,
            ("GET", "agent-harnesses"): lambda: self._send_json({"standardEnvVars": [], "harnesses": {}}),
        }
        if len(seg) == 1 and (method, seg[0]) in simple:
            return simple[(method, seg[0])]()
        if seg == ["repos", "create"] and method == "POST":
            return self._create_repo()
        if seg == ["repos", "delete"] and method == "DELETE":
            return self._delete_repo()
        if len(seg) >= 3 and seg[0] in REPO_TYPES:
            key = (REPO_TYPES[seg[0]], f"{unquote(seg[1])}/{unquote(seg[2])}")
            op, args = (seg[3] if len(seg) > 3 else ""), seg[4:]
            routes = {
                ("GET", ""): lambda: self._info(key, None),
                ("GET", "revision"): lambda: self._info(key, args[0] if args else "main"),
                ("GET", "tree"): lambda: self._tree(key, args[0], "/".join(unquote(a) for a in args[1:])),
                ("POST", "paths-info"): lambda: self._paths_info(key, args[0]),
                ("POST", "preupload"): lambda: self._preupload(key, args[0]),
                ("POST", "commit"): lambda: self._commit(key, args[0]),
                ("GET", "refs"): lambda: self._refs(key),
                ("GET", "commits"): lambda: self._commits(key, args[0] if args else "main"),
                ("POST", "branch"): lambda: self._create_branch(key, unquote("/".join(args))),
                ("DELETE", "branch"): lambda: self._delete_branch(key, unquote("/".join(args))),
                ("POST", "tag"): lambda: self._create_tag(key, args[0]),
                ("DELETE", "tag"): lambda: self._delete_tag(key, unquote(args[0])),
                ("PUT", "settings"): lambda: self._settings(key),
            }
            if op in ("xet-read-token", "xet-write-token"):
                raise _HTTPError(
                    501,
                    "This Hub server does not implement Xet storage: set HF_HUB_DISABLE_XET=1 before importing "
                    "huggingface_hub (hub.env() does), or start the server with inline_uploads=True.",
                )
            needs_arg = op in ("tree", "paths-info", "preupload", "commit", "branch", "tag")
            if (method, op) in routes and (args or not needs_arg):
                return routes[(method, op)]()
        raise _HTTPError(404, f"Not found: {method} /api/{'/'.join(seg)}")

    # ------------------------------------------------------------------------------------------ account
    def _whoami(self) -> None:
        user, role = self._user()
        if user is None:
            raise _HTTPError(401, "Invalid credentials in Authorization header")
        self._send_json({
            "type": "user",
            "id": hashlib.sha1(user.encode()).hexdigest()[:24],
            "name": user,
            "fullname": user,
            "isPro": False,
            "orgs": [{"type": "org", "name": org, "fullname": org} for org in self.hub.orgs.get(user, [])],
            "auth": {"type": "access_token", "accessToken": {"displayName": "testing", "role": role}},
        })  # fmt: skip

    def _validate_yaml(self) -> None:
        body = self._json_body()
        errors = validate_card_metadata(str(body.get("content", "")))
        self._send_json({"errors": [{"message": e} for e in errors], "warnings": []}, 400 if errors else 200)

    # ------------------------------------------------------------------------------------------ repos
    def _repo_url(self, repo: _Repo) -> str:
        return f"{self._base}/{_URL_PREFIX[repo.type]}{repo.id}"

    def _create_repo(self) -> None:
        body = self._json_body()
        user, role = self._user()
        if user is None:
            raise _HTTPError(401, "You must be authenticated to create a repository: send a token.")
        repo_type = body.get("type") or "model"
        name, namespace = body.get("name"), body.get("organization") or user
        if repo_type not in _URL_PREFIX or not isinstance(name, str) or not _NAME.match(name) or ".." in name:
            raise _HTTPError(400, f"Invalid repo name {name!r} (letters, digits, '-', '_', '.'; at most 96)")
        repo_id = f"{namespace}/{name}"
        self._fault((repo_type, repo_id), "create_repo")
        if not self.hub._can_write(user, namespace):
            raise _HTTPError(403, f"You don't have the rights to create a {repo_type} under the namespace {namespace}")
        if role != "write":
            raise _HTTPError(403, "This token is read-only: use a token with write access")
        private = bool(body.get("private")) or body.get("visibility") == "private"
        with self.hub._lock:
            existing = self.hub._repos.get((repo_type, repo_id))
            if existing is not None:
                raise _HTTPError(409, f"You already created this {repo_type} repo", url=self._repo_url(existing))
            repo = self.hub.create_repo(repo_type, repo_id, user, private)
        self._send_json({"url": self._repo_url(repo), "name": repo_id, "id": repo_id})

    def _delete_repo(self) -> None:
        body = self._json_body()
        user, _ = self._user()
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or user}/{body.get('name')}"
        repo, _ = self._writable(repo_type, repo_id)
        with self.hub._lock:
            del self.hub._repos[(repo.type, repo.id)]
            self.hub._repo_file(repo).unlink(missing_ok=True)
        self._send_json({})

    def _settings(self, key: tuple[str, str]) -> None:
        body = self._json_body()
        repo, _ = self._writable(*key)
        with self.hub._lock:
            if "private" in body:
                repo.private = bool(body["private"])
            if body.get("visibility") in ("private", "public"):
                repo.private = body["visibility"] == "private"
            self.hub._save(repo)
        self._send_json({"private": repo.private})

    def _info(self, key: tuple[str, str], revision: str | None) -> None:
        repo, _ = self._readable(*key)
        self._fault(key, "info")
        with self.hub._lock:
            commit_id = self._resolve_revision(repo, revision or "main")
            commit = repo.commits[commit_id]
            tree = commit["tree"]
        blobs = self.query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for path in sorted(tree):
            sibling = {"rfilename": path}
            if blobs:
                entry = tree[path]
                sibling.update(size=entry["size"], blobId=entry["oid"])
                if entry["lfs"]:
                    pointer = _lfs_pointer(entry["sha256"], entry["size"])
                    sibling["lfs"] = {"sha256": entry["sha256"], "size": entry["size"], "pointerSize": len(pointer)}
            siblings.append(sibling)
        card = {}
        if "README.md" in tree:
            card, _ = front_matter(self.hub._blob_path(tree["README.md"]["sha256"]).read_text(errors="replace"))
            card = card or {}
        info = {
            "_id": hashlib.sha1(f"{repo.type}/{repo.id}/{repo.created_at}".encode()).hexdigest()[:24],
            "id": repo.id,
            "author": repo.namespace,
            "sha": commit_id,
            "lastModified": commit["date"],
            "createdAt": repo.created_at,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": list(card.get("tags") or []),
            "siblings": siblings,
            "usedStorage": sum(e["size"] for e in tree.values()),
        }
        if card:
            info["cardData"] = card
        if repo.type == "model":
            info["modelId"] = repo.id
            for key_ in ("library_name", "pipeline_tag", "model-index"):
                if key_ in card:
                    info[key_] = card[key_]
            if "config.json" in tree:
                try:
                    config = json.loads(self.hub._blob_path(tree["config.json"]["sha256"]).read_bytes())
                    info["config"] = {k: config[k] for k in ("architectures", "model_type", "auto_map") if k in config}
                except (ValueError, OSError):
                    pass
        self._send_json(info)

    # ------------------------------------------------------------------------------------------ trees
    @staticmethod
    def _file_json(path: str, entry: dict) -> dict:
        data = {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}
        if entry["lfs"]:
            pointer = _lfs_pointer(entry["sha256"], entry["size"])
            data["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": len(pointer)}
        return data

    @staticmethod
    def _dir_json(path: str, commit_id: str) -> dict:
        return {
            "type": "directory",
            "oid": hashlib.sha1(f"{commit_id}:{path}".encode()).hexdigest(),
            "size": 0,
            "path": path,
        }

    def _tree(self, key: tuple[str, str], revision: str, path: str) -> None:
        repo, _ = self._readable(*key)
        recursive = self.query.get("recursive", ["false"])[0].lower() == "true"
        with self.hub._lock:
            commit_id = self._resolve_revision(repo, revision)
            tree = repo.commits[commit_id]["tree"]
        prefix = path.strip("/")
        files, dirs = [], set()
        for name in sorted(tree):
            if prefix and not name.startswith(prefix + "/"):
                continue
            parts = name[len(prefix) + 1 if prefix else 0 :].split("/")
            if recursive or len(parts) == 1:
                files.append(self._file_json(name, tree[name]))
            depth = len(parts) - 1 if recursive else min(1, len(parts) - 1)
            for i in range(1, depth + 1):
                dirs.add("/".join(([prefix] if prefix else []) + parts[:i]))
        if prefix and not files and not dirs:
            raise _HTTPError(
                404, f"Entry not found: {prefix}", "EntryNotFound", headers=[("X-Repo-Commit", commit_id)]
            )
        self._send_json([self._dir_json(d, commit_id) for d in sorted(dirs)] + files)

    def _paths_info(self, key: tuple[str, str], revision: str) -> None:
        body = self._read_body()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = (json.loads(body or b"{}")).get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        repo, _ = self._readable(*key)
        with self.hub._lock:
            commit_id = self._resolve_revision(repo, revision)
            tree = repo.commits[commit_id]["tree"]
        result = []
        for path in paths:
            path = path.strip("/")
            if path in tree:
                result.append(self._file_json(path, tree[path]))
            elif any(name.startswith(path + "/") for name in tree):
                result.append(self._dir_json(path, commit_id))
        self._send_json(result)

    def _refs(self, key: tuple[str, str]) -> None:
        repo, _ = self._readable(*key)
        with self.hub._lock:
            branches = [
                {"name": n, "ref": f"refs/heads/{n}", "targetCommit": c}
                for n, c in sorted(repo.branches.items())
                if not n.startswith("refs/")
            ]
            tags = [
                {"name": n, "ref": f"refs/tags/{n}", "targetCommit": t["commit"]} for n, t in sorted(repo.tags.items())
            ]
            data = {"branches": branches, "converts": [], "tags": tags}
            if self.query.get("include_prs", ["0"])[0] in ("1", "true", "True"):
                data["pullRequests"] = [
                    {"name": n.rsplit("/", 1)[-1], "ref": n, "targetCommit": c}
                    for n, c in sorted(repo.branches.items())
                    if n.startswith("refs/pr/")
                ]
        self._send_json(data)

    def _commits(self, key: tuple[str, str], revision: str) -> None:
        repo, _ = self._readable(*key)
        with self.hub._lock:
            commit_id = self._resolve_revision(repo, revision)
            history = []
            while commit_id is not None:
                commit = repo.commits[commit_id]
                history.append({
                    "id": commit_id,
                    "title": commit["title"],
                    "message": commit["message"],
                    "date": commit["date"],
                    "authors": [{"user": commit["author"]}],
                })  # fmt: skip
                commit_id = commit["parents"][0] if commit["parents"] else None
        self._send_json(history)

    # ------------------------------------------------------------------------------------------ refs
    def _create_branch(self, key: tuple[str, str], branch: str) -> None:
        body = self._json_body()
        repo, _ = self._writable(*key)
        if not branch or branch.startswith("refs/") or ".." in branch:
            raise _HTTPError(400, f"Invalid branch name {branch!r}")
        with self.hub._lock:
            if branch in repo.branches:
                raise _HTTPError(409, f"Reference already exists: refs/heads/{branch}")
            repo.branches[branch] = self._resolve_revision(repo, body.get("startingPoint") or "main")
            self.hub._save(repo)
        self._send_json({})

    def _delete_branch(self, key: tuple[str, str], branch: str) -> None:
        repo, _ = self._writable(*key)
        with self.hub._lock:
            if branch == "main":
                raise _HTTPError(403, "The main branch cannot be deleted")
            if branch not in repo.branches:
                raise _HTTPError(404, f"Branch {branch!r} not found", "RevisionNotFound")
            del repo.branches[branch]
            self.hub._save(repo)
        self._send_json({})

    def _create_tag(self, key: tuple[str, str], revision: str) -> None:
        body = self._json_body()
        repo, _ = self._writable(*key)
        tag = body.get("tag")
        if not isinstance(tag, str) or not tag:
            raise _HTTPError(400, "Missing tag name")
        with self.hub._lock:
            if tag in repo.tags:
                raise _HTTPError(409, f"Tag {tag!r} already exists")
            repo.tags[tag] = {"commit": self._resolve_revision(repo, revision), "message": body.get("message")}
            self.hub._save(repo)
        self._send_json({})

    def _delete_tag(self, key: tuple[str, str], tag: str) -> None:
        repo, _ = self._writable(*key)
        with self.hub._lock:
            if tag not in repo.tags:
                raise _HTTPError(404, f"Tag {tag!r} not found", "RevisionNotFound")
            del repo.tags[tag]
            self.hub._save(repo)
        self._send_json({})

    # ------------------------------------------------------------------------------------------ uploads
    def _preupload(self, key: tuple[str, str], revision: str) -> None:
        body = self._json_body()
        repo, _ = self._writable(*key)
        self._fault(key, "preupload")
        with self.hub._lock:
            tree = repo.commits[self._resolve_revision(repo, revision)]["tree"]
        ignore = [
            p.strip() for p in str(body.get("gitIgnore") or "").splitlines() if p.strip() and not p.startswith("#")
        ]
        answers = []
        for item in body.get("files", []):
            path, size = item["path"], int(item.get("size", 0))
            sample = base64.b64decode(item.get("sample") or "")
            mode = "lfs" if self.hub._is_lfs(tree, path, size, sample) else "regular"
            answer = {
                "path": path,
                "uploadMode": mode,
                "shouldIgnore": any(fnmatch.fnmatchcase(path, p) for p in ignore),
            }
            entry = tree.get(path)
            if entry is not None:  # lets the client skip unchanged files, as the Hub does
                answer["oid"] = (
                    entry["sha256"]
                    if mode == "lfs"
                    else _git_blob_oid(self.hub._blob_path(entry["sha256"]).read_bytes())
                )
            answers.append(answer)
        self._send_json({"files": answers, "commitOid": None})

    def _sign(self, repo_key: tuple[str, str], oid: str, size: int) -> str:
        message = f"{repo_key[0]}:{repo_key[1]}:{oid}:{size}".encode()
        return hmac.new(self.hub._secret, message, hashlib.sha256).hexdigest()

    def _lfs_batch(self, key: tuple[str, str]) -> None:
        body = self._json_body()
        repo, _ = self._writable(*key)
        self._fault(key, "lfs_batch")
        if body.get("operation") != "upload":
            raise _HTTPError(400, "Only the LFS upload operation is supported")
        objects = []
        base = f"{self._base}/_lfs/{repo.type}s/{repo.id}"
        for obj in body.get("objects", []):
            oid, size = str(obj.get("oid", "")), int(obj.get("size", -1))
            if not _HEX64.match(oid) or size < 0:
                objects.append({"oid": oid, "size": size, "error": {"code": 422, "message": "Invalid oid or size"}})
                continue
            entry = {"oid": oid, "size": size}
            # LFS objects belong to a repo (as on the Hub): a blob another repo uploaded is uploaded again.
            if not (oid in repo.lfs_objects and self.hub._has_blob(oid, size)):
                sig = self._sign(key, oid, size)
                entry["authenticated"] = True
                entry["actions"] = {
                    "upload": {"href": f"{base}/{oid}?size={size}&sig={sig}", "header": {}},
                    "verify": {"href": f"{base}/{oid}/verify", "header": {}},
                }
            objects.append(entry)
        self._send_json({"transfer": "basic", "objects": objects}, content_type="application/vnd.git-lfs+json")

    def _lfs_put(self, repo_key: tuple[str, str], oid: str) -> None:
        # Like a presigned URL: no Authorization header, the signature in the query is the capability.
        size = int(self.query.get("size", ["-1"])[0])
        if not _HEX64.match(oid) or not hmac.compare_digest(
            self.query.get("sig", [""])[0], self._sign(repo_key, oid, size)
        ):
            raise _HTTPError(403, "Invalid or expired upload URL")
        self._fault(repo_key, "lfs_upload")
        hub = self.hub
        hasher, received = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=hub.root / "tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in self._iter_body():
                    hasher.update(chunk)
                    received += len(chunk)
                    f.write(chunk)
            if received != size or hasher.hexdigest() != oid:
                raise _HTTPError(400, f"Uploaded content does not match: expected sha256 {oid} and {size} bytes")
            hub._blob_path(oid).parent.mkdir(exist_ok=True)
            os.replace(tmp, hub._blob_path(oid))
            with hub._lock:
                repo = hub._repos.get(repo_key)
                if repo is not None and oid not in repo.lfs_objects:
                    repo.lfs_objects.append(oid)
                    hub._save(repo)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._send(200, b"", "text/plain", [("ETag", f'"{oid}"')])

    def _lfs_verify(self, repo_key: tuple[str, str], oid: str) -> None:
        # Only the repo's writers may ask, and only about the repo's own objects: an anonymous caller learning that
        # a hash exists (in a private repo, or anywhere on the server) would learn what a private file holds.
        repo, _ = self._writable(*repo_key)
        body = self._json_body()
        if not isinstance(body, dict) or oid not in repo.lfs_objects or not self.hub._has_blob(oid, body.get("size")):
            raise _HTTPError(404, f"LFS object {oid} was not uploaded")
        self._send_json({"message": "Object verified"})

    def _commit(self, key: tuple[str, str], revision: str) -> None:
        repo, user = self._writable(*key)
        self._fault(key, "commit")
        try:
            lines = [json.loads(line) for line in self._read_body().splitlines() if line.strip()]
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise _HTTPError(400, f"A commit body is JSON lines: {err}") from None
        if not all(isinstance(line, dict) and isinstance(line.get("value", {}), dict) for line in lines):
            raise _HTTPError(400, 'Every commit line is a JSON object {"key": ..., "value": {...}}')
        if not lines or lines[0].get("key") != "header":
            raise _HTTPError(400, "A commit starts with a header line")
        header = lines[0].get("value") or {}
        create_pr = self.query.get("create_pr", ["0"])[0] in ("1", "true", "True")
        revision = unquote(revision)
        hub = self.hub
        with hub._lock:
            if not create_pr and revision not in repo.branches:
                raise _HTTPError(404, f"Invalid rev id: {revision} is not a branch", "RevisionNotFound")
            head = self._resolve_revision(repo, revision)
            parent = header.get("parentCommit")
            if parent and parent != head:
                raise _HTTPError(412, f"A commit has happened since {parent}: the head of {revision} is now {head}")
            tree = dict(repo.commits[head]["tree"])
            for line in lines[1:]:
                self._apply(repo, tree, line.get("key"), line.get("value") or {})
            if "README.md" in tree:
                errors = validate_card_metadata(
                    hub._blob_path(tree["README.md"]["sha256"]).read_text(errors="replace")
                )
                if errors:
                    raise _HTTPError(400, "Invalid metadata in README.md: " + "; ".join(errors))
            commit_id = hub._new_commit(
                repo, [head], tree, header.get("summary") or "Update", header.get("description") or "", user
            )
            pr_url = None
            if create_pr:
                number, repo.next_pr = repo.next_pr, repo.next_pr + 1
                repo.branches[f"refs/pr/{number}"] = commit_id
                pr_url = f"{self._repo_url(repo)}/discussions/{number}"
            else:
                repo.branches[revision] = commit_id
            hub._save(repo)
        self._send_json(
            {
                "commitUrl": f"{self._repo_url(repo)}/commit/{commit_id}",
                "commitOid": commit_id,
                "pullRequestUrl": pr_url,
            }
        )

    def _apply(self, repo: _Repo, tree: dict, kind: str | None, value: dict) -> None:
        path = str(value.get("path", "")).strip("/")
        # A backslash is a separator to Windows clients and tools: "..\\..\\x" must not slip past the ".." check.
        parts = path.replace("\\", "/").split("/")
        if not path or "\\" in path or any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
            raise _HTTPError(400, f"Invalid path in repository: {value.get('path')!r}")
        hub = self.hub
        if kind == "file":
            if value.get("encoding", "base64") != "base64":
                raise _HTTPError(400, f"Unsupported encoding {value.get('encoding')!r}")
            data = base64.b64decode(value.get("content") or "")
            tree[path] = hub._entry(hub._store_blob(data), len(data), lfs=False)
        elif kind == "lfsFile":
            oid = str(value.get("oid", ""))
            in_repo = oid in repo.lfs_objects or any(
                e["sha256"] == oid for c in repo.commits.values() for e in c["tree"].values()
            )
            if not (in_repo and hub._has_blob(oid)):
                raise _HTTPError(422, f"LFS object {oid} for {path} was never uploaded")
            tree[path] = hub._entry(oid, hub._blob_path(oid).stat().st_size, lfs=True)
        elif kind == "deletedFile":
            if tree.pop(path, None) is None:
                raise _HTTPError(404, f"File not found: {path}", "EntryNotFound")
        elif kind == "deletedFolder":
            doomed = [name for name in tree if name.startswith(path + "/")]
            if not doomed:
                raise _HTTPError(404, f"Folder not found: {path}", "EntryNotFound")
            for name in doomed:
                del tree[name]
        else:
            raise _HTTPError(400, f"Unknown commit operation {kind!r}")

    # ------------------------------------------------------------------------------------------ downloads
    def _resolve(self, key: tuple[str, str], revision: str, path: str) -> None:
        repo, _ = self._readable(*key)
        self._fault(key, "resolve")
        with self.hub._lock:
            commit_id = self._resolve_revision(repo, revision)
            entry = repo.commits[commit_id]["tree"].get(path)
        if entry is None:
            raise _HTTPError(404, "Entry not found", "EntryNotFound", headers=[("X-Repo-Commit", commit_id)])
        etag = entry["sha256"] if entry["lfs"] else entry["oid"]
        headers = [("X-Repo-Commit", commit_id), ("ETag", f'"{etag}"'), ("Accept-Ranges", "bytes")]
        if entry["lfs"]:
            headers += [("X-Linked-Etag", f'"{etag}"'), ("X-Linked-Size", str(entry["size"]))]
        size, start, end, status = entry["size"], 0, entry["size"] - 1, 200
        match = re.match(r"bytes=(\d*)-(\d*)$", self.headers.get("Range", ""))
        if match and size > 0:
            first, last = match.groups()
            start, end = (
                (int(first), min(int(last or size - 1), size - 1)) if first else (max(0, size - int(last)), size - 1)
            )
            if start > end:
                raise _HTTPError(
                    416, "Requested range not satisfiable", headers=[("Content-Range", f"bytes */{size}")]
                )
            status = 206
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        length = max(0, end - start + 1)
        self._status = status
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(self.hub._blob_path(entry["sha256"]), "rb") as f:
            f.seek(start)
            remaining = length
            while remaining > 0:
                chunk = f.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)


def main(argv: list[str] | None = None) -> int:
    """`python -m hf_bigmodel.testing.hub_server ROOT [--port N]`: serve until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Serve a Hub-compatible API on 127.0.0.1 for offline tests.")
    parser.add_argument("root", help="folder for the stored repos and files")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--inline-uploads", action="store_true", help="no LFS: every file goes in the commit")
    args = parser.parse_args(argv)
    with HubServer(args.root, port=args.port, inline_uploads=args.inline_uploads) as hub:
        print(f"Hub server on {hub.endpoint} (user {hub.user!r}, token {hub.token!r}); Ctrl-C stops it.", flush=True)
        exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in hub.env().items())
        print(f"Point clients at it with: export {exports}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
