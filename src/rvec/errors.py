"""Every error rvec raises on purpose.

All inherit :class:`RvecError`; the CLI turns any of them into one line on stderr and exit code 1.
Each also inherits the builtin a caller would naturally catch (``FileNotFoundError``,
``ValueError``…), so ``except ValueError`` keeps working for code that does not know rvec.
Messages are one line: what is wrong, what was found/expected, and the fix.
"""

from __future__ import annotations

import errno as _errno
import os
from pathlib import Path


class RvecError(Exception):
    """Base of every user-facing rvec error; shown to the user as one line."""


class SourceNotFoundError(RvecError, FileNotFoundError):
    """A checkpoint source (folder, hub id, GGUF file) cannot be resolved.

    Example: ``cannot resolve 'org/missing': not a local path and not on the Hugging Face Hub``
    """

    def __init__(self, message: str, *, source: str) -> None:
        super().__init__(message)
        self.source = source


class HubUnavailableError(SourceNotFoundError):
    """A hub id was given but the hub is unreachable (offline) and nothing is cached."""


class UnsafeCheckpointError(RvecError, PermissionError):
    """The checkpoint is pickled (``.bin``/``.pt``) and pickle loading was not allowed."""


class CorruptCheckpointError(RvecError, ValueError):
    """A weight file is unreadable: bad header, truncated data, inconsistent index."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class UnsafeNameError(RvecError, PermissionError):
    """A file named by a checkpoint's or vector's own metadata (a shard in ``*.index.json``, a file in
    ``rvec.json``) is not a plain name inside its folder: absolute, with ``..``, or a link out of it.

    Example: ``vec/rvec.json: aux_files names '/etc/shadow', which is not a file inside vec; the
    vector is damaged or hostile: get it again from a source you trust``
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class IncompatibleError(RvecError, ValueError):
    """Checkpoints that cannot be combined (architecture, shapes, vocabulary, lineage)."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class NonFiniteError(RvecError, ValueError):
    """A tensor contains NaN or Inf values."""

    def __init__(self, message: str, *, tensor: str) -> None:
        super().__init__(message)
        self.tensor = tensor


class OutputExistsError(RvecError, FileExistsError):
    """The output folder exists and ``overwrite`` was not requested."""


class InvalidArgumentError(RvecError, ValueError):
    """An argument value is malformed (a layer range, a schedule, a regex, a dtype…)."""


class VectorFormatError(RvecError, ValueError):
    """A folder is not a valid rvec vector (missing or bad ``rvec.json``, shards or index inconsistent)."""


class VectorIntegrityError(VectorFormatError):
    """A vector's bytes or manifest differ from what ``rvec.json`` recorded when it was written.

    Example: ``vec/vector.safetensors: sha256 3f2a… ≠ rvec.json 9c1d…; the vector was modified
    after extraction: re-run rvec extract, or pass --no-verify``
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class ConfigError(RvecError, ValueError):
    """A study or preset configuration is invalid; holds every problem found, not only the first."""

    def __init__(self, errors: list[str], *, source: str = "config") -> None:
        self.errors = list(errors)
        self.source = source
        head = f"{source}: {len(self.errors)} problem{'s' if len(self.errors) != 1 else ''}"
        super().__init__(head + "; " + "; ".join(self.errors))


class CodeExecutionNotAllowedError(RvecError, PermissionError):
    """A task needs to run model-written code but the user did not pass ``--allow-code-execution``."""


class SandboxUnavailableError(RvecError, OSError):
    """Model-written code cannot be isolated here: bubblewrap or setpriv missing, or namespaces refused."""


class DataNotFoundError(RvecError, FileNotFoundError):
    """An evaluation dataset is neither in the data directory nor reachable on the hub."""


class UnknownNameError(RvecError, KeyError):
    """A task, preset or perturbation name is not registered; the message lists the valid names.

    Example: ``unknown task 'gsm9k'; valid: bbh, bbh:boolean_expressions, …, sciq``
    """

    def __init__(self, message: str, *, name: str, valid: list[str]) -> None:
        super().__init__(message)
        self.name = name
        self.valid = list(valid)

    def __str__(self) -> str:
        # KeyError.__str__ would wrap the one-line message in quotes.
        return str(self.args[0])


class PerturbationNotApplicableError(RvecError, ValueError):
    """A perturbation cannot be applied to a task (an option shuffle on a task without options).

    Example: ``shuffle does not apply to 'bbh:word_sorting' (no lettered options); drop it for this task``
    """

    def __init__(self, message: str, *, perturbation: str, task: str) -> None:
        super().__init__(message)
        self.perturbation = perturbation
        self.task = task


class TrainingError(RvecError, RuntimeError):
    """A training phase of ``rvec pair`` failed; the message names the phase and how to resume.

    Example: ``GRPO failed: CUDA out of memory; fix the cause and continue with rvec pair … --resume -o pair/``
    """


class UnsafeOutputError(RvecError, PermissionError):
    """An output path whose replacement would destroy what it must not: the working folder, one of
    its ancestors, a filesystem root, home, or a folder holding an input of the command.

    Example: ``/data/models: holds an input of this command (/data/models/sft); choose another -o``
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class ForeignOutputError(OutputExistsError):
    """``--overwrite`` met an existing path that rvec did not write (no ``rvec.json``).

    Example: ``out: exists but was not written by rvec (no rvec.json); pass --overwrite-foreign …``
    """


class OutputError(RvecError, OSError):
    """The filesystem refused an output; the subclasses name why (``errno`` keeps the OS code).

    Example: ``out/: cannot write (Input/output error, EIO); check the path and the filesystem``
    """

    def __init__(self, message: str, *, path: str, os_errno: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.os_errno = os_errno


class ReadOnlyOutputError(OutputError):
    """The output's filesystem is mounted read-only (EROFS)."""


class DiskFullError(OutputError):
    """The output's filesystem has too little free space, before writing or while (ENOSPC, EDQUOT)."""


class OutputPermissionError(OutputError, PermissionError):
    """The user may not write where the output goes (EACCES, EPERM)."""


class OutputPathError(OutputError, NotADirectoryError):
    """A component of the output path is a file where a folder is needed (ENOTDIR, EEXIST)."""


class MissingTokenizerError(RvecError, FileNotFoundError):
    """A model folder without the tokenizer files a live model needs (``rvec eval``, studies).

    Example: ``smol/: no tokenizer files (tokenizer.json, tokenizer_config.json); copy them from …``
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


_OS_ERRORS: dict[int, tuple[type[OutputError], str]] = {
    _errno.EROFS: (ReadOnlyOutputError, "read-only filesystem; choose an -o on a writable filesystem"),
    _errno.ENOSPC: (DiskFullError, "no space left on the device; free space or choose another -o"),
    _errno.EDQUOT: (DiskFullError, "disk quota exceeded; free space or choose another -o"),
    _errno.EACCES: (OutputPermissionError, "permission denied; choose an -o you may write to"),
    _errno.EPERM: (OutputPermissionError, "operation not permitted; choose an -o you may write to"),
    _errno.ENOTDIR: (OutputPathError, "a part of the path is a file, not a folder; choose another -o"),
    _errno.EEXIST: (OutputPathError, "a file is in the way where a folder must go; choose another -o"),
    _errno.EISDIR: (OutputPathError, "is a folder where a file must go; give a file path"),
    _errno.ENAMETOOLONG: (OutputPathError, "name too long; choose a shorter -o"),
    _errno.ELOOP: (OutputPathError, "symbolic links in the path form a loop; choose another -o"),
    _errno.ENOENT: (OutputPathError, "a part of the path vanished while writing; check it and run again"),
}


def os_error(err: OSError, path: str | os.PathLike[str], *, needed: int = 0) -> OutputError:
    """The typed, one-line error for an OS failure while writing the output ``path``.

    Args:
        err: what the OS raised.
        path: the output being written (named in the message: temporary names mean nothing to users).
        needed: bytes the output needs, quoted when the disk is full.
    """
    cls, text = _OS_ERRORS.get(
        err.errno or 0,
        (OutputError, f"cannot write ({err.strerror or err}); check the path and the filesystem"),
    )
    if cls is DiskFullError and needed:
        text = text.replace(";", f" (the output needs {needed / 1e9:.3f} GB);", 1)
    where = os.fspath(path)
    culprit = os.fsdecode(err.filename) if err.filename is not None else None
    if culprit is not None and culprit != where and not Path(culprit).name.startswith("."):
        where = f"{where} ({culprit})"
    return cls(f"{where}: {text}", path=os.fspath(path), os_errno=err.errno)


class BackendUnavailableError(RvecError, ImportError):
    """An optional backend's package is not installed.

    Example: ``--backend vllm: the vllm package is not installed; pip install 'reasoning-vectors[vllm]'``
    """


class BackendError(RvecError, RuntimeError):
    """A running engine refused an operation rvec needs (a cache reset, a weight reload).

    Example: ``vLLM refused to reset its prefix cache after an α switch; …``
    """
