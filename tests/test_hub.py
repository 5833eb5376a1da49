"""Publishing over real HTTP, against `hf_bigmodel.testing.HubServer` on 127.0.0.1 (the client is not patched).

huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE once, at import (and CI sets HF_HUB_OFFLINE=1 for this
process), so every Hub client runs in one of two child processes started with `hub.env()`:

* the pushing child: `push_to_hub` of a model, tokenizer and custom pipeline (main, a branch, a private repo),
  `hf-bigmodel push` of a real pretraining run and of other folders, Trainer with hub_strategy end / every_save /
  checkpoint, and every failure case (`hf_bigmodel.publish.push.push_folder`), each recorded as (exception classes, message);
* the loading child, where hf_bigmodel cannot be imported: loads everything back with trust_remote_code and
  compares outputs with this process's, and checks what the client reads from the Hub (metadata, errors).

This process checks the results and what the server stored (`hub.files`, `hub.read`, `hub.commits`, ...).
"""

import hashlib
import json
import re
import shutil
import socket
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard, metadata_load
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from safetensors.torch import load_file, save_file

import hf_bigmodel
from hf_bigmodel.cli import main as cli_main
from hf_bigmodel.corpus import builtin_corpus_text
from hf_bigmodel.publish import push as hub_module
from hf_bigmodel.publish.card import GENERATED_MARKER, LOSS_CURVE, record_training_run
from hf_bigmodel.publish.folder import code_files_needed
from hf_bigmodel.publish.push import (
    HubUnreachableError,
    InvalidFolderError,
    InvalidTokenError,
    MissingTokenError,
    PermissionDeniedError,
    RepoExistsError,
    UploadInterruptedError,
    push_folder,
)
from hf_bigmodel.testing import WITHOUT_HF_BIGMODEL, HubServer, run_python
from hf_bigmodel.tokenization import train_tokenizer
from hf_bigmodel.training.pretrain_gpt import parse_args

USER = "testuser"
WRITE_TOKEN, READ_TOKEN, OTHER_TOKEN = "hf_test_write", "hf_test_read", "hf_someone_else"
SAMPLE = "the quick brown fox jumps over the lazy dog"
MODELING_SOURCE = Path(hf_bigmodel.__file__).parent / "models" / "gpt" / "modeling_gpt.py"


# Shared by both children: run a call, record (exception class names, message) or None.
ATTEMPT = """
def attempt(fn):
    try:
        fn()
    except Exception as err:
        return [[c.__name__ for c in type(err).__mro__], str(err)]
    return None
"""

# A custom pipeline, standalone as remote code must be: the next token the model predicts after a text.
PIPELINE_MODULE = """
from transformers import Pipeline


class NextTokenPipeline(Pipeline):
    def _sanitize_parameters(self, **kwargs):
        return {}, {}, {}

    def preprocess(self, text):
        return self.tokenizer(text, return_tensors="pt", add_special_tokens=False)

    def _forward(self, inputs):
        return self.model(**inputs).logits[:, -1]

    def postprocess(self, logits):
        return {"token_id": int(logits.argmax(-1)[0])}
"""

PUSH_SCRIPT = (
    ATTEMPT
    + """
import contextlib, hashlib, io, json, os, sys
from pathlib import Path
import torch
from huggingface_hub import HfApi
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments, pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from hf_bigmodel.cli import main as cli_main
from hf_bigmodel.publish.push import push_folder

job = json.loads(sys.argv[1])
user, out = job["user"], {}


def cli(*argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli_main(list(argv))
    return [code, stdout.getvalue(), stderr.getvalue()]


def snapshot(folder):
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


# push_to_hub: model and tokenizer, a branch, a private repo, an upload the server cuts once
model, tokenizer = AutoModelForCausalLM.from_pretrained(job["a"]), AutoTokenizer.from_pretrained(job["a"])
out["main"] = model.push_to_hub(job["repo"]).oid
out["main_tokenizer"] = tokenizer.push_to_hub(job["repo"]).oid
out["dev"] = AutoModelForCausalLM.from_pretrained(job["b"]).push_to_hub(job["repo"], revision="dev").oid
tokenizer.push_to_hub(job["repo"], revision="dev")
model.push_to_hub(job["private"], private=True)
tokenizer.push_to_hub(job["private"], private=True)
model.push_to_hub(job["retry"])

# a custom pipeline, with push_to_hub and with hf-bigmodel push of its saved folder
sys.path.insert(0, job["pipeline_dir"])
from pipeline_next_token import NextTokenPipeline
PIPELINE_REGISTRY.register_pipeline("next-token", pipeline_class=NextTokenPipeline, pt_model=AutoModelForCausalLM)
pipe = pipeline("next-token", model=model, tokenizer=tokenizer)
pipe.push_to_hub(job["pipeline_repo"])
pipe.save_pretrained(job["pipeline_folder"])
out["pipeline_cli"] = cli("push", job["pipeline_folder"], job["pipeline_repo"] + "-cli")

# hf-bigmodel push
out["cli_run"] = cli("push", job["run"], job["cli_repo"])
out["cli_nocode"] = cli("push", job["nocode"], "no-code")
out["cli_private"] = cli("push", job["branchy"], "branchy", "--private")
out["cli_branch"] = cli("push", job["branchy"], "branchy", "--revision", "v2", "--exist-ok")

# failures
x, fails = job["xfolder"], {}
os.environ.pop("HF_TOKEN")
fails["no_token"] = attempt(lambda: push_folder(x, f"{user}/x"))
os.environ["HF_TOKEN"] = job["token"]
fails["wrong_token"] = attempt(lambda: push_folder(x, f"{user}/x", token="hf_wrong"))
fails["read_only"] = attempt(lambda: push_folder(x, f"{user}/x", token=job["read_token"]))
fails["foreign"] = attempt(lambda: push_folder(x, f"{user}/x", token=job["other_token"]))
HfApi().create_repo(f"{user}/taken")
fails["exists"] = attempt(lambda: push_folder(x, f"{user}/taken"))
fails["unreachable"] = attempt(lambda: push_folder(x, f"{user}/x", endpoint=job["dead_endpoint"]))
out["fails"] = fails
# the server cuts the second commit to the repo halfway through its body
first = push_folder(job["dropped_v1"], job["dropped"])
before = snapshot(x)
error = attempt(lambda: push_folder(x, job["dropped"], exist_ok=True))
api = HfApi()
weights = Path(api.hf_hub_download(job["dropped"], "model.safetensors")).read_bytes()
out["drop"] = {
    "first": first.commit, "error": error, "head_after": api.repo_info(job["dropped"]).sha,
    "weights_after": hashlib.sha256(weights).hexdigest(), "folder_unchanged": snapshot(x) == before,
}
second = push_folder(x, job["dropped"], exist_ok=True)
out["drop"].update(second=second.commit, second_changed=second.changed)
# a server that takes every file inline in the commit (no LFS)
out["inline"] = push_folder(x, f"{user}/inline", endpoint=job["inline_endpoint"], token=job["inline_token"]).commit


# Trainer: uploads output_dir in the background, and the next save overwrites it while the upload may still read it
# (the upload then fails on a sha256 mismatch, which Trainer does not report). Waiting after each save makes the
# sequence of commits deterministic.
class WaitForPush(TrainerCallback):
    def __init__(self, trainer):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        self.trainer._finish_current_push()


ids = torch.tensor([job["ids"]])
for strategy in ("end", "every_save", "checkpoint"):
    torch.manual_seed(0)
    data = [{"input_ids": row, "labels": row} for row in torch.randint(3, 40, (4, 16))]
    args = TrainingArguments(
        output_dir=f"{job['trainer_dir']}/{strategy}", max_steps=2, save_steps=1, per_device_train_batch_size=2,
        use_cpu=True, report_to="none", logging_steps=1, disable_tqdm=True, push_to_hub=True,
        hub_model_id=f"{user}/trainer-{strategy}", hub_strategy=strategy, hub_token=job["token"],
        hub_always_push=True, hub_private_repo=strategy == "checkpoint",
    )
    trainer = Trainer(
        model=AutoModelForCausalLM.from_pretrained(job["a"]), args=args, train_dataset=data, processing_class=tokenizer
    )
    trainer.add_callback(WaitForPush(trainer))
    trainer.train()
    out[strategy] = trainer.push_to_hub().oid
    if strategy == "end":
        with torch.no_grad():
            logits = trainer.model.eval()(ids).logits
        save_file({"input_ids": ids, "logits": logits.contiguous()}, job["trainer_reference"])
print("RESULTS" + json.dumps(out))
"""
)

LOAD_SCRIPT = (
    WITHOUT_HF_BIGMODEL
    + ATTEMPT
    + """
import json, sys
import torch, transformers
from huggingface_hub import HfApi, hf_hub_download
from safetensors.torch import load_file

job = json.loads(sys.argv[1])
results = {}
for name, case in job["causal"].items():
    ref = load_file(case["reference"])
    model = transformers.AutoModelForCausalLM.from_pretrained(case["repo"], trust_remote_code=True, **case["kwargs"])
    with torch.no_grad():
        logits = model.eval()(ref["input_ids"]).logits
    results[name] = {"max_diff": (logits - ref["logits"]).abs().max().item(), "module": type(model).__module__}
ref = load_file(job["base_reference"])
base = transformers.AutoModel.from_pretrained(job["repo"], trust_remote_code=True).eval()
with torch.no_grad():
    hidden = base(ref["input_ids"]).last_hidden_state
results["base"] = {"max_diff": (hidden - ref["hidden"]).abs().max().item(), "class": type(base).__name__}
for name, repo in job["tokenizers"].items():
    tokenizer = transformers.AutoTokenizer.from_pretrained(repo, trust_remote_code=True)
    results["tokenizer_" + name] = tokenizer(job["sample"], add_special_tokens=False)["input_ids"]
for repo in job["pipelines"]:
    pipe = transformers.pipeline("next-token", model=repo, trust_remote_code=True)
    results["pipeline_" + repo] = [pipe(job["sample"]), type(pipe).__module__]
private = lambda: transformers.AutoModelForCausalLM.from_pretrained(job["private"], trust_remote_code=True, token=False)
results["private_anonymous"] = attempt(private)

api = HfApi()
results["card_eval"] = [[r.metric_type, r.dataset_name] for r in api.model_info(job["cli_repo"]).card_data.eval_results]
results["dev_lfs_sha256"] = api.get_paths_info(job["repo"], ["model.safetensors"], revision="dev")[0].lfs.sha256
results["private_info_anonymous"] = attempt(lambda: HfApi(token=False).model_info(job["private"]))
results["missing_file"] = attempt(lambda: hf_hub_download(job["repo"], "missing.json"))
results["missing_revision"] = attempt(lambda: hf_hub_download(job["repo"], "config.json", revision="nope"))
bad_card = b"---\\nmodel-index: 3\\n---\\n"
results["bad_card"] = attempt(lambda: api.upload_file(path_or_fileobj=bad_card, path_in_repo="README.md", repo_id=job["repo"]))
results["hf_bigmodel_imported"] = any(m.split(".")[0] == "hf_bigmodel" for m in sys.modules)
print("RESULTS" + json.dumps(results))
"""
)


def _child_env(hub: HubServer, tmp: Path) -> dict[str, str]:
    """A child process pointed at `hub`, with caches of its own under `tmp`."""
    return {**hub.env(), "HF_HOME": str(tmp / "hf_home"), "HF_HUB_CACHE": str(tmp / "hub_cache")}


def assert_error(result: list | None, error_class: type, pattern: str) -> None:
    """`result` is a child's (exception class names, message): check the class and that the message matches."""
    assert result is not None, f"expected {error_class.__name__}, nothing was raised"
    names, message = result
    assert error_class.__name__ in names, names
    assert re.search(pattern, message, re.DOTALL), message


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The server the children talk to: LFS uploads, as the Hub; a write, a read-only and another user's token."""
    tokens = {WRITE_TOKEN: USER, READ_TOKEN: (USER, "read"), OTHER_TOKEN: "someone"}
    with HubServer(tmp_path_factory.mktemp("hub"), tokens=tokens) as server:
        yield server


@pytest.fixture(scope="module")
def inline_hub(tmp_path_factory):
    with HubServer(tmp_path_factory.mktemp("inline_hub"), inline_uploads=True) as server:
        yield server


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict:
    """Two tiny GPTs (a, b) with a character tokenizer, saved with reference outputs."""
    root = tmp_path_factory.mktemp("models")
    text = root / "text.txt"
    text.write_text((SAMPLE + ", and then it sleeps.\n") * 20, encoding="utf-8")
    tokenizer = train_tokenizer(kind="char", files=[text], show_progress=False)
    ids = torch.tensor([tokenizer(SAMPLE, add_special_tokens=False)["input_ids"]])
    specials = {name: getattr(tokenizer, name) for name in ("pad_token_id", "bos_token_id", "eos_token_id")}
    result = {"ids": ids, "root": root}
    for seed, name in enumerate("ab"):
        torch.manual_seed(seed)
        model = hf_bigmodel.create_model(
            "gpt-tiny", "causal-lm", initializer_range=0.5, vocab_size=len(tokenizer), **specials
        ).eval()
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        with torch.no_grad():
            tensors = {"input_ids": ids, "logits": model(ids).logits, "hidden": model.model(ids).last_hidden_state}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(root / f"{name}.safetensors"))
        result[name], result[f"{name}_reference"] = root / name, root / f"{name}.safetensors"
    return result


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real `hf-bigmodel pretrain gpt` output folder (4 steps), with training_run.json as the pretrain hook writes it."""
    root = tmp_path_factory.mktemp("pretrain")
    text = builtin_corpus_text()[:12_000]
    (root / "train.txt").write_text(text[:11_000], encoding="utf-8")
    (root / "valid.txt").write_text(text[11_000:], encoding="utf-8")
    argv = [
        "--preset", "gpt-tiny", "--tokenizer_kind", "char", "--train_file", str(root / "train.txt"),
        "--validation_file", str(root / "valid.txt"), "--output_dir", str(root / "run"), "--block_size", "32",
        "--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--logging_steps", "1", "--report_to", "none",
        "--use_cpu", "true", "--max_steps", "4", "--eval_strategy", "steps", "--eval_steps", "2", "--save_steps", "2",
        "--sample_max_new_tokens", "0", "--seed", "3", "--dataloader_num_workers", "0",
    ]  # fmt: skip
    assert cli_main(["pretrain", "gpt", *argv]) == 0
    record_training_run(root / "run", *parse_args(argv))
    return root / "run"


@pytest.fixture(scope="module")
def published(hub, inline_hub, folders, run_dir, tmp_path_factory) -> dict:
    """Runs the pushing child; returns its results, its job and the references to check against."""
    tmp = tmp_path_factory.mktemp("push_child")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(run_dir).eval()
    run_ids = torch.tensor([AutoTokenizer.from_pretrained(run_dir)(SAMPLE, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        save_file({"input_ids": run_ids, "logits": model(run_ids).logits.contiguous()}, str(tmp / "run.safetensors"))
    copies = {"nocode": "a", "branchy": "a", "xfolder": "a", "dropped_v1": "b"}
    for copy, source in copies.items():
        shutil.copytree(folders[source], tmp / copy)
    for name in ("configuration_gpt.py", "modeling_gpt.py"):
        (tmp / "nocode" / name).unlink()
    (tmp / "pipeline_code").mkdir()
    (tmp / "pipeline_code" / "pipeline_next_token.py").write_text(PIPELINE_MODULE)

    hub.inject_fault(f"{USER}/tiny-retry", "lfs_upload")  # one cut upload: the client must retry
    hub.inject_fault(f"{USER}/dropped", "commit", after=1)  # the second commit is cut halfway through
    job = {
        "a": str(folders["a"]), "b": str(folders["b"]), "run": str(run_dir), "user": USER, "token": WRITE_TOKEN,
        "read_token": READ_TOKEN, "other_token": OTHER_TOKEN, "repo": f"{USER}/tiny-gpt",
        "private": f"{USER}/tiny-private", "retry": f"{USER}/tiny-retry", "cli_repo": f"{USER}/tiny-run",
        "trainer_dir": str(tmp / "trainer"), "ids": folders["ids"][0].tolist(),
        "trainer_reference": str(tmp / "trainer_end.safetensors"), "pipeline_dir": str(tmp / "pipeline_code"),
        "pipeline_repo": f"{USER}/tiny-pipeline", "pipeline_folder": str(tmp / "pipeline_folder"),
        "dead_endpoint": f"http://127.0.0.1:{_free_port()}", "dropped": f"{USER}/dropped",
        "inline_endpoint": inline_hub.endpoint, "inline_token": inline_hub.token,
        **{copy: str(tmp / copy) for copy in copies},
    }  # fmt: skip
    run_before = _snapshot(run_dir)
    results = run_python(PUSH_SCRIPT, json.dumps(job), cwd=tmp, env=_child_env(hub, tmp))
    return {"job": job, "results": results, "run_reference": tmp / "run.safetensors", "run_before": run_before}


@pytest.fixture(scope="module")
def loaded(hub, folders, published, tmp_path_factory) -> dict:
    """Runs the loading child (no hf_bigmodel) on everything that was published."""
    job = published["job"]
    a, b = str(folders["a_reference"]), str(folders["b_reference"])
    causal = {
        "main": {"repo": job["repo"], "kwargs": {}, "reference": a},
        "dev": {"repo": job["repo"], "kwargs": {"revision": "dev"}, "reference": b},
        "private": {"repo": job["private"], "kwargs": {}, "reference": a},
        "retry": {"repo": job["retry"], "kwargs": {}, "reference": a},
        "cli": {"repo": job["cli_repo"], "kwargs": {}, "reference": str(published["run_reference"])},
        "nocode": {"repo": f"{USER}/no-code", "kwargs": {}, "reference": a},
        "trainer_end": {"repo": f"{USER}/trainer-end", "kwargs": {}, "reference": job["trainer_reference"]},
    }
    load_job = {
        "causal": causal,
        "repo": job["repo"],
        "base_reference": a,
        "tokenizers": {"main": job["repo"], "cli": job["cli_repo"]},
        "pipelines": [job["pipeline_repo"], job["pipeline_repo"] + "-cli"],
        "sample": SAMPLE,
        "private": job["private"],
        "cli_repo": job["cli_repo"],
    }
    tmp = tmp_path_factory.mktemp("load_child")
    return run_python(LOAD_SCRIPT, json.dumps(load_job), cwd=tmp, env=_child_env(hub, tmp))


# ------------------------------------------------------------------------------ pushing and loading back


def test_remote_code_loads_without_hf_bigmodel_and_matches(loaded):
    assert loaded["hf_bigmodel_imported"] is False
    for name in ("main", "dev", "private", "retry", "cli", "nocode", "trainer_end"):
        assert loaded[name]["module"].startswith("transformers_modules."), name
        assert loaded[name]["max_diff"] == 0.0, name
    assert loaded["base"] == {"max_diff": 0.0, "class": "BigModelGPTModel"}


def test_tokenizers_round_trip(loaded, folders, run_dir):
    from transformers import AutoTokenizer

    assert loaded["tokenizer_main"] == folders["ids"][0].tolist()
    expected = AutoTokenizer.from_pretrained(run_dir)(SAMPLE, add_special_tokens=False)["input_ids"]
    assert loaded["tokenizer_cli"] == expected


def test_custom_pipeline_pushes_with_its_code(published, loaded, folders):
    assert published["results"]["pipeline_cli"][0] == 0
    expected = int(load_file(folders["a_reference"])["logits"][0, -1].argmax())
    for repo in (f"{USER}/tiny-pipeline", f"{USER}/tiny-pipeline-cli"):
        result, module = loaded["pipeline_" + repo]
        assert result == {"token_id": expected}, repo
        assert module.startswith("transformers_modules.") and module.endswith(".pipeline_next_token"), repo


def test_push_to_hub_files_branch_and_lfs(published, loaded, folders, hub):
    repo = published["job"]["repo"]
    files = hub.files(repo)
    assert {"config.json", "model.safetensors", "configuration_gpt.py", "modeling_gpt.py", "tokenizer.json"} <= set(
        files
    )
    assert hub.branches(repo) == {"dev": published["results"]["dev"], "main": published["results"]["main_tokenizer"]}
    # The weights travel through git-LFS, and the client reads the LFS metadata back.
    weights_b = _sha256(folders["b"] / "model.safetensors")
    assert hub.files(repo, "dev")["model.safetensors"] == {
        "sha256": weights_b,
        "size": files["model.safetensors"]["size"],
        "lfs": True,
    }
    assert loaded["dev_lfs_sha256"] == weights_b
    assert hub.read(repo, "model.safetensors") == (folders["a"] / "model.safetensors").read_bytes()


def test_cut_lfs_upload_is_retried(published, hub, folders):
    puts = [status for method, path, status in hub.requests if method == "PUT" and f"/{USER}/tiny-retry/" in path]
    assert puts == [None, 200]  # the first attempt was cut by the server, the retry completed
    assert hub.read(f"{USER}/tiny-retry", "model.safetensors") == (folders["a"] / "model.safetensors").read_bytes()


def test_private_repo_needs_the_token(published, loaded, hub):
    assert hub.is_private(published["job"]["private"])
    assert_error(loaded["private_info_anonymous"], RepositoryNotFoundError, "Repository Not Found")
    assert_error(
        loaded["private_anonymous"], OSError, "is not a local folder and is not a valid model identifier.*token"
    )


def test_trainer_push_to_hub_strategies(published, hub):
    titles = {s: [t for _, t in hub.commits(f"{USER}/trainer-{s}")] for s in ("end", "every_save", "checkpoint")}
    assert titles == {
        "end": ["End of training", "initial commit"],  # nothing is pushed during training
        "every_save": [
            "End of training",
            "Training in progress, step 2",
            "Training in progress, step 1",
            "initial commit",
        ],
        "checkpoint": [
            "End of training",
            "Training in progress, step 2, checkpoint",
            "Training in progress, step 2",
            "Training in progress, step 1, checkpoint",
            "Training in progress, step 1",
            "initial commit",
        ],
    }
    files = {s: set(hub.files(f"{USER}/trainer-{s}")) for s in titles}
    for strategy in titles:
        assert {"model.safetensors", "modeling_gpt.py", "tokenizer.json"} <= files[strategy], strategy
    # "checkpoint" also pushes the latest checkpoint, resumable, under last-checkpoint/; the others do not.
    assert {"last-checkpoint/model.safetensors", "last-checkpoint/optimizer.pt"} <= files["checkpoint"]
    assert not any(f.startswith("last-checkpoint/") for f in files["every_save"] | files["end"])
    state = json.loads(hub.read(f"{USER}/trainer-checkpoint", "last-checkpoint/trainer_state.json"))
    assert state["global_step"] == 2
    assert hub.is_private(f"{USER}/trainer-checkpoint") and not hub.is_private(f"{USER}/trainer-end")


def test_cli_push_of_a_pretraining_run(published, loaded, run_dir, hub):
    code, stdout, _ = published["results"]["cli_run"]
    repo = published["job"]["cli_repo"]
    assert code == 0 and re.search(
        rf"Pushed \d+ files: {hub.endpoint}/{repo} \(branch main, commit [0-9a-f]{{12}}\)", stdout
    )
    files = hub.files(repo)
    assert {"README.md", LOSS_CURVE, "model.safetensors", "modeling_gpt.py", "all_results.json"} <= set(files)
    assert not [f for f in files if f.startswith(("checkpoint-", "tokenizer/")) or f.endswith(".bin")]
    # The card was generated from the run, accepted by the server's metadata check, and written back locally.
    text = hub.read(repo, "README.md").decode()
    assert text == (run_dir / "README.md").read_text() and GENERATED_MARKER in text
    front = yaml.safe_load(text.split("---\n")[1])
    assert front == metadata_load(run_dir / "README.md")
    results = json.loads((run_dir / "all_results.json").read_text())
    [metrics] = [r["metrics"] for r in front["model-index"][0]["results"]]
    assert {m["type"]: m["value"] for m in metrics} == {
        "perplexity": round(results["eval_perplexity"], 6),
        "loss": round(results["eval_loss"], 6),
    }
    assert ModelCard.load(run_dir / "README.md").data.pipeline_tag == "text-generation"
    assert "- Training text: `train.txt`" in text and "| `learning_rate` | 0.001 |" in text
    assert loaded["card_eval"] == [["perplexity", "valid.txt"], ["loss", "valid.txt"]]  # as the client reads it
    png = hub.read(repo, LOSS_CURVE)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png == (run_dir / LOSS_CURVE).read_bytes()

    # Apart from the card and plot written back, the folder is as training left it.
    def without_card(snapshot: dict) -> dict:
        return {k: v for k, v in snapshot.items() if k not in ("README.md", LOSS_CURVE)}

    assert without_card(_snapshot(run_dir)) == without_card(published["run_before"])


def test_cli_push_resaves_missing_code(published, hub):
    code, stdout, _ = published["results"]["cli_nocode"]
    assert code == 0
    assert (
        "modeling code re-saved from the installed hf_bigmodel: configuration_gpt.py, cpu_kernels_gpt.py, modeling_gpt.py"
        in stdout
    )
    assert 'AutoModelForCausalLM.from_pretrained("testuser/no-code", trust_remote_code=True)' in stdout
    assert hub.read(f"{USER}/no-code", "modeling_gpt.py") == MODELING_SOURCE.read_bytes()
    folder = Path(published["job"]["nocode"])
    assert (folder / "modeling_gpt.py").read_bytes() == MODELING_SOURCE.read_bytes()  # written back after the push
    # No training run: still a card, without evaluation results.
    card = ModelCard.load(folder / "README.md")
    assert card.data.eval_results is None and "Not recorded: this folder holds no training run" in card.text


def test_cli_push_to_a_branch_and_private(published, hub):
    assert published["results"]["cli_private"][0] == 0
    code, stdout, _ = published["results"]["cli_branch"]
    assert code == 0 and 'from_pretrained("testuser/branchy", revision="v2", trust_remote_code=True)' in stdout
    assert set(hub.branches(f"{USER}/branchy")) == {"main", "v2"}
    assert hub.is_private(f"{USER}/branchy")


def test_cli_refuses_folders_that_are_not_models(tmp_path, folders, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["push", str(empty), "x/y", "--dry-run"]) == 2
    assert "has no config.json, so it is not a saved model" in capsys.readouterr().err
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(folders["a"] / "config.json", no_weights)
    assert cli_main(["push", str(no_weights), "x/y"]) == 2
    assert "has no weights: expected model.safetensors" in capsys.readouterr().err
    (no_weights / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(InvalidFolderError, match=r"only pickle weights \(pytorch_model.bin\).*safetensors only"):
        push_folder(no_weights, "x/y", token="unused")
    # A saved pipeline whose code file is gone.
    broken = tmp_path / "pipeline"
    shutil.copytree(folders["a"], broken)
    config = json.loads((broken / "config.json").read_text())
    config["custom_pipelines"] = {"next-token": {"impl": "pipeline_next_token.NextTokenPipeline"}}
    (broken / "config.json").write_text(json.dumps(config))
    assert cli_main(["push", str(broken), "x/y", "--dry-run"]) == 2
    assert "custom_pipelines need pipeline_next_token.py, which" in capsys.readouterr().err


def test_push_without_card_templates_still_pushes(folders, monkeypatch):
    from hf_bigmodel.publish import card as model_card

    def no_templates():
        raise model_card.ModelCardError("No model card templates found (looked in /nowhere).")

    monkeypatch.setattr(model_card, "template_dir", no_templates)  # as in an install without model_cards/
    plan = hub_module.plan_push(folders["a"])
    assert "README.md" not in plan.generated and "model.safetensors" in plan.paths()
    assert plan.notes == ["no model card generated: No model card templates found (looked in /nowhere)."]


def test_code_files_follow_relative_imports(folders, tmp_path):
    """A code file that imports a sibling (`from .x import y`) needs it in the repo too; when the folder lacks it, the
    code is re-saved from the installed hf_bigmodel, whose files fit together."""
    folder = tmp_path / "model"
    shutil.copytree(folders["a"], folder)
    config = json.loads((folder / "config.json").read_text())
    assert code_files_needed(config) == ["configuration_gpt.py", "modeling_gpt.py"]  # what auto_map names
    # modeling_gpt.py imports its CPU kernels from the sibling cpu_kernels_gpt.py
    assert code_files_needed(config, folder) == ["configuration_gpt.py", "cpu_kernels_gpt.py", "modeling_gpt.py"]
    # Followed file by file: a sibling that is present brings in what it imports.
    (folder / "cpu_kernels_gpt.py").write_text("from .threads_gpt import split_for_threads\nFEW_ROWS = 4\n")
    assert code_files_needed(config, folder) == [
        "configuration_gpt.py", "cpu_kernels_gpt.py", "modeling_gpt.py", "threads_gpt.py",
    ]  # fmt: skip
    (folder / "threads_gpt.py").write_text("def split_for_threads():\n    return 1\n")
    complete = hub_module.plan_push(folder, card=False)
    assert not complete.generated and {"cpu_kernels_gpt.py", "threads_gpt.py"} <= set(complete.files)

    (folder / "cpu_kernels_gpt.py").unlink()
    (folder / "threads_gpt.py").unlink()
    plan = hub_module.plan_push(folder, card=False)
    assert (
        plan.notes[0]
        == "modeling code re-saved from the installed hf_bigmodel: configuration_gpt.py, cpu_kernels_gpt.py, modeling_gpt.py"
    )
    # The folder's modeling file is replaced by the installed one, with the sibling it imports.
    assert plan.generated["modeling_gpt.py"] == MODELING_SOURCE.read_bytes()
    assert plan.generated["cpu_kernels_gpt.py"] == (MODELING_SOURCE.parent / "cpu_kernels_gpt.py").read_bytes()
    pushed = tmp_path / "pushed"
    pushed.mkdir()
    for name in plan.paths():
        data = plan.generated.get(name) or plan.files[name].read_bytes()
        (pushed / name).parent.mkdir(parents=True, exist_ok=True)
        (pushed / name).write_bytes(data)
    needed = code_files_needed(config, pushed)
    assert [name for name in needed if not (pushed / name).is_file()] == []


def test_dry_run_lists_what_is_pushed(run_dir, capsys):
    assert cli_main(["push", str(run_dir), "x/y", "--dry-run"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert {"config.json", "model.safetensors", "tokenizer.json", "trainer_state.json", "README.md"} <= set(listed)
    assert not [p for p in listed if p.startswith(("checkpoint-", "tokenizer/")) or p.endswith(".bin")]


# ----------------------------------------------------------------------------------------------------- failures


def test_no_token(published):
    pattern = r"No Hugging Face token: pass --token \(token=...\), set HF_TOKEN, or run `hf auth login`"
    assert_error(published["results"]["fails"]["no_token"], MissingTokenError, pattern)


def test_wrong_token(published):
    pattern = r"rejected the token: Invalid credentials in Authorization header\. Use a valid write token"
    assert_error(published["results"]["fails"]["wrong_token"], InvalidTokenError, pattern)


def test_read_only_token_and_foreign_namespace(published):
    fails = published["results"]["fails"]
    assert_error(fails["read_only"], PermissionDeniedError, "The token of 'testuser' is read-only")
    assert_error(fails["foreign"], PermissionDeniedError, "rights to create a model under the namespace testuser")


def test_repo_that_exists(published, hub):
    pattern = r"testuser/taken already exists on http://127\.0\.0\.1:\d+\. Pass --exist-ok"
    assert_error(published["results"]["fails"]["exists"], RepoExistsError, pattern)
    assert [t for _, t in hub.commits(f"{USER}/taken")] == ["initial commit"]


def test_unreachable_endpoint(published):
    endpoint = re.escape(published["job"]["dead_endpoint"])
    pattern = rf"Cannot reach the Hub at {endpoint}: .*refused\. Check the address"
    assert_error(published["results"]["fails"]["unreachable"], HubUnreachableError, pattern)


def test_connection_dropped_mid_upload_changes_nothing(published, hub, folders):
    drop = published["results"]["drop"]
    pattern = (
        rf"dropped while uploading to {USER}/dropped .* Nothing was committed: {USER}/dropped@main is still at commit "
        rf"{drop['first'][:12]}\. .*xfolder was not modified\. Run the same command again"
    )
    assert_error(drop["error"], UploadInterruptedError, pattern)
    assert drop["head_after"] == drop["first"]
    assert drop["weights_after"] == _sha256(folders["b"] / "model.safetensors")
    assert drop["folder_unchanged"] is True
    # The same push, run again, went through; the failed one left no commit behind.
    assert drop["second_changed"] is True
    assert [c for c, _ in hub.commits(f"{USER}/dropped")][:2] == [drop["second"], drop["first"]]
    assert len(hub.commits(f"{USER}/dropped")) == 3  # initial commit, first, second


def test_server_errors_map_to_client_exceptions(loaded):
    assert_error(loaded["missing_file"], EntryNotFoundError, "Entry Not Found")
    assert_error(loaded["missing_revision"], RevisionNotFoundError, "Revision Not Found")
    assert_error(loaded["bad_card"], ValueError, r'Invalid metadata in README.md.\n- "model-index" must be a list')


def test_inline_uploads_server(published, inline_hub, folders):
    assert inline_hub.head(f"{USER}/inline") == published["results"]["inline"]
    weights = inline_hub.files(f"{USER}/inline")["model.safetensors"]
    assert weights["lfs"] is False and weights["sha256"] == _sha256(folders["a"] / "model.safetensors")


def test_server_keeps_repos_across_restarts(published, hub):
    again = HubServer(hub.root)  # not started: reads the stored state
    for repo in (published["job"]["repo"], f"{USER}/trainer-checkpoint"):
        assert again.files(repo) == hub.files(repo) and again.commits(repo) == hub.commits(repo)
    assert again.is_private(published["job"]["private"])


def test_hub_server_argument_errors(hub):
    with pytest.raises(ValueError, match="Unknown operation 'upload'; choose from create_repo, info"):
        hub.inject_fault("x/y", "upload")
    with pytest.raises(KeyError, match="No model repo 'x/nothing' on this server"):
        hub.files("x/nothing")


def test_push_is_a_cli_command():
    from hf_bigmodel.cli import COMMANDS

    assert COMMANDS["push"][0] == hub_module.__name__
