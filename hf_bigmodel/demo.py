"""`hf-bigmodel demo`: the main job. Trains a BPE tokenizer and pretrains a small GPT on the built-in corpus (the
Python reference docs every CPython carries), reports validation loss and perplexity, prints a sample and leaves a
folder that `AutoModelForCausalLM.from_pretrained` loads. A few minutes on 2 CPU cores."""

from __future__ import annotations

import argparse
import sys

from ._cli import command
from .corpus import write_builtin_corpus

# Inside the run folder, so one folder holds the whole run, under a name `hf-bigmodel push` never uploads ("_*"
# folders): the training text is not part of the model.
CORPUS_DIR = "_corpus"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-bigmodel demo", description=__doc__)
    parser.add_argument("--output_dir", default="runs/demo", help="where the model, tokenizer and logs go")
    parser.add_argument("--preset", default="gpt-small-cpu", help="model size (see hf_bigmodel.list_presets())")
    parser.add_argument("--max_steps", type=int, default=600, help="optimizer steps")
    parser.add_argument("--batch_size", type=int, default=16, help="sequences per step")
    parser.add_argument("--block_size", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--vocab_size", type=int, default=2048, help="BPE vocabulary size")
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--report_to", default="none", help="'tensorboard' to log curves under OUTPUT_DIR/runs")
    parser.add_argument("--prompt", default='The "while" statement', help="prompt of the sample printed at the end")
    return parser


@command("hf-bigmodel demo")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    train_file, validation_file = write_builtin_corpus(f"{args.output_dir}/{CORPUS_DIR}")
    from .training import pretrain

    return pretrain.main(
        [
            "gpt",
            "--preset",
            args.preset,
            "--train_file",
            str(train_file),
            "--validation_file",
            str(validation_file),
            "--tokenizer_kind",
            "bpe",
            "--tokenizer_vocab_size",
            str(args.vocab_size),
            "--block_size",
            str(args.block_size),
            "--output_dir",
            args.output_dir,
            "--max_steps",
            str(args.max_steps),
            "--per_device_train_batch_size",
            str(args.batch_size),
            "--per_device_eval_batch_size",
            str(args.batch_size * 2),
            "--learning_rate",
            str(args.learning_rate),
            "--lr_scheduler_type",
            "cosine",
            "--warmup_steps",
            str(max(1, args.max_steps // 20)),
            "--weight_decay",
            "0.1",
            "--adam_beta2",
            "0.99",
            "--logging_steps",
            "50",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            str(max(1, args.max_steps // 4)),
            "--save_steps",
            str(max(1, args.max_steps // 4)),
            "--save_total_limit",
            "2",
            "--report_to",
            args.report_to,
            "--sample_prompt",
            args.prompt,
            "--use_cpu",
            "true",
            "--seed",
            "1337",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
