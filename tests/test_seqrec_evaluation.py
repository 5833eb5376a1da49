"""The recommendation evaluator: ranks that do not depend on candidate order (ties included), HR/NDCG/MRR written
out by hand, the sampled candidates, the full protocol's filtering, and the leakage check (a model trained on
shuffled sequences scores near chance while one trained on the real ones does not)."""

import math

import datasets
import numpy as np
import pytest
import torch

from hf_bigmodel import (
    BigModelBert4RecConfig,
    BigModelBert4RecForMaskedLM,
    BigModelSASRecConfig,
    BigModelSASRecForCausalLM,
)
from hf_bigmodel.data.seqrec import CausalItemDataset, Interactions, leave_one_out, read_interactions
from hf_bigmodel.metrics import ranking_metrics
from hf_bigmodel.recommendation import (
    evaluate_recommender,
    evaluate_scores,
    model_scorer,
    ranks_from_scores,
    sample_candidates,
)

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: one thread is fastest on a busy machine


def test_rank_counts_strictly_higher_scores_and_ignores_order():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(200, 30)).astype(np.float32)  # many ties
    target = rng.integers(0, 30, size=200)
    ranks = ranks_from_scores(scores, target)
    expected = [(row > row[t]).sum() for row, t in zip(scores, target)]
    assert ranks.tolist() == expected
    for _ in range(5):  # the held-out item anywhere among the candidates: the same rank
        permutation = rng.permutation(30)
        inverse = np.argsort(permutation)
        assert ranks_from_scores(scores[:, permutation], inverse[target]).tolist() == expected


def test_ranking_metrics_by_hand():
    metrics = ranking_metrics(np.array([0, 3, 12]), ks=(1, 5, 10, 20))
    assert metrics["HR@1"] == pytest.approx(1 / 3)
    assert metrics["HR@5"] == pytest.approx(2 / 3) and metrics["HR@20"] == pytest.approx(1.0)
    assert metrics["NDCG@5"] == pytest.approx((1 + 1 / math.log2(5)) / 3)
    assert metrics["MRR@10"] == pytest.approx((1 + 1 / 4) / 3)
    assert metrics["MRR@20"] == pytest.approx((1 + 1 / 4 + 1 / 13) / 3)
    with pytest.raises(ValueError, match="no user was evaluated"):
        ranking_metrics(np.array([]))


def toy_split(users: int = 60, items: int = 400, length: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    sequences = [rng.choice(np.arange(1, items + 1), size=length, replace=False).tolist() for _ in range(users)]
    return leave_one_out(Interactions(list(range(users)), sequences))


@pytest.mark.parametrize("protocol", ["sampled-uniform", "sampled-popularity"])
def test_sampled_candidates(protocol):
    split = toy_split()
    candidates = sample_candidates(split, "test", protocol, num_negatives=100, seed=3)
    assert candidates.shape == (len(split.history("test")), 101)
    assert (candidates[:, 0] == split.targets("test")).all()
    for row, seen in zip(candidates, split.seen()):
        assert len(set(row[1:].tolist())) == 100  # without replacement
        assert not set(row[1:].tolist()) & set(seen)  # never an item the user touched
    assert np.array_equal(candidates, sample_candidates(split, "test", protocol, num_negatives=100, seed=3))


def test_popularity_sampling_follows_counts():
    # Item 1..5 are in every sequence of 40 users, the other 300 items once each: user 0's negatives by popularity
    # favour the popular items that user 0 never touched.
    sequences = [[1, 2, 3, 4, 5, 6 + u] if u < 20 else [6 + u, 100 + u, 200 + u] for u in range(40)]
    split = leave_one_out(Interactions(list(range(40)), sequences))
    counts = split.popularity()
    uniform = sample_candidates(split, "test", "sampled-uniform", num_negatives=20, seed=0)[20:, 1:]
    popular = sample_candidates(split, "test", "sampled-popularity", num_negatives=20, seed=0)[20:, 1:]
    assert counts[popular].mean() > counts[uniform].mean()


def test_full_protocol_filters_history_and_counts_ties():
    split = toy_split(users=30, items=50, length=5)
    users = len(split.history("test"))
    histories, targets = split.history("test"), split.targets("test")

    def oracle(batch):  # the held-out item scores 1, the history items 2 (filtered out), the rest 0
        scores = torch.zeros(len(batch), split.num_items + 1)
        for row, history in enumerate(batch):
            scores[row, history] = 2.0
            scores[row, targets[histories.index(history)]] = 1.0
        return scores

    report = evaluate_scores(oracle, split, "test", protocols=["full", "sampled-uniform"], num_negatives=20)
    assert report.metrics["full"]["HR@1"] == 1.0 and report.metrics["sampled-uniform"]["HR@1"] == 1.0
    constant = evaluate_scores(lambda b: torch.zeros(len(b), split.num_items + 1), split, "test", protocols=["full"])
    assert constant.metrics["full"]["HR@1"] == 1.0 and constant.ties["full"] == users  # ties are counted and shown
    text = str(constant)
    assert (
        f"full: ranked against all {split.num_items} items, the user's other history items filtered out; {users} "
        in text
    )
    assert f"ties count for the held-out item: {users} users tied" in text


def pattern_data(users: int = 120, items: int = 60, length: int = 10, seed: int = 0) -> Interactions:
    """Every user walks the catalogue in steps of one (item i is followed by i + 1) from a random start."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, items, size=users)
    return Interactions(list(range(users)), [[(s + j) % items + 1 for j in range(length)] for s in starts])


def train_sasrec(split, sequences, steps: int = 60, seed: int = 0) -> BigModelSASRecForCausalLM:
    torch.manual_seed(seed)
    config = BigModelSASRecConfig.from_preset("sasrec-tiny", num_items=split.num_items,
                                              item_ids=split.item_map.item_ids)  # fmt: skip
    model = BigModelSASRecForCausalLM(config)
    data = CausalItemDataset(sequences, config.max_position_embeddings)
    batch = torch.utils.data.default_collate([data[i] for i in range(len(data))])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


@pytest.mark.slow  # two short trainings
def test_leakage_check_shuffled_sequences_score_near_chance():
    data = pattern_data()
    split = leave_one_out(data)
    real = evaluate_recommender(train_sasrec(split, split.train_sequences()), split, "test",
                                protocols=["sampled-uniform"], num_negatives=20)  # fmt: skip
    # Shuffling the items across the training interactions keeps every item's frequency and destroys what comes
    # after what: whatever such a model scores comes from the evaluation itself, and must be chance (10/21 = 0.476
    # HR@10 with 20 negatives).
    rng = np.random.default_rng(1)
    train = split.train_sequences()
    pool = rng.permutation(np.concatenate([np.array(s) for s in train]))
    shuffled, start = [], 0
    for sequence in train:
        shuffled.append(pool[start : start + len(sequence)].tolist())
        start += len(sequence)
    noise = evaluate_recommender(train_sasrec(split, shuffled), split, "test",
                                 protocols=["sampled-uniform"], num_negatives=20)  # fmt: skip
    chance = 10 / 21
    assert real.metrics["sampled-uniform"]["HR@1"] > 0.9
    assert abs(noise.metrics["sampled-uniform"]["HR@10"] - chance) < 0.12
    assert noise.metrics["sampled-uniform"]["HR@1"] < 0.15


def test_model_and_data_item_maps_must_match():
    split = leave_one_out(read_interactions(datasets.Dataset.from_dict({"user": [1] * 4, "item": [3, 4, 5, 6]}),
                                            time_column=None))  # fmt: skip
    model = BigModelSASRecForCausalLM(BigModelSASRecConfig.from_preset("sasrec-tiny", num_items=20))
    with pytest.raises(ValueError, match=r"model's item map \(20 items\) is not the data's \(4 items\).*ItemMap"):
        evaluate_recommender(model, split)


@pytest.mark.parametrize("arch", ["sasrec", "bert4rec"])
def test_candidate_scoring_gives_the_full_scorers_report(arch):
    # A zoo model's scorer scores only the sampled candidates when the full protocol is not asked for; a plain
    # function (another model, as the benchmark's SASRec.pytorch) gives every id's score. Same ranks either way.
    split = toy_split(users=50, items=300, length=9)
    split.sequences[3] = split.sequences[3][:4]  # histories of several lengths, evaluated in length order
    config_class, model_class = {
        "sasrec": (BigModelSASRecConfig, BigModelSASRecForCausalLM),
        "bert4rec": (BigModelBert4RecConfig, BigModelBert4RecForMaskedLM),
    }[arch]
    torch.manual_seed(0)
    config = config_class.from_preset(f"{arch}-tiny", num_items=split.num_items, item_ids=split.item_map.item_ids,
                                      initializer_range=0.5)  # fmt: skip
    model = model_class(config).eval()
    scorer = model_scorer(model, batch_size=16)
    sampled = ["sampled-uniform", "sampled-popularity"]
    fast = evaluate_scores(scorer, split, "valid", protocols=sampled, chunk=16)
    slow = evaluate_scores(lambda histories: scorer(histories), split, "valid", protocols=sampled, chunk=16)
    default = evaluate_recommender(model, split, "valid", protocols=sampled)
    assert fast.ties == slow.ties
    for protocol in sampled:
        assert fast.metrics[protocol] == pytest.approx(slow.metrics[protocol])
        assert default.metrics[protocol] == pytest.approx(fast.metrics[protocol])
    assert fast.metrics["sampled-uniform"]["HR@20"] > 0  # something ranked: the comparison is not of zeros
