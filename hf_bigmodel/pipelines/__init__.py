"""Pipelines that transformers 5 removed, for the zoo's heads. Importing this package (done by `import hf_bigmodel`)
registers `translation` and `text2text-generation` for every `AutoModelForSeq2SeqLM` model (see `translation.py`),
`summarization` and `generative-question-answering` for every `AutoModelForSeq2SeqLM` and `AutoModelForCausalLM`
model (see `summarization.py`), and `question-answering` for every `AutoModelForQuestionAnswering` model:

    import hf_bigmodel
    from transformers import pipeline
    qa = pipeline("question-answering", model="runs/squad")

transformers 5 lists "question-answering" among its removed tasks and rejects the name before looking at the
registry, so the name is taken off that list here, now that there is an implementation behind it again.

For users without hf_bigmodel, `add_question_answering_pipeline(folder)` copies `question_answering.py` next to
the weights and declares it in config.json under ``custom_pipelines`` as ``"extractive-question-answering"``:

    pipeline(model="user/repo", trust_remote_code=True)      # the folder's only custom task
    pipeline("extractive-question-answering", model="user/repo", trust_remote_code=True)

(Declaring it as "question-answering" would make transformers demand `trust_remote_code=True` for that folder
even where hf_bigmodel is installed, since a task named in `custom_pipelines` always runs the folder's file.)
"""

import json
from collections.abc import Callable
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForQuestionAnswering
from transformers import pipelines as _pipelines
from transformers.dynamic_module_utils import custom_object_save

from .._io import atomic_write_text
from .question_answering import QuestionAnsweringPipeline, best_span, prepare_qa_features
from .sequential_recommendation import SequentialRecommendationPipeline
from .summarization import (
    GENERATIVE_QUESTION_ANSWERING,
    GenerativeQuestionAnsweringPipeline,
    SummarizationPipeline,
    register_generation_pipelines,
)
from .translation import Text2TextGenerationPipeline, TranslationPipeline, register_pipelines

register_pipelines()
register_generation_pipelines()

QUESTION_ANSWERING = "question-answering"

_pipelines.REMOVED_TASKS.pop(QUESTION_ANSWERING, None)
_pipelines.PIPELINE_REGISTRY.register_pipeline(
    QUESTION_ANSWERING,
    pipeline_class=QuestionAnsweringPipeline,
    pt_model=AutoModelForQuestionAnswering,
    type="text",
)

HUB_QUESTION_ANSWERING = "extractive-question-answering"

# The recommenders' pipeline (SASRec loads as a causal LM and BERT4Rec as a masked LM, see models/__init__.py).
SEQUENTIAL_RECOMMENDATION = "sequential-recommendation"
_pipelines.PIPELINE_REGISTRY.register_pipeline(
    SEQUENTIAL_RECOMMENDATION,
    pipeline_class=SequentialRecommendationPipeline,
    pt_model=(AutoModelForCausalLM, AutoModelForMaskedLM),
    type="multimodal",
)
# The name a saved folder declares it under (as for question answering, a name of its own, so that users who have
# hf_bigmodel are not asked for trust_remote_code=True by the folder's declaration of the registered task).
HUB_SEQUENTIAL_RECOMMENDATION = "next-item-recommendation"


def _declare_pipeline(folder: str | Path, pipeline_class: type, task: str,
                      models: Callable[[dict], list[str]], type_: str, missing: str) -> Path:  # fmt: skip
    """Copy `pipeline_class`'s module into `folder` and declare it as `task` in config.json's `custom_pipelines`,
    next to any pipelines the folder already declares (a fine-tuned model may carry several). `models(config)`
    names the Auto classes the pipeline loads the folder with, from its config.json."""
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder} has no config.json: {missing}")
    custom_object_save(pipeline_class, folder)
    config = json.loads(config_file.read_text(encoding="utf-8"))
    module = pipeline_class.__module__.rsplit(".", 1)[-1]
    entry = {"impl": f"{module}.{pipeline_class.__name__}", "pt": models(config), "type": type_}
    config["custom_pipelines"] = {**(config.get("custom_pipelines") or {}), task: entry}
    atomic_write_text(config_file, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


def add_question_answering_pipeline(folder: str | Path) -> Path:
    """Copy the question-answering pipeline code into a saved model folder and declare it in its config.json, so
    that `pipeline(model=folder_or_repo, trust_remote_code=True)` works with plain transformers."""
    return _declare_pipeline(folder, QuestionAnsweringPipeline, HUB_QUESTION_ANSWERING,
                             lambda config: ["AutoModelForQuestionAnswering"], "text",
                             "save the question-answering model there first.")  # fmt: skip


def _recommender_auto_class(config: dict) -> list[str]:
    """BERT4Rec loads as a masked LM, SASRec as a causal LM (their config.json's auto_map says which)."""
    masked = "AutoModelForMaskedLM" in (config.get("auto_map") or {})
    return ["AutoModelForMaskedLM" if masked else "AutoModelForCausalLM"]


def add_sequential_recommendation_pipeline(folder: str | Path) -> Path:
    """Copy the sequential-recommendation pipeline code into a saved recommender folder and declare it in its
    config.json, so that `pipeline(model=folder_or_repo, trust_remote_code=True)` works with plain transformers."""
    return _declare_pipeline(folder, SequentialRecommendationPipeline, HUB_SEQUENTIAL_RECOMMENDATION,
                             _recommender_auto_class, "multimodal", "save the recommender there first.")  # fmt: skip


__all__ = [
    "GENERATIVE_QUESTION_ANSWERING",
    "GenerativeQuestionAnsweringPipeline",
    "HUB_QUESTION_ANSWERING",
    "HUB_SEQUENTIAL_RECOMMENDATION",
    "SEQUENTIAL_RECOMMENDATION",
    "SequentialRecommendationPipeline",
    "add_sequential_recommendation_pipeline",
    "QUESTION_ANSWERING",
    "QuestionAnsweringPipeline",
    "SummarizationPipeline",
    "Text2TextGenerationPipeline",
    "TranslationPipeline",
    "add_question_answering_pipeline",
    "best_span",
    "prepare_qa_features",
]
