"""Convert GPT checkpoints: stock GPT-2 / Llama folders and nanoGPT ckpt.pt -> bigmodel_gpt, and back
(--to gpt2|llama).

    python conversion_scripts/convert_gpt.py SRC DST [--to TARGET] [--overwrite] [--dtype ...] [--tokenizer DIR]

A command-line entry point only: the converters live in `hf_bigmodel.conversion.convert_gpt`, and this is
`hf-bigmodel convert` limited to their routes.
"""

import sys

from hf_bigmodel.convert import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="convert_gpt.py", architecture="gpt"))
