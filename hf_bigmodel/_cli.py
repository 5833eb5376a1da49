"""The one runner behind every `hf-bigmodel` command: how a command reports a user's mistake.

A command's module decorates its entry point, and nothing else:

    from .._cli import command

    @command("hf-bigmodel generate")
    def main(argv: list[str] | None = None) -> int:
        ...                       # parse argv, do the work, raise on bad input

What `command(prog)` guarantees, for every command:

- `--debug` anywhere in argv (it is removed before the command sees argv) or `HF_BIGMODEL_DEBUG=1` in the
  environment: nothing is caught, every error keeps its full traceback.
- A user's mistake (the errors listed by `user_error_types()`: the project's own `DataError`, `ConversionError`,
  `ModelCardError`, `InvalidFolderError`..., and the library errors that bad input raises: missing or unreadable
  files, malformed JSON, a damaged safetensors file, a bad repo id, a config that fails validation, `ValueError`s
  of transformers' argument checks) prints `PROG: error: MESSAGE` (the message says what is wrong and the fix),
  with no traceback, and exits with code 2.
- A failure outside the user's input (the Hub cannot be reached, the disk is full) prints one line the same way
  and exits with code 1; a full disk names the file being written.
- Ctrl-C prints `PROG: interrupted` and exits with code 130.
- Anything else is a bug in hf_bigmodel: one line saying so, how to see the traceback, exit code 1.

So a command raises an exception whose message is written for the user (`DataError` is the usual one) instead of
printing and returning a code itself. `SystemExit` (argparse's `--help` and usage errors) passes through untouched.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable

__all__ = ["DEBUG_ENV", "command", "describe_error", "is_disk_full", "require_folder_or_repo", "user_error_types"]

DEBUG_ENV = "HF_BIGMODEL_DEBUG"
EXIT_USER_ERROR = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


def _debug_requested() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception types that mean "the input is wrong" (exit 2). Imported when an error happens, so that the
    runner costs nothing at start-up and a command that never imports torch does not pay for it here."""
    types: list[type[BaseException]] = [ValueError, LookupError, OSError, UnicodeError]
    from .publish.folder import PushError  # the push errors that are not the network's: folder, repo, token

    types.append(PushError)
    try:  # a damaged safetensors file
        from safetensors import SafetensorError

        types.append(SafetensorError)
    except ImportError:  # pragma: no cover - safetensors comes with transformers
        pass
    try:  # a repo id that is not one, a repo or file that does not exist
        from huggingface_hub.errors import HfHubHTTPError, HFValidationError

        types += [HFValidationError, HfHubHTTPError]
    except ImportError:  # pragma: no cover
        pass
    if "datasets" in sys.modules:  # a data file datasets cannot parse (a ragged CSV); its cause names the line
        from datasets.exceptions import DatasetGenerationError

        types.append(DatasetGenerationError)
    return tuple(types)


def _failure_types() -> tuple[type[BaseException], ...]:
    """Failures that are not the user's input: the network (the project's `HubConnectionError` is a
    `ConnectionError`), a timeout."""
    return (ConnectionError, TimeoutError)


# How a full disk shows in the errors of the writers that do not raise OSError(ENOSPC): torch.save
# ("PytorchStreamWriter failed writing file ... file write failed") and safetensors ("IoError(Os { code: 28").
_DISK_FULL_SIGNS = ("No space left on device", "code: 28", "StorageFull", "file write failed")


def is_disk_full(err: BaseException) -> bool:
    """Whether `err`, or an error it was raised from, is a full disk."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return True
        if any(sign in str(err) for sign in _DISK_FULL_SIGNS):
            return True
        err = err.__cause__ or err.__context__
    return False


def describe_error(err: BaseException) -> str:
    """The one-line (at most two-line) message of a user's error: the exception's own message, with what the
    library leaves out added back (the file of an OS error, the path of a full disk)."""
    if is_disk_full(err):
        filename = err.filename if isinstance(err, OSError) else None
        where = f" while writing in {filename}" if filename else ""
        return f"no space left on the device{where}. Free some space (or use another --output_dir) and run again."
    if isinstance(err, OSError) and err.filename and err.strerror:
        return f"{err.strerror}: {err.filename}"
    message = str(err).strip()
    if isinstance(err, KeyError) and len(err.args) == 1:  # KeyError's str() is the repr of its key
        key = str(err.args[0])
        # a bare key ('added_tokens') is a library reading a file that lacks it: say so
        message = f"a required entry is missing: {key!r} (is the file complete?)" if " " not in key else key
    if "Original Traceback" in message:  # an error raised in a DataLoader worker: keep its last line
        message = message.splitlines()[-1].split("Error: ", 1)[-1]
    lines = [line for line in message.splitlines() if line.strip()] or [type(err).__name__]
    cause = _root_cause(err)
    if cause is not None and str(cause).strip() and str(cause).strip().splitlines()[0] not in message:
        # a wrapper ("An error occurred while generating the dataset") hides what went wrong, and where
        lines = [lines[0], f"caused by: {str(cause).strip().splitlines()[0]}"]
    if len(lines) > 2:  # library messages can run to a paragraph; the first two lines name the problem
        lines = lines[:2]
    return "\n".join(lines)


def _root_cause(err: BaseException) -> BaseException | None:
    """The innermost exception `err` was raised from (`raise ... from`), or None."""
    cause, seen = None, {id(err)}
    while err.__cause__ is not None and id(err.__cause__) not in seen:
        err = cause = err.__cause__
        seen.add(id(err))
    return cause


# Files that hold a tokenizer's vocabulary (the same list as hf_bigmodel.publish.folder.TOKENIZER_VOCAB_FILES).
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")  # fmt: skip


def require_folder_or_repo(value: str, what: str, needs: str = "config.json", tokenizer: bool = False) -> str:
    """Check a "saved folder or Hub repo id" argument before a library turns a local typo into "cannot reach the
    Hub" or "not a valid repo id": an existing path must be a folder holding `needs`; a value that can only be a
    path (absolute, `./`, `~`, a backslash, more than one `/`) must exist. An `owner/name` that is not a folder
    here is left to the Hub. `tokenizer`: the folder must also hold a tokenizer. Raises `ValueError` (exit 2
    through `command`) naming `what` and the value."""
    path = os.path.expanduser(value)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ValueError(f"{what} {value!r} is a file; give the folder that holds {needs}.")
        if needs and not os.path.isfile(os.path.join(path, needs)):
            raise ValueError(f"{what} {value!r} has no {needs}; is it the folder a training run or convert saved?")
        if needs.endswith(".json"):
            import json

            try:
                with open(os.path.join(path, needs), encoding="utf-8") as f:
                    content = json.load(f)
            except (OSError, ValueError) as err:
                raise ValueError(f"{what} {value!r}: {needs} is not valid JSON ({err}).") from err
            if not isinstance(content, dict):
                raise ValueError(f"{what} {value!r}: {needs} holds a {type(content).__name__}, not a JSON object.")
        if tokenizer and not any(os.path.isfile(os.path.join(path, name)) for name in TOKENIZER_FILES):
            # transformers would fall back to the slow tokenizers and blame a missing sentencepiece install
            raise ValueError(
                f"{what} {value!r} has no tokenizer (tokenizer.json). Save the tokenizer next to the model: "
                f"tokenizer.save_pretrained({value!r})."
            )
        return value
    looks_like_path = (
        os.path.isabs(path) or value.startswith((".", "~")) or "\\" in value or value.count("/") > 1 or not value
    )
    if looks_like_path:
        raise ValueError(f"{what} {value!r}: no such folder. Check the path (or give a Hub repo id, owner/name).")
    return value


def command(prog: str) -> Callable[[Callable[..., int | None]], Callable[..., int]]:
    """Decorate a command's `main(argv) -> int` so that errors reach the user as described in this module."""

    def decorate(main: Callable[..., int | None]) -> Callable[..., int]:
        @functools.wraps(main)
        def wrapper(argv: list[str] | None = None, *args, **kwargs) -> int:
            argv = list(sys.argv[1:] if argv is None else argv)
            debug = "--debug" in argv or _debug_requested()
            argv = [arg for arg in argv if arg != "--debug"]
            if debug:
                # Nested commands (demo -> pretrain) see the same choice without a flag to pass on; restored after,
                # so that one --debug call in a notebook or a test does not turn debugging on for the next ones.
                previous = os.environ.get(DEBUG_ENV)
                os.environ[DEBUG_ENV] = "1"
                try:
                    return main(argv, *args, **kwargs) or 0
                finally:
                    if previous is None:
                        os.environ.pop(DEBUG_ENV, None)
                    else:
                        os.environ[DEBUG_ENV] = previous
            try:
                return main(argv, *args, **kwargs) or 0
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
            except Exception as err:  # noqa: BLE001 - this is the one place that decides what the user sees
                return report(prog, err)

        return wrapper

    return decorate


def report(prog: str, err: BaseException) -> int:
    """Print the message of `err` for the user and return the exit code (see the module docstring)."""
    if is_disk_full(err) or isinstance(err, _failure_types()):
        print(f"{prog}: error: {describe_error(err)}", file=sys.stderr)
        return EXIT_FAILURE
    if isinstance(err, user_error_types()):
        print(f"{prog}: error: {describe_error(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(
        f"{prog}: internal error (a bug in hf_bigmodel, not in your input): {type(err).__name__}: "
        f"{describe_error(err).splitlines()[0]}\n"
        f"Run again with --debug (or {DEBUG_ENV}=1) to see the traceback, and please report it.",
        file=sys.stderr,
    )
    return EXIT_FAILURE
