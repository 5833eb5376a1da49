"""Checkpoint converters between hf_bigmodel and stock transformers / nanoGPT, behind `hf-bigmodel convert`.

One module per architecture (`convert_gpt.py`, ...) holds the key maps, config translations and `convert_*`
functions; `common.py` holds what they share (tensor-only loading, key maps, shape checks, atomic writes). The
table that picks a converter from SRC lives in `hf_bigmodel.convert` (`ROUTES`).
"""

from .common import ConversionError
from .convert_bert import convert_bert_to_bigmodel, convert_bigmodel_to_bert
from .convert_gpt import (
    convert_bigmodel_to_gpt2,
    convert_bigmodel_to_llama,
    convert_gpt2_to_bigmodel,
    convert_llama_to_bigmodel,
    convert_nanogpt_to_bigmodel,
)

__all__ = [
    "ConversionError",
    "convert_bert_to_bigmodel",
    "convert_bigmodel_to_bert",
    "convert_bigmodel_to_gpt2",
    "convert_bigmodel_to_llama",
    "convert_gpt2_to_bigmodel",
    "convert_llama_to_bigmodel",
    "convert_nanogpt_to_bigmodel",
]
