"""SASRec and BERT4Rec on the GPT and BERT bodies: the four losses against hand-written references, the backbones'
switches, recommend() in raw ids, the pipeline, save/load through the registry and through remote code without
hf_bigmodel, and the errors for bad input."""

import json
import warnings

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, pipeline

import hf_bigmodel
from hf_bigmodel import (
    BigModelBert4RecConfig,
    BigModelBert4RecForMaskedLM,
    BigModelSASRecConfig,
    BigModelSASRecForCausalLM,
)
from hf_bigmodel.models.gpt.modeling_gpt import BigModelGPTModel
from hf_bigmodel.pipelines import add_question_answering_pipeline, add_sequential_recommendation_pipeline
from hf_bigmodel.testing import WITHOUT_HF_BIGMODEL, run_python

ITEMS = [f"item-{i}" for i in range(20)]
MODELS = {
    "sasrec": (BigModelSASRecConfig, BigModelSASRecForCausalLM, AutoModelForCausalLM),
    "bert4rec": (BigModelBert4RecConfig, BigModelBert4RecForMaskedLM, AutoModelForMaskedLM),
}


def make(name: str, **overrides):
    config_class, model_class, _ = MODELS[name]
    torch.manual_seed(0)
    config = config_class.from_preset(f"{name}-tiny", item_ids=list(ITEMS), initializer_range=0.3, **overrides)
    return model_class(config).eval()


def batch(name: str):
    torch.manual_seed(1)
    ids = torch.randint(1, 21, (3, 8))
    ids[0, :3] = 0  # left padding
    if name == "sasrec":
        return ids, ids.masked_fill(ids == 0, -100)
    labels = torch.full_like(ids, -100)
    labels[:, [4, 7]] = ids[:, [4, 7]]
    return ids.masked_fill(labels != -100, 21), labels


def assert_same_answers(got: list, want: list) -> None:
    """Same items in the same order, scores equal up to float rounding (a few-row product may take another kernel)."""
    assert [a["item"] for a in got] == [a["item"] for a in want]
    torch.testing.assert_close([a["score"] for a in got], [a["score"] for a in want], rtol=1e-5, atol=1e-5)


def reference_loss(name, model, ids, labels, loss):
    """The loss written out from the full logits (ce) or from the sampled negatives, drawn as the model draws them."""
    output = model(input_ids=ids)
    logits = output.logits.float()
    keep = labels != -100
    if name == "sasrec":  # a real item predicts the next one; the first item of a history is never a target
        logits, labels, keep = logits[:, :-1], labels[:, 1:], keep[:, 1:] & (ids[:, :-1] != 0)
    scores, targets = logits[keep][:, 1:21], labels[keep]  # items 1..20
    if loss == "ce":
        return torch.nn.functional.cross_entropy(scores, targets - 1)
    kind, count = loss.split(":")[0], int(loss.split(":")[1].split(",")[0]) if ":" in loss else 1
    n = targets.shape[0]
    negatives = torch.randint(1, 21, {"bce": (n,), "sampled_ce": (count,), "gbce": (n * count,)}[kind])
    positive = scores.gather(1, (targets - 1)[:, None]).squeeze(1)
    if kind == "bce":
        negative = scores.gather(1, (negatives - 1)[:, None]).squeeze(1)
        hit = negatives == targets
        return (-torch.nn.functional.logsigmoid(positive)
                - torch.where(hit, 0.0, torch.nn.functional.logsigmoid(-negative))).mean()  # fmt: skip
    if kind == "sampled_ce":  # k negatives shared by the batch
        negative = scores[:, negatives - 1].masked_fill(negatives[None] == targets[:, None], float("-inf"))
        return torch.nn.functional.cross_entropy(
            torch.cat([positive[:, None], negative], 1), torch.zeros_like(targets)
        )
    # gBCE: k negatives of each position's own, averaged with the positive over the 1 + k binary decisions
    negatives = negatives.view(n, count)
    negative = scores.gather(1, negatives - 1)
    t = float(loss.split(",")[1])
    alpha = count / 19
    beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha)
    negative_term = torch.where(negatives == targets[:, None], 0.0, -torch.nn.functional.logsigmoid(-negative)).sum(1)
    return ((-beta * torch.nn.functional.logsigmoid(positive) + negative_term) / (1 + count)).mean()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("loss", ["ce", "bce", "sampled_ce:7", "gbce:7,0.75"])
def test_losses_match_reference(name, loss):
    model = make(name, loss=loss)
    ids, labels = batch(name)
    torch.manual_seed(5)
    model.train()  # dropout is 0 in the tiny presets; sampled losses skip the full logits only in training
    output = model(input_ids=ids, labels=labels)
    model.eval()
    torch.manual_seed(5)
    expected = reference_loss(name, model, ids, labels, loss)
    torch.testing.assert_close(output.loss, expected, rtol=1e-5, atol=1e-5)
    output.loss.backward()
    embeddings = model.get_input_embeddings().weight
    assert embeddings.grad is not None and embeddings.grad[1:21].abs().sum() > 0


def test_item_embeddings_are_the_output_layer():
    sasrec = make("sasrec")
    hidden = sasrec.model(input_ids=torch.tensor([[3, 4]])).last_hidden_state
    logits = sasrec(input_ids=torch.tensor([[3, 4]])).logits
    ids = torch.tensor([[3, 4]])
    hidden = sasrec.model(inputs_embeds=sasrec.model.embed_tokens(ids) * sasrec.embed_scale).last_hidden_state
    torch.testing.assert_close(logits[..., 1:], hidden @ sasrec.model.embed_tokens.weight[1:].T)
    assert logits[..., 0].isneginf().all()  # padding is never recommended
    bert4rec = make("bert4rec")
    assert bert4rec.cls.decoder.weight is bert4rec.bert.embeddings.word_embeddings.weight
    assert bert4rec(input_ids=ids).logits[..., [0, 21]].isneginf().all()


@pytest.mark.parametrize(
    "switches",
    [
        dict(position_embedding_type="rope", norm_type="rmsnorm", mlp_type="swiglu", num_key_value_heads=1),
        dict(embedding_dropout=0.3, hidden_dropout=0.3, attention_dropout=0.3, bias=False),
    ],
)
def test_gpt_switches_train(switches):
    model = make("sasrec", **switches)
    assert isinstance(model.model, BigModelGPTModel)  # the zoo's GPT body, not a copy
    model.train()
    ids, labels = batch("sasrec")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8


def test_bert4rec_predicts_at_an_appended_mask():
    model = make("bert4rec")
    history = [3, 4, 5]
    expected = model(input_ids=torch.tensor([[3, 4, 5, 21]])).logits[:, -1]
    got = model.next_item_logits(*model.history_tensors([history]))
    torch.testing.assert_close(got, expected)
    # A history as long as every position: the oldest item makes room for the mask.
    long = list(range(1, 15))
    got = model.next_item_logits(*model.history_tensors([long]))
    expected = model(input_ids=torch.tensor([long[-11:] + [21]])).logits[:, -1]
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", MODELS)
def test_recommend_in_raw_ids(name):
    model = make(name)
    logits = model.next_item_logits(*model.history_tensors([[2, 3]]))[0]
    answer = model.recommend([["item-1", "item-2"]], k=5)[0]
    scores = logits[1:21].clone()
    scores[[1, 2]] = float("-inf")  # the history's items are left out
    best = scores.topk(5)
    assert [a["item"] for a in answer] == [ITEMS[i] for i in best.indices.tolist()]
    torch.testing.assert_close(torch.tensor([a["score"] for a in answer]), best.values)
    keeping = model.recommend([["item-1", "item-2"]], k=20, exclude_seen=False)[0]
    assert {a["item"] for a in keeping} == set(ITEMS)
    assert len(model.recommend([["item-1", "item-2"]], k=20)[0]) == 18  # fewer remain once the history is left out


@pytest.mark.parametrize("name", MODELS)
def test_recommend_bad_input(name):
    model = make(name)
    with pytest.raises(ValueError, match=r"k=21 is larger than the catalogue \(20 items\): ask for at most 20"):
        model.recommend([["item-1"]], k=21)
    with pytest.raises(ValueError, match=r"History 1 is empty: a recommendation needs at least one item"):
        model.recommend([["item-1"], []])
    with pytest.warns(UserWarning, match=r"History 0 names 1 item\(s\) the model does not know: \['nope'\]"):
        assert model.recommend([["nope", "item-3"]], k=2) == model.recommend([["item-3"]], k=2)
    with pytest.raises(ValueError, match=r"does not know: \['nope'\]\. Remove them, or pass unknown='ignore'"):
        model.recommend([["nope", "item-3"]], unknown="error")
    with (
        pytest.raises(ValueError, match="History 0 is empty once unknown items are dropped"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        model.recommend([["nope"]])
    with pytest.raises(ValueError, match="must be a list of histories"):
        model.recommend("item-1")


@pytest.mark.parametrize("name", MODELS)
def test_item_map_must_match_model(name):
    config_class = MODELS[name][0]
    with pytest.raises(
        ValueError, match=r"item map does not match the model: `item_ids` lists 3 items .*num_items=20"
    ):
        config_class.from_preset(f"{name}-tiny", item_ids=["a", "b", "c"])
    model = make(name)
    model.config.item_ids = ITEMS[:5]  # changed after loading
    with pytest.raises(ValueError, match=r"config.item_ids lists 5 items but the model has num_items=20"):
        model.recommend([["item-1"]])
    with pytest.raises(ValueError, match=r"`input_ids` contains 25.*encode raw ids with the model's own item map"):
        model(input_ids=torch.tensor([[1, 25]]))
    with pytest.raises(ValueError, match=r"`loss` 'focal' is not one of bce, ce, sampled_ce:N, gbce:k,t"):
        config_class.from_preset(f"{name}-tiny", loss="focal")


@pytest.mark.parametrize("name", MODELS)
def test_save_load_through_registry_and_pipeline(name, tmp_path):
    model = make(name)
    model.save_pretrained(tmp_path)
    add_sequential_recommendation_pipeline(tmp_path)
    declared = json.loads((tmp_path / "config.json").read_text())["custom_pipelines"]["next-item-recommendation"]
    assert declared["pt"] == ["AutoModelForMaskedLM" if name == "bert4rec" else "AutoModelForCausalLM"]
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config) is MODELS[name][0] and config.item_ids == ITEMS
    loaded = MODELS[name][2].from_pretrained(tmp_path)
    assert type(loaded) is MODELS[name][1]
    ids, _ = batch(name)
    assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    assert_same_answers(
        loaded.recommend([["item-4", "item-9"]], k=3)[0], model.recommend([["item-4", "item-9"]], k=3)[0]
    )
    recommend = pipeline("sequential-recommendation", model=str(tmp_path))
    expected = model.recommend([["item-4", "item-9"], ["item-1"]], k=3)
    for got, want in zip(recommend([["item-4", "item-9"], ["item-1"]], k=3), expected):
        assert_same_answers(got, want)
    assert_same_answers(recommend(["item-4", "item-9"], k=3), expected[0])


def test_adding_the_pipeline_keeps_the_folders_other_pipelines(tmp_path):
    make("sasrec").save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    config = json.loads(config_file.read_text())
    other = {"impl": "pipeline_next_token.NextTokenPipeline", "pt": ["AutoModelForCausalLM"], "type": "text"}
    config["custom_pipelines"] = {"next-token": other}
    config_file.write_text(json.dumps(config))
    add_sequential_recommendation_pipeline(tmp_path)
    add_question_answering_pipeline(tmp_path)
    declared = json.loads(config_file.read_text())["custom_pipelines"]
    assert declared["next-token"] == other
    assert declared["next-item-recommendation"]["impl"] == "sequential_recommendation.SequentialRecommendationPipeline"
    assert declared["next-item-recommendation"]["pt"] == ["AutoModelForCausalLM"]
    assert declared["extractive-question-answering"]["pt"] == ["AutoModelForQuestionAnswering"]
    assert (tmp_path / "sequential_recommendation.py").is_file()
    with pytest.raises(FileNotFoundError, match="has no config.json: save the recommender there first"):
        add_sequential_recommendation_pipeline(tmp_path / "missing")


REMOTE = """
import json, sys
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, pipeline
out = {}
for folder, auto in json.loads(sys.argv[1]).items():
    cls = {"AutoModelForCausalLM": AutoModelForCausalLM, "AutoModelForMaskedLM": AutoModelForMaskedLM}[auto]
    model = cls.from_pretrained(folder, trust_remote_code=True)
    pipe = pipeline(model=folder, trust_remote_code=True)
    out[folder] = {
        "module": type(model).__module__,
        "recommend": model.recommend([["item-4", "item-9"]], k=3),
        "pipeline": [a["item"] for a in pipe(["item-4", "item-9"], k=3)],
    }
print("RESULTS" + json.dumps(out))
"""


def test_remote_code_without_hf_bigmodel(tmp_path):
    folders, expected = {}, {}
    for name, (_, _, auto) in MODELS.items():
        model = make(name)
        folder = tmp_path / name
        model.save_pretrained(folder)
        add_sequential_recommendation_pipeline(folder)
        folders[str(folder)] = auto.__name__
        expected[str(folder)] = model.recommend([["item-4", "item-9"]], k=3)
    results = run_python(WITHOUT_HF_BIGMODEL + REMOTE, json.dumps(folders), cwd=tmp_path,
                         env={"HF_HOME": str(tmp_path / "hf")})  # fmt: skip
    for folder, result in results.items():
        assert result["module"].startswith("transformers_modules.")
        assert_same_answers(result["recommend"][0], expected[folder][0])
        assert result["pipeline"] == [a["item"] for a in expected[folder][0]]


def test_recommenders_are_exported_and_registered():
    assert set(hf_bigmodel.RECOMMENDERS) == {"sasrec", "bert4rec"}
    assert hf_bigmodel.RECOMMENDERS["sasrec"].heads == {"causal-lm": BigModelSASRecForCausalLM}
    assert hf_bigmodel.RECOMMENDERS["bert4rec"].heads == {"masked-lm": BigModelBert4RecForMaskedLM}
    config = BigModelSASRecConfig.from_preset("sasrec-50", num_items=23715)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (50, 2, 1)
    assert config.max_position_embeddings == 50 and config.vocab_size == 23716
    assert BigModelSASRecConfig.from_preset("sasrec-200", num_items=5).max_position_embeddings == 200
    config = BigModelBert4RecConfig.from_preset("bert4rec-50", num_items=54542)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (64, 2, 2)
    assert config.vocab_size == 54544 and config.mask_token_id == 54543


@pytest.mark.parametrize("name", MODELS)
def test_training_forward_scores_labelled_positions_only(name):
    # The loss of a training step is the cross-entropy of the full (batch, seq, vocab) logits at the labelled
    # positions (test_losses_match_reference), but the tensor itself is never built in training.
    model = make(name)
    ids, labels = batch(name)
    model.train()
    output = model(input_ids=ids, labels=labels)
    assert output.logits is None and output.loss is not None
    assert model(input_ids=ids).logits.shape == (*ids.shape, model.config.vocab_size)  # without labels: all of them
    model.eval()
    assert model(input_ids=ids, labels=labels).logits is not None


@pytest.mark.parametrize("name", MODELS)
def test_candidate_scores_are_the_logits_at_the_candidates(name):
    model = make(name)
    histories = [[3, 4, 5, 6], [7], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]
    input_ids, attention_mask = model.history_tensors(histories)
    candidates = torch.tensor([[6, 1, 20], [2, 7, 7], [11, 3, 19]])
    with torch.no_grad():
        full = model.next_item_logits(input_ids, attention_mask)
        scores = model.candidate_scores(input_ids, attention_mask, candidates)
    torch.testing.assert_close(scores, full.gather(1, candidates), rtol=1e-5, atol=1e-5)
