"""Training and embedding libraries on the zoo's models, next to the stock model they convert from (issue 14):
TRL's `SFTTrainer` with `packing=True` (padding-free rows of several sequences, longer than the position table) and
`DPOTrainer` (slow) on every architecture with a causal-LM head, and sentence-transformers on every architecture with a masked-LM (text
encoder) head. Each runs the same step on the stock model and on its conversion, and fails where ours differs.
"""

import warnings

import pytest
import torch
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

from hf_bigmodel.models import ARCHITECTURES
from hf_bigmodel.tokenization import train_tokenizer

TEXTS = [f"the {animal} sat {i}." * (1 + i % 2) for i, animal in enumerate(["cat", "dog", "bird", "fox"] * 6)]


def _stock_gpt2(folder, vocab_size: int) -> None:
    torch.manual_seed(0)
    config = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=vocab_size, n_positions=32, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(folder)


def _stock_bert(folder, vocab_size: int) -> None:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    BertModel(config).save_pretrained(folder)


def _convert(arch: str, src, dst) -> None:
    if arch == "gpt":
        from hf_bigmodel.conversion.convert_gpt import convert_gpt2_to_bigmodel as convert
    else:
        from hf_bigmodel.conversion.convert_bert import convert_bert_to_bigmodel as convert
    convert(src, dst)


# architecture -> the stock model of the same shape that converts to it
CAUSAL_CASES = {"gpt": _stock_gpt2}
ENCODER_CASES = {"bert": _stock_bert}


def test_every_architecture_with_the_head_has_a_case():
    for name, row in ARCHITECTURES.items():
        if "causal-lm" in row.heads:
            assert name in CAUSAL_CASES, f"add {name} to CAUSAL_CASES"
        if "masked-lm" in row.heads:
            assert name in ENCODER_CASES, f"add {name} to ENCODER_CASES"


# --------------------------------------------------------------------------------------------------------------------
# TRL: SFTTrainer with packing=True
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", list(CAUSAL_CASES))
def test_trl_sft_with_packing_trains_as_the_stock_model(arch, tmp_path):
    """`SFTTrainer(args=SFTConfig(packing=True, max_length=64))` packs short texts padding-free into rows longer than
    the 32 positions of the model, with `position_ids` restarting at every text. From the same weights, ours and
    GPT-2 log the same losses step by step (so no text attends across its boundary in ours either)."""
    trl = pytest.importorskip("trl")
    import datasets

    (tmp_path / "texts.txt").write_text("\n".join(TEXTS), encoding="utf-8")
    tokenizer = train_tokenizer("char", files=[tmp_path / "texts.txt"], show_progress=False)
    CAUSAL_CASES[arch](tmp_path / "stock", vocab_size=len(tokenizer))
    _convert(arch, tmp_path / "stock", tmp_path / "ours")
    dataset = datasets.Dataset.from_dict({"text": TEXTS})
    losses, widths = {}, {}
    for name in ("stock", "ours"):
        model = (GPT2LMHeadModel if name == "stock" else ARCHITECTURES[arch].heads["causal-lm"]).from_pretrained(
            tmp_path / name
        )
        args = trl.SFTConfig(output_dir=str(tmp_path / f"run_{name}"), packing=True, max_length=64,
                             per_device_train_batch_size=2, max_steps=3, logging_steps=1, learning_rate=1e-3,
                             lr_scheduler_type="constant", seed=0, report_to="none", use_cpu=True,
                             save_strategy="no", dataloader_num_workers=0, disable_tqdm=True)  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TRL's notices about the tokenizer's special tokens
            trainer = trl.SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
            batch = next(iter(trainer.get_train_dataloader()))
            trainer.train()
        widths[name] = batch["input_ids"].shape[-1]
        restarts = int((batch["position_ids"][0, 1:] == 0).sum())
        assert restarts >= 2, batch["position_ids"]  # several texts in the row
        assert int(batch["position_ids"].max()) < 32
        losses[name] = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert widths["ours"] == widths["stock"] > 32  # the packed row is longer than the position table
    assert len(losses["ours"]) == 3
    assert losses["ours"] == pytest.approx(losses["stock"], rel=1e-4)


@pytest.mark.slow  # two DPO trainings (policy and reference forwards each step)
@pytest.mark.parametrize("arch", list(CAUSAL_CASES))
def test_trl_dpo_trains_as_the_stock_model(arch, tmp_path):
    """`DPOTrainer` (reference model copied from the policy) on preference pairs: from the same weights, ours and
    GPT-2 log the same DPO losses and reward margins step by step."""
    trl = pytest.importorskip("trl")
    import datasets

    prompts = [f"the {animal} sat" for animal in ["cat", "dog", "bird", "fox"] * 2]
    data = {"prompt": prompts, "chosen": [" on the mat."] * 8, "rejected": [" in the sun!"] * 8}
    (tmp_path / "texts.txt").write_text("\n".join(p + c + r for p, c, r in zip(*data.values())), encoding="utf-8")
    tokenizer = train_tokenizer("char", files=[tmp_path / "texts.txt"], show_progress=False)
    CAUSAL_CASES[arch](tmp_path / "stock", vocab_size=len(tokenizer))
    _convert(arch, tmp_path / "stock", tmp_path / "ours")
    logs = {}
    for name in ("stock", "ours"):
        model = (GPT2LMHeadModel if name == "stock" else ARCHITECTURES[arch].heads["causal-lm"]).from_pretrained(
            tmp_path / name
        )
        args = trl.DPOConfig(output_dir=str(tmp_path / f"run_{name}"), per_device_train_batch_size=4, max_steps=2,
                             logging_steps=1, learning_rate=1e-3, lr_scheduler_type="constant", seed=0,
                             report_to="none", use_cpu=True, save_strategy="no", dataloader_num_workers=0,
                             disable_tqdm=True)  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = trl.DPOTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_dict(data),
                                     processing_class=tokenizer)  # fmt: skip
            trainer.train()
        logs[name] = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs["ours"]) == len(logs["stock"]) == 2
    assert logs["ours"][1]["rewards/margins"] > 0.05  # the step moved the policy towards the chosen answers
    for ours, stock in zip(logs["ours"], logs["stock"]):
        assert ours["loss"] == pytest.approx(stock["loss"], rel=1e-4)
        assert ours["rewards/margins"] == pytest.approx(stock["rewards/margins"], abs=1e-3)


# --------------------------------------------------------------------------------------------------------------------
# sentence-transformers
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", list(ENCODER_CASES))
def test_sentence_transformers_embeds_as_the_stock_model(arch, tmp_path):
    """Ours as the word-embedding module of a `SentenceTransformer` (mean pooling) gives the sentence embeddings of
    the stock model it was converted from; the saved SentenceTransformer folder loads back to the same embeddings."""
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    (tmp_path / "texts.txt").write_text("\n".join(TEXTS), encoding="utf-8")
    tokenizer = train_tokenizer("wordpiece", files=[tmp_path / "texts.txt"], vocab_size=200, show_progress=False)
    ENCODER_CASES[arch](tmp_path / "stock", vocab_size=len(tokenizer))
    tokenizer.save_pretrained(tmp_path / "stock")
    _convert(arch, tmp_path / "stock", tmp_path / "ours")
    sentences = ["the cat sat.", "a fox sat 12 times, then the bird sat.", "dog"]
    embeddings = {}
    for name in ("stock", "ours"):
        word = Transformer(str(tmp_path / name))
        if name == "ours":
            assert type(word.auto_model) is ARCHITECTURES[arch].heads["base"]
        model = SentenceTransformer(modules=[word, Pooling(word.get_embedding_dimension(), "mean")], device="cpu")
        embeddings[name] = model.encode(sentences, convert_to_tensor=True)
        model.save(str(tmp_path / f"st_{name}"))
        reloaded = SentenceTransformer(str(tmp_path / f"st_{name}"), device="cpu")
        torch.testing.assert_close(reloaded.encode(sentences, convert_to_tensor=True), embeddings[name])
    assert embeddings["ours"].shape == (3, 32)
    torch.testing.assert_close(embeddings["ours"], embeddings["stock"], rtol=1e-5, atol=1e-5)
