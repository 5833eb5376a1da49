"""What `hf-bigmodel push` guarantees around failures, against `HubServer` over real HTTP: a silent endpoint times
out with a message (no hang), a failed push to a new repo leaves no repo, a failed `--private` push leaves the
visibility as it was, and files the folder no longer has are listed, or removed with `--delete-missing` in the same
commit. The pushes run in one child process started with `hub.env()` (huggingface_hub reads its settings at import,
and CI runs this process offline)."""

import socket

import pytest

from hf_bigmodel import create_model
from hf_bigmodel.testing import HubServer, run_python

CHILD = r"""
import json, os, sys
from hf_bigmodel.cli import main
from hf_bigmodel.publish.push import PushError, push_folder

folder, silent = sys.argv[1], sys.argv[2]
out = {}

def attempt(name, **kwargs):
    try:
        result = push_folder(folder, **kwargs)
        out[name] = {"ok": True, "notes": result.notes, "files": result.files}
    except PushError as err:
        out[name] = {"ok": False, "error": type(err).__name__, "message": str(err)}

os.environ["HF_BIGMODEL_PUSH_TIMEOUT"] = "1"
attempt("silent", repo_id="testuser/x", endpoint=silent)
del os.environ["HF_BIGMODEL_PUSH_TIMEOUT"]
attempt("new_repo_fails", repo_id="testuser/new-fails")
attempt("visibility_fails", repo_id="testuser/public", private=True, exist_ok=True)

attempt("first", repo_id="testuser/stale", exist_ok=True)
os.remove(os.path.join(folder, "old_notes.txt"))
attempt("stale_listed", repo_id="testuser/stale", exist_ok=True)
out["cli_exit"] = main(["push", folder, "testuser/stale", "--exist-ok", "--delete-missing"])
print("RESULTS" + json.dumps(out))
"""


@pytest.fixture
def silent_endpoint():
    """A listening socket that is never served: connections are accepted by the kernel, never answered."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.mark.slow  # about 30 s: a child process, five pushes, the client's retries
def test_push_failures_leave_nothing_behind_and_stale_files_are_handled(tmp_path, silent_endpoint):
    folder = tmp_path / "model"
    create_model("gpt-tiny", task="causal-lm").save_pretrained(folder)
    (folder / "old_notes.txt").write_text("from an earlier run")
    with HubServer(tmp_path / "hub") as hub:
        hub.create_repo("model", "testuser/public", "testuser", private=False)
        hub.inject_fault("testuser/new-fails", "commit", status=422, times=None)
        hub.inject_fault("testuser/public", "commit", status=422, times=None)
        out = run_python(CHILD, str(folder), silent_endpoint, cwd=tmp_path, env=hub.env(), with_package=True)

        assert out["silent"]["ok"] is False and "did not answer within 1 s" in out["silent"]["message"]
        assert out["new_repo_fails"]["ok"] is False
        assert ("model", "testuser/new-fails") not in hub._repos  # no empty repo left: a retry can create it
        assert out["visibility_fails"]["ok"] is False and not hub.is_private("testuser/public")

        assert out["first"]["ok"] and "old_notes.txt" in out["first"]["files"]
        notes = " ".join(out["stale_listed"]["notes"])
        assert "keeps 1 file(s)" in notes and "old_notes.txt" in notes and "--delete-missing" in notes
        assert out["cli_exit"] == 0
        assert "old_notes.txt" not in hub.files("testuser/stale") and "config.json" in hub.files("testuser/stale")
