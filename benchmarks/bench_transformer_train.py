"""Training-step throughput of the hf_bigmodel encoder-decoder Transformer vs transformers' MarianMTModel at the
identical config.

One step = forward with labels (seq2seq cross-entropy; label smoothing off on our side too, as MarianMTModel has
none) + backward + AdamW step (fused, Trainer's default), on a fixed random batch of sources and targets of random
lengths between half and all of --seq tokens, right-padded as a translation batch is (`--no-padding`: every
sequence --seq tokens long). Both models get the same sizes (post-norm, sinusoidal positions, scaled, shared and
tied embeddings, ReLU), the same dropout, the same attention implementation (transformers' default, sdpa) and the
same optimizer. bf16 runs forward and loss under torch.autocast("cpu", dtype=torch.bfloat16) on both sides. Each
model trains in its own worker process; the two are timed in interleaved rounds and compared by median step time.

    python benchmarks/bench_transformer_train.py                 # 3+3 layers x 512, 8 heads, vocab 8000, 16x64
    python benchmarks/bench_transformer_train.py --threads 1     # steadier figures on a busy machine
    python benchmarks/bench_transformer_train.py --quick         # tiny sizes, a few steps: a smoke test (seconds)
    python benchmarks/bench_transformer_train.py --layers 6 --precision bf16 --no-padding
"""

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import (  # noqa: E402
    add_run_args,
    compare_training_steps,
    environment_line,
    marian_config,
    training_step,
)

TARGET = 1.2
MODELS = {"reference": "MarianMT", "ours": "ours"}
PAD, START, EOS = 0, 1, 2


def build_model(name: str, settings: dict[str, Any]) -> torch.nn.Module:
    """MarianMTModel ("reference") or our model ("ours") with the sizes and dropout in `settings`."""
    torch.manual_seed(0)
    sizes = dict(vocab_size=settings["vocab"], max_position_embeddings=settings["max_positions"])
    tokens = dict(pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=START)
    if name == "reference":
        from transformers import MarianMTModel

        config = marian_config(
            settings,
            **tokens,
            dropout=settings["dropout"],
            attention_dropout=0.0,
            activation_dropout=0.0,
            bos_token_id=START,
        )
        return MarianMTModel(config)
    from hf_bigmodel.models.transformer import BigModelTransformerConfig, BigModelTransformerForConditionalGeneration

    config = BigModelTransformerConfig(
        **sizes,
        **tokens,
        hidden_size=settings["hidden"],
        encoder_layers=settings["layers"],
        decoder_layers=settings["layers"],
        num_attention_heads=settings["heads"],
        intermediate_size=settings["ffn"],
        activation_function="relu",
        dropout=settings["dropout"],
        label_smoothing=0.0,
        bos_token_id=START,
    )
    return BigModelTransformerForConditionalGeneration(config)


def make_batch(settings: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Random right-padded sources and labels (-100 past each target's end), identical for both models."""
    generator = torch.Generator().manual_seed(0)
    batch, seq, vocab = settings["batch"], settings["seq"], settings["vocab"]
    src = torch.randint(3, vocab, (batch, seq), generator=generator)
    labels = torch.randint(3, vocab, (batch, seq), generator=generator)
    if settings["padding"]:
        src_len = torch.randint(seq // 2, seq + 1, (batch,), generator=generator)
        tgt_len = torch.randint(seq // 2, seq + 1, (batch,), generator=generator)
        positions = torch.arange(seq)
        src[positions >= src_len[:, None]] = PAD
        labels[positions >= tgt_len[:, None]] = -100
    return {"input_ids": src, "attention_mask": (src != PAD).long(), "labels": labels}


def make_train_step(name: str, settings: dict[str, Any]):
    """Runs in a worker: build the model and return a closure doing one full training step."""
    return training_step(name, build_model(name, settings), make_batch(settings), settings["precision"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=3, help="encoder layers (and as many decoder layers)")
    parser.add_argument("--hidden", type=int, default=512, help="d_model")
    parser.add_argument("--heads", type=int, default=8, help="attention heads")
    parser.add_argument("--ffn", type=int, default=2048, help="feed-forward size d_ff")
    parser.add_argument("--vocab", type=int, default=8000, help="shared vocabulary size")
    parser.add_argument("--max-positions", type=int, default=256, help="position table size")
    parser.add_argument("--batch", type=int, default=16, help="sentence pairs per step")
    parser.add_argument("--seq", type=int, default=64, help="longest source / target length in tokens")
    parser.add_argument("--no-padding", dest="padding", action="store_false", help="all sequences --seq long")
    parser.add_argument("--dropout", type=float, default=0.1, help="dropout (the paper's base model: 0.1)")
    add_run_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.hidden, args.heads, args.ffn, args.vocab = 1, 64, 2, 128, 512
        args.max_positions, args.batch, args.seq = 64, 2, 16
        args.rounds, args.steps_per_round, args.warmup = 2, 2, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(environment_line(args.threads))
    print(
        f"config: {args.layers}+{args.layers} layers, d_model {args.hidden}, {args.heads} heads, d_ff {args.ffn}, "
        f"vocab {args.vocab}, dropout {args.dropout}, batch {args.batch}x{args.seq}"
        f"{' (random lengths, padded)' if args.padding else ''}; {args.rounds} rounds x {args.steps_per_round} "
        f"steps, warmup {args.warmup}"
    )
    compare_training_steps(make_train_step, MODELS, args, TARGET, "train", [None])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
