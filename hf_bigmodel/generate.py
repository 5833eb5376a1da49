"""`hf-bigmodel generate MODEL PROMPT`: continue a prompt with a saved causal LM (greedy, sampling or beam search)."""

from __future__ import annotations

import argparse
import sys

from ._cli import command, require_folder_or_repo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-bigmodel generate", description=__doc__)
    parser.add_argument("model", help="saved model folder (with its tokenizer)")
    parser.add_argument("prompt", help="text to continue")
    parser.add_argument("--max_new_tokens", type=int, default=100)
    parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    parser.add_argument(
        "--num_beams", type=int, default=1, help="beam search with this many beams (implies no sampling)"
    )
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top_k", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--trust_remote_code", action="store_true", help="load with the code saved in the folder")
    return parser


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse the values `generate` would crash on (a zero division for 0 beams) or silently misuse, then a MODEL
    that is not a folder holding a config and a tokenizer (before a library reads it and blames something else)."""
    if not args.prompt.strip():
        raise ValueError("PROMPT is empty; give the text to continue, e.g. 'Once upon a time'.")
    for flag, value in (("--max_new_tokens", args.max_new_tokens), ("--num_beams", args.num_beams)):
        if value < 1:
            raise ValueError(f"{flag} must be a positive integer, got {value}.")
    if args.top_k < 0:
        raise ValueError(f"--top_k must be 0 (no limit) or a positive integer, got {args.top_k}.")
    if not args.temperature > 0 or args.temperature == float("inf"):
        raise ValueError(f"--temperature must be a positive number, got {args.temperature}; use --greedy for 0.")
    require_folder_or_repo(args.model, "MODEL", tokenizer=True)


@command("hf-bigmodel generate")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_arguments(args)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import hf_bigmodel  # noqa: F401  (registers the architectures)

    if args.seed is not None:
        torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(args.model, trust_remote_code=args.trust_remote_code).eval()
    inputs = tokenizer(args.prompt, return_tensors="pt", add_special_tokens=False)
    if inputs["input_ids"].shape[-1] == 0:
        raise ValueError(f"PROMPT {args.prompt!r} encodes to no tokens with this tokenizer; give some text.")
    sample = not args.greedy and args.num_beams == 1
    output = model.generate(
        **inputs,
        max_new_tokens=args.max_new_tokens,
        do_sample=sample,
        num_beams=args.num_beams,
        temperature=args.temperature if sample else None,
        top_k=args.top_k if sample else None,
        pad_token_id=tokenizer.pad_token_id,
    )
    print(tokenizer.decode(output[0], skip_special_tokens=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
