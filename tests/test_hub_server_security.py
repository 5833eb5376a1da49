"""The test Hub server's holes, closed: an anonymous LFS verify call cannot probe for a hash, a commit path cannot
climb out with backslashes, a malformed commit body is a 400 (not a 500), and a killed upload's temporary file does
not outlive the server."""

import hashlib
import json
import urllib.error
import urllib.request

import pytest

from hf_bigmodel.testing import HubServer

REPO_ID = "testuser/private-model"


def post(url: str, body: bytes, headers: dict) -> tuple[int, str]:
    """(status, text) of a POST, error statuses included."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def hub(tmp_path):
    with HubServer(tmp_path / "hub", tokens={"write": "testuser", "other": "someone"}) as server:
        server.create_repo("model", REPO_ID, "testuser", private=True)
        yield server


def stored_lfs_object(hub, data: bytes) -> str:
    """An LFS object of the private repo, as an upload leaves it."""
    oid = hub._store_blob(data)
    repo = hub._repos[("model", REPO_ID)]
    repo.lfs_objects.append(oid)
    return oid


def verify(hub, oid: str, size: int, token: str | None) -> int:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    url = f"{hub.endpoint}/_lfs/models/{REPO_ID}/{oid}/verify"
    return post(url, json.dumps({"oid": oid, "size": size}).encode(), headers)[0]


def test_lfs_verify_tells_nothing_to_whoever_may_not_write(hub):
    data = b"private weights" * 10
    oid = stored_lfs_object(hub, data)
    assert verify(hub, oid, len(data), "write") == 200
    assert verify(hub, oid, len(data), None) == 401  # was 200: the hash's existence leaked
    assert verify(hub, oid, len(data), "other") == 404  # a private repo looks missing to others
    unknown = hashlib.sha256(b"not uploaded").hexdigest()
    assert verify(hub, unknown, 12, "write") == 404


def commit(hub, body: bytes) -> tuple[int, str]:
    headers = {"Authorization": "Bearer write", "Content-Type": "application/x-ndjson"}
    return post(f"{hub.endpoint}/api/models/{REPO_ID}/commit/main", body, headers)


def commit_lines(*lines: dict) -> bytes:
    return b"\n".join(json.dumps(line).encode() for line in lines)


HEADER = {"key": "header", "value": {"summary": "x"}}


@pytest.mark.parametrize("path", ["..\\..\\x", "a\\b.txt", "a/../../x", "./x", ".git/config", "a//b"])
def test_commit_paths_cannot_leave_the_repo(hub, path):
    line = {"key": "file", "value": {"path": path, "content": "eA==", "encoding": "base64"}}
    status, text = commit(hub, commit_lines(HEADER, line))
    assert status == 400 and "Invalid path" in text
    assert set(hub.files(REPO_ID)) == {".gitattributes"}


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"header"', commit_lines({"key": "header", "value": 3})])
def test_a_malformed_commit_body_is_a_400(hub, body):
    status, text = commit(hub, body)
    assert status == 400, text


def test_a_good_commit_still_lands(hub):
    line = {"key": "file", "value": {"path": "dir/a.txt", "content": "eA==", "encoding": "base64"}}
    assert commit(hub, commit_lines(HEADER, line))[0] == 200
    assert hub.read(REPO_ID, "dir/a.txt") == b"x"


def test_a_killed_uploads_temporary_file_is_removed_at_the_next_start(tmp_path):
    root = tmp_path / "hub"
    HubServer(root)
    leftover = root / "tmp" / "tmpabc123"  # what a server killed during an upload leaves behind
    leftover.write_bytes(b"half an upload")
    HubServer(root)
    assert not leftover.exists()
