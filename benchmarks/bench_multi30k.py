"""Multi30k German->English end to end: train the `transformer-multi30k` preset with `hf-bigmodel pretrain
transformer` (the same code path as the CLI), beam-search test2016, and score it two ways.

    python benchmarks/bench_multi30k.py            # the full recipe: about 25 minutes on 2 quiet CPU cores
    python benchmarks/bench_multi30k.py --quick    # a small model on 3000 pairs: a smoke test (about a minute)

Scores printed:

* sacreBLEU on detokenized, cased output against the raw test2016 references (`sacrebleu.corpus_bleu`, default
  13a tokenization), and chrF;
* lower-cased tokenized BLEU, the convention of most Multi30k papers and of the 36.52 of the reference notebook
  (bentrevett/pytorch-seq2seq "Attention is All You Need", 3+3 layers, hidden 256): the output is lower-cased,
  punctuation-normalized and Moses-tokenized (sacremoses, the pipeline that made Multi30k's `tok/` files), then
  scored against `tok/test_2016_flickr.lc.norm.tok.en` with `tokenize="none"`. (The notebook tokenizes with spaCy and
  scores with torchtext's BLEU; the two tokenizations differ in details, so compare within about a point.)

The recipe: a joint 8000-piece unigram tokenizer on both sides of the training data; 3+3 layers, d_model 256, 4
heads, d_ff 1024, dropout 0.1 (`transformer-multi30k`); label smoothing 0.1 in the model's loss; AdamW (beta2 0.98)
at peak learning rate 1e-3 with 500 warm-up steps and linear decay; 64 pairs per step, batches of similar lengths
(`group_by_length`, less padding); 8 epochs; beam search of 5 with length penalty 1.0. Training data: the 29,000
pairs of `train`; no checkpoint selection on `val` (the last model is scored).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "multi30k_de_en"
sys.path.insert(0, str(REPO))  # this checkout's hf_bigmodel
REFERENCE_BLEU = 36.52  # bentrevett/pytorch-seq2seq Transformer, lower-cased tokenized BLEU on test2016


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with raw/ and tok/ (Multi30k)")
    parser.add_argument("--output_dir", type=Path, default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--preset", default="transformer-multi30k")
    parser.add_argument("--config_overrides", default=None, help="e.g. 'intermediate_size=512'")
    parser.add_argument("--tokenizer_kind", default="unigram", choices=["unigram", "bpe"])
    parser.add_argument("--vocab_size", type=int, default=8000, help="joint tokenizer size")
    parser.add_argument("--epochs", type=float, default=8.0)
    parser.add_argument("--batch", type=int, default=64, help="sentence pairs per step")
    parser.add_argument("--max_tokens", type=int, default=None, help="batch by tokens instead (e.g. 2500)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--warmup_steps", type=int, default=500)
    parser.add_argument("--scheduler", default="linear", help="Trainer lr_scheduler_type (linear, inverse_sqrt, ...)")
    parser.add_argument("--label_smoothing", type=float, default=0.1)
    parser.add_argument("--beams", type=int, default=5)
    parser.add_argument("--length_penalty", type=float, default=1.0)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_test_samples", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="small model, 3000 pairs, 3 epochs: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:  # a 0.4M-parameter model on 3000 pairs: learns a little, proves the pipeline
        args.config_overrides = "hidden_size=64,intermediate_size=256,encoder_layers=2,decoder_layers=2"
        args.vocab_size, args.epochs, args.batch, args.lr, args.warmup_steps = 2000, 3.0, 32, 3e-3, 30
        args.max_train_samples, args.max_test_samples, args.beams = 3000, 200, 2
    return args


def lowercase_tokenized_bleu(hypotheses: list[str], tokenized_references: list[str]) -> float:
    """BLEU of Moses-processed, lower-cased hypotheses against Multi30k's tok/ references (tokenize="none")."""
    import sacrebleu

    from hf_bigmodel.metrics import moses_lowercase_tokenize

    return sacrebleu.corpus_bleu(moses_lowercase_tokenize(hypotheses, "en"), [tokenized_references],
                                 tokenize="none", force=True).score  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raw, tok = args.data / "raw", args.data / "tok"
    if not (raw / "train.de.gz").is_file():
        print(f"Multi30k not found in {args.data} (expected raw/train.de.gz ...). Pass --data.", file=sys.stderr)
        return 2
    import sacrebleu
    import torch

    from hf_bigmodel.data.seq2seq import read_lines
    from hf_bigmodel.training.pretrain_seq2seq import PREDICTIONS_FILE
    from hf_bigmodel.training.pretrain_seq2seq import main as pretrain_transformer

    if args.threads:
        torch.set_num_threads(args.threads)
    output_dir = args.output_dir or Path(tempfile.mkdtemp(prefix="bench_multi30k_"))
    cli = [
        "--preset", args.preset, "--source_lang", "de", "--target_lang", "en",
        "--train_file", str(raw / "train"), "--test_file", str(raw / "test_2016_flickr"),
        "--output_dir", str(output_dir),
        "--do_train", "--do_predict", "--predict_with_generate",
        "--tokenizer_kind", args.tokenizer_kind, "--tokenizer_vocab_size", str(args.vocab_size),
        "--num_train_epochs", str(args.epochs), "--per_device_train_batch_size", str(args.batch),
        "--per_device_eval_batch_size", "128", "--learning_rate", str(args.lr),
        "--lr_scheduler_type", args.scheduler, "--warmup_steps", str(args.warmup_steps),
        "--adam_beta2", "0.98", "--weight_decay", "0.0001", "--max_grad_norm", "1.0",
        "--label_smoothing_factor", str(args.label_smoothing), "--train_sampling_strategy", "group_by_length",
        "--generation_num_beams", str(args.beams), "--length_penalty", str(args.length_penalty),
        "--generation_max_length", "128", "--truncate_long_sequences", "--max_source_length", "128",
        "--max_target_length", "128", "--lowercase_bleu", "moses", "--save_strategy", "no",
        "--logging_steps", "50", "--report_to", "none", "--use_cpu", "true", "--seed", str(args.seed),
        "--dataloader_num_workers", "0", "--disable_tqdm", "true",
    ]  # fmt: skip
    if args.config_overrides:
        cli += ["--config_overrides", args.config_overrides]
    if args.max_tokens:
        cli += ["--max_tokens_per_batch", str(args.max_tokens)]
    if args.max_train_samples:
        cli += ["--max_train_samples", str(args.max_train_samples)]
    if args.max_test_samples:
        cli += ["--max_predict_samples", str(args.max_test_samples)]
    print("hf-bigmodel pretrain transformer " + " ".join(cli), flush=True)
    start = time.perf_counter()
    code = pretrain_transformer(cli)
    wall = time.perf_counter() - start
    if code != 0:
        return code

    results = json.loads((output_dir / "all_results.json").read_text())
    run = (
        json.loads((output_dir / "training_run.json").read_text())
        if (output_dir / "training_run.json").is_file()
        else {}
    )
    hypotheses = (output_dir / PREDICTIONS_FILE).read_text(encoding="utf-8").splitlines()
    n = len(hypotheses)
    references = read_lines(raw / "test_2016_flickr.en.gz")[:n]
    tokenized = read_lines(tok / "test_2016_flickr.lc.norm.tok.en.gz")[:n]
    bleu = sacrebleu.corpus_bleu(hypotheses, [references])
    chrf = sacrebleu.corpus_chrf(hypotheses, [references])
    lc_tok = lowercase_tokenized_bleu(hypotheses, tokenized)
    train_tokens = run.get("train_tokens", 0) * results.get("epoch", 0)
    train_time = results.get("train_runtime", float("nan"))
    print()
    print(f"Multi30k de->en test2016 ({n} sentences), {args.preset}, beam {args.beams}")
    print(f"  sacreBLEU (detokenized, cased, 13a): {bleu.score:.2f}   [{bleu}]")
    print(f"  chrF:                                {chrf.score:.2f}")
    print(f"  lower-cased tokenized BLEU:          {lc_tok:.2f}   (reference Transformer: {REFERENCE_BLEU})")
    print(f"  train: {train_time / 60:.1f} min, {train_tokens / train_time:.0f} tokens/s (source + target)"
          f", final train loss {results.get('train_loss', float('nan')):.3f}")  # fmt: skip
    print(f"  test translation: {results.get('test_runtime', float('nan')):.1f} s; whole run: {wall / 60:.1f} min")
    print(f"  threads: {torch.get_num_threads()}, cpus: {os.cpu_count()}; run folder: {output_dir}")
    if not args.quick:
        print(f"  {'reached' if lc_tok >= REFERENCE_BLEU else 'below'} the reference {REFERENCE_BLEU}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
