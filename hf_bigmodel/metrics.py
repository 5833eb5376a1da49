"""Evaluation metrics of every task, in one place for the trainers and for evaluation outside training.

* Classification (`finetune`, `evaluate`): `classification_metrics` (accuracy, F1), `per_class_f1`,
  `classification_report` (adds macro and per-class F1), `confusion_matrix`, `confusion_matrix_text`,
  `render_confusion_matrix` (PNG).
* Token classification (`evaluate`): `entity_spans` (BIO/IOBES chunks as seqeval's default, conlleval, mode
  reads them), `entity_metrics` (entity precision, recall and F1, micro and per type; token accuracy).
* Language modelling (`evaluate`): `count_words`, `language_model_metrics` (token, word and byte perplexity, bits
  per byte, as lm-evaluation-harness defines them).
* Extractive question answering: `normalize_answer`, `squad_scores` (SQuAD's exact match and F1 of one answer),
  `squad_metrics` (their means in %, as training and `evaluate` report them).
* Masked-LM pretraining (`pretrain bert`): `preprocess_logits_for_metrics`, `pretraining_metrics`.
* Image classification: `top_k_indices`, `accuracy_metrics` (top-1 and top-5 accuracy).
* Translation: `translation_scores` (sacreBLEU BLEU and chrF, lower-cased variants), `decode_generations`,
  `moses_lowercase_tokenize`.
* Translation and summarization: `rouge_scores` (ROUGE-1/2/L F-measure with Google's `rouge-score`, offline).

BLEU conventions (the metric names say which):

* ``bleu``: sacreBLEU on detokenized, cased text: `sacrebleu.corpus_bleu(hyps, [refs])` with its default "13a"
  tokenizer (`bleu_tokenize` changes it). ``chrf``: sacreBLEU's chrF (character 6-grams, beta 2).
* ``lowercase_bleu="sacrebleu"`` adds ``bleu_lc``: the same sacreBLEU call with ``lowercase=True``.
* ``lowercase_bleu="moses"`` adds ``bleu_lc_tok``: hypotheses and references are lower-cased, punctuation-normalized
  and tokenized with the Moses tools (`sacremoses`), then scored with `corpus_bleu(..., tokenize="none")`: the
  "lower-cased tokenized BLEU" of most Multi30k papers.
"""

from __future__ import annotations

import io
import math
import re
import string
from collections import Counter

import numpy as np

from .data import DataError

__all__ = [
    "TOP_K",
    "accuracy_metrics",
    "classification_metrics",
    "classification_report",
    "confusion_matrix",
    "confusion_matrix_text",
    "count_words",
    "entity_metrics",
    "entity_spans",
    "language_model_metrics",
    "per_class_f1",
    "ranking_metrics",
    "render_confusion_matrix",
    "require_package",
    "rouge_scores",
    "decode_generations",
    "moses_lowercase_tokenize",
    "normalize_answer",
    "preprocess_logits_for_metrics",
    "pretraining_metrics",
    "squad_metrics",
    "squad_scores",
    "top_k_indices",
    "translation_scores",
]

TOP_K = 5


# ----------------------------------------------------------------------------------------------------------------
# Classification and question answering


def require_package(module: str, pip_name: str, purpose: str):
    """Import `module`, or raise `DataError` naming what needs it and the `pip install` line that fixes it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise DataError(
            f"{purpose} needs the {pip_name} package, which is not installed: pip install {pip_name}"
        ) from err


def per_class_f1(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> list[float]:
    """F1 of each class 0..num_labels-1 (0.0 for a class that is neither predicted nor present)."""
    scores = []
    for cls in range(num_labels):
        true_pos = np.sum((predictions == cls) & (labels == cls))
        denom = np.sum(predictions == cls) + np.sum(labels == cls)
        scores.append(float(2 * true_pos / denom) if denom else 0.0)
    return scores


def classification_metrics(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy and macro F1 over the positions whose label is not -100 (binary tasks: F1 of class 1)."""
    keep = labels != -100
    predictions, labels = predictions[keep], labels[keep]
    accuracy = float((predictions == labels).mean()) if len(labels) else 0.0
    f1_scores = per_class_f1(predictions, labels, num_labels)
    f1 = f1_scores[1] if num_labels == 2 else float(np.mean(f1_scores))
    return {"accuracy": accuracy, "f1": float(f1)}


def classification_report(predictions: np.ndarray, labels: np.ndarray, label_names: list[str]) -> dict[str, float]:
    """`classification_metrics` (the same accuracy and F1 as training reports) plus ``macro_f1`` (the mean over
    every class, also for two classes) and ``f1_<name>`` for each class."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    report = classification_metrics(predictions, labels, len(label_names))
    keep = labels != -100
    scores = per_class_f1(predictions[keep], labels[keep], len(label_names))
    report["macro_f1"] = float(np.mean(scores))
    report.update({f"f1_{name}": score for name, score in zip(label_names, scores)})
    return report


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> np.ndarray:
    """(num_labels, num_labels) counts: row = true class, column = predicted class (scikit-learn's convention)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    keep = labels != -100
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (labels[keep], predictions[keep]), 1)
    return matrix


def confusion_matrix_text(matrix: np.ndarray, label_names: list[str]) -> str:
    """The confusion matrix as an aligned text table, true classes down, predicted classes across."""
    names = [str(name) for name in label_names]
    width = max(len(n) for n in [*names, str(int(matrix.max(initial=0))), "true\\pred"])
    lines = ["true\\pred".ljust(width) + "  " + "  ".join(n.rjust(width) for n in names)]
    for name, row in zip(names, matrix):
        lines.append(name.ljust(width) + "  " + "  ".join(str(int(v)).rjust(width) for v in row))
    return "\n".join(lines)


def render_confusion_matrix(matrix: np.ndarray, label_names: list[str], title: str = "Confusion matrix") -> bytes:
    """The confusion matrix as a PNG heat map with the counts written in each cell (matplotlib, Agg backend)."""
    require_package("matplotlib", "matplotlib", "The confusion-matrix picture")
    from matplotlib.figure import Figure  # drawn with Agg whatever the backend: the caller's backend stays as it is

    n = len(label_names)
    side = min(12.0, 2.5 + 0.5 * n)
    figure = Figure(figsize=(side, side), dpi=100, facecolor="white")
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(
        range(n), [str(x) for x in label_names], rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center"
    )
    axes.set_yticks(range(n), [str(x) for x in label_names])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    if n <= 30:  # beyond that the numbers no longer fit their cells
        threshold = matrix.max(initial=0) / 2
        for (row, col), value in np.ndenumerate(matrix):
            axes.text(col, row, str(int(value)), ha="center", va="center",
                      color="white" if value > threshold else "black")  # fmt: skip
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------------------
# Token classification (named entities)


def _split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") of "B-PER"; ("O", "_") of "O"; a tag without a type ("B") has type "_" as in conlleval."""
    return tag[:1], (tag[1:].split("-", 1)[-1] or "_")


def _chunk_ends(prev: str, tag: str, prev_type: str, type_: str) -> bool:
    return (
        prev in ("E", "S")
        or (prev in ("B", "I") and tag in ("B", "S", "O"))
        or (prev not in ("O", ".") and prev_type != type_)
    )


def _chunk_starts(prev: str, tag: str, prev_type: str, type_: str) -> bool:
    return (
        tag in ("B", "S")
        or (prev in ("E", "S", "O") and tag in ("E", "I"))
        or (tag not in ("O", ".") and prev_type != type_)
    )


def entity_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """The entities of one tag sequence as (type, first, last) token positions, read as conlleval and seqeval's
    default mode read them: BIO, IOB1 and IOBES tags; an I- after O or after another type starts an entity (so
    "O I-PER" is one PER entity), and a type change ends one."""
    spans, begin, prev, prev_type = [], 0, "O", ""
    for i, tag in enumerate([*tags, "O"]):  # the sentinel ends an entity that runs to the end
        kind, type_ = _split_tag(tag)
        if _chunk_ends(prev, kind, prev_type, type_):
            spans.append((prev_type, begin, i - 1))
        if _chunk_starts(prev, kind, prev_type, type_):
            begin = i
        prev, prev_type = kind, type_
    return spans


def entity_metrics(predictions: list[list[str]], references: list[list[str]]) -> dict[str, float]:
    """seqeval-style entity scores of tag sequences (one list of tags per sentence): an entity counts when its type
    and both ends match. ``precision``, ``recall`` and ``f1`` over all entities (micro average, seqeval's
    default), ``accuracy`` over tokens, and ``f1_<type>`` for each entity type of the references or predictions."""
    if not references:
        raise DataError("No sentence to score: the evaluation set is empty.")
    true_spans, pred_spans = Counter(), Counter()
    correct, tokens = 0, 0
    for sentence, (predicted, reference) in enumerate(zip(predictions, references)):
        if len(predicted) != len(reference):
            raise ValueError(f"Sentence {sentence}: {len(predicted)} predicted tags for {len(reference)} tokens.")
        true_spans.update((sentence, *span) for span in entity_spans(reference))
        pred_spans.update((sentence, *span) for span in entity_spans(predicted))
        correct += sum(p == r for p, r in zip(predicted, reference))
        tokens += len(reference)

    def scores(true: Counter, pred: Counter) -> tuple[float, float, float]:
        hits = sum((true & pred).values())
        precision = hits / sum(pred.values()) if pred else 0.0
        recall = hits / sum(true.values()) if true else 0.0
        return precision, recall, (2 * precision * recall / (precision + recall) if hits else 0.0)

    precision, recall, f1 = scores(true_spans, pred_spans)
    metrics = {"precision": precision, "recall": recall, "f1": f1, "accuracy": correct / tokens if tokens else 0.0}
    for type_ in sorted({span[1] for span in true_spans} | {span[1] for span in pred_spans}):
        true = Counter({span: n for span, n in true_spans.items() if span[1] == type_})
        pred = Counter({span: n for span, n in pred_spans.items() if span[1] == type_})
        metrics[f"f1_{type_}"] = scores(true, pred)[2]
    return metrics


# ----------------------------------------------------------------------------------------------------------------
# Language modelling


def count_words(text: str) -> int:
    """Words of a document as lm-evaluation-harness's wikitext task counts them: `len(re.split(r"\\s+", text))`
    (so leading or trailing whitespace adds one empty "word", as there)."""
    return len(re.split(r"\s+", text))


def language_model_metrics(nll: float, num_tokens: int, num_words: int, num_bytes: int) -> dict[str, float]:
    """Perplexities from the summed negative log-likelihood `nll` (nats) of a text: per token (``loss`` is the mean
    token NLL, ``perplexity`` its exp), per word (``word_perplexity``) and per UTF-8 byte (``byte_perplexity``,
    ``bits_per_byte`` = nll / bytes / ln 2): lm-evaluation-harness's `weighted_perplexity` and `bits_per_byte`."""
    if num_tokens <= 0:
        raise DataError("No token was scored: the evaluation text is empty.")
    return {
        "loss": nll / num_tokens,
        "perplexity": math.exp(nll / num_tokens),
        "word_perplexity": math.exp(nll / num_words),
        "byte_perplexity": math.exp(nll / num_bytes),
        "bits_per_byte": nll / num_bytes / math.log(2),
        "tokens": num_tokens,
        "words": num_words,
        "bytes": num_bytes,
    }


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles (a, an, the), single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_PUNCTUATION = set(string.punctuation)


def squad_scores(prediction: str, truths: list[str]) -> tuple[float, float]:
    """(exact match, F1) of one prediction against its reference answers (the best reference counts)."""
    if not truths:
        truths = [""]
    pred_tokens = normalize_answer(prediction).split()
    exact, best_f1 = 0.0, 0.0
    for truth in truths:
        truth_tokens = normalize_answer(truth).split()
        exact = max(exact, float(pred_tokens == truth_tokens))
        common = Counter(pred_tokens) & Counter(truth_tokens)
        overlap = sum(common.values())
        if not pred_tokens or not truth_tokens:
            f1 = float(pred_tokens == truth_tokens)
        elif overlap == 0:
            f1 = 0.0
        else:
            precision, recall = overlap / len(pred_tokens), overlap / len(truth_tokens)
            f1 = 2 * precision * recall / (precision + recall)
        best_f1 = max(best_f1, f1)
    return exact, best_f1


def squad_metrics(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """``exact_match`` and ``f1``: the means of `squad_scores` over the examples, in % (SQuAD's evaluation script)."""
    if not predictions:
        raise DataError("No question was answered: the evaluation set is empty.")
    scores = np.array([squad_scores(prediction, truths) for prediction, truths in zip(predictions, references)])
    return {"exact_match": 100.0 * float(scores[:, 0].mean()), "f1": 100.0 * float(scores[:, 1].mean())}


# ----------------------------------------------------------------------------------------------------------------
# Masked-LM pretraining


def preprocess_logits_for_metrics(logits, labels):
    """Keep only the argmax ids (a (batch, seq) tensor instead of (batch, seq, vocab))."""
    if isinstance(logits, (tuple, list)):
        return tuple(t.argmax(dim=-1) for t in logits[:2] if t is not None)
    return logits.argmax(dim=-1)


def pretraining_metrics(eval_pred) -> dict[str, float]:
    """MLM accuracy over the masked positions; NSP accuracy when the labels include next_sentence_label."""
    predictions, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(labels, (tuple, list)):
        mlm_labels, nsp_labels = labels[0], labels[1] if len(labels) > 1 else None
    else:
        mlm_labels, nsp_labels = labels, None
    mlm_pred = predictions[0] if isinstance(predictions, (tuple, list)) else predictions
    keep = mlm_labels != -100
    metrics = {"mlm_accuracy": float((mlm_pred[keep] == mlm_labels[keep]).mean()) if keep.any() else 0.0}
    if nsp_labels is not None and isinstance(predictions, (tuple, list)) and len(predictions) > 1:
        metrics["nsp_accuracy"] = float((np.asarray(predictions[1]).reshape(-1) == nsp_labels.reshape(-1)).mean())
    return metrics


# ----------------------------------------------------------------------------------------------------------------
# Image classification


def top_k_indices(logits, labels=None):
    """`preprocess_logits_for_metrics`: keep the indices of the top-5 classes, not the whole logits."""
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return logits.topk(min(TOP_K, logits.shape[-1]), dim=-1).indices


def accuracy_metrics(eval_pred) -> dict[str, float]:
    """Top-1 and top-5 accuracy from the top-k class indices (N, k) and class ids (N,)."""
    top, labels = eval_pred.predictions, eval_pred.label_ids
    if top.ndim == 1:
        top = top[:, None]
    return {
        "accuracy": float((top[:, 0] == labels).mean()),
        "top5_accuracy": float((top == labels[:, None]).any(axis=1).mean()),
    }


# ----------------------------------------------------------------------------------------------------------------
# Translation


def moses_lowercase_tokenize(texts: list[str], lang: str) -> list[str]:
    """Lower-cased, Moses punctuation-normalized and tokenized text: the pipeline that made Multi30k's
    `tok/*.lc.norm.tok.*` files (see `translation_scores`)."""
    try:
        from sacremoses import MosesPunctNormalizer, MosesTokenizer
    except ImportError as err:  # pragma: no cover - sacremoses is a dependency
        raise DataError("--lowercase_bleu moses needs sacremoses: pip install sacremoses") from err
    normalizer, tokenizer = MosesPunctNormalizer(lang=lang), MosesTokenizer(lang=lang)
    return [tokenizer.tokenize(normalizer.normalize(t.lower()), escape=True, return_str=True) for t in texts]


def translation_scores(
    hypotheses: list[str],
    references: list[str],
    bleu_tokenize: str = "13a",
    lowercase_bleu: str = "none",
    lang: str = "en",
) -> dict[str, float]:
    """sacreBLEU BLEU and chrF of detokenized hypotheses, plus the lower-cased variants (see the module docstring)."""
    import sacrebleu

    scores = {
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references], tokenize=bleu_tokenize).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
    }
    if lowercase_bleu == "sacrebleu":
        scores["bleu_lc"] = sacrebleu.corpus_bleu(
            hypotheses, [references], tokenize=bleu_tokenize, lowercase=True
        ).score
    elif lowercase_bleu == "moses":
        hyps, refs = moses_lowercase_tokenize(hypotheses, lang), moses_lowercase_tokenize(references, lang)
        # force: the text is tokenized on purpose (sacreBLEU would warn that it looks tokenized).
        scores["bleu_lc_tok"] = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True).score
    return scores


def decode_generations(tokenizer, ids: np.ndarray) -> list[str]:
    """Text of generated (or label) ids: -100 padding dropped, special tokens skipped, whitespace stripped."""
    ids = np.where(np.asarray(ids) < 0, tokenizer.pad_token_id, ids)
    return [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def rouge_scores(predictions: list[str], references: list[str], use_stemmer: bool = False) -> dict[str, float]:
    """``rouge1``, ``rouge2``, ``rougeL``: the mean F-measure over the examples, in %, of Google's `rouge-score`
    package (the scorer behind the Hub's `rouge` metric; no metric script is fetched). Its tokenizer lower-cases and
    keeps only ASCII letters and digits, so text in other scripts scores nothing: use BLEU/chrF there."""
    rouge_scorer = require_package("rouge_score.rouge_scorer", "rouge-score", "ROUGE")
    if not predictions:
        raise DataError("No text to score: the evaluation set is empty.")
    kinds = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(kinds), use_stemmer=use_stemmer)
    totals = dict.fromkeys(kinds, 0.0)
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(reference, prediction)  # (target, prediction)
        for kind in kinds:
            totals[kind] += scores[kind].fmeasure
    return {kind: 100.0 * total / len(predictions) for kind, total in totals.items()}


# ----------------------------------------------------------------------------------------------------------------
# Ranking (sequential recommendation)


def ranking_metrics(ranks: np.ndarray, ks: tuple[int, ...] = (1, 5, 10, 20)) -> dict[str, float]:
    """HR@k, NDCG@k and MRR@k of one held-out item per user, from its 0-based rank (0: ranked first).

    With one relevant item, NDCG@k = 1 / log2(rank + 2) and MRR@k = 1 / (rank + 1) when rank < k, else 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("No ranks to average: no user was evaluated.")
    metrics = {}
    for k in ks:
        hit = ranks < k
        metrics[f"HR@{k}"] = float(hit.mean())
        metrics[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
        metrics[f"MRR@{k}"] = float(np.where(hit, 1.0 / (ranks + 1.0), 0.0).mean())
    return metrics
