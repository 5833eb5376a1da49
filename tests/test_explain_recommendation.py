"""`explain` on the recommenders: which past items drove a recommendation, checked on SASRec and BERT4Rec trained
here on a task whose answer is known (the first item of a history decides the next one)."""

from __future__ import annotations

import random

import pytest
import torch

pytest.importorskip("captum")

import hf_bigmodel  # noqa: E402
from hf_bigmodel import explain  # noqa: E402
from hf_bigmodel.explanation import ExplainError  # noqa: E402
from hf_bigmodel.explanation.cli import main as explain_cli  # noqa: E402

ITEMS = [f"item{n}" for n in range(1, 21)]  # raw ids; model id n is ITEMS[n - 1]
KEYS = (1, 2, 3)  # a history's first item decides its next one: key k -> item k + 10
NOISE = tuple(range(4, 10))


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest.py: tiny models, one thread


def histories(count: int, seed: int) -> list[list[int]]:
    """[key, 3 noise items, the key's answer], model ids."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        key = rng.choice(KEYS)
        rows.append([key, *rng.sample(NOISE, 3), key + 10])
    return rows


def train(model, masked: bool) -> None:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(150):
        batch = torch.tensor(histories(32, seed=step))
        if masked:  # BERT4Rec: the answer masked, as a recommendation asks for it
            labels = torch.full_like(batch, -100)
            labels[:, -1] = batch[:, -1]
            batch = batch.clone()
            batch[:, -1] = model.config.mask_token_id
            loss = model(input_ids=batch, labels=labels).loss
        else:
            labels = torch.full_like(batch, -100)
            labels[:, -1] = batch[:, -1]  # only the answer is learnable; the noise is random
            loss = model(input_ids=batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


@pytest.fixture(scope="module")
def trained() -> dict:
    models = {}
    for arch, (config_class, model_class) in {
        "sasrec": (hf_bigmodel.BigModelSASRecConfig, hf_bigmodel.BigModelSASRecForCausalLM),
        "bert4rec": (hf_bigmodel.BigModelBert4RecConfig, hf_bigmodel.BigModelBert4RecForMaskedLM),
    }.items():
        torch.manual_seed(0)
        config = config_class.from_preset(f"{arch}-tiny", item_ids=ITEMS, loss="ce")
        model = model_class(config)
        train(model, masked=arch == "bert4rec")
        models[arch] = model
    return models


def raw(ids: list[int]) -> list[str]:
    return [ITEMS[i - 1] for i in ids]


@pytest.mark.parametrize("arch", ["sasrec", "bert4rec"])
def test_the_model_learned_the_task(arch, trained):
    test = histories(30, seed=999)
    answers = [trained[arch].recommend([raw(h[:-1])], k=1)[0][0]["item"] for h in test]
    assert sum(a == ITEMS[h[-1] - 1] for a, h in zip(answers, test)) >= 27


def occlusion_drops(model, history: list[int], target: int) -> tuple[float, list[float]]:
    """How much the target's logit falls when every item is replaced by the baseline item (padding for SASRec, the
    mask for BERT4Rec: what the attributions sum to), and when each item alone is; computed here without explain."""
    ids, mask = model.history_tensors([history])
    baseline = getattr(model.config, "mask_token_id", None) or 0
    with torch.no_grad():
        full = float(model.next_item_logits(ids, mask)[0, target])
        total = full - float(model.next_item_logits(torch.full_like(ids, baseline), mask)[0, target])
        drops = []
        for position in range(ids.shape[1]):
            occluded = ids.clone()
            occluded[0, position] = baseline
            drops.append(full - float(model.next_item_logits(occluded, mask)[0, target]))
    return total, drops


@pytest.mark.parametrize("arch", ["sasrec", "bert4rec"])
@pytest.mark.parametrize("method", ["integrated_gradients", "lime", "kernel_shap"])
def test_the_deciding_item_gets_the_largest_attribution(arch, method, trained):
    model = trained[arch]
    informative = hits = 0
    for history in histories(8, seed=123):
        explanation = explain(model, raw(history[:-1]), method=method, n_samples=300)
        assert explanation.kind == "recommendation" and explanation.tokens == raw(history[:-1])
        assert explanation.target_label == ITEMS[history[-1] - 1]  # the default target: the top recommendation
        assert explanation.attributions.shape == (4,)
        # The model may answer one key by default, from a history of baseline items too: the attributions then sum
        # to about 0 and no item can lead. Only histories whose key item matters, alone and in total, are judged.
        total, drops = occlusion_drops(model, history[:-1], history[-1])
        if total > 1.0 and drops[0] > 1.0 and drops[0] == max(drops):
            informative += 1
            hits += int(explanation.attributions.argmax()) == 0
    assert informative >= 4, f"the {arch} model relies on the key item in only {informative} of 8 histories"
    assert hits == informative, f"{method} on {arch}: the key item led in {hits} of {informative} histories"


@pytest.mark.parametrize("arch", ["sasrec", "bert4rec"])
@pytest.mark.parametrize("output", ["logit", "probability"])
def test_integrated_gradients_are_complete(arch, output, trained):
    model = trained[arch]
    history = raw(histories(1, seed=5)[0][:-1])
    explanation = explain(model, history, target="item17", output=output)
    assert explanation.target_label == "item17" and explanation.target == 17
    # f(history) - f(baseline history), recomputed here: the baseline item is padding (SASRec) or the mask (BERT4Rec)
    ids, mask = model.history_tensors(model.encode_histories([history]))
    baseline = torch.full_like(ids, getattr(model.config, "mask_token_id", None) or 0)
    with torch.no_grad():
        pick = (lambda x: x.softmax(-1)) if output == "probability" else (lambda x: x)
        change = float(
            pick(model.next_item_logits(ids, mask))[0, 17] - pick(model.next_item_logits(baseline, mask))[0, 17]
        )
    assert abs(float(explanation.attributions.sum()) - change) <= 0.01 * abs(change) + 1e-6
    assert explanation.convergence_delta <= 0.01 * abs(change) + 1e-6
    with torch.no_grad():
        probabilities = model.next_item_logits(ids, mask)[0, 1:21].softmax(-1)
    assert explanation.probability == pytest.approx(float(probabilities[16]), rel=1e-5)


def test_model_randomisation_changes_the_attributions(trained):
    history = raw(histories(1, seed=8)[0][:-1])
    before = explain(trained["sasrec"], history, target="item12").attributions
    torch.manual_seed(1)
    fresh = hf_bigmodel.BigModelSASRecForCausalLM(trained["sasrec"].config).eval()
    after = explain(fresh, history, target="item12").attributions
    assert float((before - after).norm() / before.norm()) > 0.5


@pytest.mark.parametrize("arch", ["sasrec", "bert4rec"])
def test_gradient_x_input_is_the_gradient_times_the_item_embeddings(arch, trained):
    model = trained[arch]
    history = raw(histories(1, seed=4)[0][:-1])
    explanation = explain(model, history, method="gradient_x_input", target="item14")
    ids, mask = model.history_tensors(model.encode_histories([history]))
    captured = {}

    def keep(module, args, out):  # the history's item embeddings (BERT4Rec appends a mask after them)
        out.retain_grad()
        captured["embeds"] = out

    handle = model.get_input_embeddings().register_forward_hook(keep)
    try:
        model.next_item_logits(ids, mask)[0, 14].backward()
    finally:
        handle.remove()
    length = ids.shape[1]
    embeds, gradient = captured["embeds"][0, :length], captured["embeds"].grad[0, :length]
    torch.testing.assert_close(explanation.attributions, (gradient * embeds).sum(-1).detach(), rtol=1e-4, atol=1e-6)
    model.zero_grad()


def test_bad_input(trained):
    model = trained["sasrec"]
    with pytest.raises(ExplainError, match="not in the model's catalogue"):
        explain(model, ["item1", "item5"], target="item99")
    with pytest.raises(ExplainError, match="History 0 is empty"):
        explain(model, [])
    with pytest.raises(ExplainError, match="pass a list of raw item ids"):
        explain(model, "item1 item5")
    with pytest.raises(ExplainError, match="Method 'grad_cam' does not fit a recommendation model"):
        explain(model, ["item1"], method="grad_cam")


def test_from_a_folder_and_the_cli(trained, tmp_path, capsys):
    folder = tmp_path / "bert4rec"
    trained["bert4rec"].save_pretrained(folder)
    history = raw(histories(1, seed=3)[0][:-1])
    direct = explain(trained["bert4rec"], history, method="lime", n_samples=100)
    assert explain_cli([str(folder), "--history", " ".join(history), "--method", "lime", "--n_samples", "100",
                        "--output_dir", str(tmp_path / "out")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert f"lime: item {direct.target} ({direct.target_label})" in printed
    assert all(item in printed for item in history)
    saved = (tmp_path / "out" / "explanation.json").read_text()
    assert '"kind": "recommendation"' in saved and (tmp_path / "out" / "explanation.html").is_file()
    assert explain_cli([str(folder), "--history", "nothing known"]) == 2
    assert "is empty once unknown items are dropped" in capsys.readouterr().err
