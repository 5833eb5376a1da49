"""`hf-bigmodel explain FOLDER --text ... | --image ... | --history ...`: explain one prediction of a saved model.

Prints the prediction and the attributions, and writes explanation.json, attributions.safetensors,
explanation.png and a self-contained explanation.html into --output_dir.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._cli import command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-bigmodel explain", description=__doc__)
    parser.add_argument("model", help="saved model folder (config, weights, tokenizer or image processor)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--text", help="text to explain (classification, masked LM), prompt (causal LM) or source (translation)"
    )
    source.add_argument("--image", help="image file to explain (image-classification models)")
    source.add_argument(
        "--history",
        help="recommenders (SASRec, BERT4Rec): the raw item ids of a history, oldest first, separated by spaces or "
        "commas; --target is then a raw item id (default: the top recommendation)",
    )
    parser.add_argument(
        "--method",
        default=None,
        help="integrated_gradients, gradient_x_input, lime or kernel_shap (text); grad_cam or integrated_gradients "
        "(images). "
        "Default: integrated_gradients for text, grad_cam for images",
    )
    parser.add_argument("--target", default=None, help="class to explain, by label name or index (default: predicted)")
    parser.add_argument(
        "--position", type=int, default=None, help="token classification: index of the token whose label to explain"
    )
    parser.add_argument(
        "--n_steps", type=int, default=None, help="integration steps (default: 64, doubled up to 1024 until converged)"
    )
    parser.add_argument("--n_samples", type=int, default=200, help="LIME / Kernel SHAP: perturbed inputs")
    parser.add_argument("--batch_size", type=int, default=64, help="LIME / Kernel SHAP: perturbations per forward")
    parser.add_argument(
        "--output_dir", default=None, help="folder for the JSON, tensors, PNG and HTML (default: none)"
    )
    parser.add_argument(
        "--max_new_tokens", type=int, default=8, help="causal LMs, translation: tokens to generate and explain"
    )
    parser.add_argument(
        "--target_text", default=None, help="translation: explain this target sentence instead of the greedy output"
    )
    parser.add_argument(
        "--attention", action="store_true", help="text models: also write attention.json / attention.png (per head)"
    )
    parser.add_argument("--trust_remote_code", action="store_true", help="load with the code saved in the folder")
    return parser


def _items(history: str | None) -> list[str] | None:
    return None if history is None else history.replace(",", " ").split()


@command("hf-bigmodel explain")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = "hf-bigmodel explain"
    try:
        from .core import ExplainError, explain
    except ImportError as error:  # captum is an optional extra
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    try:
        result = explain(
            args.model,
            next(x for x in (args.text, args.image, _items(args.history)) if x is not None),
            method=args.method,
            target=args.target,
            n_steps=args.n_steps,
            position=args.position,
            n_samples=args.n_samples,
            batch_size=args.batch_size,
            attention=args.attention,
            max_new_tokens=args.max_new_tokens,
            target_text=args.target_text,
            trust_remote_code=args.trust_remote_code,
        )
        # A causal LM or a translation model gives one explanation per generated token, each saved in its own folder (token_00, ...).
        explanations = result if isinstance(result, list) else [result]
        paths = {}
        if args.output_dir:
            for step, explanation in enumerate(explanations):
                folder = Path(args.output_dir) / f"token_{step:02d}" if isinstance(result, list) else args.output_dir
                paths.update({f"{kind} {folder}": path for kind, path in explanation.save(folder).items()})
    except (ExplainError, ImportError, OSError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    for explanation in explanations:
        what = {"causal-lm": "generated", "translation": "generated", "recommendation": "item"}.get(
            explanation.kind, "class"
        )
        print(
            f"{explanation.method}: {what} {explanation.target} ({explanation.target_label}), "
            f"p={explanation.probability:.4f}"
        )
        if explanation.convergence_delta is not None:
            print(f"convergence delta: {explanation.convergence_delta:.3e}")
        if explanation.target_layer is not None:
            print(f"target layer: {explanation.target_layer}")
        if explanation.tokens is not None:
            for token, value in zip(explanation.tokens, explanation.attributions.tolist()):
                print(f"  {token:>16}  {value:+.5f}")
    for path in paths.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
