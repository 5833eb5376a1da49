"""`summarization` and `generative-question-answering` pipelines (transformers 5 removed `summarization`), for an
encoder-decoder and for a decoder-only language model through a prompt format.

    from transformers import pipeline
    import hf_bigmodel                      # registers both tasks for every AutoModelForSeq2SeqLM / AutoModelForCausalLM
    summarize = pipeline("summarization", model="runs/headings")
    summarize(document, num_beams=4, length_penalty=2.0, no_repeat_ngram_size=3, min_new_tokens=5, max_new_tokens=40)
    # [{"summary_text": "..."}]
    answer = pipeline("generative-question-answering", model="runs/demo")
    answer(question="Who ...?", context="...")       # [{"answer": "..."}]

An encoder-decoder reads the document (summarization) or "question: Q context: C" (T5's format, generative QA) and
generates the output. A decoder-only model continues a prompt: "DOCUMENT\nTL;DR:" (the zero-shot summarization
prompt of the GPT-2 paper) or "CONTEXT\nQuestion: Q\nAnswer:"; only the generated continuation is returned, and a
prompt longer than `max_source_length` (default: half the context, leaving the other half for the output) keeps
its end. Pass `prompt=` with `{text}` (or `{question}` and `{context}`) to use another format. Every `generate`
option (`num_beams`, `length_penalty`, `no_repeat_ngram_size`, `min_new_tokens`, `max_new_tokens`, `min_length`,
`max_length`, `do_sample`, ...) is passed to `model.generate` as is.

Standalone as `translation.py` is (it imports only torch, transformers and that sibling): `pipe.save_pretrained(folder)`
copies both files next to the weights and declares the task in config.json's `custom_pipelines`, so users without
hf_bigmodel run `pipeline("summarization", model=repo, trust_remote_code=True)`.
"""

from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from .translation import TranslationPipeline


class SummarizationPipeline(TranslationPipeline):
    """Document(s) in, `{"summary_text": ...}` out (one dict per returned sequence; a list of documents with one
    sequence each gives a flat list)."""

    return_name = "summary"
    fields = ("text",)
    source_format = "{text}"  # what an encoder-decoder reads
    prompt_format = "{text}\nTL;DR:"  # what a decoder-only model continues

    def _sanitize_parameters(self, prompt: str | None = None, **kwargs: Any) -> tuple[dict, dict, dict]:
        preprocess, forward, postprocess = super()._sanitize_parameters(**kwargs)
        if prompt is not None:
            preprocess["prompt"] = prompt
        return preprocess, forward, postprocess

    def _context(self) -> int | None:
        config = self.model.config
        return next(
            (getattr(config, n) for n in ("max_position_embeddings", "n_positions") if getattr(config, n, 0)), None
        )

    def _fill(self, inputs: Any, template: str) -> str:
        if isinstance(inputs, str) and self.fields == ("text",):
            inputs = {"text": inputs}
        if not isinstance(inputs, dict) or any(not isinstance(inputs.get(f), str) for f in self.fields):
            wanted = "a string" if self.fields == ("text",) else "a dict with string " + " and ".join(self.fields)
            raise TypeError(f"{self.task or self.return_name} inputs must be {wanted}, got {type(inputs).__name__}.")
        return template.format(**{field: inputs[field] for field in self.fields})

    def preprocess(
        self, inputs: Any, truncation: bool = True, max_source_length: int | None = None, prompt: str | None = None
    ) -> dict:
        if self.model.config.is_encoder_decoder:
            return super().preprocess(self._fill(inputs, prompt or self.source_format), truncation, max_source_length)
        text = self._fill(inputs, prompt or self.prompt_format)
        model_inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        limit = max_source_length or (self._context() or 0) // 2
        if truncation and limit and model_inputs["input_ids"].shape[1] > limit:
            # The end of the prompt says what to generate ("TL;DR:", "Answer:"): cut the start of the document.
            model_inputs = {name: value[:, -limit:] for name, value in model_inputs.items()}
        return model_inputs

    def _forward(self, model_inputs: dict, **generate_kwargs: Any) -> dict:
        if self.model.config.is_encoder_decoder:
            return super()._forward(model_inputs, **generate_kwargs)
        prompt_length = model_inputs["input_ids"].shape[1]
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        set_params = self._get_set_generation_params(generate_kwargs)
        context = self._context()
        unlimited = not {"max_length", "max_new_tokens"} & set(set_params)
        if context and unlimited and self.model.generation_config.max_length in (None, 20):
            generate_kwargs["max_length"] = context  # generate's own default would stop at 20 tokens
        if self.model.generation_config.pad_token_id is None and "pad_token_id" not in generate_kwargs:
            generate_kwargs["pad_token_id"] = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id
        output_ids = self.model.generate(**model_inputs, **generate_kwargs)
        if not torch.is_tensor(output_ids):
            output_ids = output_ids.sequences
        new_ids = output_ids[:, prompt_length:]  # the continuation only, not the prompt
        return {"output_ids": new_ids.reshape(1, -1, new_ids.shape[-1])}

    def postprocess(self, model_outputs: dict, **kwargs: Any) -> list[dict[str, str]]:
        return [
            {key: text.strip() for key, text in out.items()} for out in super().postprocess(model_outputs, **kwargs)
        ]


class GenerativeQuestionAnsweringPipeline(SummarizationPipeline):
    """`{"question": ..., "context": ...}` (or `question=`, `context=` keywords; lists of either) in, a generated
    `{"answer": ...}` out, by an encoder-decoder or a decoder-only model (see the module docstring)."""

    return_name = "answer"
    fields = ("question", "context")
    source_format = "question: {question} context: {context}"
    prompt_format = "{context}\nQuestion: {question}\nAnswer:"

    def __call__(self, inputs: Any = None, *, question: Any = None, context: Any = None, **kwargs: Any) -> list:
        if inputs is None:
            if question is None or context is None:
                raise TypeError("Give the question and its context: qa(question=..., context=...).")
            if isinstance(question, list) != isinstance(context, list):
                raise TypeError("question and context must both be strings, or both lists of the same length.")
            if isinstance(question, list):
                if len(question) != len(context):
                    raise TypeError(f"{len(question)} questions but {len(context)} contexts: give one context each.")
                inputs = [{"question": q, "context": c} for q, c in zip(question, context)]
            else:
                inputs = {"question": question, "context": context}
        return super().__call__(inputs, **kwargs)

    def postprocess(self, model_outputs: dict, **kwargs: Any) -> list[dict[str, str]]:
        return [{"answer": out["answer_text"]} for out in super().postprocess(model_outputs, **kwargs)]


GENERATIVE_QUESTION_ANSWERING = "generative-question-answering"


def register_generation_pipelines() -> None:
    """Register `summarization` and `generative-question-answering` for every `AutoModelForSeq2SeqLM` and
    `AutoModelForCausalLM` (transformers 5 lists `summarization` as removed: it is taken off that list first)."""
    from transformers.pipelines import PIPELINE_REGISTRY, REMOVED_TASKS

    for task, pipeline_class in (
        ("summarization", SummarizationPipeline),
        (GENERATIVE_QUESTION_ANSWERING, GenerativeQuestionAnsweringPipeline),
    ):
        REMOVED_TASKS.pop(task, None)
        if PIPELINE_REGISTRY.supported_tasks.get(task, {}).get("impl") is not pipeline_class:
            PIPELINE_REGISTRY.register_pipeline(
                task,
                pipeline_class=pipeline_class,
                pt_model=(AutoModelForSeq2SeqLM, AutoModelForCausalLM),
                type="text",
            )


__all__ = [
    "GENERATIVE_QUESTION_ANSWERING",
    "GenerativeQuestionAnsweringPipeline",
    "SummarizationPipeline",
    "register_generation_pipelines",
]
