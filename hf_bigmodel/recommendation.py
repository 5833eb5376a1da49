"""The one evaluator of sequential recommenders, used by `hf-bigmodel pretrain sasrec|bert4rec`, the benchmark and
Python code:

    from hf_bigmodel.data.seqrec import read_interactions, leave_one_out
    from hf_bigmodel.recommendation import evaluate_recommender
    split = leave_one_out(read_interactions("Video.txt"), item_map)
    report = evaluate_recommender(model, split, stage="test")     # every evaluated user, three protocols
    print(report)                                                 # HR/NDCG/MRR @1,5,10,20 side by side

Protocols (each named in the output):

- `sampled-uniform`: the held-out item against 100 negatives drawn uniformly from the items the user never touched
  (SASRec's protocol);
- `sampled-popularity`: 100 negatives drawn in proportion to their interaction counts, among items the user never
  touched (BERT4Rec's);
- `full`: against every item, the user's other history items filtered out (set to -inf).

Rank = the number of candidates scored strictly higher than the held-out item. A tie therefore counts in the held-out
item's favour; the report counts the users whose held-out item tied with another candidate, so a model that gives
many items one score is visible. Because the rank is a count, it does not depend on where the held-out item sits
among the candidates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .data.common import DataError
from .data.seqrec import LeaveOneOut
from .metrics import ranking_metrics

logger = logging.getLogger("hf_bigmodel.recommendation")

__all__ = [
    "KS",
    "PROTOCOLS",
    "RecommendationReport",
    "evaluate_recommender",
    "evaluate_scores",
    "model_scorer",
    "ranks_from_scores",
    "sample_candidates",
]

KS = (1, 5, 10, 20)
PROTOCOLS = ("sampled-uniform", "sampled-popularity", "full")
NUM_NEGATIVES = 100

# A scorer: (histories as model ids, one list per user) -> (users, num_items + 1 or more) scores of every id.
Scorer = Callable[[Sequence[Sequence[int]]], torch.Tensor]


def ranks_from_scores(scores: np.ndarray | torch.Tensor, target_column: np.ndarray | torch.Tensor) -> np.ndarray:
    """0-based rank of each row's target: the number of entries of the row scored strictly higher than it.

    scores: (users, candidates); target_column: (users,) the column of each row's held-out item."""
    scores = torch.as_tensor(scores)
    target_column = torch.as_tensor(target_column, dtype=torch.long, device=scores.device)
    target = scores.gather(1, target_column[:, None])
    return (scores > target).sum(1).cpu().numpy()


def _ties(scores: torch.Tensor, target_column: torch.Tensor) -> np.ndarray:
    target = scores.gather(1, target_column[:, None])
    return ((scores == target).sum(1) > 1).cpu().numpy()


def sample_candidates(
    split: LeaveOneOut, stage: str, protocol: str, num_negatives: int = NUM_NEGATIVES, seed: int = 0
) -> np.ndarray:
    """(evaluated users, 1 + num_negatives) model ids: the held-out item in column 0, then negatives the user never
    touched, drawn without replacement uniformly (`sampled-uniform`) or by popularity (`sampled-popularity`).
    The same seed gives the same candidates, so two models can be scored on the same ones."""
    if protocol not in ("sampled-uniform", "sampled-popularity"):
        raise ValueError(f"Candidates are sampled for 'sampled-uniform' or 'sampled-popularity', not {protocol!r}.")
    rng = np.random.default_rng(seed)
    targets = split.targets(stage)
    num_items = split.num_items
    if protocol == "sampled-popularity":
        cumulative = np.cumsum(split.popularity()[1:].astype(np.float64))
        cumulative /= cumulative[-1]
    out = np.empty((len(targets), 1 + num_negatives), dtype=np.int64)
    out[:, 0] = targets
    for row, seen in enumerate(split.seen()):
        touched = set(seen)
        if num_items - len(touched) < num_negatives:
            raise DataError(
                f"User {row} touched {len(touched)} of {num_items} items, leaving fewer than {num_negatives} "
                f"negatives: use the full protocol, or fewer negatives (num_negatives=, --num_negatives)."
            )
        chosen: list[int] = []
        picked = set()
        while len(chosen) < num_negatives:
            draw = 2 * (num_negatives - len(chosen)) + 8
            if protocol == "sampled-uniform":
                ids = rng.integers(1, num_items + 1, size=draw)
            else:
                ids = np.searchsorted(cumulative, rng.random(draw), side="right") + 1
            for item in ids.tolist():
                if item not in touched and item not in picked:
                    picked.add(item)
                    chosen.append(item)
                    if len(chosen) == num_negatives:
                        break
        out[row, 1:] = chosen
    return out


@dataclass
class RecommendationReport:
    """Metrics per protocol, and what each protocol was. `str(report)` prints them side by side."""

    stage: str
    users: int
    skipped_users: int
    num_items: int
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # protocol -> {"NDCG@10": ...}
    ties: dict[str, int] = field(default_factory=dict)  # protocol -> users whose held-out item tied
    seconds: float = 0.0
    num_negatives: int = NUM_NEGATIVES
    seed: int = 0

    def protocol_line(self, protocol: str) -> str:
        if protocol == "full":
            what = f"ranked against all {self.num_items} items, the user's other history items filtered out"
        else:
            how = "uniformly" if protocol == "sampled-uniform" else "by popularity"
            what = f"{self.num_negatives} negatives drawn {how} from items the user never touched (seed {self.seed})"
        return (
            f"{protocol}: {what}; {self.users} users ({self.skipped_users} with < 3 interactions not evaluated); "
            f"rank = number of candidates scored strictly higher (ties count for the held-out item: "
            f"{self.ties.get(protocol, 0)} users tied)"
        )

    def flat(self, prefix: str = "") -> dict[str, float]:
        """{"<prefix>full_NDCG@10": ...}: for Trainer's metrics and eval_results.json."""
        return {f"{prefix}{p}_{name}": value for p, metrics in self.metrics.items() for name, value in metrics.items()}

    def __str__(self) -> str:
        protocols = list(self.metrics)
        names = list(next(iter(self.metrics.values()))) if self.metrics else []
        width = max(len(p) for p in protocols) if protocols else 0
        lines = [f"Leave-one-out {self.stage} evaluation ({self.seconds:.1f} s)"]
        lines += [f"  {self.protocol_line(p)}" for p in protocols]
        lines.append("  " + " " * 8 + "  ".join(f"{p:>{width}}" for p in protocols))
        for name in names:
            lines.append(f"  {name:<8}" + "  ".join(f"{self.metrics[p][name]:>{width}.4f}" for p in protocols))
        return "\n".join(lines)


def model_scorer(model: torch.nn.Module, batch_size: int = 512) -> Scorer:
    """A scorer from a zoo recommender (its `next_item_logits`), in eval mode and without gradients, in batches."""

    @torch.no_grad()
    def score(histories: Sequence[Sequence[int]]) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            # Batches of similar lengths: a batch is padded to its longest history only, and most are short.
            order = sorted(range(len(histories)), key=lambda i: len(histories[i]))
            out = None
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                input_ids, attention_mask = model.history_tensors([histories[i] for i in rows])
                logits = model.next_item_logits(input_ids, attention_mask).float().cpu()
                if out is None:
                    out = torch.empty(len(histories), logits.shape[1])
                out[torch.tensor(rows)] = logits
            return out
        finally:
            model.train(was_training)

    return score


def evaluate_scores(
    scorer: Scorer,
    split: LeaveOneOut,
    stage: str = "test",
    protocols: Sequence[str] = PROTOCOLS,
    candidates: dict[str, np.ndarray] | None = None,
    ks: Sequence[int] = KS,
    num_negatives: int = NUM_NEGATIVES,
    seed: int = 0,
    chunk: int = 2048,
) -> RecommendationReport:
    """Evaluate any scorer on every evaluated user of `split` at `stage` ("valid" or "test"). `candidates` (per
    sampled protocol, from `sample_candidates`) lets several models share the same negatives."""
    for protocol in protocols:
        if protocol not in PROTOCOLS:
            raise ValueError(f"Unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}.")
    if stage not in ("valid", "test"):
        raise ValueError(f"`stage` must be 'valid' or 'test', got {stage!r}.")
    started = time.perf_counter()
    histories = split.history(stage)
    if not histories:
        raise ValueError("No user has the 3 interactions leave-one-out needs: there is nothing to evaluate.")
    targets = split.targets(stage)
    candidates = dict(candidates or {})
    for protocol in protocols:
        if protocol != "full" and protocol not in candidates:
            candidates[protocol] = sample_candidates(split, stage, protocol, num_negatives, seed)
    ranks: dict[str, list[np.ndarray]] = {p: [] for p in protocols}
    ties: dict[str, int] = dict.fromkeys(protocols, 0)
    for start in range(0, len(histories), chunk):
        stop = min(start + chunk, len(histories))
        scores = scorer(histories[start:stop])[:, : split.num_items + 1].float()  # (users, num_items + 1)
        scores[:, 0] = float("-inf")  # padding is never a candidate
        for protocol in protocols:
            if protocol == "full":
                full = scores.clone()
                for row, history in enumerate(histories[start:stop]):
                    seen = torch.tensor(history)
                    full[row, seen[seen != targets[start + row]]] = float("-inf")
                target_column = torch.as_tensor(targets[start:stop])
                ranked = full
            else:
                ids = torch.as_tensor(candidates[protocol][start:stop])
                ranked = scores.gather(1, ids)
                target_column = torch.zeros(len(ids), dtype=torch.long)
            ranks[protocol].append(ranks_from_scores(ranked, target_column))
            ties[protocol] += int(_ties(ranked, target_column).sum())
    report = RecommendationReport(stage, len(histories), split.skipped, split.num_items, ties=ties,
                                  num_negatives=num_negatives, seed=seed)  # fmt: skip
    for protocol in protocols:
        report.metrics[protocol] = ranking_metrics(np.concatenate(ranks[protocol]), tuple(ks))
    report.seconds = time.perf_counter() - started
    return report


def evaluate_recommender(
    model: torch.nn.Module,
    split: LeaveOneOut,
    stage: str = "test",
    protocols: Sequence[str] = PROTOCOLS,
    batch_size: int = 512,
    **options,
) -> RecommendationReport:
    """Evaluate a zoo recommender (SASRec or BERT4Rec) on `split`; see `evaluate_scores` for the options. The
    model's item map must be the split's."""
    config = model.config
    if config.num_items != split.num_items or (config.item_ids and list(config.item_ids) != split.item_map.item_ids):
        raise ValueError(
            f"The model's item map ({config.num_items} items) is not the data's ({split.num_items} items): read the "
            f"data with the model's map, leave_one_out(interactions, ItemMap.from_config(model.config))."
        )
    return evaluate_scores(model_scorer(model, batch_size), split, stage, protocols, **options)
