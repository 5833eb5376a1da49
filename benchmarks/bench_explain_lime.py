"""LIME on a sentence classifier: seconds per sentence at a stated sample count, with the perturbed texts batched
through the model (`hf_bigmodel.explain(..., method="lime")`, captum's Lime), and optionally one perturbation per
forward pass, the way LIME is often wired to a model (the cost behind "10 minutes per sentence on BERT").

    python benchmarks/bench_explain_lime.py runs/sst2                 # the SST-2 model of docs/usage.md (Fine-tune)
    python benchmarks/bench_explain_lime.py --preset bert-base        # no folder: an untrained bert-base head
    python benchmarks/bench_explain_lime.py --quick                   # smoke test: bert-tiny, 2 sentences
    python benchmarks/bench_explain_lime.py --unbatched               # also time batch_size=1 on the first sentence

Without a folder the model is a freshly initialised sequence-classification head of `--preset` with a word-level
tokenizer over the SST-2 dev sentences: LIME's cost depends on the model's size and the sentence length, not on its
weights. Sentences: the first `--sentences` of /work/shared/data/sst2/dev.tsv (or `--data`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import environment_line  # noqa: E402

DATA = Path("/work/shared/data/sst2/dev.tsv")


def read_sentences(path: Path, count: int) -> list[str]:
    rows = path.read_text(encoding="utf-8").splitlines()[1:]  # header: sentence<TAB>label
    return [row.split("\t")[0].strip() for row in rows[:count]]


def fresh_model(preset: str, sentences: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    import hf_bigmodel

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({word for sentence in sentences for word in sentence.split()})
    vocab = {word: i for i, word in enumerate(specials + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=128,
    )  # fmt: skip
    model = hf_bigmodel.create_model(
        preset, task="sequence-classification", vocab_size=len(vocab), num_labels=2, pad_token_id=0
    )
    return model.eval(), tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="a saved sequence-classification folder (default: a fresh --preset)")
    parser.add_argument("--preset", default="bert-base")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--sentences", type=int, default=5)
    parser.add_argument("--n_samples", type=int, default=500, help="LIME's perturbed texts per sentence")
    parser.add_argument("--batch_size", type=int, default=64, help="perturbed texts per forward pass")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--unbatched", action="store_true", help="also time batch_size=1 on the first sentence")
    parser.add_argument("--quick", action="store_true", help="bert-tiny, 2 sentences, 100 samples")
    args = parser.parse_args()
    if args.quick:
        args.preset, args.sentences, args.n_samples = "bert-tiny", 2, 100
    if args.threads:
        torch.set_num_threads(args.threads)

    import hf_bigmodel

    sentences = read_sentences(args.data, args.sentences)
    if args.model:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        name = args.model
    else:
        model, tokenizer = fresh_model(args.preset, read_sentences(args.data, 10**6))
        name = f"{args.preset} (fresh weights)"
    print(environment_line(args.threads))
    print(f"model: {name}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    print(f"LIME: {args.n_samples} samples per sentence, {args.batch_size} per forward pass")

    def seconds(sentence: str, batch_size: int) -> float:
        start = time.perf_counter()
        hf_bigmodel.explain(
            model, sentence, method="lime", tokenizer=tokenizer, n_samples=args.n_samples, batch_size=batch_size
        )
        return time.perf_counter() - start

    seconds(sentences[0], args.batch_size)  # warm-up: first-call allocations, lazy imports
    times = []
    for sentence in sentences:
        times.append(seconds(sentence, args.batch_size))
        tokens = len(tokenizer(sentence)["input_ids"])
        print(f"  {times[-1]:7.2f} s  {tokens:3d} tokens  {sentence[:70]}")
    print(f"median: {statistics.median(times):.2f} s per sentence (batched, {args.batch_size} per forward)")
    if args.unbatched:
        single = seconds(sentences[0], 1)
        print(f"unbatched (1 per forward), first sentence: {single:.2f} s, {single / times[0]:.1f}x the batched time")


if __name__ == "__main__":
    main()
