"""Convert transformer checkpoints: stock Marian folders -> bigmodel_transformer, and back.

    python conversion_scripts/convert_transformer.py SRC DST [--to TARGET] [--overwrite] [--dtype ...] [--tokenizer DIR]

A command-line entry point only: the converters live in `hf_bigmodel.conversion.convert_transformer`, and this is
`hf-bigmodel convert` limited to their routes.
"""

import sys

from hf_bigmodel.convert import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="convert_transformer.py", architecture="transformer"))
