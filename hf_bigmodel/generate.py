"""`hf-bigmodel generate MODEL PROMPT`: continue a prompt with a saved causal LM (greedy, sampling or beam search)."""

from __future__ import annotations

import argparse
import sys


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import hf_bigmodel  # noqa: F401  (registers the architectures)

    if args.seed is not None:
        torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(args.model, trust_remote_code=args.trust_remote_code).eval()
    inputs = tokenizer(args.prompt, return_tensors="pt", add_special_tokens=False)
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
