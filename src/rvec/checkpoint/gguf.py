"""GGUF checkpoints: header inspection and conversion to a Hugging Face folder (dequantized).

transformers can load a GGUF model but keeps the packed weights and refuses ``save_pretrained``;
what works is to build the model on the ``meta`` device and let
``load_gguf_checkpoint(..., return_tensors=True, model_to_load=meta_model)`` dequantize every tensor
under its Hugging Face name. Tied models come back without ``lm_head.weight`` and stay tied.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rvec import __version__
from rvec.atomic import atomic_dir
from rvec.checkpoint.dtypes import F32, DType, coerce, from_torch
from rvec.checkpoint.gguf_header import read_gguf_header
from rvec.checkpoint.locate import local_path
from rvec.checkpoint.writer import DEFAULT_MAX_SHARD_BYTES, PlannedTensor, ShardedWriter, metadata_allowance
from rvec.errors import CorruptCheckpointError, InvalidArgumentError, NonFiniteError, RvecError
from rvec.outputs import check_output_target

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


@lru_cache(maxsize=8)
def _config_json(path: Path) -> str:
    from transformers import AutoConfig

    read_gguf_header(path)  # before transformers trusts the metadata (sizes, architecture)
    try:
        config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as err:  # transformers raises bare ValueError/KeyError/OSError for bad files
        raise CorruptCheckpointError(
            f"{path}: cannot read GGUF metadata ({err.__class__.__name__}: {err}); is it a complete GGUF file?",
            path=str(path),
        ) from err
    if not getattr(config, "architectures", None):
        # GGUF metadata names no class; the converted folder gets the one AutoModelForCausalLM builds.
        config.architectures = [_causal_lm_class(config.model_type)]
    return config.to_json_string()


def _causal_lm_class(model_type: str) -> str:
    """The ``transformers`` class name ``AutoModelForCausalLM`` picks for ``model_type``."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type, f"{model_type}ForCausalLM")


def gguf_config(path: Path) -> dict[str, Any]:
    """The Hugging Face config transformers derives from the GGUF metadata."""
    return json.loads(_config_json(Path(path)))


def gguf_tensors(path: Path) -> list[dict[str, Any]]:
    """GGUF tensor table from the header: name (GGUF naming), quantization type and shape.

    Raises:
        CorruptCheckpointError: the header is unreadable or inconsistent (:mod:`rvec.checkpoint.gguf_header`).
    """
    return [
        {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "numel": t.numel}
        for t in read_gguf_header(path).tensors
    ]


@contextmanager
def _gguf_progress(*, enabled: bool) -> Iterator[None]:
    """Silence transformers' dequantization bar when ``enabled`` is false.

    transformers calls ``tqdm`` directly there, so neither its own nor huggingface_hub's switch
    reaches it, and tqdm reads ``TQDM_DISABLE`` only when first imported. Replacing the module's
    ``tqdm`` name for the duration of the call is the one handle there is.
    """
    if enabled:
        yield
        return
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm
    gguf_utils.tqdm = partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def convert(
    gguf_file: str | Path,
    out: str | Path,
    *,
    dtype: DType | str | Any = F32,
    overwrite: bool = False,
    overwrite_foreign: bool = False,
    progress: bool = True,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> Path:
    """Dequantize a GGUF checkpoint into a Hugging Face folder (safetensors, config, tokenizer, chat
    template, and an ``rvec.json`` recording the source).

    Args:
        gguf_file: the ``.gguf`` file, or ``pkg:MODULE/FILE.gguf`` (a file an installed package ships).
        out: output folder, written atomically.
        dtype: dtype of the written weights (dequantization itself is float32): a
            :class:`~rvec.checkpoint.dtypes.DType`, its name or a ``torch.dtype``.
        overwrite: replace ``out`` if it exists and rvec wrote it (it has an ``rvec.json``).
        overwrite_foreign: replace ``out`` even if rvec did not write it (never the working
            folder, its ancestors, home, a filesystem root, or the folder holding the GGUF file).
        progress: show transformers' per-tensor dequantization bar.
        max_shard_bytes: shard size limit.

    Returns:
        The output folder.

    Raises:
        SourceNotFoundError: no such file (or package).
        InvalidArgumentError: the file is not a ``.gguf`` file.
        CorruptCheckpointError: the file is not a readable GGUF checkpoint.
        OutputExistsError: ``out`` exists and ``overwrite`` is false (``ForeignOutputError``: rvec
            did not write it and ``overwrite_foreign`` is false).
        UnsafeOutputError: ``out`` is a protected place (see above).
        OutputError: the filesystem refused the output (read-only, full, permission…).

    Example:
        >>> convert("SmolLM2-135M-Instruct.Q4_1.gguf", "smol/")  # doctest: +SKIP
    """
    from transformers import GenerationConfig

    dtype = coerce(dtype)
    path = _gguf_path(gguf_file)
    # Before the (slow) dequantization: a refused -o costs nothing.
    check_output_target(Path(out), inputs=[path], overwrite=overwrite, overwrite_foreign=overwrite_foreign)
    gguf_config(path)  # validates the header with a clear error before transformers builds anything
    config, meta_model, tensors, tokenizer = _load(path, progress=progress)
    expected = {
        k for k in meta_model.state_dict() if not (config.tie_word_embeddings and k == "lm_head.weight")
    }
    missing = sorted(expected - set(tensors))
    if missing:
        raise CorruptCheckpointError(
            f"{path}: GGUF lacks {len(missing)} tensors the model needs (e.g. {missing[0]})", path=str(path)
        )
    state = meta_model.state_dict()
    names = [k for k in state if k in tensors]
    wrong = [n for n in names if tuple(tensors[n].shape) != tuple(state[n].shape)]
    if wrong:
        raise CorruptCheckpointError(
            f"{path}: tensor {wrong[0]} is {tuple(tensors[wrong[0]].shape)} in the file but the model its "
            f"metadata describes needs {tuple(state[wrong[0]].shape)}; the file is inconsistent",
            path=str(path),
        )
    plan = [PlannedTensor(n, dtype, tuple(tensors[n].shape)) for n in names]
    # tokenizer.json dominates the non-tensor files; its serialised size is known before writing.
    tokenizer_bytes = 2 * len(tokenizer.backend_tokenizer.to_str().encode()) if tokenizer.is_fast else 0
    with atomic_dir(
        Path(out),
        overwrite=overwrite,
        overwrite_foreign=overwrite_foreign,
        inputs=[path],
        needed_bytes=sum(p.nbytes for p in plan) + tokenizer_bytes + metadata_allowance(len(plan)),
    ) as tmp:
        writer = ShardedWriter(tmp, plan, prefix="model", max_shard_bytes=max_shard_bytes)
        try:
            for n in names:
                if not bool(tensors[n].isfinite().all()):
                    raise NonFiniteError(
                        f"{path}: tensor {n} dequantizes to NaN or Inf; the file is damaged", tensor=n
                    )
                writer.write(n, from_torch(tensors[n].to(dtype.torch).reshape(-1)))
            writer.finish()
        except BaseException:
            writer.abort()  # the writer thread stops before the temporary folder is removed
            raise
        config.architectures = [type(meta_model).__name__]  # GGUF metadata has no architectures list
        config.dtype = dtype.torch_name
        config.save_pretrained(tmp)
        GenerationConfig.from_model_config(config).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "rvec.json").write_text(json.dumps(_provenance(path, dtype), indent=2) + "\n")
    logger.info("converted %s → %s (%d tensors)", path.name, out, len(names))
    return Path(out)


def _load(path: Path, *, progress: bool) -> tuple[Any, Any, dict[str, torch.Tensor], Any]:
    """``(config, model on the meta device, dequantized tensors by HF name, tokenizer)`` of a GGUF
    file whose header :func:`gguf_config` has checked.

    Raises:
        CorruptCheckpointError: transformers cannot build or dequantize the model, or its tokenizer,
            from the file (it raises bare ``ValueError``, ``KeyError``, ``IndexError``… for those).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    try:
        config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
        with torch.device("meta"):
            meta_model = AutoModelForCausalLM.from_config(config)
        with _gguf_progress(enabled=progress):
            loaded = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=meta_model)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (RvecError, OSError):
        raise
    except Exception as err:  # transformers' way of saying "this file describes no model I can build"
        raise CorruptCheckpointError(
            f"{path}: transformers cannot convert it ({err.__class__.__name__}: {str(err)[:120]}); "
            "is it a complete GGUF file of a supported model?",
            path=str(path),
        ) from err
    return config, meta_model, loaded["tensors"], tokenizer


def _gguf_path(source: str | Path) -> Path:
    """The GGUF file a ``convert`` source names: a path or ``pkg:MODULE/FILE.gguf``."""
    text = str(source)
    path = local_path(text).resolve()
    if not path.is_file():
        from rvec.errors import SourceNotFoundError

        raise SourceNotFoundError(
            f"{source}: no such file; pass a .gguf file or pkg:MODULE/FILE.gguf", source=text
        )
    if path.suffix != ".gguf":
        raise InvalidArgumentError(
            f"{source}: not a .gguf file; rvec convert only dequantizes GGUF checkpoints"
        )
    return path


def _provenance(path: Path, dtype: DType) -> dict[str, Any]:
    return {
        "kind": "rvec-converted",
        "rvec_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"gguf_file": path.name, "size": path.stat().st_size},
        "dtype": dtype.torch_name,
    }
