"""The model-state seam on a tiny real Llama: α set in place with ``rvec apply``'s arithmetic,
fingerprints that follow the weights, bit-exact restore, the backend registry, and keys that
existing run folders and response caches were written under."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from fixtures import Family
from rvec.checkpoint.source import resolve
from rvec.errors import ConfigError, InvalidArgumentError, UnknownNameError
from rvec.eval.types import LanguageModel
from rvec.model.fingerprint import weights_fingerprint
from rvec.model.hf.settings import HFSettings
from rvec.model.hf.state import HFModelState
from rvec.model.registry import (
    BACKENDS,
    HFSpec,
    build_registry,
    get_backend,
    open_model_state,
    parse_backend_settings,
)
from rvec.model.settings import BackendSettings
from rvec.model.state import BackendSpec, ModelState
from rvec.vector.apply import apply
from rvec.vector.artifact import DonorPair, ReasoningVector
from rvec.vector.control import norm_matched_random
from rvec.vector.extract import extract

CPU = HFSettings(device="cpu", dtype="float32", batch_size=2)


@pytest.fixture(scope="module")
def vectors(
    llama_tied: Family, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ReasoningVector, ReasoningVector]:
    """``v`` of the tiny Llama family and a norm-matched random control."""
    root = tmp_path_factory.mktemp("state")
    v = extract(llama_tied.sft, llama_tied.rl, root / "v")
    return v, norm_matched_random(v, root / "random", seed=0)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: t.detach().clone() for k, t in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_alpha_fingerprint_and_bit_exact_restore(
    llama_tied: Family, vectors: tuple[ReasoningVector, ReasoningVector], tmp_path: Path
) -> None:
    v, random = vectors
    with open_model_state(str(llama_tied.target), CPU) as state:
        assert isinstance(state, HFModelState) and isinstance(state, ModelState)
        lm = state.language_model()
        assert isinstance(lm, LanguageModel) and lm.fingerprint == state.base_fingerprint
        base = weights(state.model)

        state.attach([v, random])  # staging changes nothing
        assert same(weights(state.model), base) and state.fingerprint == state.base_fingerprint

        state.set_vectors([(v, 1.0)])
        apply([v.path], llama_tied.target, tmp_path / "written", alphas=[1.0])
        written = AutoModelForCausalLM.from_pretrained(tmp_path / "written", dtype=torch.float32)
        assert same(weights(state.model), weights(written))  # rvec apply's arithmetic, bit for bit
        assert state.fingerprint == weights_fingerprint(state.base_fingerprint, [(v.content_hash, 1.0)])
        assert lm.fingerprint == state.fingerprint != state.base_fingerprint

        state.set_vectors([(v, 0.5)])
        half = weights(state.model)
        state.set_vectors([(random, 1.0)])  # v falls back to α = 0: not cumulative
        assert state.fingerprint == weights_fingerprint(state.base_fingerprint, [(random.content_hash, 1.0)])
        state.set_vectors([(v, 0.5)])
        assert same(weights(state.model), half)

        state.set_vectors([(v, 0.0)])  # α = 0 is the base model, fingerprint included
        assert same(weights(state.model), base) and lm.fingerprint == state.base_fingerprint

        state.set_vectors([(v, -1.0), (random, 0.5)])
        state.restore()
        assert same(weights(state.model), base)
        assert state.fingerprint == lm.fingerprint == state.base_fingerprint


def test_vectors_given_as_folders_twice_or_without_a_hash_are_refused(
    llama_tied: Family, vectors: tuple[ReasoningVector, ReasoningVector]
) -> None:
    v, _ = vectors
    with open_model_state(str(llama_tied.target), CPU) as state:
        state.set_vectors([(v.path, 1.0)])  # a folder works as well as an opened vector
        assert state.fingerprint == weights_fingerprint(state.base_fingerprint, [(v.content_hash, 1.0)])
        with pytest.raises(InvalidArgumentError, match="given twice; pass each vector once"):
            state.set_vectors([(v, 1.0), (v.path, 0.5)])
        pair = DonorPair(sft=resolve(str(llama_tied.sft)), rl=resolve(str(llama_tied.rl)))
        with pytest.raises(InvalidArgumentError, match="has no content hash"):
            state.set_vectors([(pair, 1.0)])


def test_keys_are_those_main_wrote_before_the_seam(
    llama_tied: Family, vectors: tuple[ReasoningVector, ReasoningVector]
) -> None:
    """Golden values computed with the code before ``rvec.model`` existed (commit 938920e) on the same
    fixture: if one changes, existing run folders and response caches stop hitting their cache."""
    v, _ = vectors
    assert v.content_hash == "8caca0f8d332d799"
    assert (
        weights_fingerprint("base-fp", [("0123456789abcdef", 1.0), ("fedcba9876543210", 0.0)])
        == "b51abc0572de74077d988a00c5c5dc3c2afffbcd4a84c610535793c7d4c29eac"
    )
    hf = get_backend("hf")
    assert hf.cache_identity(CPU) == {"dtype": "torch.float32"}  # the study cell key's only backend part
    assert hf.cache_identity(HFSettings(device="cpu", dtype="bfloat16")) == {"dtype": "torch.bfloat16"}
    with open_model_state(str(llama_tied.target), CPU) as state:
        assert state.base_fingerprint == "204ecaca9ef6157a"
        state.set_vectors([(v, 1.0)])
        assert state.fingerprint == "bfae1cc3446cac00831a9064f7dbfd1bb4680fb4622d6eb09ab4fdc653b200ce"
        lm = state.language_model()
        assert (lm.name, lm.identity) == (  # the response cache key's backend part
            "hf/float32",
            "207f7eb0ef8d4c5f689b8bed4b4aaf01ec68d1984118978e8902b9f2fee675e3",
        )


def test_registry_selects_by_name_and_lists_valid_names() -> None:
    assert list(BACKENDS) == ["hf", "vllm"] and isinstance(BACKENDS["hf"], BackendSpec)
    with pytest.raises(ConfigError) as info:
        build_registry([HFSpec(), HFSpec()])
    assert str(info.value) == "backends: 1 problem; duplicate backend name 'hf'"
    with pytest.raises(UnknownNameError) as unknown:
        get_backend("vlm")
    assert str(unknown.value) == "unknown backend 'vlm'; valid: hf, vllm"
    with pytest.raises(UnknownNameError, match=r"^unknown backend 'vlm'; valid: hf, vllm$"):
        parse_backend_settings({"name": "vlm", "batch_size": 4})


def test_backend_settings_are_parsed_once_with_every_problem_on_one_line() -> None:
    assert parse_backend_settings({}) == HFSettings()
    assert parse_backend_settings({"name": "hf", "dtype": "float32", "batch_size": 8}) == HFSettings(
        dtype="float32", batch_size=8
    )
    with pytest.raises(InvalidArgumentError) as info:
        parse_backend_settings({"dtype": "int8", "batch_size": 0, "tensor_parallel": 2})
    assert str(info.value) == (
        "backend hf: dtype: dtype 'int8': expected float32, bfloat16 or float16 (or fp32, bf16, fp16); "
        "batch_size: Input should be greater than or equal to 1; "
        "tensor_parallel: not a setting of the hf backend (its settings: device, dtype, batch_size)"
    )
    assert "\n" not in str(info.value)


def test_settings_of_another_backend_are_refused_by_the_hf_loader(llama_tied: Family) -> None:
    class OtherSettings(BackendSettings):
        name: str = "other"

    with pytest.raises(InvalidArgumentError, match="settings for backend 'other' given to HFSettings"):
        HFSpec().load(str(llama_tied.target), OtherSettings())


def test_a_slice_in_memory_equals_rvec_apply_and_its_complement_makes_up_v(
    llama_tied: Family, vectors: tuple[ReasoningVector, ReasoningVector], tmp_path: Path
) -> None:
    """A slice (a part of v: layers × module classes) set in memory is ``rvec apply`` with the same
    selection, tensor by tensor; "only P" and "all but P" move disjoint tensors and together all of v."""
    from rvec.vector.masks import Selection

    v, _ = vectors
    only = Selection(layers=frozenset({0}), classes=frozenset({"attn.q", "attn.k", "mlp.down"}))
    but = Selection(layers=frozenset({0}), classes=frozenset({"attn.q", "attn.k", "mlp.down"}), invert=True)
    with open_model_state(str(llama_tied.target), CPU) as state:
        base = weights(state.model)
        state.set_vectors([(v, 1.0, only)])
        sliced = weights(state.model)
        apply([v.path], llama_tied.target, tmp_path / "only", alphas=[1.0], selection=only)
        written = AutoModelForCausalLM.from_pretrained(tmp_path / "only", dtype=torch.float32)
        assert same(sliced, weights(written))
        parts = [(v.content_hash, 1.0, only)]
        assert (
            state.fingerprint == weights_fingerprint(state.base_fingerprint, parts) != state.base_fingerprint
        )
        state.set_vectors([(v, 1.0, but)])
        rest = weights(state.model)
        state.set_vectors([(v, 1.0, Selection())])
        whole = weights(state.model)
        assert state.fingerprint == weights_fingerprint(state.base_fingerprint, [(v.content_hash, 1.0)])
        state.restore()
        assert same(weights(state.model), base)
    moved_only = {k for k in base if not torch.equal(sliced[k], base[k])}
    moved_rest = {k for k in base if not torch.equal(rest[k], base[k])}
    assert moved_only and moved_rest and not moved_only & moved_rest
    for k in base:  # each tensor is all of v in exactly one of the two parts
        assert torch.equal(whole[k], sliced[k] if k in moved_only else rest[k])


def test_a_depth_profile_scales_each_block_of_layers(llama_tied: Family, vectors, tmp_path: Path) -> None:
    """``profile:a,b`` gives the first half of the layers α·a and the second α·b, as ``rvec apply
    --schedule profile:a,b`` writes it."""
    from rvec.vector.masks import Selection, parse_schedule

    v, _ = vectors
    profile = Selection(schedule=parse_schedule("profile:0.5,2"))
    with open_model_state(str(llama_tied.target), CPU) as state:
        state.set_vectors([(v, 1.0, profile)])
        got = weights(state.model)
    apply([v.path], llama_tied.target, tmp_path / "profile", alphas=[1.0], selection=profile)
    assert same(got, weights(AutoModelForCausalLM.from_pretrained(tmp_path / "profile", dtype=torch.float32)))
