"""`hf-bigmodel push` never hangs: an endpoint that accepts connections and never answers is given up after the
read timeout, with a message that says so, and huggingface_hub's own client is given back afterwards."""

import socket
import time

import pytest

from hf_bigmodel import create_model
from hf_bigmodel.cli import main as cli_main
from hf_bigmodel.publish import push


@pytest.fixture
def silent_endpoint():
    """A listening socket that is never served: connections are accepted by the kernel, never answered."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_push_to_a_silent_endpoint_times_out_with_a_message(tmp_path, silent_endpoint, monkeypatch, capsys):
    from huggingface_hub.utils import _http as hub_http

    factory = hub_http._GLOBAL_CLIENT_FACTORY
    create_model("gpt-tiny", task="causal-lm").save_pretrained(tmp_path / "model")
    monkeypatch.setenv(push.PUSH_TIMEOUT_ENV, "1")
    start = time.monotonic()
    code = cli_main(["push", str(tmp_path / "model"), "me/model", "--token", "hf_x", "--endpoint", silent_endpoint])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 1 and "did not answer within 1 s" in err and push.PUSH_TIMEOUT_ENV in err, err
    assert "Traceback" not in err and elapsed < 60
    assert hub_http._GLOBAL_CLIENT_FACTORY is factory


def test_a_bad_timeout_setting_is_named(tmp_path, monkeypatch, capsys):
    create_model("gpt-tiny", task="causal-lm").save_pretrained(tmp_path / "model")
    monkeypatch.setenv(push.PUSH_TIMEOUT_ENV, "soon")
    assert cli_main(["push", str(tmp_path / "model"), "me/model", "--token", "hf_x"]) == 2
    assert "HF_BIGMODEL_PUSH_TIMEOUT='soon' is not a positive number" in capsys.readouterr().err
