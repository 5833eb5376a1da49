"""Pretraining-step throughput of the hf_bigmodel BERT vs transformers' BertForPreTraining at the identical config.

One step = forward with MLM `labels` (15% of the positions, -100 elsewhere) and `next_sentence_label`, backward, and
an AdamW step (fused, Trainer's default), on a fixed random sentence-pair batch (token_type_ids 0 then 1). Both
models get the same sizes, dropout, attention implementation (transformers' default, sdpa) and optimizer; bf16 runs
forward and loss under torch.autocast("cpu", dtype=torch.bfloat16) on both sides. Each model trains in its own
worker process; the two are timed in interleaved rounds and compared by their median step time.

    python benchmarks/bench_bert_train.py                 # 4 layers x 256 (bert-mini), vocab 30522, batch 16x128
    python benchmarks/bench_bert_train.py --layers 6 --hidden 384 --heads 6
    python benchmarks/bench_bert_train.py --threads 1     # steadier figures on a machine busy with other work
    python benchmarks/bench_bert_train.py --quick         # tiny sizes, a few steps: a smoke test (seconds)
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
    training_step,
)

TARGET = 1.2
MODELS = {"reference": "BertForPreTraining", "ours": "ours"}
MLM_PROBABILITY = 0.15


def build_model(name: str, settings: dict[str, Any]) -> torch.nn.Module:
    """BertForPreTraining ("reference") or our BigModelBertForPreTraining ("ours"), same sizes and dropout."""
    torch.manual_seed(0)
    sizes = dict(
        vocab_size=settings["vocab"],
        hidden_size=settings["hidden"],
        num_hidden_layers=settings["layers"],
        num_attention_heads=settings["heads"],
        intermediate_size=4 * settings["hidden"],
        max_position_embeddings=settings["max_positions"],
        hidden_dropout_prob=settings["dropout"],
        attention_probs_dropout_prob=settings["dropout"],
    )
    if name == "reference":
        from transformers import BertConfig, BertForPreTraining

        return BertForPreTraining(BertConfig(**sizes))
    from hf_bigmodel.models.bert import BigModelBertConfig, BigModelBertForPreTraining

    return BigModelBertForPreTraining(BigModelBertConfig(**sizes))


def make_batch(settings: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A fixed sentence-pair batch with MLM labels at 15% of the positions and random NSP labels."""
    generator = torch.Generator().manual_seed(0)
    batch, seq, vocab = settings["batch"], settings["seq"], settings["vocab"]
    input_ids = torch.randint(5, vocab, (batch, seq), generator=generator)
    token_type_ids = (torch.arange(seq) >= seq // 2).long().expand(batch, seq).contiguous()
    masked = torch.rand((batch, seq), generator=generator) < MLM_PROBABILITY
    labels = torch.where(masked, input_ids, -100)
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "next_sentence_label": torch.randint(0, 2, (batch,), generator=generator),
    }


def make_train_step(name: str, settings: dict[str, Any]):
    """Runs in a worker: build the model and return a closure doing one full training step."""
    return training_step(name, build_model(name, settings), make_batch(settings), settings["precision"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4, help="encoder layers")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size (feed-forward: 4x)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--vocab", type=int, default=30522, help="vocabulary size (BERT uncased: 30522)")
    parser.add_argument("--max-positions", type=int, default=512, help="position table size (BERT: 512)")
    parser.add_argument("--batch", type=int, default=16, help="sequences per step")
    parser.add_argument("--seq", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--dropout", type=float, nargs="+", default=[0.1], help="dropout rates to run (BERT: 0.1)")
    add_run_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.hidden, args.heads, args.vocab = 2, 64, 2, 1024
        args.max_positions, args.batch, args.seq = 64, 4, 32
        args.rounds, args.steps_per_round, args.warmup = 2, 2, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(environment_line(args.threads))
    print(
        f"config: {args.layers} layers, hidden {args.hidden}, {args.heads} heads, vocab {args.vocab}, "
        f"batch {args.batch}x{args.seq}, MLM labels at {MLM_PROBABILITY:.0%} of positions + NSP; "
        f"{args.rounds} rounds x {args.steps_per_round} steps, warmup {args.warmup}"
    )
    compare_training_steps(make_train_step, MODELS, args, TARGET, "pretrain", args.dropout, args.batch * args.seq)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
