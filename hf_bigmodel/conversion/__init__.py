"""Checkpoint converters between hf_bigmodel and stock transformers / nanoGPT, behind `hf-bigmodel convert`.

One module per architecture, `convert_<arch>.py`, named after the architecture's key in `models.ARCHITECTURES`,
holds its key maps, config translations and `convert_*` functions, and lists its `ROUTES` and `DEFAULT_TARGETS`
rows; `hf_bigmodel.convert` finds it by that name and merges the rows. `common.py` holds what they share
(tensor-only loading, key maps, shape checks, atomic writes). The command-line entry points in the source tree's
`conversion_scripts/` call `hf_bigmodel.convert.main`; the library never imports them.
"""

from .common import ConversionError, Route

__all__ = ["ConversionError", "Route"]
