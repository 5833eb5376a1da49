"""Sequential recommendation on the shared files: SASRec or BERT4Rec (hf_bigmodel), trained until validation NDCG@10
stops improving, then HR/NDCG/MRR @1,5,10,20 on the test items under the three protocols of the one evaluator
(`hf_bigmodel.recommendation`), with the wall time, the time to the best validation epoch and sequences/s.

With `--anchor`, SASRec.pytorch (../shared/anchors/SASRec.pytorch, run there as a subprocess, never copied) trains on
the same file for the same wall time that ours took to its best validation epoch; its last checkpoint is then scored
by our evaluator on the same candidates, so both columns are comparable.

    python benchmarks/bench_seqrec.py --data Video.txt --model sasrec --anchor          # Video, sampled-uniform target
    python benchmarks/bench_seqrec.py --data beauty.txt --model sasrec --validation_protocol full
    python benchmarks/bench_seqrec.py --data beauty.txt --model bert4rec --validation_protocol full
    python benchmarks/bench_seqrec.py --data Video.txt --quick                          # smoke test, ~1 min

A beauty BERT4Rec run takes hours on 2 cores. With `--checkpoint_dir DIR` every epoch leaves its whole training state
in `DIR/epoch-N` (safetensors and JSON, renamed into place only once complete); the same command with `--resume`
continues from the last one, on the same `--threads` epoch for epoch as if it had never stopped (`--epochs`,
`--patience`, `--time_budget` and `--threads` may change, the rest must not).

Recipe: full softmax cross-entropy (`--loss ce`, Klenitskiy & Vasilev 2023: it converges in far fewer epochs than
SASRec's one-negative BCE), Adam at 1e-3, batch 128, bf16 autocast where the CPU computes bfloat16 natively
(`--bf16` / `--no-bf16` to choose), batches drawn at random (`--group_by_length` batches users of similar history
lengths: faster epochs, worse models), validation every epoch on every user, early stopping after `--patience`
epochs, test at the best epoch. On a 2-core CPU the softmax over every item is most of an epoch; `--loss sampled_ce:2000` (2,000 shared negatives) is
the loss of most Video figures in benchmarks/README.md, which names each run's flags.

Targets (issue 16): Video sampled-uniform NDCG@10 >= 0.55 and HR@10 >= 0.76; beauty full ranking SASRec NDCG@10
>= 0.034 and HR@10 >= 0.055, BERT4Rec NDCG@10 >= 0.0187 and HR@10 >= 0.0338.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers.trainer_pt_utils import LengthGroupedSampler

from hf_bigmodel import (
    BigModelBert4RecConfig,
    BigModelBert4RecForMaskedLM,
    BigModelSASRecConfig,
    BigModelSASRecForCausalLM,
)
from hf_bigmodel._io import default_mode
from hf_bigmodel.data.seqrec import (
    CausalItemDataset,
    MaskedItemCollator,
    MaskedItemDataset,
    causal_item_collator,
    leave_one_out,
    left_pad,
    read_interactions,
)
from hf_bigmodel.hardware import native_bf16
from hf_bigmodel.recommendation import PROTOCOLS, evaluate_recommender, evaluate_scores, sample_candidates

TARGETS = {
    ("Video.txt", "sasrec", "sampled-uniform"): {"NDCG@10": 0.55, "HR@10": 0.76},
    ("beauty.txt", "sasrec", "full"): {"NDCG@10": 0.034, "HR@10": 0.055},
    ("beauty.txt", "bert4rec", "full"): {"NDCG@10": 0.0187, "HR@10": 0.0338},
}


def shared_dir(name: str) -> Path:
    for parent in Path(__file__).resolve().parents[1:]:
        if (parent / "shared" / name).is_dir():
            return parent / "shared" / name
    raise SystemExit(f"../shared/{name} not found next to the repository")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="Video.txt", help="a file of ../shared/data/seqrec, or a path")
    parser.add_argument("--model", choices=("sasrec", "bert4rec"), default="sasrec")
    parser.add_argument("--loss", default="ce")
    parser.add_argument("--max_length", type=int, default=50)
    parser.add_argument("--dropout", type=float, default=None, help="default: the preset's")
    parser.add_argument("--hidden_size", type=int, default=None,
                        help="default: the preset's; the feed-forward width follows it (SASRec: equal, BERT4Rec: 4x)")  # fmt: skip
    parser.add_argument("--mask_probability", type=float, default=None,
                        help="BERT4Rec: share of the items masked in training (default: the preset's, 0.2; the "
                        "BERT4Rec paper's best for Amazon Beauty was 0.6)")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--time_budget", type=float, default=None,
                        help="stop training after this many seconds (counted across --resume)")  # fmt: skip
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--adam_beta2", type=float, default=0.98, help="Adam's beta2 (SASRec's code: 0.98)")
    parser.add_argument("--lr_decay", type=float, default=1.0,
                        help="multiply the learning rate by this after every epoch that does not improve validation "
                        "NDCG@10 (1: constant, as both papers train)")  # fmt: skip
    parser.add_argument("--validation_protocol", choices=PROTOCOLS, default="sampled-uniform")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast (default: where the CPU computes bfloat16 natively, AVX-512 BF16 or AMX; "
                        "emulated, it made training several times slower than fp32 on an AMD EPYC without them)")  # fmt: skip
    parser.add_argument("--group_by_length", action=argparse.BooleanOptionalAction, default=False,
                        help="batch users of similar history lengths: less padding, but lower scores (Video: test "
                        "NDCG@10 0.5204 grouped, 0.5506 at random; benchmarks/README.md)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="1 is fastest on a busy machine")
    parser.add_argument("--anchor", action="store_true", help="also run SASRec.pytorch for the same wall time")
    parser.add_argument("--quick", action="store_true", help="2,000 users, 2 epochs: a smoke test")
    parser.add_argument("--popularity_only", action="store_true",
                        help="print the most-popular ranker's validation and test scores, train nothing")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint_dir", type=Path, default=None,
                        help="save the whole training state here after every epoch (DIR/epoch-N)")  # fmt: skip
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last epoch saved in --checkpoint_dir, with the same flags")  # fmt: skip
    args = parser.parse_args(argv)
    if args.resume and args.checkpoint_dir is None:
        parser.error("--resume continues from a --checkpoint_dir: name the folder of the run to continue.")
    if args.checkpoint_dir is not None and args.checkpoint_dir.exists() and not args.checkpoint_dir.is_dir():
        parser.error(f"--checkpoint_dir {args.checkpoint_dir} is a file: name a folder (it is created if missing).")
    if not 0.0 <= args.adam_beta2 < 1.0:
        parser.error(f"--adam_beta2 {args.adam_beta2} is not in [0, 1): Adam's default is 0.999, SASRec's 0.98.")
    if not 0.0 < args.lr_decay <= 1.0:
        parser.error(f"--lr_decay {args.lr_decay} is not in (0, 1]: 0.5 halves the learning rate, 1 keeps it.")
    if args.mask_probability is not None and args.model != "bert4rec":
        parser.error("--mask_probability is BERT4Rec's (the share of items it masks); SASRec masks nothing.")
    if args.bf16 is None:
        args.bf16 = native_bf16()
    return args


def build_model(args, split):
    preset = f"{args.model}-{args.max_length}" if args.max_length in (50, 200) else f"{args.model}-50"
    overrides = {"max_position_embeddings": args.max_length, "loss": args.loss}
    if args.dropout is not None:
        keys = ("embedding_dropout", "hidden_dropout") if args.model == "sasrec" else ("hidden_dropout_prob",)
        overrides.update(dict.fromkeys(keys, args.dropout))
    if args.mask_probability is not None:
        overrides["mask_probability"] = args.mask_probability
    if args.hidden_size is not None:
        widening = 1 if args.model == "sasrec" else 4
        overrides.update(hidden_size=args.hidden_size, intermediate_size=widening * args.hidden_size)
    config_class, model_class = {
        "sasrec": (BigModelSASRecConfig, BigModelSASRecForCausalLM),
        "bert4rec": (BigModelBert4RecConfig, BigModelBert4RecForMaskedLM),
    }[args.model]
    config = config_class.from_preset(preset, num_items=split.num_items, item_ids=split.item_map.item_ids, **overrides)
    return model_class(config)


# The flags that shape the model and its training: a resumed run must keep them. The others (--epochs, --patience,
# --time_budget, --threads) only say for how long and on how many threads to go on.
RESUME_FLAGS = ("model", "loss", "max_length", "dropout", "hidden_size", "mask_probability", "batch_size", "lr",
                "adam_beta2", "lr_decay", "validation_protocol", "bf16", "group_by_length", "seed", "quick")  # fmt: skip
# Flags added after checkpoints were first written: a checkpoint without one was trained with this value.
FLAGS_BEFORE_THEY_EXISTED = {"adam_beta2": 0.98, "lr_decay": 1.0}


def fail(message: str) -> NoReturn:
    """Bad input from the command line: one line on stderr and exit code 2, as argparse does."""
    print(f"bench_seqrec.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def save_checkpoint(folder: Path, model, best_state: dict, optimizer, collate, progress: dict) -> Path:
    """The whole training state after an epoch, as `folder/epoch-N`: written into a hidden temporary folder and renamed
    into place, so an `epoch-*` folder is always complete; the older ones are removed after the rename."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".epoch-"))
    optimizer_state = optimizer.state_dict()
    tensors = {f"optimizer.{index}.{name}": value.clone() for index, state in optimizer_state["state"].items()
               for name, value in state.items()}  # fmt: skip
    tensors["torch_rng_state"] = torch.get_rng_state()
    # clone(): the tied item embeddings appear twice in a state dict, and safetensors refuses shared storage.
    save_file({k: v.detach().clone() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    save_file({k: v.clone() for k, v in best_state.items()}, tmp / "best_model.safetensors")
    save_file(tensors, tmp / "training_state.safetensors")
    state = {**progress, "optimizer_param_groups": optimizer_state["param_groups"],
             "collator_rng_state": collate.rng.getstate() if hasattr(collate, "rng") else None}  # fmt: skip
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    for path in [tmp, *tmp.iterdir()]:
        default_mode(path)  # mkdtemp's (and safetensors' own temporary files') owner-only mode
    target = folder / f"epoch-{progress['epoch']}"
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    for old in [*folder.glob("epoch-*"), *folder.glob(".epoch-*")]:
        if old != target:
            shutil.rmtree(old)
    return target


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete `epoch-N` folder in `folder`, or None."""
    saved = [(int(path.name[6:]), path) for path in folder.glob("epoch-*")
             if path.name[6:].isdigit() and (path / "state.json").is_file()]  # fmt: skip
    return max(saved)[1] if saved else None


def load_checkpoint(path: Path, model, optimizer, collate, flags: dict) -> tuple[dict, dict]:
    """Restore what `save_checkpoint` wrote into `model`, `optimizer`, the collator's and torch's random generators;
    returns (progress, the best epoch's state dict). Refuses a checkpoint of another recipe or data file."""
    state = json.loads((path / "state.json").read_text())
    saved = {**FLAGS_BEFORE_THEY_EXISTED, **state["flags"]}
    changed = [f"{name} (saved {saved.get(name)!r}, now {value!r})" for name, value in flags.items()
               if saved.get(name) != value]  # fmt: skip
    if changed:
        fail(f"{path} was trained with other settings: {', '.join(changed)}. Resume with the saved settings, "
             "or start afresh in another --checkpoint_dir.")  # fmt: skip
    model.load_state_dict(load_file(path / "model.safetensors"))
    tensors = load_file(path / "training_state.safetensors")
    optimizer_state = {"state": {}, "param_groups": state["optimizer_param_groups"]}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            optimizer_state["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(optimizer_state)
    torch.set_rng_state(tensors["torch_rng_state"])
    if state["collator_rng_state"] is not None:
        version, internal, gauss = state["collator_rng_state"]
        collate.rng.setstate((version, tuple(internal), gauss))
    return state, load_file(path / "best_model.safetensors")


def train(args, split, candidates, flags: dict):
    """Train with validation each epoch; returns (best model, time to best epoch, total time, sequences/s)."""
    torch.manual_seed(args.seed)
    model = build_model(args, split)
    config = model.config
    train_sequences = split.train_sequences()
    if args.model == "sasrec":
        dataset = CausalItemDataset(train_sequences, config.max_position_embeddings)
        collate = causal_item_collator
    else:
        dataset = MaskedItemDataset(train_sequences, config.max_position_embeddings)
        collate = MaskedItemCollator(config.mask_token_id, config.max_position_embeddings, config.mask_probability,
                                     seed=args.seed, pad_to_longest=True)  # fmt: skip
    # With --group_by_length, batches of similar lengths (Trainer's group_by_length sampler): the collators cut the
    # padding that every row of a batch shares.
    sampler = LengthGroupedSampler(args.batch_size, lengths=dataset.lengths) if args.group_by_length else None
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=sampler is None,
                                         sampler=sampler, collate_fn=collate)  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, args.adam_beta2))
    progress = {"epoch": 0, "best": -1.0, "best_epoch": 0, "best_time": 0.0, "bad": 0, "sequences": 0,
                "train_seconds": 0.0, "elapsed": 0.0, "log": [], "flags": flags}  # fmt: skip
    best_state = None
    if args.resume:
        checkpoint = latest_checkpoint(args.checkpoint_dir)
        if checkpoint is None:
            fail(f"--resume: no saved epoch in {args.checkpoint_dir}. Drop --resume to start afresh.")
        progress, best_state = load_checkpoint(checkpoint, model, optimizer, collate, flags)
        print(f"resumed from {checkpoint}: epoch {progress['epoch']}, best validation NDCG@10 {progress['best']:.4f} "
              f"at epoch {progress['best_epoch']}; the epochs so far:", flush=True)  # fmt: skip
        print("\n".join(progress["log"]), flush=True)
    started = time.perf_counter() - progress["elapsed"]

    def stop() -> bool:
        out_of_time = args.time_budget and progress["elapsed"] > args.time_budget
        return progress["epoch"] >= args.epochs or progress["bad"] >= args.patience or bool(out_of_time)

    while not stop():
        epoch = progress["epoch"] + 1
        model.train()
        epoch_start = time.perf_counter()
        losses = []
        for batch in loader:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            progress["sequences"] += batch["input_ids"].shape[0]
        progress["train_seconds"] += time.perf_counter() - epoch_start
        report = evaluate_recommender(model, split, "valid", protocols=[args.validation_protocol],
                                      candidates=candidates["valid"], seed=args.seed)  # fmt: skip
        value = report.metrics[args.validation_protocol]["NDCG@10"]
        elapsed = time.perf_counter() - started
        line = (f"epoch {epoch}: loss {np.mean(losses):.4f}, valid {args.validation_protocol} NDCG@10 {value:.4f} "
                f"HR@10 {report.metrics[args.validation_protocol]['HR@10']:.4f}, {elapsed:.0f} s")  # fmt: skip
        print(line, flush=True)
        progress.update(epoch=epoch, elapsed=elapsed, log=[*progress["log"], line])
        if value > progress["best"]:
            best_state = copy.deepcopy(model.state_dict())
            progress.update(best=value, best_epoch=epoch, best_time=elapsed, bad=0)
        else:
            progress["bad"] += 1
            for group in optimizer.param_groups:  # saved with the optimizer's state, so --resume keeps it
                group["lr"] *= args.lr_decay
        if args.checkpoint_dir is not None:
            save_checkpoint(args.checkpoint_dir, model, best_state, optimizer, collate, progress)
    model.load_state_dict(best_state)
    rate = progress["sequences"] / max(progress["train_seconds"], 1e-9)
    return model.eval(), progress["best_time"], time.perf_counter() - started, rate


def _anchor_command(args, name: str, epochs: int) -> list[str]:
    anchor = shared_dir("anchors") / "SASRec.pytorch" / "python"
    return [sys.executable, str(anchor / "main.py"), "--dataset", name, "--train_dir", "bench", "--device", "cpu",
            "--maxlen", str(args.max_length), "--num_epochs", str(epochs),
            "--dropout_rate", "0.5" if args.dropout is None else str(args.dropout),
            "--hidden_units", str(args.hidden_size or 50)]  # fmt: skip


def _run_anchor_once(args, command: list[str], workdir: Path, timeout: float, log_name: str) -> tuple[float, float]:
    """Run SASRec.pytorch until it exits (or `timeout`); returns (wall seconds, seconds until its epoch 2 began)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    started, second_epoch = time.perf_counter(), float("nan")
    with open(workdir / log_name, "w") as log:
        process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)  # fmt: skip
        while process.poll() is None:
            elapsed = time.perf_counter() - started
            if elapsed > timeout:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait()
                break
            if math.isnan(second_epoch) and "loss in epoch 2 " in (workdir / log_name).read_text():
                second_epoch = elapsed
            time.sleep(0.5)
    return time.perf_counter() - started, second_epoch


def run_anchor(args, data_path: Path, seconds: float, workdir: Path) -> tuple[Path | None, int, float]:
    """SASRec.pytorch for about `seconds` of wall time: (its checkpoint or None, epochs, its wall time).

    It saves a checkpoint only every 20 epochs (when its sampled metrics improve) and after its last epoch, so a run
    stopped at a time limit may have nothing to score. A calibration run of 2 epochs measures its start-up and epoch
    time first; the real run then gets `--num_epochs` for the rest of the time and saves after its last epoch.
    """
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    name = data_path.stem
    link = workdir / "data" / f"{name}.txt"
    if not link.exists():
        link.symlink_to(data_path)
    calibration, second_epoch = _run_anchor_once(
        args, _anchor_command(args, name, 2), workdir, 900, "anchor_calibration.log"
    )
    epoch_seconds = calibration - second_epoch  # its second epoch and the save
    start_up = max(second_epoch - epoch_seconds, 0.0)
    epochs = 0 if math.isnan(epoch_seconds) else int((seconds - start_up) // epoch_seconds)
    print(f"SASRec.pytorch calibration: start-up {start_up:.1f} s, {epoch_seconds:.1f} s per epoch -> "
          f"{epochs} epochs in {seconds:.0f} s", flush=True)  # fmt: skip
    if epochs < 1:
        return None, 0, 0.0
    command = _anchor_command(args, name, epochs)
    print(f"SASRec.pytorch: {' '.join(command)}", flush=True)
    for old in (workdir / f"{name}_bench").glob("*.pth"):
        old.unlink()
    # Its evaluation every 20 epochs (10,000 sampled users) is part of its wall time; allow for it before giving up.
    wall, _ = _run_anchor_once(args, command, workdir, 1.5 * seconds + 60, "anchor.log")
    checkpoints = sorted((workdir / f"{name}_bench").glob(f"*epoch={epochs}.*.pth"))
    return (checkpoints[-1] if checkpoints else None), epochs, wall


def anchor_scorer(args, checkpoint: Path, split):
    """Our evaluator's scorer over SASRec.pytorch's model (its own class, imported from the anchors folder)."""
    sys.path.insert(0, str(shared_dir("anchors") / "SASRec.pytorch" / "python"))
    from model import SASRec  # noqa: PLC0415  (SASRec.pytorch's class, run from its folder)

    options = argparse.Namespace(device="cpu", hidden_units=args.hidden_size or 50, num_blocks=2, num_heads=1,
                                 maxlen=args.max_length, dropout_rate=0.5 if args.dropout is None else args.dropout,
                                 norm_first=False)  # fmt: skip
    model = SASRec(len(split.users), split.num_items, options)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    model.eval()

    @torch.no_grad()
    def score(histories):
        parts = []
        for start in range(0, len(histories), 512):
            seqs = left_pad(histories[start : start + 512], args.max_length).numpy()
            features = model.log2feats(seqs)[:, -1]  # (users, hidden)
            parts.append(features @ model.item_emb.weight.T)  # (users, num_items + 1)
        return torch.cat(parts)

    return score


def popularity_reference(split, seed: int) -> str:
    """The most-popular ranker (training interactions only) on the validation and the test items, full ranking: how
    much of the drop from validation to test is the data's (later items follow the training counts less) rather
    than the model's."""
    counts = torch.zeros(split.num_items + 1)
    for sequence in split.train_sequences():
        counts.index_add_(0, torch.tensor(sequence), torch.ones(len(sequence)))
    # Noise below 1 orders equally popular items at random instead of tying them with the held-out item.
    scores = counts + 0.5 * torch.rand(split.num_items + 1, generator=torch.Generator().manual_seed(seed))
    metrics = {stage: evaluate_scores(lambda histories: scores.repeat(len(histories), 1), split, stage,
                                      protocols=("full",)).metrics["full"] for stage in ("valid", "test")}  # fmt: skip
    valid, test = metrics["valid"], metrics["test"]
    return (f"most-popular ranker (training counts), full ranking, NDCG@10 / HR@10: validation {valid['NDCG@10']:.4f} / "
            f"{valid['HR@10']:.4f}, test {test['NDCG@10']:.4f} / {test['HR@10']:.4f} (test / validation: "
            f"{test['NDCG@10'] / max(valid['NDCG@10'], 1e-12):.2f} / {test['HR@10'] / max(valid['HR@10'], 1e-12):.2f})")  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data_path = Path(args.data) if Path(args.data).exists() else shared_dir("data") / "seqrec" / args.data
    interactions = read_interactions(data_path)
    if args.quick:
        interactions.users, interactions.sequences = interactions.users[:2000], interactions.sequences[:2000]
        args.epochs, args.patience = 2, 2
    split = leave_one_out(interactions)
    print(f"{data_path.name}: {len(split.users)} users, {split.num_items} items, {interactions.num_interactions} "
          f"interactions, sha256 {interactions.sha256}; {args.model}, loss {args.loss}, bf16 {args.bf16}, "
          f"{args.threads} thread(s)", flush=True)  # fmt: skip
    if args.popularity_only:
        print(popularity_reference(split, args.seed))
        return 0
    saved = latest_checkpoint(args.checkpoint_dir) if args.checkpoint_dir is not None else None
    if saved is not None and not args.resume:
        fail(f"{args.checkpoint_dir} already holds a saved epoch ({saved.name}). "
             "Add --resume to continue it, or name another --checkpoint_dir.")  # fmt: skip
    candidates = {stage: {p: sample_candidates(split, stage, p, seed=args.seed) for p in PROTOCOLS if p != "full"}
                  for stage in ("valid", "test")}  # fmt: skip
    flags = {"data_sha256": interactions.sha256, **{name: getattr(args, name) for name in RESUME_FLAGS}}
    model, best_time, total, rate = train(args, split, candidates, flags)
    report = evaluate_recommender(model, split, "test", candidates=candidates["test"], seed=args.seed)
    print(f"\n{args.model} ({args.loss}): time to best validation epoch {best_time:.0f} s, wall time {total:.0f} s, "
          f"{rate:.0f} training sequences/s")  # fmt: skip
    print(report)
    print(popularity_reference(split, args.seed))
    for (file, model_name, protocol), target in TARGETS.items():
        if file == data_path.name and model_name == args.model and not args.quick:
            reached = all(report.metrics[protocol][k] >= v for k, v in target.items())
            print(f"target {protocol} {target}: {'reached' if reached else 'NOT reached'}")
    if args.anchor:
        if split.item_map.item_ids != list(range(1, split.num_items + 1)):
            raise SystemExit("--anchor needs items numbered 1..N, as SASRec.pytorch reads them")
        with tempfile.TemporaryDirectory() as workdir:
            checkpoint, anchor_epochs, anchor_wall = run_anchor(args, data_path, best_time, Path(workdir))
            if anchor_epochs == 0:
                print(
                    f"SASRec.pytorch cannot train one epoch in {best_time:.0f} s: at equal time it has nothing to score."
                )
            elif checkpoint is None:
                print(f"SASRec.pytorch saved no checkpoint after its epoch {anchor_epochs} within "
                      f"{1.5 * best_time + 60:.0f} s: at equal time it has nothing to score.")  # fmt: skip
            else:
                theirs = evaluate_scores(anchor_scorer(args, checkpoint, split), split, "test",
                                         protocols=["sampled-uniform"], candidates=candidates["test"])  # fmt: skip
                ours = report.metrics["sampled-uniform"]
                theirs_metrics = theirs.metrics["sampled-uniform"]
                print("\nAt equal wall time, test, sampled-uniform, every user, the same candidates, our evaluator:")
                print(f"  ours            NDCG@10 {ours['NDCG@10']:.4f}  HR@10 {ours['HR@10']:.4f}  "
                      f"(best validation epoch at {best_time:.0f} s)")  # fmt: skip
                print(f"  SASRec.pytorch  NDCG@10 {theirs_metrics['NDCG@10']:.4f}  HR@10 {theirs_metrics['HR@10']:.4f}  "
                      f"({anchor_epochs} epochs in {anchor_wall:.0f} s, its last epoch scored)")  # fmt: skip
                ahead = ours["NDCG@10"] > theirs_metrics["NDCG@10"] and ours["HR@10"] > theirs_metrics["HR@10"]
                print(f"ours ahead at equal time: {'yes' if ahead else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
