"""Intentional copies between model files stay copies.

Each model folder is standalone (its files are copied next to the weights for `trust_remote_code=True`), so code
shared by several architectures is written out in each of them, the transformers way: the copy carries a marker on
the line above it,

    # Copied from hf_bigmodel.models.gpt.cpu_kernels_gpt.BigModelGPTDropout with GPT->Transformer

naming its source (a function, class or constant of a module, or a method `Class.method`) and optional name
replacements `old->new`, applied to the source in order. This test fails, naming the file and line, when a marked
block no longer equals its source after the replacements: change the source and its copies together.

The last tests check that the copies behave alike in every architecture: the corrupt-checkpoint error, the head
count hint, and `self.dropout` as a dropout module.
"""

import ast
import difflib
import re
import textwrap
from pathlib import Path

import pytest
import torch
import transformers
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError
from torch import nn

import hf_bigmodel.models
from hf_bigmodel.models import ARCHITECTURES

MODELS_DIR = Path(hf_bigmodel.models.__file__).parent
PACKAGE = "hf_bigmodel.models"
MARKER = re.compile(r"^(?P<indent>\s*)# Copied from (?P<source>[\w.]+)(?: with (?P<replacements>.+))?\s*$")


def _definitions(body: list[ast.stmt]) -> dict[str, ast.stmt]:
    """The functions, classes and assigned names of a module or class body, by name."""
    found = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found[node.target.id] = node
    return found


def _start(node: ast.stmt) -> int:
    """First line of a definition, its decorators included."""
    return min([node.lineno] + [decorator.lineno for decorator in getattr(node, "decorator_list", [])])


def _block(lines: list[str], node: ast.stmt) -> str:
    return textwrap.dedent("\n".join(line.rstrip() for line in lines[_start(node) - 1 : node.end_lineno]))


def _all_definitions(tree: ast.Module) -> list[ast.stmt]:
    """Every definition at module level and in class bodies (where method copies sit)."""
    nodes = []
    for node in tree.body:
        nodes.append(node)
        if isinstance(node, ast.ClassDef):
            nodes.extend(node.body)
    return nodes


def _parse_replacements(text: str | None) -> list[tuple[str, str]]:
    if not text:
        return []
    pairs = []
    for item in text.split(","):
        old, arrow, new = item.strip().partition("->")
        if not arrow or not old:
            raise ValueError(f"bad replacement {item.strip()!r}: write it as old->new")
        pairs.append((old, new))
    return pairs


def _source_block(source: str, root: Path, package: str) -> str:
    """The text of `package.<folders>.<module>.<name>` (or `.<Class>.<method>`), read from the files under `root`."""
    if not source.startswith(package + "."):
        raise ValueError(f"source {source!r} is not in {package}")
    parts = source[len(package) + 1 :].split(".")
    for split in range(len(parts) - 1, 0, -1):  # the longest module path that is a file
        path = root.joinpath(*parts[:split]).with_suffix(".py")
        if path.is_file():
            names = parts[split:]
            break
    else:
        raise ValueError(f"no module file for {source!r} under {root}")
    lines = path.read_text(encoding="utf-8").splitlines()
    body = ast.parse("\n".join(lines)).body
    node = None
    for name in names:
        node = _definitions(body).get(name)
        if node is None:
            raise ValueError(f"{source!r}: {path.name} defines no {name!r} there")
        body = getattr(node, "body", [])
    return _block(lines, node)


def check_copies(root: Path = MODELS_DIR, package: str = PACKAGE) -> tuple[int, list[str]]:
    """(number of markers checked, problems as "file:line: what is wrong") for every `# Copied from` under `root`."""
    checked, problems = 0, []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if "# Copied from" not in text:
            continue
        lines = text.splitlines()
        starts = {_start(node): node for node in _all_definitions(ast.parse(text))}
        for number, line in enumerate(lines, start=1):
            match = MARKER.match(line)
            if match is None:
                continue
            where = f"{path.relative_to(root.parent)}:{number}"
            checked += 1
            node = starts.get(number + 1)
            if node is None:
                problems.append(f"{where}: the marker is not directly above a function, class, method or constant")
                continue
            try:
                expected = _source_block(match["source"], root, package)
                for old, new in _parse_replacements(match["replacements"]):
                    expected = expected.replace(old, new)
            except ValueError as error:
                problems.append(f"{where}: {error}")
                continue
            copy = _block(lines, node)
            if copy != expected:
                diff = "\n".join(
                    difflib.unified_diff(
                        expected.splitlines(), copy.splitlines(), "source (after replacements)", "copy", lineterm=""
                    )
                )
                problems.append(
                    f"{where}: the copy of {match['source']} differs from its source; change both alike\n{diff}"
                )
    return checked, problems


def test_marked_copies_equal_their_sources():
    checked, problems = check_copies()
    assert not problems, "\n\n".join(problems)
    assert checked >= 20  # the markers are found: a checker that finds none cannot fail


@pytest.mark.parametrize(
    "source",
    [
        "hf_bigmodel.models.gpt.cpu_kernels_gpt.dropout_training",
        "hf_bigmodel.models.gpt.cpu_kernels_gpt.BigModelGPTDropout",
        "hf_bigmodel.models.gpt.cpu_kernels_gpt.ChunkedCrossEntropySum",
        "hf_bigmodel.models.gpt.cpu_kernels_gpt.LOSS_CHUNK_ELEMENTS",
        "hf_bigmodel.models.gpt.cpu_kernels_gpt.FEW_ROWS",
        "hf_bigmodel.models.gpt.cpu_kernels_gpt.ThreadBlocks",
        "hf_bigmodel.models.gpt.cpu_kernels_gpt.split_for_threads",
        "hf_bigmodel.models.gpt.cpu_kernels_gpt.few_rows_linear",
        "hf_bigmodel.models.gpt.cpu_kernels_gpt.few_rows_applies",
        "hf_bigmodel.models.gpt.cpu_kernels_gpt.thread_blocks",
        "hf_bigmodel.models.gpt.cpu_kernels_gpt.fast_linear",
        "hf_bigmodel.models.gpt.cpu_kernels_gpt.drop_thread_blocks",
        "hf_bigmodel.models.bert.modeling_bert.eager_attention_forward",
        "hf_bigmodel.models.gpt.modeling_gpt._unreadable_safetensors_files",
        "hf_bigmodel.models.gpt.modeling_gpt.BigModelGPTPreTrainedModel.from_pretrained",
        "hf_bigmodel.models.gpt.configuration_gpt._check_positive_ints",
        "hf_bigmodel.models.gpt.configuration_gpt._check_heads_divide_hidden_size",
        "hf_bigmodel.models.gpt.configuration_gpt._check_probabilities",
        "hf_bigmodel.models.gpt.configuration_gpt._divisor_near",
    ],
)
def test_shared_code_is_marked_in_every_other_architecture(source):
    """Each piece of shared code has its marked copies (3 for what all four architectures share)."""
    copies = [
        path.parent.name
        for path in MODELS_DIR.rglob("*.py")
        for line in path.read_text(encoding="utf-8").splitlines()
        if (match := MARKER.match(line)) and match["source"] == source
    ]
    expected = {
        "dropout_training": {"bert", "transformer"},
        "BigModelGPTDropout": {"bert", "transformer"},
        "ChunkedCrossEntropySum": {"transformer"},
        "LOSS_CHUNK_ELEMENTS": {"transformer"},
        "FEW_ROWS": {"transformer"},
        "ThreadBlocks": {"transformer"},
        "split_for_threads": {"transformer"},
        "few_rows_linear": {"transformer"},
        "few_rows_applies": {"transformer"},
        "thread_blocks": {"transformer"},
        "fast_linear": {"transformer"},
        "drop_thread_blocks": {"transformer"},
        "eager_attention_forward": {"transformer"},
        "_check_heads_divide_hidden_size": {"bert", "transformer"},
        "_divisor_near": {"bert", "transformer"},
    }.get(source.rsplit(".", 1)[-1], {"bert", "transformer", "resnet"})
    assert sorted(copies) == sorted(expected), source


def _write_pair(root: Path, source_body: str, copy_text: str) -> None:
    (root / "alpha").mkdir()
    (root / "beta").mkdir()
    (root / "alpha" / "modeling_alpha.py").write_text(source_body, encoding="utf-8")
    (root / "beta" / "modeling_beta.py").write_text(copy_text, encoding="utf-8")


SOURCE = '''
LIMIT = 3


def scale(x, p):
    """Alpha's helper."""
    return AlphaThing(x * p)


class AlphaLayer:
    @classmethod
    def build(cls, p):
        return cls(p + LIMIT)
'''


def test_checker_accepts_faithful_copies_with_replacements(tmp_path):
    _write_pair(
        tmp_path,
        SOURCE,
        "import os\n\n\n"
        "# Copied from pkg.alpha.modeling_alpha.scale with Alpha->Beta\n"
        'def scale(x, p):\n    """Beta\'s helper."""\n    return BetaThing(x * p)\n\n\n'
        "# Copied from pkg.alpha.modeling_alpha.LIMIT\nLIMIT = 3\n\n\n"
        "class BetaLayer:\n"
        "    # Copied from pkg.alpha.modeling_alpha.AlphaLayer.build\n"
        "    @classmethod\n    def build(cls, p):\n        return cls(p + LIMIT)\n",
    )
    assert check_copies(tmp_path, "pkg") == (3, [])


def test_checker_names_the_file_and_line_of_a_drifted_copy(tmp_path):
    _write_pair(
        tmp_path,
        SOURCE,
        "# Copied from pkg.alpha.modeling_alpha.scale with Alpha->Beta\n"
        'def scale(x, p):\n    """Beta\'s helper."""\n    return BetaThing(x * p * 2)\n\n\n'
        "class BetaLayer:\n"
        "    # Copied from pkg.alpha.modeling_alpha.AlphaLayer.build\n"
        "    @classmethod\n    def build(cls, p):\n        return cls(p - LIMIT)\n",
    )
    checked, problems = check_copies(tmp_path, "pkg")
    assert checked == 2 and len(problems) == 2
    assert problems[0].startswith(
        f"{tmp_path.name}/beta/modeling_beta.py:1: the copy of pkg.alpha.modeling_alpha.scale"
    )
    assert "-    return BetaThing(x * p)\n+    return BetaThing(x * p * 2)" in problems[0]
    assert problems[1].startswith(f"{tmp_path.name}/beta/modeling_beta.py:8: the copy of ")
    assert "AlphaLayer.build differs" in problems[1]


def test_checker_reports_markers_it_cannot_follow(tmp_path):
    _write_pair(
        tmp_path,
        SOURCE,
        "# Copied from pkg.alpha.modeling_alpha.missing\ndef missing():\n    pass\n\n\n"
        "# Copied from pkg.gamma.modeling_gamma.scale\ndef scale():\n    pass\n\n\n"
        "# Copied from pkg.alpha.modeling_alpha.scale\n\nx = 1\n\n\n"
        "# Copied from pkg.alpha.modeling_alpha.scale with Alpha\ndef scale(x, p):\n    pass\n",
    )
    checked, problems = check_copies(tmp_path, "pkg")
    assert checked == 4
    assert [problem.split(": ", 1)[0].rsplit(":", 1)[1] for problem in problems] == ["1", "6", "11", "16"]
    assert "modeling_alpha.py defines no 'missing' there" in problems[0]
    assert "no module file for 'pkg.gamma.modeling_gamma.scale'" in problems[1]
    assert "not directly above a function, class, method or constant" in problems[2]
    assert "bad replacement 'Alpha': write it as old->new" in problems[3]


# --------------------------------------------------------------------------------------------------------------------
# The shared code behaves alike in every architecture
# --------------------------------------------------------------------------------------------------------------------

TINY_PRESETS = {"gpt": "gpt-tiny", "bert": "bert-tiny", "transformer": "transformer-tiny", "resnet": "resnet-tiny"}


@pytest.mark.parametrize("how", ["truncated", "garbage"])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_corrupt_checkpoint_error_names_the_file_in_every_architecture(tmp_path, arch, how):
    row = ARCHITECTURES[arch]
    row.heads["base"](row.config_class.from_preset(TINY_PRESETS[arch])).save_pretrained(tmp_path)
    bad = tmp_path / "model.safetensors"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\x93garbage" * 64)
    message = (
        rf"The checkpoint file {re.escape(str(bad))} is corrupt or truncated \(.+\), probably by an interrupted save "
        r"or download\. Re-save the model with `save_pretrained`, or re-download it, e\.g\. "
        r"`from_pretrained\(\.\.\., force_download=True\)`\."
    )
    with pytest.raises(OSError, match=message) as excinfo:
        transformers.AutoModel.from_pretrained(tmp_path)
    assert isinstance(excinfo.value.__cause__, SafetensorError)  # the safetensors error stays visible


@pytest.mark.parametrize("arch", ["gpt", "bert", "transformer"])
def test_head_count_error_suggests_a_divisor_in_every_architecture(arch):
    with pytest.raises(StrictDataclassError, match=r"Pick a head count that divides 512, e\.g\. 8\."):
        ARCHITECTURES[arch].config_class(hidden_size=512, num_attention_heads=7)


@pytest.mark.parametrize("arch", ["gpt", "bert", "transformer"])
def test_self_dropout_is_a_dropout_module_in_every_architecture(arch):
    row = ARCHITECTURES[arch]
    dropout_fields = {name: 0.5 for name in row.config_class.__dataclass_fields__ if "dropout" in name}
    model = next(reversed(row.heads.values()))(row.config_class.from_preset(TINY_PRESETS[arch], **dropout_fields))
    owners = [module for module in model.modules() if hasattr(module, "dropout")]
    assert len(owners) >= 3  # the embeddings or stack, and each layer
    for module in owners:
        assert isinstance(module.dropout, nn.Dropout) and module.dropout.p == 0.5, type(module).__name__
    torch.manual_seed(0)
    dropout = owners[-1].dropout
    x = torch.ones(100_000)
    assert torch.equal(dropout.eval()(x), x)
    kept = dropout.train()(x)
    assert abs((kept == 0).float().mean().item() - 0.5) < 0.01 and set(kept.unique().tolist()) == {0.0, 2.0}
