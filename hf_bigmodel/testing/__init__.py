"""Testing utilities shipped with hf_bigmodel.

`HubServer` is a Hub-compatible HTTP server (standard library only) that runs on 127.0.0.1: point the unmodified
`huggingface_hub` / `transformers` clients at it to test publishing (`push_to_hub`, `hf-bigmodel push`, Trainer's
`--push_to_hub`) and loading (`from_pretrained("user/repo")`) offline. See `hf_bigmodel.testing.hub_server`.
"""

__all__ = ["HubServer"]


def __getattr__(name: str):
    # Imported on first use, so that `python -m hf_bigmodel.testing.hub_server` runs the module only once.
    if name == "HubServer":
        from .hub_server import HubServer

        return HubServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
