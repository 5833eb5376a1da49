"""The `sequential-recommendation` pipeline: a history of raw item ids in, the top-k next items with scores out.

    import hf_bigmodel                                   # registers the task
    from transformers import pipeline
    recommend = pipeline("sequential-recommendation", model="runs/sasrec-video")
    recommend([6393, 13504, 14087], k=5)                 # [{"item": 1234, "score": 7.1}, ...], best first
    recommend([[6393], [13504, 14087]], k=5)             # one list per history

It calls the model's own `encode_histories`, `next_item_logits` and `top_items` (the SASRec and BERT4Rec recommenders
of hf_bigmodel), so the pipeline and `model.recommend` give the same answer. Standalone on purpose: it is copied next
to the weights (`add_sequential_recommendation_pipeline`) for `pipeline(model=repo, trust_remote_code=True)`.
"""

from typing import Any

from transformers import Pipeline


class SequentialRecommendationPipeline(Pipeline):
    """`pipe(history, k=10, exclude_seen=True, unknown="ignore")`: a history is a list of raw item ids, oldest
    first; a list of histories gives a list of answers."""

    _load_tokenizer = False
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False

    def _sanitize_parameters(self, k: int | None = None, exclude_seen: bool | None = None,
                             unknown: str | None = None, **kwargs: Any) -> tuple[dict, dict, dict]:  # fmt: skip
        preprocess, postprocess = {}, {}
        if unknown is not None:
            preprocess["unknown"] = unknown
        if k is not None:
            postprocess["k"] = k
        if exclude_seen is not None:
            postprocess["exclude_seen"] = exclude_seen
        return preprocess, {}, postprocess

    def __call__(self, histories: list, **kwargs: Any) -> list:
        single = not histories or not isinstance(histories[0], (list, tuple))
        if "k" in kwargs:
            self.model._check_k(kwargs["k"])  # before any work, as model.recommend does
        result = super().__call__([histories] if single else list(histories), **kwargs)
        return result[0] if single else result

    def preprocess(self, history: list, unknown: str = "ignore") -> dict:
        encoded = self.model.encode_histories([history], unknown=unknown)
        input_ids, attention_mask = self.model.history_tensors(encoded)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "history": encoded}

    def _forward(self, inputs: dict) -> dict:
        logits = self.model.next_item_logits(inputs["input_ids"], inputs["attention_mask"])
        return {"logits": logits, "history": inputs["history"]}

    def postprocess(self, outputs: dict, k: int = 10, exclude_seen: bool = True) -> list[dict[str, Any]]:
        return self.model.top_items(outputs["logits"], outputs["history"], k, exclude_seen, raw_ids=True)[0]
