"""The `summarization` and `generative-question-answering` pipelines: an encoder-decoder reads the document (or
"question: Q context: C"), a GPT continues a prompt; beam search, length penalty, no_repeat_ngram_size and
min/max length reach `generate` (each output equals calling `generate` directly); saved pipelines load with
trust_remote_code in a Python without hf_bigmodel. Tiny word-level models; seconds each."""

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, pipeline

from hf_bigmodel import create_model
from hf_bigmodel.pipelines import GenerativeQuestionAnsweringPipeline, SummarizationPipeline
from hf_bigmodel.testing import WITHOUT_HF_BIGMODEL, run_python

PAD, BOS, EOS = 0, 1, 2
WORDS = (
    "a dog cat runs sleeps on the grass red ball in park who where what is TL ; DR : Question Answer question context"
)
WORDS = WORDS.split()
DOCUMENT = "the dog runs on the grass in the park the cat sleeps on a red ball"
QUESTION, CONTEXT = "who sleeps", "the cat sleeps on a red ball in the park"
# Beam search with every length control at once; the encoder-decoder and the GPT both get it.
OPTIONS = {"num_beams": 3, "length_penalty": 2.0, "no_repeat_ngram_size": 2, "min_new_tokens": 4, "max_new_tokens": 7}


def make_tokenizer(seq2seq: bool) -> PreTrainedTokenizerFast:
    vocab = {"<pad>": PAD, "<s>": BOS, "</s>": EOS, "<unk>": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if seq2seq:  # the encoder reads "... </s>", as the zoo's seq2seq tokenizers give it
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, tuple]:
    """(folder, model, tokenizer) of a tiny encoder-decoder and a tiny GPT; untied output projections and a wide
    initialisation so that beams differ and outputs are not one repeated token."""
    root = tmp_path_factory.mktemp("generation_pipelines")
    torch.manual_seed(0)
    common = {"vocab_size": len(WORDS) + 4, "initializer_range": 0.2, "tie_word_embeddings": False}
    ids = {"pad_token_id": PAD, "bos_token_id": BOS, "eos_token_id": EOS}
    out = {}
    for name, model in (
        ("seq2seq", create_model("transformer-tiny", "seq2seq-lm", **common, **ids, decoder_start_token_id=BOS)),
        ("gpt", create_model("gpt-tiny", "causal-lm", **common, **ids, max_position_embeddings=64)),
    ):
        tokenizer = make_tokenizer(seq2seq=name == "seq2seq")
        model.generation_config.eos_token_id = None  # every output runs to its length limit: lengths are checked
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        out[name] = (root / name, model.eval(), tokenizer)
    return out


def direct(model, tokenizer, text: str, seq2seq: bool, **options) -> str:
    """What `generate` gives for the same input: the encoder input, or the prompt whose continuation is kept."""
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=seq2seq)
    pad = {} if seq2seq else {"pad_token_id": PAD}
    ids = model.generate(**inputs, **options, **pad)[0]
    return tokenizer.decode(ids if seq2seq else ids[inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


@pytest.mark.parametrize("kind", ["seq2seq", "gpt"])
def test_summarization_equals_generate_with_every_option(folders, kind):
    folder, model, tokenizer = folders[kind]
    summarize = pipeline("summarization", model=str(folder))
    assert isinstance(summarize, SummarizationPipeline)
    text = DOCUMENT if kind == "seq2seq" else DOCUMENT + "\nTL;DR:"
    expected = direct(model, tokenizer, text, kind == "seq2seq", **OPTIONS)
    assert summarize(DOCUMENT, **OPTIONS) == [{"summary_text": expected}]
    assert 4 <= len(expected.split()) <= 7  # min_new_tokens / max_new_tokens, one word a token
    greedy = summarize(DOCUMENT, max_new_tokens=7)[0]["summary_text"]
    assert greedy == direct(model, tokenizer, text, kind == "seq2seq", max_new_tokens=7)
    shorter = summarize(DOCUMENT, num_beams=3, max_new_tokens=2)[0]["summary_text"]
    assert len(shorter.split()) <= 2
    assert len(summarize(DOCUMENT, min_new_tokens=6, max_new_tokens=6)[0]["summary_text"].split()) == 6
    # A list of documents gives one dict each.
    assert summarize([DOCUMENT, "a dog"], max_new_tokens=3) == [
        summarize(DOCUMENT, max_new_tokens=3)[0], summarize("a dog", max_new_tokens=3)[0]
    ]  # fmt: skip


def test_every_generate_option_reaches_generate(folders, monkeypatch):
    """Random tiny models never stop early, so a length penalty cannot change their beams: the options are checked
    on the way into `generate` as well as by the outputs above."""
    folder, model, tokenizer = folders["seq2seq"]
    summarize = pipeline("summarization", model=str(folder))
    seen = []
    generate = summarize.model.generate

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return generate(*args, **kwargs)

    monkeypatch.setattr(summarize.model, "generate", spy)
    options = {**OPTIONS, "min_length": 3, "max_length": 9}
    options.pop("max_new_tokens")
    assert summarize(DOCUMENT, **options)[0]["summary_text"] == direct(model, tokenizer, DOCUMENT, True, **options)
    assert options.items() <= seen[-1].items()
    words = summarize(DOCUMENT, no_repeat_ngram_size=1, max_new_tokens=8)[0]["summary_text"].split()
    assert len(words) == len(set(words)) > 1
    assert words != summarize(DOCUMENT, max_new_tokens=8)[0]["summary_text"].split()


@pytest.mark.parametrize("kind", ["seq2seq", "gpt"])
def test_generative_question_answering_equals_generate(folders, kind):
    folder, model, tokenizer = folders[kind]
    answer = pipeline("generative-question-answering", model=str(folder))
    assert isinstance(answer, GenerativeQuestionAnsweringPipeline)
    text = (
        f"question: {QUESTION} context: {CONTEXT}"
        if kind == "seq2seq"
        else f"{CONTEXT}\nQuestion: {QUESTION}\nAnswer:"
    )
    expected = direct(model, tokenizer, text, kind == "seq2seq", **OPTIONS)
    assert answer(question=QUESTION, context=CONTEXT, **OPTIONS) == [{"answer": expected}]
    assert answer({"question": QUESTION, "context": CONTEXT}, **OPTIONS) == [{"answer": expected}]
    both = answer(question=[QUESTION, "where is the dog"], context=[CONTEXT, DOCUMENT], **OPTIONS)
    assert both[0] == {"answer": expected} and set(both[1]) == {"answer"}


def test_a_custom_prompt_and_a_long_gpt_prompt_keeping_its_end(folders):
    folder, model, tokenizer = folders["gpt"]
    summarize = pipeline("summarization", model=str(folder))
    custom = summarize(DOCUMENT, prompt="{text} : ", max_new_tokens=3)[0]["summary_text"]
    assert custom == direct(model, tokenizer, DOCUMENT + " : ", False, max_new_tokens=3)
    long_document = " ".join([DOCUMENT] * 10)  # 170 words, context 64: the prompt keeps its last 32 tokens
    kept = tokenizer.decode(tokenizer(long_document + "\nTL;DR:", add_special_tokens=False)["input_ids"][-32:])
    assert summarize(long_document, max_new_tokens=3) == summarize(kept, prompt="{text}", max_new_tokens=3)


def test_bad_inputs_say_what_is_wrong(folders):
    summarize = pipeline("summarization", model=str(folders["seq2seq"][0]))
    with pytest.raises(TypeError, match=r"summarization inputs must be a string, got int"):
        summarize(42)
    answer = pipeline("generative-question-answering", model=str(folders["gpt"][0]))
    with pytest.raises(TypeError, match=r"Give the question and its context: qa\(question=..., context=...\)"):
        answer(question=QUESTION)
    with pytest.raises(TypeError, match=r"2 questions but 1 contexts"):
        answer(question=[QUESTION, QUESTION], context=[CONTEXT])
    with pytest.raises(TypeError, match=r"must be a dict with string question and context, got dict"):
        answer({"question": QUESTION})


REMOTE_CHILD = """
import json, sys
from transformers import pipeline
out = {}
for task, folder in (("summarization", sys.argv[1]), ("generative-question-answering", sys.argv[2])):
    pipe = pipeline(task, model=folder, trust_remote_code=True)
    args = {"question": sys.argv[4], "context": sys.argv[5]} if task != "summarization" else {"inputs": sys.argv[3]}
    out[task] = {"output": pipe(**args, **json.loads(sys.argv[6])), "module": type(pipe).__module__,
                 "model": type(pipe.model).__module__}
print("RESULTS" + json.dumps(out))
"""


def test_saved_pipelines_load_without_hf_bigmodel(folders, tmp_path):
    summarize = pipeline("summarization", model=str(folders["gpt"][0]))
    answer = pipeline("generative-question-answering", model=str(folders["seq2seq"][0]))
    summarize.save_pretrained(tmp_path / "summarize")
    answer.save_pretrained(tmp_path / "answer")
    config = json.loads((tmp_path / "answer" / "config.json").read_text())
    assert config["custom_pipelines"] == {
        "generative-question-answering": {
            "impl": "summarization.GenerativeQuestionAnsweringPipeline",
            "pt": ["AutoModelForSeq2SeqLM", "AutoModelForCausalLM"],
            "type": "text",
        }
    }
    for folder in ("summarize", "answer"):  # the pipeline file and the one it imports travel with the weights
        assert (tmp_path / folder / "summarization.py").is_file() and (tmp_path / folder / "translation.py").is_file()
    result = run_python(
        WITHOUT_HF_BIGMODEL + REMOTE_CHILD, str(tmp_path / "summarize"), str(tmp_path / "answer"), DOCUMENT, QUESTION,
        CONTEXT, json.dumps(OPTIONS), cwd=tmp_path, env={"HF_HOME": str(tmp_path / "hf")},
    )  # fmt: skip
    assert result["summarization"]["output"] == summarize(DOCUMENT, **OPTIONS)
    assert result["generative-question-answering"]["output"] == answer(question=QUESTION, context=CONTEXT, **OPTIONS)
    for task in result.values():
        assert task["module"].startswith("transformers_modules.") and task["model"].startswith("transformers_modules.")
