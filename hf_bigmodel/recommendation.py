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
    "ModelScorer",
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


class ModelScorer:
    """A scorer from a zoo recommender, in eval mode and without gradients, `batch_size` histories at a time:
    `scorer(histories)` gives every id's score (its `next_item_logits`), `scorer.candidates(histories, ids)` only
    the scores of `ids` (its `candidate_scores`), which is all a sampled protocol needs."""

    def __init__(self, model: torch.nn.Module, batch_size: int = 512):
        self.model = model
        self.batch_size = batch_size

    @torch.no_grad()
    def _batches(self, histories: Sequence[Sequence[int]], score, ids: torch.Tensor | None = None) -> torch.Tensor:
        model = self.model
        was_training = model.training
        model.eval()
        try:
            parts = []
            for start in range(0, len(histories), self.batch_size):
                stop = start + self.batch_size
                inputs = model.history_tensors(histories[start:stop])
                extra = () if ids is None else (ids[start:stop].to(inputs[0].device),)
                parts.append(score(*inputs, *extra).float().cpu())
            return parts[0] if len(parts) == 1 else torch.cat(parts)
        finally:
            model.train(was_training)

    def __call__(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """(users, vocab) scores of every id."""
        return self._batches(histories, self.model.next_item_logits)

    def candidates(self, histories: Sequence[Sequence[int]], ids: torch.Tensor) -> torch.Tensor:
        """(users, c) scores of each user's candidates `ids` (users, c)."""
        return self._batches(histories, self.model.candidate_scores, ids)


def model_scorer(model: torch.nn.Module, batch_size: int = 512) -> ModelScorer:
    """A scorer from a zoo recommender (its `next_item_logits`), in eval mode and without gradients, in batches."""
    return ModelScorer(model, batch_size)


def evaluate_scores(
    scorer: Scorer,
    split: LeaveOneOut,
    stage: str = "test",
    protocols: Sequence[str] = PROTOCOLS,
    candidates: dict[str, np.ndarray] | None = None,
    ks: Sequence[int] = KS,
    num_negatives: int = NUM_NEGATIVES,
    seed: int = 0,
    chunk: int = 512,
) -> RecommendationReport:
    """Evaluate any scorer on every evaluated user of `split` at `stage` ("valid" or "test"). `candidates` (per
    sampled protocol, from `sample_candidates`) lets several models share the same negatives. A scorer with a
    `candidates(histories, ids)` method (`model_scorer`'s) scores only the sampled candidates when the full
    protocol is not asked for."""
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
    sampled = [p for p in protocols if p != "full"]
    only_candidates = "full" not in protocols and callable(getattr(scorer, "candidates", None))
    ranks = {p: np.empty(len(histories), dtype=np.int64) for p in protocols}
    ties: dict[str, int] = dict.fromkeys(protocols, 0)
    # Users in order of history length, so that a chunk is padded to about its own length (most are short); the
    # ranks go back to each user's row.
    order = np.argsort([len(h) for h in histories], kind="stable")
    for start in range(0, len(order), chunk):
        rows = order[start : start + chunk]
        chunk_histories = [histories[i] for i in rows]
        zeros = torch.zeros(len(rows), dtype=torch.long)  # the held-out item is column 0 of the candidates
        if only_candidates:
            ids = torch.cat([torch.as_tensor(candidates[p][rows]) for p in sampled], dim=1)
            scores = scorer.candidates(chunk_histories, ids).float()  # (users, candidates of every protocol)
            for protocol, part in zip(sampled, scores.split([candidates[p].shape[1] for p in sampled], dim=1)):
                ranks[protocol][rows] = ranks_from_scores(part, zeros)
                ties[protocol] += int(_ties(part, zeros).sum())
            continue
        scores = scorer(chunk_histories)[:, : split.num_items + 1].float()  # (users, num_items + 1)
        scores[:, 0] = float("-inf")  # padding is never a candidate
        for protocol in sampled:
            ranked = scores.gather(1, torch.as_tensor(candidates[protocol][rows]))
            ranks[protocol][rows] = ranks_from_scores(ranked, zeros)
            ties[protocol] += int(_ties(ranked, zeros).sum())
        if "full" in protocols:
            # The user's other history items leave the ranking: one scatter for the chunk, after the sampled
            # protocols have read the scores.
            lengths = [len(h) for h in chunk_histories]
            row_of = torch.repeat_interleave(torch.arange(len(rows)), torch.tensor(lengths))
            items = torch.tensor([item for h in chunk_histories for item in h], dtype=torch.long)
            chunk_targets = torch.as_tensor(targets[rows])
            other = items != chunk_targets[row_of]
            scores[row_of[other], items[other]] = float("-inf")
            ranks["full"][rows] = ranks_from_scores(scores, chunk_targets)
            ties["full"] += int(_ties(scores, chunk_targets).sum())
    report = RecommendationReport(stage, len(histories), split.skipped, split.num_items, ties=ties,
                                  num_negatives=num_negatives, seed=seed)  # fmt: skip
    for protocol in protocols:
        report.metrics[protocol] = ranking_metrics(ranks[protocol], tuple(ks))
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
