"""Testing utilities shipped with hf_bigmodel.

`HubServer` is a Hub-compatible HTTP server (standard library only) that runs on 127.0.0.1: point the unmodified
`huggingface_hub` / `transformers` clients at it to test publishing (`push_to_hub`, `hf-bigmodel push`, Trainer's
`--push_to_hub`) and loading (`from_pretrained("user/repo")`) offline. See `hf_bigmodel.testing.hub_server`.
"""

__all__ = ["HubServer", "WITHOUT_HF_BIGMODEL"]

# Python source to run first in a child process (`python -c WITHOUT_HF_BIGMODEL + code`): from then on
# `import hf_bigmodel` fails although the package is installed, as on a machine that only has transformers. Tests use
# it to prove that a saved or pushed folder loads with `trust_remote_code=True` from its own code files.
WITHOUT_HF_BIGMODEL = """
import importlib.abc, sys
class _BlockHfBigmodel(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "hf_bigmodel":
            raise ImportError(f"{name} is blocked: this process must work without hf_bigmodel")
        return None
sys.meta_path.insert(0, _BlockHfBigmodel())
"""


def __getattr__(name: str):
    # Imported on first use, so that `python -m hf_bigmodel.testing.hub_server` runs the module only once.
    if name == "HubServer":
        from .hub_server import HubServer

        return HubServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
