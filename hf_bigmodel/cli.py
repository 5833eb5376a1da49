"""`hf-bigmodel`: one command line for the zoo. `hf-bigmodel --help` lists the commands (the `COMMANDS` table below);
`hf-bigmodel COMMAND --help` lists the options of one.

Each subcommand lives in its own module and exposes `main(argv) -> int`; this file only dispatches, so importing it
stays cheap and `hf-bigmodel --help` answers at once. `COMMAND --help` of a command whose parser needs torch or
transformers is answered from the stored help texts of `hf_bigmodel._help`, without importing the command. Every
command's `main` goes through `hf_bigmodel._cli.command`, the one place that turns errors into messages and exit
codes (2 for bad input; `--debug` shows the traceback).
"""

import importlib
import sys

from ._cli import command
from ._help import cached_help

COMMANDS = {
    "demo": ("hf_bigmodel.demo", "train a tokenizer and a small GPT on a built-in corpus, report perplexity, sample"),
    "train-tokenizer": ("hf_bigmodel.tokenization", "train a byte-level BPE, character or WordPiece tokenizer"),
    "pretrain": ("hf_bigmodel.training.pretrain", "pretrain with Trainer: `hf-bigmodel pretrain ARCH ...`"),
    "finetune": ("hf_bigmodel.training.finetune", "fine-tune a classification, QA or multiple-choice head"),
    "convert": ("hf_bigmodel.convert", "convert a checkpoint to or from stock transformers / nanoGPT"),
    "generate": ("hf_bigmodel.generate", "sample text from a saved model folder"),
    "evaluate": ("hf_bigmodel.evaluation", "evaluate a saved model: perplexity, classification, NER, QA, BLEU/ROUGE"),
    "push": ("hf_bigmodel.publish.push", "push a saved folder (model, tokenizer, code, model card) to a Hub repo"),
    "explain": ("hf_bigmodel.explanation.cli", "explain a prediction: token or pixel attributions, Grad-CAM"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: hf-bigmodel COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `hf-bigmodel COMMAND --help` for the options of a command."]
    return "\n".join(lines)


@command("hf-bigmodel")
def main(argv: list[str] | None = None) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        import hf_bigmodel

        print(hf_bigmodel.__version__)
        return 0
    if argv[0] not in COMMANDS:
        print(f"hf-bigmodel: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    text = cached_help(argv)
    if text is not None:
        print(text, end="")
        return 0
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
