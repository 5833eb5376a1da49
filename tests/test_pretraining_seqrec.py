"""`hf-bigmodel pretrain sasrec|bert4rec`: a short Trainer run per model on a toy catalogue walk, its folder (item
map, card with protocols and sha256, eval_results.json, pipeline code), resume, and bad input."""

import json

import numpy as np
import pytest
from transformers import pipeline

from hf_bigmodel.data.seqrec import file_sha256
from hf_bigmodel.publish.push import plan_push
from hf_bigmodel.training import pretrain
from hf_bigmodel.training.pretrain_seqrec import main_sasrec

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory):
    """200 users walking a 60-item catalogue in steps of one (item i is followed by i + 1)."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("seqrec") / "walks.txt"
    lines = []
    for user in range(1, 201):
        start = int(rng.integers(0, 60))
        lines += [f"{user} {(start + j) % 60 + 1}" for j in range(8)]
    path.write_text("\n".join(lines) + "\n")
    return path


def flags(toy_file, output_dir, *extra):
    return ["--train_file", str(toy_file), "--output_dir", str(output_dir), "--num_train_epochs", "4",
            "--per_device_train_batch_size", "32", "--learning_rate", "1e-2", "--num_negatives", "20",
            "--logging_steps", "5", "--report_to", "none", *extra]  # fmt: skip


@pytest.mark.slow  # two short trainings
@pytest.mark.parametrize("arch", ["sasrec", "bert4rec"])
def test_pretrain_recommender_end_to_end(arch, toy_file, tmp_path, capsys):
    out = tmp_path / arch
    # The cloze task learns the walk more slowly than next-item prediction at every position.
    epochs = ["--num_train_epochs", "4" if arch == "sasrec" else "25"]
    assert pretrain.main([arch, *flags(toy_file, out, "--preset", f"{arch}-tiny", *epochs)]) == 0
    printed = capsys.readouterr().out
    assert "sampled-uniform: 20 negatives drawn uniformly from items the user never touched" in printed
    results = json.loads((out / "eval_results.json").read_text())
    assert results["data"]["sha256"] == file_sha256(toy_file) and results["data"]["users"] == 200
    assert set(results["test"]) == {"sampled-uniform", "sampled-popularity", "full"}
    assert results["test"]["sampled-uniform"]["HR@10"] > 10 / 21 + 0.2  # it learned the walk: well above chance
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["best_metric"] is not None  # validation NDCG@10 chose the checkpoint
    assert any("eval_sampled-uniform_NDCG@10" in entry for entry in state["log_history"])
    card = (out / "README.md").read_text()
    assert file_sha256(toy_file) in card and "model-index" in card
    assert "full: ranked against all 60 items, the user's other history items filtered out; 200 users" in card
    config = json.loads((out / "config.json").read_text())
    assert config["item_ids"] == list(range(1, 61))
    assert "next-item-recommendation" in config["custom_pipelines"]
    pushed = plan_push(out, repo_id=f"me/{arch}").paths()  # what --push_to_hub and `hf-bigmodel push` upload
    code = {"sasrec": "modeling_gpt.py", "bert4rec": "modeling_bert.py"}[arch]
    assert {"README.md", "config.json", "model.safetensors", code, "sequential_recommendation.py"} <= set(pushed)
    answer = pipeline("sequential-recommendation", model=str(out))([5, 6, 7], k=3)
    assert len(answer) == 3 and all(a["item"] not in (5, 6, 7) for a in answer)
    # The same command again: the run is finished, nothing is trained.
    assert pretrain.main([arch, *flags(toy_file, out, "--preset", f"{arch}-tiny", *epochs)]) == 0
    assert "already" in capsys.readouterr().err


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n1 3\n1 4 7\n")
    assert main_sasrec(flags(bad, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "bad.txt, line 3: expected `user item`" in err and "Traceback" not in err
    ok = tmp_path / "ok.txt"
    ok.write_text("1 2\n1 3\n1 4\n")
    assert main_sasrec([*flags(ok, tmp_path / "out2"), "--preset", "bert4rec-tiny"]) == 2
    assert "--preset 'bert4rec-tiny' is not a sasrec preset; choose from sasrec-tiny" in capsys.readouterr().err
    assert main_sasrec([*flags(ok, tmp_path / "out3"), "--loss", "focal"]) == 2
    assert "`loss` 'focal' is not one of bce, ce, sampled_ce:N, gbce:k,t" in capsys.readouterr().err
    assert main_sasrec([*flags(ok, tmp_path / "out4"), "--config_overrides", "num_items=5"]) == 2
    assert "cannot set num_items: it comes from the data's item map" in capsys.readouterr().err


def test_batches_are_random_unless_grouping_is_asked_for():
    # Grouped batches scored lower on Video (test NDCG@10 0.5204 against 0.5506), so the CLI leaves Trainer's
    # random sampling alone; an explicit strategy is kept.
    from hf_bigmodel.training.pretrain_seqrec import default_flags

    argv = ["--train_file", "data.txt", "--output_dir", "out"]
    assert "--train_sampling_strategy" not in default_flags(argv)
    asked = default_flags([*argv, "--train_sampling_strategy", "group_by_length"])
    assert asked.count("--train_sampling_strategy") == 1
    assert asked[asked.index("--train_sampling_strategy") + 1] == "group_by_length"


def test_trainer_groups_batches_by_real_history_length(tmp_path):
    # Trainer's own group_by_length would read each example's padded length (always max_length); the recommender
    # trainer hands the sampler the real ones, which the collator's cut of the shared padding needs.
    from transformers import TrainingArguments  # noqa: PLC0415

    from hf_bigmodel import BigModelSASRecConfig, BigModelSASRecForCausalLM  # noqa: PLC0415
    from hf_bigmodel.data.seqrec import CausalItemDataset, causal_item_collator  # noqa: PLC0415
    from hf_bigmodel.training.pretrain_seqrec import RecommenderTrainer  # noqa: PLC0415

    lengths = np.random.default_rng(0).integers(2, 31, size=64).tolist()
    dataset = CausalItemDataset([list(range(1, n + 1)) for n in lengths], max_length=32)
    model = BigModelSASRecForCausalLM(BigModelSASRecConfig.from_preset("sasrec-tiny", num_items=40))

    def padded_cells(strategy: str) -> int:
        args = TrainingArguments(str(tmp_path), per_device_train_batch_size=4, train_sampling_strategy=strategy,
                                 report_to="none", use_cpu=True)  # fmt: skip
        trainer = RecommenderTrainer(model=model, args=args, train_dataset=dataset,
                                     data_collator=causal_item_collator)  # fmt: skip
        if strategy == "group_by_length":
            assert trainer._get_train_sampler().lengths == dataset.lengths == lengths
        return sum(batch["input_ids"].numel() for batch in trainer.get_train_dataloader())

    grouped, shuffled = padded_cells("group_by_length"), padded_cells("random")
    assert sum(lengths) <= grouped < shuffled < 64 * 32  # the collator cuts either way; grouping cuts more


def test_saved_model_takes_loss_and_config_overrides(tmp_path):
    """--loss and --config_overrides change a saved recommender's config as they change a preset's (they were
    silently ignored with --model_name_or_path); its weights stay, a typo is named, and another item map is refused."""
    import torch  # noqa: PLC0415

    from hf_bigmodel import BigModelSASRecConfig, BigModelSASRecForCausalLM  # noqa: PLC0415
    from hf_bigmodel.data import DataError  # noqa: PLC0415
    from hf_bigmodel.data.seqrec import ItemMap  # noqa: PLC0415
    from hf_bigmodel.training.pretrain_seqrec import ModelArguments, build_model  # noqa: PLC0415

    items = ItemMap(list(range(1, 41)))
    saved = BigModelSASRecForCausalLM(
        BigModelSASRecConfig.from_preset("sasrec-tiny", num_items=40, item_ids=items.item_ids)
    )
    saved.save_pretrained(tmp_path / "saved")
    args = ModelArguments(model_name_or_path=str(tmp_path / "saved"), loss="sampled_ce:7",
                          config_overrides="hidden_dropout=0.3")  # fmt: skip
    model = build_model("sasrec", args, items)
    assert (model.config.loss, model.config.hidden_dropout) == ("sampled_ce:7", 0.3)
    assert (saved.config.loss, saved.config.hidden_dropout) != ("sampled_ce:7", 0.3)
    for name, tensor in saved.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, rtol=0, atol=0)
    args.loss = "focal"
    with pytest.raises(ValueError, match=r"`loss` 'focal' is not one of bce, ce, sampled_ce:N, gbce:k,t"):
        build_model("sasrec", args, items)
    args.loss, args.config_overrides = None, "hiden_dropout=0.3"
    with pytest.raises(ValueError, match=r"has no field 'hiden_dropout' .*Did you mean hidden_dropout"):
        build_model("sasrec", args, items)
    args.config_overrides = None
    with pytest.raises(DataError, match=r"has an item map of 40 items that is not this data's \(39 items\)"):
        build_model("sasrec", args, ItemMap(list(range(1, 40))))
    # A preset takes the same check, with the same hint.
    with pytest.raises(ValueError, match=r"has no field 'hiden_dropout' .*Did you mean hidden_dropout"):
        build_model("sasrec", ModelArguments(preset="sasrec-tiny", config_overrides="hiden_dropout=0.3"), items)
