"""Beam-search (and greedy) generation speed of the hf_bigmodel encoder-decoder Transformer vs transformers'
MarianMTModel at the identical config, with identical outputs.

The reference is a randomly initialised MarianMTModel (seeded; untied output projection); ours is that checkpoint converted by
`hf_bigmodel.conversion.convert_transformer.convert_marian_to_bigmodel`, so both hold the same weights. Both run
`model.generate(input_ids, attention_mask=..., num_beams=5, max_new_tokens=N)` on the same right-padded random
sources (lengths between half and all of --source-length), fp32, with the encoder-decoder KV cache and no
end-of-sequence token, so every call decodes exactly N steps. The parent process first checks that both models
return the same tokens; then each model runs in its own worker process, timed in interleaved rounds, and the ratio
compares median times per call, for each batch size.

    python benchmarks/bench_transformer_generate.py                  # 3+3 layers x 512, vocab 8000; batch 1 and 16
    python benchmarks/bench_transformer_generate.py --threads 1      # steadier figures on a machine busy with other work
    python benchmarks/bench_transformer_generate.py --num-beams 1    # greedy
    python benchmarks/bench_transformer_generate.py --quick          # tiny sizes, a smoke test (seconds)
"""

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import compare_in_workers, environment_line, marian_config, verdict  # noqa: E402

TARGET = 1.5
MODELS = {"reference": "MarianMT", "ours": "ours"}
PAD, START = 0, 1


def write_checkpoints(settings: dict[str, Any], folder: Path) -> dict[str, str]:
    """A seeded random MarianMTModel saved under `folder`, and its conversion to ours: {name: saved folder}."""
    from transformers import MarianMTModel

    from hf_bigmodel.conversion.convert_transformer import convert_marian_to_bigmodel

    torch.manual_seed(0)
    config = marian_config(
        settings,
        decoder_vocab_size=settings["vocab"],
        # Untied output projection: a random model with tied embeddings repeats one token (its start token), which
        # would make the identical-output check say little. It does not change the work of a step.
        tie_word_embeddings=False,
        pad_token_id=PAD,
        decoder_start_token_id=START,
        bos_token_id=START,
        eos_token_id=None,  # every call decodes exactly --new-tokens steps
        forced_eos_token_id=None,
    )
    paths = {"reference": str(folder / "marian"), "ours": str(folder / "ours")}
    MarianMTModel(config).save_pretrained(paths["reference"])
    convert_marian_to_bigmodel(paths["reference"], paths["ours"])
    return paths


def load_model(name: str, settings: dict[str, Any]) -> torch.nn.Module:
    from transformers import AutoModelForSeq2SeqLM, MarianMTModel
    from transformers.utils import logging

    import hf_bigmodel  # noqa: F401  (registers our architecture with the Auto classes)

    logging.set_verbosity_error()
    model_class = MarianMTModel if name == "reference" else AutoModelForSeq2SeqLM
    model = model_class.from_pretrained(settings["paths"][name]).eval()
    if model.config._attn_implementation != "sdpa":
        raise RuntimeError(f"{name} uses {model.config._attn_implementation} attention, expected sdpa.")
    return model


def make_sources(settings: dict[str, Any], batch: int) -> dict[str, torch.Tensor]:
    """`batch` random right-padded sources, the same for both models."""
    generator = torch.Generator().manual_seed(batch)
    longest = settings["source_length"]
    lengths = torch.randint(max(1, longest // 2), longest + 1, (batch,), generator=generator)
    lengths[0] = longest
    ids = torch.randint(2, settings["vocab"], (batch, longest), generator=generator)
    mask = (torch.arange(longest) < lengths[:, None]).long()
    return {"input_ids": ids.masked_fill(mask == 0, PAD), "attention_mask": mask}


def generate_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    return dict(num_beams=settings["num_beams"], do_sample=False, max_new_tokens=settings["new_tokens"])


def make_generate(name: str, settings: dict[str, Any]):
    """Runs in a worker: load the model and return a closure doing one `generate` call on the batch."""
    model = load_model(name, settings)
    sources = make_sources(settings, settings["batch"])
    kwargs = generate_kwargs(settings)
    expected_length = 1 + settings["new_tokens"]  # the decoder start token, then the new tokens

    @torch.inference_mode()
    def generate() -> None:
        output = model.generate(**sources, **kwargs)
        if output.shape[1] != expected_length:
            raise RuntimeError(f"{name} returned {output.shape[1]} tokens per row, expected {expected_length}.")

    return generate


def same_outputs(settings: dict[str, Any], batch: int) -> tuple[bool, int]:
    """Whether both models return the same tokens for the batch (checked in this process), and how many distinct
    tokens they generated."""
    if settings.get("threads"):
        torch.set_num_threads(settings["threads"])
    sources = make_sources(settings, batch)
    with torch.inference_mode():
        outputs = [load_model(name, settings).generate(**sources, **generate_kwargs(settings)) for name in MODELS]
    return torch.equal(*outputs), len(outputs[1][:, 1:].unique())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=3, help="encoder layers (and as many decoder layers)")
    parser.add_argument("--hidden", type=int, default=512, help="d_model")
    parser.add_argument("--heads", type=int, default=8, help="attention heads")
    parser.add_argument("--ffn", type=int, default=2048, help="feed-forward size d_ff")
    parser.add_argument("--vocab", type=int, default=8000, help="shared vocabulary size")
    parser.add_argument("--max-positions", type=int, default=256, help="position table size")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16], help="source sentences per call")
    parser.add_argument("--num-beams", type=int, default=5, help="beams (1: greedy)")
    parser.add_argument("--source-length", type=int, default=24, help="longest source, in tokens")
    parser.add_argument("--new-tokens", type=int, default=32, help="max_new_tokens (all are generated)")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed generate calls per model first")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few calls, for a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.hidden, args.heads, args.ffn, args.vocab, args.max_positions = 1, 64, 2, 128, 512, 64
        args.source_length, args.new_tokens, args.rounds, args.warmup = 8, 8, 2, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    search = f"beam search, {args.num_beams} beams" if args.num_beams > 1 else "greedy"
    print(environment_line(args.threads))
    print(
        f"config: {args.layers}+{args.layers} layers, d_model {args.hidden}, {args.heads} heads, d_ff {args.ffn}, "
        f"vocab {args.vocab}; {search}, fp32, sources of {args.source_length // 2}-{args.source_length} tokens, "
        f"{args.new_tokens} new tokens; {args.rounds} rounds, warmup {args.warmup}"
    )
    results = []
    with tempfile.TemporaryDirectory() as folder:
        settings = {**vars(args), "paths": write_checkpoints(vars(args), Path(folder))}
        print(f"{'batch':>5} {'model':<9} {'ms/call':>9} {'ms/step':>8} {'peak RSS':>10}")
        for batch in args.batch:
            identical, distinct = same_outputs(settings, batch)
            if not identical:
                print(f"batch {batch}: the two models generated different tokens; not timing them.")
                return 1
            measured = compare_in_workers(
                make_generate, list(MODELS), {**settings, "batch": batch}, args.rounds, 1, args.warmup
            )
            for name, (seconds, peak_mib) in measured.items():
                print(
                    f"{batch:>5} {MODELS[name]:<9} {seconds * 1e3:>9.1f} {seconds * 1e3 / args.new_tokens:>8.2f} "
                    f"{peak_mib:>7.0f} MiB"
                )
            ratio = measured["reference"][0] / measured["ours"][0]
            results.append((batch, ratio, distinct))
            print(f"{batch:>5} {'speed-up':<9} {ratio:>8.2f}x  (outputs identical, {distinct} distinct tokens)")
    print("summary (speed-up = MarianMT ms/call / our ms/call, same tokens):")
    for batch, ratio, _ in results:
        print(f"  {search}, batch {batch}: {ratio:.2f}x  {verdict(ratio, TARGET, args.quick)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
