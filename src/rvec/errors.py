"""Every error rvec raises on purpose.

All inherit :class:`RvecError`; the CLI turns any of them into one line on stderr and exit code 2.
Each also inherits the builtin a caller would naturally catch (``FileNotFoundError``,
``ValueError``…), so ``except ValueError`` keeps working for code that does not know rvec.
Messages are one line: what is wrong, what was found/expected, and the fix.
"""

from __future__ import annotations


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


class IncompatibleError(RvecError, ValueError):
    """Checkpoints that cannot be combined (architecture, shapes, vocabulary, lineage)."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class ShapeMismatchError(IncompatibleError):
    """One tensor has different shapes in two checkpoints and no policy covers it."""

    def __init__(
        self, message: str, *, tensor: str, expected: tuple[int, ...], found: tuple[int, ...]
    ) -> None:
        super().__init__(message)
        self.tensor = tensor
        self.expected = expected
        self.found = found


class MissingTensorError(IncompatibleError):
    """A tensor present in one checkpoint is absent from another."""

    def __init__(self, message: str, *, tensors: list[str]) -> None:
        super().__init__(message)
        self.tensors = tensors


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
    """A folder is not a valid rvec vector (missing or bad ``rvec.json``)."""


class ConfigError(RvecError, ValueError):
    """A study or preset configuration is invalid; holds every problem found, not only the first."""

    def __init__(self, errors: list[str], *, source: str = "config") -> None:
        self.errors = list(errors)
        self.source = source
        head = f"{source}: {len(self.errors)} problem{'s' if len(self.errors) != 1 else ''}"
        super().__init__(head + "; " + "; ".join(self.errors))


class CodeExecutionNotAllowedError(RvecError, PermissionError):
    """A task needs to run model-written code but the user did not pass ``--allow-code-execution``."""


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


class BackendUnavailableError(RvecError, ImportError):
    """An optional backend's package is not installed.

    Example: ``--backend vllm: the vllm package is not installed; pip install 'reasoning-vectors[vllm]'``
    """


class BackendError(RvecError, RuntimeError):
    """A running engine refused an operation rvec needs (a cache reset, a weight reload).

    Example: ``vLLM refused to reset its prefix cache after an α switch; …``
    """
