"""Offline summarization: predict a WikiText-2 section's heading from the section text that follows it, with the
encoder-decoder trained by `hf-bigmodel pretrain transformer --objective summarization` (the CLI's code path), and
score it with ROUGE against the lead-sentence copy baseline.

    python benchmarks/bench_summarization_headings.py            # the full recipe (target: within 30 min on 2 cores)
    python benchmarks/bench_summarization_headings.py --quick    # a smoke test: 1 epoch of each stage, 60 test pairs
    python benchmarks/bench_summarization_headings.py --baseline_only   # the task's sizes and the baseline, seconds

No summarization corpus is available offline, so the task is built from the shared WikiText-2 (tokenized v1: `<unk>`,
` @-@ `; `hf_bigmodel.data.seq2seq.wikitext_heading_pairs`): every level-2 or level-3 section (" = = Heading = = ")
gives a pair {document: the first 100 words of its text, summary: its heading}; headings with an `<unk>` in them and
empty sections are left out. WikiText-2's train file is not in the shared data, so `test.txt` trains (392 sections;
with `--stride 50`, 2858 windows of 100 words) and `valid.txt` (367 sections) is scored. With `--denoise_epochs`
the model (2 + 2 pre-norm layers, 128 wide) first learns BART-style denoising on `test.txt`'s paragraphs at batch
`--denoise_batch`, then the headings. The headings are short ("History", "Early life", "Route description"), so
this measures whether the model learns what a section is about and how headings are worded; it promises nothing
about news summarization (CNN/DailyMail).

The baseline copies the document's lead sentence (up to the first " . "), the usual extractive baseline; both are
scored with `metrics.rouge_scores` (Google's rouge-score, F-measure in %). The target: the model's ROUGE-L at
least TARGET_MARGIN points above the baseline's, within 30 minutes of wall time. For reference (not the target's
baseline), the table also scores retrieval alone: the heading of the most similar training window by TF-IDF
cosine (scikit-learn, the `train` extra), and a heading classifier trained on the same pairs (logistic regression
over TF-IDF features). Both can only answer with a training heading, and the table says how many test headings are
one. `--retrieve K` gives the model those headings too: every document starts
with its K nearest training headings (a training pair's come from other articles), retrieval-augmented generation;
benchmarks/README.md has what it scored.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "wikitext2"
sys.path.insert(0, str(REPO))  # this checkout's hf_bigmodel
TARGET_MARGIN = 5.0  # ROUGE-L points above the lead-sentence baseline
TIME_LIMIT_MIN = 30.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with test.txt and valid.txt")
    parser.add_argument("--output_dir", type=Path, default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--config_overrides", default="hidden_size=128,intermediate_size=512,encoder_layers=2,"
                        "decoder_layers=2,max_position_embeddings=160,dropout=0.1,pre_norm=true")  # fmt: skip
    parser.add_argument("--vocab_size", type=int, default=4000, help="joint unigram tokenizer size")
    parser.add_argument("--max_words", type=int, default=100, help="words of section text per document")
    parser.add_argument("--stride", type=int, default=50,
                        help="training pairs: a window of --max_words words every --stride words of a section "
                        "(0: one pair per section); the scored pairs are always one per section")  # fmt: skip
    parser.add_argument("--epochs", type=float, default=8.0)
    parser.add_argument("--denoise_epochs", type=float, default=10.0,
                        help="first pretrain the model as a BART-style denoiser on the training split's paragraphs "
                        "(`--objective denoising`) for this many epochs, then fine-tune it on the headings")  # fmt: skip
    parser.add_argument("--batch", type=int, default=32, help="batch size of the heading stage")
    parser.add_argument("--heading_dropout", type=float, default=0.3,
                        help="dropout of the heading stage: a few hundred headings are memorised at 0.1")  # fmt: skip
    parser.add_argument("--denoise_batch", type=int, default=8,
                        help="batch size of the denoising stage: its 2,183 paragraphs make few steps an epoch, and "
                        "copying the input is learnt in steps, not epochs")  # fmt: skip
    parser.add_argument("--retrieve", type=int, default=0,
                        help="retrieval-augmented: prefix every document with its K nearest training headings "
                        "(TF-IDF; a training pair's come from other articles)")  # fmt: skip
    parser.add_argument("--show_answer", type=float, default=0.0,
                        help="with --retrieve: the share of training pairs whose own heading replaces one of their "
                        "candidates (never a test pair's)")  # fmt: skip
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup_steps", type=int, default=100)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--max_test_samples", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1 epoch (of each stage), 60 test pairs: a smoke test")
    parser.add_argument("--baseline_only", action="store_true", help="build the task, score the baseline, stop")
    args = parser.parse_args(argv)
    if args.retrieve < 0 or not 0 <= args.show_answer <= 1 or (args.show_answer and not args.retrieve):
        parser.error("--retrieve takes K >= 1 (0: off), and --show_answer a share in [0, 1] that needs --retrieve")
    if args.quick:
        args.epochs, args.max_test_samples, args.beams, args.warmup_steps = 1.0, 60, 2, 5
        args.denoise_epochs = min(args.denoise_epochs, 1.0)  # the denoising stage runs too, briefly
    return args


def lead_sentence(document: str) -> str:
    return re.split(r"(?<= \.) ", document, maxsplit=1)[0]


def retrieved_headings(
    train: list[dict], queries: list[dict], k: int = 1, exclude_own: bool = False
) -> list[list[str]] | None:
    """For each query document, the headings of the most similar training documents (TF-IDF cosine), the `k` best
    distinct ones, best first. With `exclude_own` the queries are the training pairs themselves, and the pairs of a
    query's own article are skipped: a training pair must neither find its own answer nor, more often, its article's
    other headings, which a test section (from an unseen article) never sees. None without scikit-learn (the `train`
    extra)."""
    try:
        import numpy as np
        from sklearn.feature_extraction.text import TfidfVectorizer
    except ImportError:
        return None
    vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english")
    train_matrix = vectorizer.fit_transform([pair["document"] for pair in train])
    headings = [pair["summary"] for pair in train]
    articles = np.array([pair["article"] for pair in train])
    results = []
    for start in range(0, len(queries), 256):  # (256, training windows) similarities at a time
        block = queries[start : start + 256]
        similarity = (vectorizer.transform([pair["document"] for pair in block]) @ train_matrix.T).toarray()
        for row, scores in enumerate(similarity):
            if exclude_own:
                scores[articles == block[row]["article"]] = -1.0
            found: list[str] = []
            for index in np.argsort(-scores, kind="stable"):
                if headings[index] not in found:
                    found.append(headings[index])
                if len(found) == k:
                    break
            results.append(found)
    return results


def classified_headings(train: list[dict], queries: list[dict]) -> tuple[list[str], float] | None:
    """A second learned reference: a linear classifier over the training headings (TF-IDF features, logistic
    regression), its C chosen by 3-fold cross-validation grouped by article, as a test section's article is unseen.
    Returns (each query's predicted heading, the chosen C), or None without scikit-learn or with one article."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV, GroupKFold
        from sklearn.pipeline import make_pipeline
    except ImportError:
        return None
    pipeline = make_pipeline(TfidfVectorizer(sublinear_tf=True, stop_words="english"),
                             LogisticRegression(max_iter=1000))  # fmt: skip
    folds = min(3, len({pair["article"] for pair in train}))
    if folds < 2:  # cross-validation grouped by article needs two articles at least
        return None
    search = GridSearchCV(pipeline, {"logisticregression__C": [1.0, 10.0, 100.0]}, cv=GroupKFold(folds))
    search.fit([p["document"] for p in train], [p["summary"] for p in train], groups=[p["article"] for p in train])
    return list(search.predict([p["document"] for p in queries])), search.best_params_["logisticregression__C"]


def write_pairs(path: Path, pairs: list[dict]) -> None:
    """The pairs as JSON lines of the trainer's two columns."""
    lines = (json.dumps({"document": pair["document"], "summary": pair["summary"]}) + "\n" for pair in pairs)
    path.write_text("".join(lines), encoding="utf-8")


def with_candidates(pairs: list[dict], candidates: list[list[str]]) -> list[dict]:
    """Each document prefixed by its retrieved headings, `heading ; heading || document`: the encoder reads the
    candidates first, so that truncating a long document never cuts them."""
    return [
        {**pair, "document": f"{' ; '.join(found)} || {pair['document']}"} for pair, found in zip(pairs, candidates)
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.data / "test.txt").is_file() or not (args.data / "valid.txt").is_file():
        print(f"WikiText-2 not found in {args.data} (expected test.txt and valid.txt). Pass --data.", file=sys.stderr)
        return 2
    import torch

    from hf_bigmodel.data.seq2seq import wikitext_heading_pairs
    from hf_bigmodel.metrics import rouge_scores
    from hf_bigmodel.training.pretrain_seq2seq import PREDICTIONS_FILE
    from hf_bigmodel.training.pretrain_seq2seq import main as pretrain_transformer

    if args.threads:
        torch.set_num_threads(args.threads)
    output_dir = args.output_dir or Path(tempfile.mkdtemp(prefix="bench_headings_"))
    output_dir.mkdir(parents=True, exist_ok=True)
    files, split_pairs = {}, {}
    for split, source in (("train", "test.txt"), ("test", "valid.txt")):
        stride = args.stride if split == "train" and args.stride else None
        pairs = wikitext_heading_pairs(args.data / source, max_words=args.max_words, stride=stride, article=True)
        if split == "test" and args.max_test_samples:
            pairs = pairs[: args.max_test_samples]
        files[split] = output_dir / f"headings_{split}.jsonl"
        write_pairs(files[split], pairs)
        split_pairs[split] = pairs
    train_pairs, test = split_pairs["train"], split_pairs["test"]
    references = [p["summary"] for p in test]
    baseline = rouge_scores([lead_sentence(p["document"]) for p in test], references)
    # The test sections' nearest headings: the first alone is the retrieval reference, all K feed --retrieve.
    retrieved = retrieved_headings(train_pairs, test, max(args.retrieve, 1))
    retrieval = rouge_scores([found[0] for found in retrieved], references) if retrieved else None
    # How far a learner over this training set can go: a closed-vocabulary one matches only the headings it has seen.
    seen = {p["summary"] for p in train_pairs}
    seen_share = sum(reference in seen for reference in references) / len(references)
    classified = classified_headings(train_pairs, test)
    classifier = rouge_scores(classified[0], references) if classified else None
    if args.retrieve:
        # Retrieval-augmented generation (Cao et al. 2018 for headlines): the encoder reads the k nearest training
        # headings before the section, and the model learns when to copy one and when to write its own.
        if retrieved is None:
            print("--retrieve needs scikit-learn: pip install 'hf-bigmodel[train]'", file=sys.stderr)
            return 2
        rng = random.Random(args.seed)
        for split, pairs, own in (("train", train_pairs, True), ("test", test, False)):
            found = retrieved_headings(train_pairs, pairs, args.retrieve, exclude_own=True) if own else retrieved
            if own and args.show_answer:
                # Few training pairs find their own heading among the candidates (5%, against 12% of the test
                # pairs), too few to learn that copying one pays; show the answer in a random slot of some.
                for pair, headings in zip(pairs, found):
                    if pair["summary"] not in headings and rng.random() < args.show_answer:
                        headings[rng.randrange(len(headings))] = pair["summary"]
            write_pairs(files[split], with_candidates(pairs, found))
    if args.baseline_only:
        print(f"WikiText-2 section headings: {len(train_pairs)} training pairs (test.txt), {len(test)} test pairs "
              f"(valid.txt)")  # fmt: skip
        print("  lead-sentence baseline: " + ", ".join(f"{k} {v:.2f}" for k, v in baseline.items()))
        if retrieval:
            print("  nearest training heading (TF-IDF): " + ", ".join(f"{k} {v:.2f}" for k, v in retrieval.items()))
        if classifier:
            print(f"  heading classifier (TF-IDF, logistic regression, C={classified[1]:g}): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in classifier.items()))  # fmt: skip
        print(f"  test headings that are also training headings: {seen_share:.1%}")
        return 0

    run_dir = output_dir / "model"
    common = [
        "--max_source_length", "160", "--truncate_long_sequences", "--save_strategy", "no",
        "--logging_steps", "50", "--report_to", "none", "--use_cpu", "true", "--seed", str(args.seed),
        "--dataloader_num_workers", "0", "--disable_tqdm", "true", "--learning_rate", str(args.lr),
        "--warmup_steps", str(args.warmup_steps), "--adam_beta2", "0.98", "--weight_decay", "0.01",
    ]  # fmt: skip
    architecture = [
        "--preset", "transformer-multi30k", "--config_overrides", args.config_overrides,
        "--tokenizer_kind", "unigram", "--tokenizer_vocab_size", str(args.vocab_size),
    ]  # fmt: skip
    start = time.perf_counter()
    if args.denoise_epochs:
        # BART's recipe: learn to read and rewrite the domain's text first (only the training split's paragraphs),
        # then learn headings from the few pairs there are.
        paragraphs = output_dir / "denoise_train.txt"
        lines = (args.data / "test.txt").read_text(encoding="utf-8").splitlines()
        paragraphs.write_text("".join(f"{line.strip()}\n" for line in lines if line.strip() and not
                                      line.startswith(" = ")), encoding="utf-8")  # fmt: skip
        denoise_dir = output_dir / "denoiser"
        denoise = ["--objective", "denoising", *architecture, "--train_file", str(paragraphs),
                   "--output_dir", str(denoise_dir), "--do_train", "--num_train_epochs", str(args.denoise_epochs),
                   "--max_target_length", "160", "--per_device_train_batch_size", str(args.denoise_batch),
                   *common]  # fmt: skip
        print("hf-bigmodel pretrain transformer " + " ".join(denoise), flush=True)
        code = pretrain_transformer(denoise)
        if code != 0:
            return code
        architecture = ["--model_name_or_path", str(denoise_dir)]
    # The saved config's dropout (or the preset's) is overridden for this stage; a later key wins in the overrides.
    stage_overrides = f"dropout={args.heading_dropout}"
    if args.denoise_epochs:
        architecture += ["--config_overrides", stage_overrides]
    else:
        architecture[architecture.index("--config_overrides") + 1] += f",{stage_overrides}"
    cli = [
        "--objective", "summarization", *architecture,
        "--train_file", str(files["train"]), "--test_file", str(files["test"]), "--output_dir", str(run_dir),
        "--do_train", "--do_predict", "--predict_with_generate",
        "--num_train_epochs", str(args.epochs), "--per_device_eval_batch_size", "64",
        "--label_smoothing_factor", "0.1", "--generation_num_beams", str(args.beams),
        "--no_repeat_ngram_size", "2", "--generation_max_length", "16", "--max_target_length", "24",
        "--per_device_train_batch_size", str(args.batch), *common,
    ]  # fmt: skip
    print("hf-bigmodel pretrain transformer " + " ".join(cli), flush=True)
    code = pretrain_transformer(cli)
    wall = time.perf_counter() - start
    if code != 0:
        return code
    hypotheses = (run_dir / PREDICTIONS_FILE).read_text(encoding="utf-8").splitlines()
    model = rouge_scores(hypotheses, references[: len(hypotheses)])
    results = json.loads((run_dir / "all_results.json").read_text())
    margin = model["rougeL"] - baseline["rougeL"]
    print()
    print(f"WikiText-2 section headings: {len(train_pairs)} training pairs (test.txt), {len(hypotheses)} scored "
          f"(valid.txt); beam {args.beams}")  # fmt: skip
    print(f"  {'':34} ROUGE-1  ROUGE-2  ROUGE-L")
    rows = [("lead-sentence baseline", baseline), ("transformer", model)]
    if retrieval and len(hypotheses) == len(test):
        rows.insert(1, ("nearest training heading (TF-IDF)", retrieval))  # a reference, not the target's baseline
    if classifier and len(hypotheses) == len(test):
        rows.insert(2 if retrieval else 1, (f"heading classifier (C={classified[1]:g})", classifier))
    for name, scores in rows:
        print(f"  {name:34} {scores['rouge1']:7.2f}  {scores['rouge2']:7.2f}  {scores['rougeL']:7.2f}")
    print(f"  ROUGE-L margin over the baseline: {margin:+.2f} points (target >= +{TARGET_MARGIN}); test headings that "
          f"are also training headings: {seen_share:.1%}")  # fmt: skip
    print(f"  train: {results.get('train_runtime', float('nan')) / 60:.1f} min, final train loss "
          f"{results.get('train_loss', float('nan')):.3f}; whole run: {wall / 60:.1f} min "
          f"(limit {TIME_LIMIT_MIN:.0f})")  # fmt: skip
    print(f"  threads: {torch.get_num_threads()}, cpus: {os.cpu_count()}, load average: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; run folder: {output_dir}")  # fmt: skip
    for hypothesis, reference in list(zip(hypotheses, references))[:8]:
        print(f"    {reference!r:32} -> {hypothesis!r}")
    if not args.quick:
        passed = margin >= TARGET_MARGIN and wall <= TIME_LIMIT_MIN * 60
        print(f"  {'PASS' if passed else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
