"""The model card of a sequential recommender (SASRec or BERT4Rec): every number with the protocol behind it (sampled
or full, how many negatives drawn how, how many users, seen items filtered or not) and the sha256 of the data file,
in the text and in the `model-index`, so that nobody mistakes a full-ranking 0.03 for a sampled 0.5.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .._io import atomic_write_text

__all__ = ["recommender_card", "write_recommender_card"]

PAPERS = {
    "bigmodel_sasrec": ("SASRec", "Self-Attentive Sequential Recommendation (Kang & McAuley, ICDM 2018)", "GPT"),
    "bigmodel_bert4rec": ("BERT4Rec", "BERT4Rec (Sun et al., CIKM 2019)", "BERT"),
}


def recommender_card(config: dict, report, data: dict, repo_id: str | None = None) -> ModelCard:
    """The card of a saved recommender. `report` is the test-stage `RecommendationReport`; `data` holds the data
    file's `source`, `sha256`, `users` and `interactions`."""
    name, paper, backbone = PAPERS[config["model_type"]]
    dataset = Path(str(data.get("source", "data"))).name
    results = []
    for protocol, metrics in report.metrics.items():
        for metric, value in metrics.items():
            results.append(
                EvalResult(
                    task_type="sequential-recommendation",
                    task_name=f"Next-item recommendation, leave-one-out test, {protocol}",
                    dataset_type=dataset,
                    dataset_name=f"{dataset} (sha256 {data.get('sha256')})",
                    metric_type=metric.split("@")[0].lower(),
                    metric_name=f"{metric} ({protocol})",
                    metric_value=round(value, 4),
                    metric_config=report.protocol_line(protocol),
                )
            )
    card_data = ModelCardData(
        model_name=repo_id or name.lower(),
        library_name="transformers",
        tags=["sequential-recommendation", name.lower(), "hf_bigmodel"],
        eval_results=results,
    )
    table = ["| metric | " + " | ".join(report.metrics) + " |", "|---|" + "---|" * len(report.metrics)]
    names = list(next(iter(report.metrics.values())))
    for metric in names:
        table.append(f"| {metric} | " + " | ".join(f"{report.metrics[p][metric]:.4f}" for p in report.metrics) + " |")
    auto = "AutoModelForCausalLM" if name == "SASRec" else "AutoModelForMaskedLM"
    repo = repo_id or "path/to/this/folder"
    text = (
        f"""---
{card_data.to_yaml()}
---

# {repo_id or name}

A {name}-style sequential recommender ({paper}) built on the {backbone} of hf_bigmodel: it reads a user's items in
time order and scores every item of the catalogue ({config["num_items"]} items) as the next one. The map from raw
item ids to model ids is in `config.json` (`item_ids`), so the model answers in raw ids.

## Usage

```python
from transformers import {auto}, pipeline

model = {auto}.from_pretrained("{repo}", trust_remote_code=True)
model.recommend([[raw_item_1, raw_item_2]], k=10)        # [[{{"item": ..., "score": ...}}, ...]]
recommend = pipeline(model="{repo}", trust_remote_code=True)
recommend([raw_item_1, raw_item_2], k=10)
```

## Evaluation

Data: `{dataset}`, sha256 `{data.get("sha256")}`, {data.get("users")} users, {data.get("interactions")}
interactions. Split: leave-one-out (each user's last item is the test item, the one before it validates, the rest
trains). Every user with at least 3 interactions is evaluated, not a sample.

Protocols:

"""
        + "\n".join(f"- {report.protocol_line(p)}" for p in report.metrics)
        + """

Sampled and full-ranking numbers are not comparable: the same model scores several times higher against 100
sampled negatives than against the whole catalogue.

"""
        + "\n".join(table)
        + "\n"
    )
    return ModelCard(text)


def write_recommender_card(
    output_dir: str | os.PathLike, config: dict, report, data: dict, repo_id: str | None = None
) -> Path:
    path = Path(output_dir) / "README.md"
    atomic_write_text(path, str(recommender_card(config, report, data, repo_id)))
    return path
