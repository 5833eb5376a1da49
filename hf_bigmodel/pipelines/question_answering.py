"""Extractive question answering: feature preparation, span post-processing and a `question-answering` pipeline.

transformers 5 removed its question-answering pipeline; this file brings one back for any
`AutoModelForQuestionAnswering` model (start/end logits) with a fast tokenizer. It is standalone (transformers,
torch, numpy and the standard library only) because it is also copied next to fine-tuned weights, where
`pipeline("question-answering", model=repo, trust_remote_code=True)` loads it without hf_bigmodel.

    from transformers import pipeline
    qa = pipeline("question-answering", model="runs/squad", trust_remote_code=True)
    qa(question="Who wrote it?", context="It was written by Ada in 1843.")
    # {'score': 0.93, 'start': 18, 'end': 21, 'answer': 'Ada'}

Long contexts are cut into overlapping windows (`max_seq_len` tokens, `doc_stride` tokens of overlap, question
kept whole); the best span over all windows wins. A span is scored by p(start) * p(end) (softmax over each window's
context tokens), must lie inside the context, end at or after its start and be at most `max_answer_len` tokens
long. Character positions come from the tokenizer's offset mapping, so `context[start:end] == answer` exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import Pipeline

__all__ = ["QuestionAnsweringPipeline", "best_span", "prepare_qa_features", "qa_predictions"]


def prepare_qa_features(
    tokenizer, questions: list[str], contexts: list[str], max_length: int = 384, stride: int = 128, padding=False
):
    """Tokenize (question, context) pairs into windows over the context.

    Returns the tokenizer's `BatchEncoding` with `overflow_to_sample_mapping` (window -> example) and
    `offset_mapping` where every position outside the context is `None`, so spans can only land in the context."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("Question answering needs a fast tokenizer (offset mappings); load one with use_fast=True.")
    pad_right = tokenizer.padding_side == "right"
    longest = max((len(q) for q in tokenizer(list(questions), add_special_tokens=False)["input_ids"]), default=0)
    room = max_length - longest - tokenizer.num_special_tokens_to_add(pair=True)
    if stride >= room:
        raise ValueError(
            f"max_length={max_length} leaves {room} context tokens per window next to the longest question "
            f"({longest} tokens), not more than the overlap stride={stride}: use a larger max_length (max_seq_len / "
            f"--max_seq_length) or a smaller stride (doc_stride / --doc_stride)."
        )
    encoded = tokenizer(
        [q.lstrip() for q in questions] if pad_right else contexts,
        contexts if pad_right else [q.lstrip() for q in questions],
        truncation="only_second" if pad_right else "only_first",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=padding,
    )
    context_index = 1 if pad_right else 0
    for i in range(len(encoded["input_ids"])):
        sequence_ids = encoded.sequence_ids(i)
        encoded["offset_mapping"][i] = [
            tuple(offset) if sequence_ids[k] == context_index else None
            for k, offset in enumerate(encoded["offset_mapping"][i])
        ]
    return encoded


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def best_span(
    start_logits: list[np.ndarray],
    end_logits: list[np.ndarray],
    offsets: list[list[tuple[int, int] | None]],
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, Any] | None:
    """The best answer span over the windows of one example: {"score", "start", "end"} (character positions in the
    context), or None if no window has a valid span. `offsets[w][k]` is None outside the context."""
    best = None
    for starts, ends, window in zip(start_logits, end_logits, offsets):
        starts, ends = np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)
        inside = np.array([o is not None for o in window[: len(starts)]] + [False] * (len(starts) - len(window)))
        if not inside.any():
            continue
        log_start = np.full(len(starts), -np.inf)
        log_end = np.full(len(ends), -np.inf)
        log_start[inside] = _log_softmax(starts[inside])
        log_end[inside] = _log_softmax(ends[inside])
        top_starts = np.argsort(log_start)[::-1][:n_best]
        top_ends = np.argsort(log_end)[::-1][:n_best]
        for s in top_starts:
            if not inside[s]:
                continue
            for e in top_ends:
                if not inside[e] or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(np.exp(log_start[s] + log_end[e]))
                if best is None or score > best["score"]:
                    best = {"score": score, "start": int(window[s][0]), "end": int(window[e][1])}
    return best


def qa_predictions(
    contexts: list[str],
    example_ids: list[int],
    offsets: list[list],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> list[str]:
    """Answer text per example from the logits of its windows (features), via `best_span`: the batch form of the
    pipeline's post-processing, used to evaluate a fine-tuned model on a whole validation set."""
    windows: dict[int, list[int]] = {}
    for feature, example in enumerate(example_ids):
        windows.setdefault(example, []).append(feature)
    answers = []
    for example, context in enumerate(contexts):
        features = windows.get(example, [])
        span = best_span(
            [start_logits[f] for f in features],
            [end_logits[f] for f in features],
            [offsets[f] for f in features],
            n_best=n_best,
            max_answer_length=max_answer_length,
        )
        answers.append("" if span is None else context[span["start"] : span["end"]])
    return answers


class QuestionAnsweringPipeline(Pipeline):
    """`pipeline("question-answering")`: `qa(question=..., context=...)` or `qa({"question": ..., "context": ...})`
    (or lists of either) -> {"score", "start", "end", "answer"} (a list for several inputs). Options: `top_k`
    is not supported (one answer); `max_answer_len` (30), `max_seq_len` (384, capped by the model),
    `doc_stride` (128), `n_best` (20)."""

    def _sanitize_parameters(self, max_answer_len=None, max_seq_len=None, doc_stride=None, n_best=None, **kwargs):
        preprocess, postprocess = {}, {}
        if max_seq_len is not None:
            preprocess["max_seq_len"] = max_seq_len
        if doc_stride is not None:
            preprocess["doc_stride"] = doc_stride
        if max_answer_len is not None:
            postprocess["max_answer_len"] = max_answer_len
        if n_best is not None:
            postprocess["n_best"] = n_best
        return preprocess, {}, postprocess

    def __call__(self, *args, question=None, context=None, **kwargs):
        if question is not None or context is not None:
            if question is None or context is None:
                raise ValueError("Pass both question= and context=.")
            if isinstance(question, str) != isinstance(context, str):
                raise ValueError("question and context must both be strings or both be lists.")
            if isinstance(question, str):
                args = ({"question": question, "context": context},)
            else:
                if len(question) != len(context):
                    raise ValueError(f"Got {len(question)} questions but {len(context)} contexts.")
                args = ([{"question": q, "context": c} for q, c in zip(question, context)],)
        return super().__call__(*args, **kwargs)

    def preprocess(self, inputs, max_seq_len: int = 384, doc_stride: int = 128):
        if not isinstance(inputs, dict) or "question" not in inputs or "context" not in inputs:
            raise ValueError('Each input must be a dict with "question" and "context" (or pass question=, context=).')
        question, context = inputs["question"], inputs["context"]
        if not isinstance(question, str) or not question.strip() or not isinstance(context, str) or not context:
            raise ValueError("question and context must be non-empty strings.")
        limit = getattr(self.model.config, "max_position_embeddings", max_seq_len)
        max_seq_len = min(max_seq_len, limit)
        doc_stride = min(doc_stride, max_seq_len // 2)
        features = prepare_qa_features(self.tokenizer, [question], [context], max_seq_len, doc_stride, padding=True)
        tensors = {name: torch.tensor(features[name]) for name in self.tokenizer.model_input_names if name in features}
        return {"tensors": tensors, "offsets": features["offset_mapping"], "context": context}

    def _forward(self, model_inputs):
        outputs = self.model(**{k: v.to(self.device) for k, v in model_inputs["tensors"].items()})
        return {
            "start_logits": outputs["start_logits"].float().cpu().numpy(),
            "end_logits": outputs["end_logits"].float().cpu().numpy(),
            "offsets": model_inputs["offsets"],
            "context": model_inputs["context"],
        }

    def postprocess(self, model_outputs, max_answer_len: int = 30, n_best: int = 20):
        span = best_span(
            list(model_outputs["start_logits"]),
            list(model_outputs["end_logits"]),
            model_outputs["offsets"],
            n_best=n_best,
            max_answer_length=max_answer_len,
        )
        if span is None:
            return {"score": 0.0, "start": 0, "end": 0, "answer": ""}
        return {**span, "answer": model_outputs["context"][span["start"] : span["end"]]}
