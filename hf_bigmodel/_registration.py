"""How `import hf_bigmodel` registers the zoo with transformers without paying for transformers at import time.

Registering a config or model class with the Auto classes needs the classes, hence torch and transformers' modeling
code: seconds of imports. A command line that only prints `--help`, or a script that imports hf_bigmodel for its
tokenizer trainer, should not pay them. But transformers' registries can only be read after transformers is
imported, so registering at that moment is as good as registering at once:

- if transformers is already imported when hf_bigmodel is, `register_with_transformers()` runs at once;
- otherwise a one-shot import hook (a `sys.meta_path` finder) waits for the `transformers` package to be imported,
  by anyone, and runs it right after transformers' `__init__` has executed, before the importing statement returns.

Either way no Auto class, pipeline or `from_pretrained` can be reached before the zoo is registered.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

# What registers: importing these modules registers the architectures (Auto classes, PEFT targets) and the
# pipelines that transformers 5 removed. Each registers itself when imported, so importing them is all it takes.
_REGISTERING_MODULES = ("hf_bigmodel.models", "hf_bigmodel.pipelines")


def register_with_transformers() -> None:
    """Import the modules that register the zoo with transformers (idempotent). A module already being imported
    (the import of transformers that fired the hook came from inside it) is left to finish, and register, itself."""
    for name in _REGISTERING_MODULES:
        if name not in sys.modules:
            importlib.import_module(name)


class _RegisterAfterTransformers(importlib.abc.Loader):
    """Wraps transformers' own loader: executes the package as usual, then registers the zoo."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        register_with_transformers()

    def __getattr__(self, name: str):  # get_source, is_package, resource readers: the wrapped loader's
        return getattr(self._loader, name)


class _TransformersImportHook(importlib.abc.MetaPathFinder):
    """A one-shot finder: on the first import of the `transformers` package, hands back transformers' own spec with
    its loader wrapped, and removes itself from `sys.meta_path`."""

    def find_spec(self, name, path=None, target=None):
        if name != "transformers":
            return None
        self.remove()
        spec = importlib.util.find_spec(name)  # the finders after this one, as if this one were not there
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisterAfterTransformers(spec.loader)
        return spec

    def remove(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def register_when_transformers_is_imported() -> None:
    """Register now if transformers is imported, else as soon as it is (see the module docstring)."""
    if "transformers" in sys.modules:
        register_with_transformers()
    elif not any(isinstance(finder, _TransformersImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _TransformersImportHook())


__all__ = ["register_when_transformers_is_imported", "register_with_transformers"]
