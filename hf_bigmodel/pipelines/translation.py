"""`translation` and `text2text-generation` pipelines for sequence-to-sequence models (transformers 5 removed them).

    from transformers import pipeline
    import hf_bigmodel                                  # registers both tasks for every AutoModelForSeq2SeqLM
    translate = pipeline("translation", model="my-transformer/")
    translate("Ein Hund läuft.", num_beams=4)           # [{"translation_text": "A dog runs."}]

Standalone on purpose: `pipe.save_pretrained(folder)` / `pipe.push_to_hub(repo)` copies this file next to the
weights and writes `custom_pipelines` into config.json, so users without hf_bigmodel load the pipeline with
`pipeline("translation", model=repo, trust_remote_code=True)`. Only `torch` and `transformers` may be imported here.
"""

from typing import Any

import torch
from transformers import AutoModelForSeq2SeqLM, Pipeline


class TranslationPipeline(Pipeline):
    """Source text(s) in, generated target text(s) out, through `model.generate` (greedy by default; pass
    `num_beams`, `length_penalty`, `do_sample`, `max_new_tokens`, ... per call or at construction). Each input gives
    a list of `{"translation_text": ...}` dicts (one per returned sequence); a list of inputs with one sequence each
    gives a flat list."""

    _pipeline_calls_generate = True
    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False
    return_name = "translation"

    def _sanitize_parameters(
        self,
        truncation: bool | None = None,
        max_source_length: int | None = None,
        skip_special_tokens: bool | None = None,
        clean_up_tokenization_spaces: bool | None = None,
        **generate_kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        preprocess = {}
        if truncation is not None:
            preprocess["truncation"] = truncation
        if max_source_length is not None:
            preprocess["max_source_length"] = max_source_length
        postprocess = {}
        if skip_special_tokens is not None:
            postprocess["skip_special_tokens"] = skip_special_tokens
        if clean_up_tokenization_spaces is not None:
            postprocess["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        return preprocess, generate_kwargs, postprocess

    def __call__(self, inputs: str | list[str], **kwargs: Any) -> list:
        """Translate one text or a list of texts."""
        result = super().__call__(inputs, **kwargs)
        if isinstance(inputs, list) and all(isinstance(r, list) and len(r) == 1 for r in result):
            return [r[0] for r in result]
        return result

    def preprocess(self, text: str, truncation: bool = True, max_source_length: int | None = None) -> dict:
        if not isinstance(text, str):
            raise TypeError(f"{self.task or 'translation'} inputs must be strings, got {type(text).__name__}.")
        limit = max_source_length or getattr(self.model.config, "max_position_embeddings", None)
        return self.tokenizer(text, return_tensors="pt", truncation=truncation, max_length=limit)

    def _forward(self, model_inputs: dict, **generate_kwargs: Any) -> dict:
        in_batch = model_inputs["input_ids"].shape[0]
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        set_params = self._get_set_generation_params(generate_kwargs)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit and not {"max_length", "max_new_tokens"} & set(set_params):
            model_max = self.model.generation_config.max_length
            # generate's built-in default (20 tokens) cuts translations short: allow up to the model's limit.
            if model_max is None or model_max == 20:
                generate_kwargs["max_length"] = limit
        output_ids = self.model.generate(**model_inputs, **generate_kwargs)
        if not torch.is_tensor(output_ids):
            output_ids = output_ids.sequences
        return {"output_ids": output_ids.reshape(in_batch, -1, output_ids.shape[-1])}

    def postprocess(
        self, model_outputs: dict, skip_special_tokens: bool = True, clean_up_tokenization_spaces: bool = False
    ) -> list[dict[str, str]]:
        return [
            {
                f"{self.return_name}_text": self.tokenizer.decode(
                    ids,
                    skip_special_tokens=skip_special_tokens,
                    clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                )
            }
            for ids in model_outputs["output_ids"][0]
        ]


class Text2TextGenerationPipeline(TranslationPipeline):
    """The same pipeline under the generic task name: outputs are `{"generated_text": ...}`."""

    return_name = "generated"


def register_pipelines() -> None:
    """Register `translation` and `text2text-generation` with transformers' pipeline registry (for every
    `AutoModelForSeq2SeqLM`). transformers 5 lists both as removed tasks and refuses them before looking at the
    registry, so they are taken off that list first; nothing else in transformers changes."""
    from transformers.pipelines import PIPELINE_REGISTRY, REMOVED_TASKS

    for task, pipeline_class in (
        ("translation", TranslationPipeline),
        ("text2text-generation", Text2TextGenerationPipeline),
    ):
        REMOVED_TASKS.pop(task, None)
        if PIPELINE_REGISTRY.supported_tasks.get(task, {}).get("impl") is not pipeline_class:
            PIPELINE_REGISTRY.register_pipeline(
                task, pipeline_class=pipeline_class, pt_model=AutoModelForSeq2SeqLM, type="text"
            )


__all__ = ["TranslationPipeline", "Text2TextGenerationPipeline", "register_pipelines"]
