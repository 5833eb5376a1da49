"""Pretrain a small BERT on WikiText-2 text, fine-tune it on SST-2, and do the same with transformers' stock BERT.

Both sides run the identical recipe through this package's commands (`hf-bigmodel pretrain bert` with
--model_name_or_path, then `hf-bigmodel finetune`): one WordPiece tokenizer, the same pretraining pairs and masks
(MLM + NSP), the same seeds, steps, batch sizes and learning rates, and the same architecture sizes. Only the model
classes differ: `BigModelBertForPreTraining` / `...ForSequenceClassification` (ours) against `BertForPreTraining` /
`BertForSequenceClassification` (reference). The script prints each side's MLM accuracy after pretraining, its
SST-2 dev accuracy after fine-tuning, the accuracy ratio (ours / reference) and wall times.

    python benchmarks/bench_bert_sst2.py              # 4 x 256 model, 2000 + 1500 steps (long on a CPU)
    python benchmarks/bench_bert_sst2.py --quick      # tiny model, a few dozen steps: a smoke test (~1 minute)

Data: ../shared/data/wikitext2/{valid,test}.txt for pretraining (the WikiText-2 train split is not available
offline) and ../shared/data/sst2/{train,dev}.tsv; --data-dir points elsewhere.
"""

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIDES = {"ours": "hf_bigmodel BigModelBert*", "reference": "transformers Bert*"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the runs here (default: a temp folder)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=8192, help="WordPiece vocabulary size")
    parser.add_argument("--max-seq-length", type=int, default=128, help="pretraining sequence length")
    parser.add_argument("--pretrain-steps", type=int, default=2000)
    parser.add_argument("--pretrain-batch", type=int, default=32)
    parser.add_argument("--pretrain-lr", type=float, default=5e-4)
    parser.add_argument("--dupe-factor", type=int, default=5, help="copies of the pretraining data, other masks")
    parser.add_argument("--finetune-steps", type=int, default=1500)
    parser.add_argument("--finetune-batch", type=int, default=32)
    parser.add_argument("--finetune-lr", type=float, default=1e-4)
    parser.add_argument("--finetune-seq-length", type=int, default=64)
    parser.add_argument("--train-samples", type=int, default=None, help="SST-2 training rows (default: all)")
    parser.add_argument("--text-chars", type=int, default=None, help="use only this many characters of text")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny model and few steps, for a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.hidden, args.heads, args.intermediate, args.vocab = 2, 64, 2, 128, 2000
        args.max_seq_length, args.pretrain_steps, args.pretrain_batch, args.pretrain_lr = 64, 40, 16, 2e-3
        args.dupe_factor, args.finetune_steps, args.finetune_batch, args.finetune_lr = 1, 40, 32, 1e-3
        args.train_samples, args.text_chars = 2000, 150_000
    return args


def build_initial_model(side: str, args: argparse.Namespace, tokenizer, folder: Path) -> None:
    """A randomly initialised pretraining model of the given sizes, saved with the tokenizer."""
    sizes = dict(
        vocab_size=len(tokenizer), hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, intermediate_size=args.intermediate,
        max_position_embeddings=max(args.max_seq_length, args.finetune_seq_length), type_vocab_size=2,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(args.seed)
    if side == "ours":
        from hf_bigmodel import create_config
        from hf_bigmodel.models.bert import BigModelBertForPreTraining

        model = BigModelBertForPreTraining(create_config("bert-base", **sizes))
    else:
        from transformers import BertConfig, BertForPreTraining

        model = BertForPreTraining(BertConfig(**sizes))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def run_side(side: str, args: argparse.Namespace, tokenizer, texts: tuple[Path, Path], work: Path) -> dict:
    from transformers import TrainingArguments

    from hf_bigmodel.training.finetune import FinetuneArguments, run_finetuning
    from hf_bigmodel.training.pretrain_bert import BertDataArguments, BertModelArguments, run_pretraining

    init, pretrained, finetuned = work / f"{side}_init", work / f"{side}_pretrained", work / f"{side}_sst2"
    build_initial_model(side, args, tokenizer, init)
    common = dict(report_to="none", use_cpu=not torch.cuda.is_available(), seed=args.seed, save_strategy="no",
                  logging_steps=max(1, args.pretrain_steps // 20), dataloader_num_workers=0, disable_tqdm=True)  # fmt: skip
    start = time.perf_counter()
    pretrain_metrics = run_pretraining(
        BertModelArguments(model_name_or_path=str(init)),
        BertDataArguments(
            train_file=[str(texts[0])],
            validation_file=[str(texts[1])],
            objective="mlm_nsp",
            max_seq_length=args.max_seq_length,
            dupe_factor=args.dupe_factor,
        ),  # fmt: skip
        TrainingArguments(
            output_dir=str(pretrained),
            max_steps=args.pretrain_steps,
            per_device_train_batch_size=args.pretrain_batch,
            per_device_eval_batch_size=64,
            learning_rate=args.pretrain_lr,
            warmup_steps=max(1, args.pretrain_steps // 20),
            weight_decay=0.01,
            **common,
        ),  # fmt: skip
    )
    pretrain_seconds = time.perf_counter() - start
    sst2 = args.data_dir / "sst2"
    start = time.perf_counter()
    finetune_metrics = run_finetuning(
        FinetuneArguments(
            model_name_or_path=str(pretrained),
            task="sequence-classification",
            train_file=str(sst2 / "train.tsv"),
            validation_file=str(sst2 / "dev.tsv"),
            text_column="sentence",
            label_column="label",
            max_seq_length=args.finetune_seq_length,
            max_train_samples=args.train_samples,
        ),  # fmt: skip
        TrainingArguments(
            output_dir=str(finetuned),
            max_steps=args.finetune_steps,
            per_device_train_batch_size=args.finetune_batch,
            per_device_eval_batch_size=128,
            learning_rate=args.finetune_lr,
            warmup_steps=max(1, args.finetune_steps // 10),
            eval_strategy="no",
            **common,
        ),  # fmt: skip
    )
    finetune_seconds = time.perf_counter() - start
    architecture = json.loads((finetuned / "config.json").read_text())["architectures"][0]
    return {
        "architecture": architecture,
        "mlm_accuracy": pretrain_metrics.get("eval_mlm_accuracy", float("nan")),
        "nsp_accuracy": pretrain_metrics.get("eval_nsp_accuracy", float("nan")),
        "perplexity": pretrain_metrics.get("eval_perplexity", float("nan")),
        "dev_accuracy": finetune_metrics["eval_accuracy"],
        "dev_f1": finetune_metrics["eval_f1"],
        "pretrain_seconds": pretrain_seconds,
        "finetune_seconds": finetune_seconds,
    }


def prepare_text(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """Pretraining text: WikiText-2 valid + test, the last 5% of the documents held out for evaluation."""
    sources = [args.data_dir / "wikitext2" / "valid.txt", args.data_dir / "wikitext2" / "test.txt"]
    missing = [str(p) for p in [*sources, args.data_dir / "sst2" / "train.tsv"] if not p.is_file()]
    if missing:
        raise SystemExit(f"Missing data files: {', '.join(missing)}. Pass --data-dir (the shared/data folder).")
    text = "".join(p.read_text(encoding="utf-8") for p in sources)
    if args.text_chars:
        text = text[: args.text_chars]
    cut = text.rfind("\n \n", 0, int(len(text) * 0.95)) + 1
    train, valid = work / "pretrain_train.txt", work / "pretrain_valid.txt"
    train.write_text(text[:cut], encoding="utf-8")
    valid.write_text(text[cut:], encoding="utf-8")
    return train, valid


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    import transformers

    from hf_bigmodel.tokenization import train_tokenizer

    transformers.utils.logging.set_verbosity_error()
    import datasets

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        texts = prepare_text(args, work)
        tokenizer = train_tokenizer("wordpiece", files=[texts[0]], vocab_size=args.vocab, show_progress=False)
        print(
            f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
            f"{'cuda' if torch.cuda.is_available() else 'cpu'}"
        )
        print(
            f"model: {args.layers} layers x {args.hidden} hidden, {args.heads} heads, FFN {args.intermediate}, "
            f"WordPiece {len(tokenizer)}; pretrain {args.pretrain_steps} steps x {args.pretrain_batch} x "
            f"{args.max_seq_length} tokens (MLM+NSP); SST-2 {args.finetune_steps} steps x {args.finetune_batch}"
        )
        results = {side: run_side(side, args, tokenizer, texts, work) for side in SIDES}
    print(f"{'side':<10} {'model':<40} {'MLM acc':>8} {'NSP acc':>8} {'SST-2 dev':>9} {'pretrain s':>10} "
          f"{'finetune s':>10}")  # fmt: skip
    for side, r in results.items():
        print(
            f"{side:<10} {r['architecture']:<40} {r['mlm_accuracy']:>8.4f} {r['nsp_accuracy']:>8.4f} "
            f"{r['dev_accuracy']:>9.4f} {r['pretrain_seconds']:>10.1f} {r['finetune_seconds']:>10.1f}"
        )
    ratio = results["ours"]["dev_accuracy"] / results["reference"]["dev_accuracy"]
    speed = (results["reference"]["pretrain_seconds"] + results["reference"]["finetune_seconds"]) / (
        results["ours"]["pretrain_seconds"] + results["ours"]["finetune_seconds"]
    )
    note = " (--quick: smoke test, figures not meaningful)" if args.quick else ""
    print(f"SST-2 dev accuracy ratio (ours / reference): {ratio:.3f}{note}")
    print(f"wall-time speed-up (reference time / our time, pretrain + fine-tune): {speed:.2f}x{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
