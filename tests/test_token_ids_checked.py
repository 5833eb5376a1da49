"""Token ids beyond the vocabulary are named as a tokenizer mismatch by every text model (BERT already was), not a
bare IndexError from inside torch."""

import pytest
import torch

from hf_bigmodel import create_model


@pytest.mark.parametrize(
    "preset, task, inputs",
    [
        ("gpt-tiny", "causal-lm", lambda v: {"input_ids": torch.tensor([[1, v]])}),
        ("gpt-tiny", "causal-lm", lambda v: {"input_ids": torch.tensor([[1, -1]])}),
        ("transformer-tiny", "seq2seq-lm", lambda v: {"input_ids": torch.tensor([[1, v]]),
                                                      "decoder_input_ids": torch.tensor([[0, 1]])}),
        ("transformer-tiny", "seq2seq-lm", lambda v: {"input_ids": torch.tensor([[1, 2]]),
                                                      "decoder_input_ids": torch.tensor([[0, v + 5]])}),
    ],
)  # fmt: skip
def test_ids_outside_the_vocabulary_name_the_tokenizer(preset, task, inputs):
    model = create_model(preset, task=task).eval()
    with pytest.raises(ValueError, match=r"input_ids` contains -?\d+, outside \[0, vocab_size=\d+\)\. The tokenizer"):
        model(**inputs(model.config.vocab_size))
    in_range = {k: v.clamp(0, model.config.vocab_size - 1) for k, v in inputs(model.config.vocab_size).items()}
    model(**in_range)  # the check lets every id of the vocabulary through
