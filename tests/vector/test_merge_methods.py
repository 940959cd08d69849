"""Each merge method, streamed block by block, against a whole-tensor numpy implementation of its
mergekit 0.1.5 definition (engine/merge_reference.py); the streamed selection; DARE's mask."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import merge_reference as ref
from rvec.checkpoint.reader import Workspace
from rvec.errors import IncompatibleError, InvalidArgumentError, UnknownNameError
from rvec.vector.merge import MergedDelta, merge_spec
from rvec.vector.methods import METHODS, get_method
from rvec.vector.methods.registry import build_registry
from rvec.vector.methods.select import descending_keys, magnitude_keys, prefix_cuts
from rvec.vector.methods.sparsify import DARE_CHUNK, TensorBlocks, dare_key, prepare_pruning


class ArraySource:
    """Vectors held as numpy arrays: a real ``DeltaSource`` for merges of hand-made tensors."""

    def __init__(self, arrays: dict[str, np.ndarray], label: str) -> None:
        self.arrays = {k: np.ascontiguousarray(v, np.float32) for k, v in arrays.items()}
        self.label = label

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: v.shape for k, v in self.arrays.items()}

    @property
    def config(self) -> dict[str, Any]:
        return {"model_type": "test"}

    def read_delta(self, name: str, start: int, stop: int) -> np.ndarray:
        return self.arrays[name].reshape(-1)[start:stop].copy()

    def read_delta_into(
        self, name: str, start: int, out: np.ndarray, workspace: Workspace, *, check_finite: bool = True
    ) -> np.ndarray:
        out[:] = self.arrays[name].reshape(-1)[start : start + out.size]
        assert not check_finite or np.isfinite(out).all()  # the arrays here are finite by construction
        return out

    def describe(self) -> dict[str, Any]:
        return {"kind": "arrays", "label": self.label}


def quantised(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values on a 1/8 grid in [-2, 2]: many exact ties in magnitude, zeros and both signs."""
    return (rng.integers(-16, 17, size=shape) / 8).astype(np.float32)


def streamed(merged: MergedDelta, name: str, block: int) -> np.ndarray:
    numel = math.prod(merged.shapes[name])
    ws = Workspace(block)
    parts = [
        merged.read_delta_into(name, s, np.empty(min(block, numel - s), np.float32), ws)
        for s in range(0, numel, block)
    ]
    return np.concatenate(parts).reshape(merged.shapes[name])


@pytest.fixture(scope="module")
def vectors() -> list[ArraySource]:
    rng = np.random.default_rng(20)
    shapes = {"w": (37, 53), "b": (53,), "tiny": (3,)}
    return [ArraySource({k: quantised(rng, s) for k, s in shapes.items()}, f"v{i}") for i in range(3)]


CASES = [
    ("task_arithmetic", {"weight": [1.0, 0.7, -0.4]}, {}),
    ("task_arithmetic", {"weight": [0.5, 0.25, 0.25]}, {"normalize": True, "lambda": 1.5}),
    ("ties", {"weight": [1.0, 0.7, 0.3], "density": [0.5, 0.3, 0.9]}, {}),
    ("ties", {"weight": [1.0, -0.7, 0.3], "density": [0.2, 0.2, 0.2]}, {"normalize": False, "rescale": True}),
    ("breadcrumbs", {"weight": [1.0, 0.5, 1.0], "density": [0.6, 0.4, 0.9]}, {"gamma": 0.05}),
    (
        "breadcrumbs_ties",
        {"weight": [1.0, 0.5, 1.0], "density": [0.6, 0.4, 0.9]},
        {"gamma": 0.1, "rescale": True},
    ),
    ("breadcrumbs", {"weight": [1.0, 1.0, 1.0], "density": [0.95, 0.5, 1.0]}, {"gamma": 0.2}),  # n_bot < 0
]


def reference(method: str, inputs: list[ArraySource], name: str, per: dict, shared: dict) -> np.ndarray:
    m = get_method(method)
    defaults = {p.name: p.rvec_default for p in m.params}
    opts = {**defaults, **shared}
    flats = [v.arrays[name].reshape(-1) for v in inputs]
    densities = per.get("density", [opts.get("density", 1.0)] * len(flats))
    if m.sparsification == "magnitude":
        flats = [ref.magnitude(f, d, opts["rescale"]) for f, d in zip(flats, densities)]
    elif m.sparsification == "magnitude_outliers":
        flats = [
            ref.magnitude_outliers(f, d, opts["gamma"], opts["rescale"]) for f, d in zip(flats, densities)
        ]
    out = ref.gta(
        flats, per["weight"], consensus=m.consensus, normalize=opts["normalize"], lam=opts["lambda"]
    )
    return out.reshape(inputs[0].arrays[name].shape)


@pytest.mark.parametrize(("method", "per", "shared"), CASES)
def test_method_equals_its_definition_streamed_or_whole(vectors, method, per, shared) -> None:
    spec = merge_spec(method, 3, weights=per["weight"], densities=per.get("density"), params=shared)
    for stat_block in (64, 1 << 20):  # the statistics' passes over many blocks, or one
        merged = MergedDelta(vectors, spec, stat_block_elements=stat_block)
        for name in vectors[0].shapes:
            expected = reference(method, vectors, name, per, shared)
            whole = merged.read_delta(name, 0, expected.size).reshape(expected.shape)
            np.testing.assert_array_equal(whole, expected, err_msg=f"{method} {name}")
            for block in (7, 100, 1000):
                np.testing.assert_array_equal(streamed(merged, name, block), expected)


def test_ties_elects_the_sign_of_the_weighted_sum_and_averages_the_agreeing() -> None:
    a = ArraySource({"t": np.array([3.0, -1.0, 2.0, 0.0, -2.0], np.float32)}, "a")
    b = ArraySource({"t": np.array([-1.0, -1.0, -3.0, 4.0, 2.0], np.float32)}, "b")
    merged = MergedDelta([a, b], merge_spec("ties", 2, weights=[1.0, 1.0]))
    # sums 2, -2, -1, 4, 0 → elected +, −, −, +, + ; entry 4 ties at 0: elected + (Σ ≥ 0), only b's 2 agrees.
    np.testing.assert_array_equal(merged.read_delta("t", 0, 5), [3.0, -1.0, -3.0, 4.0, 2.0])


def test_ties_trim_keeps_the_earliest_of_equal_magnitudes() -> None:
    a = ArraySource({"t": np.array([1.0, -2.0, 2.0, 0.5, -2.0, 1.0], np.float32)}, "a")
    merged = MergedDelta([a], merge_spec("ties", 1, densities=[0.5]))  # keeps int(0.5·6) = 3
    np.testing.assert_array_equal(merged.read_delta("t", 0, 6), [0.0, -2.0, 2.0, 0.0, -2.0, 0.0])
    merged = MergedDelta([a], merge_spec("ties", 1, densities=[0.34]))  # 2 of the three |2|: the first two
    np.testing.assert_array_equal(merged.read_delta("t", 0, 6), [0.0, -2.0, 2.0, 0.0, 0.0, 0.0])


def test_ram_averages_shared_entries_and_keeps_unique_ones() -> None:
    a = ArraySource({"t": np.array([0.4, 0.0, 0.2, 1e-6, -0.6], np.float32)}, "a")
    b = ArraySource({"t": np.array([0.2, 0.3, 0.0, 0.5, -0.2], np.float32)}, "b")
    merged = MergedDelta([a, b], merge_spec("ram", 2))
    expected = np.array([0.3, 0.3, 0.2, 0.5, -0.4], np.float32)  # 1e-6 ≤ ε: b alone
    np.testing.assert_allclose(merged.read_delta("t", 0, 5), expected, rtol=1e-7)
    np.testing.assert_array_equal(merged.read_delta("t", 0, 5), ref.ram([a.arrays["t"], b.arrays["t"]]))


def test_ram_equals_its_definition(vectors) -> None:
    scaled = [ArraySource({k: v * 1e-5 for k, v in s.arrays.items()}, s.label) for s in vectors]
    merged = MergedDelta(scaled, merge_spec("ram", 3, params={"epsilon": 1e-5}))
    for name in scaled[0].shapes:
        expected = ref.ram([s.arrays[name].reshape(-1) for s in scaled], 1e-5)
        np.testing.assert_array_equal(streamed(merged, name, 11).reshape(-1), expected)


@pytest.mark.parametrize("sizes", [[0], [1], [500], [999, 1000], [1, 2, 3, 997]])
def test_streamed_selection_equals_a_stable_sort(sizes) -> None:
    rng = np.random.default_rng(3)
    x = quantised(rng, (1000,))
    for transform, order in ((magnitude_keys, np.abs(x)), (descending_keys, -np.abs(x))):
        for block in (7, 64, 1000):

            def keys(transform=transform, block=block):
                for s in range(0, x.size, block):
                    yield s, transform(x[s : s + block], np.empty(min(block, x.size - s), np.uint32))

            cuts = prefix_cuts(keys, x.size, sizes)
            all_keys = transform(x, np.empty(x.size, np.uint32))
            for m, cut in zip(sizes, cuts):
                expected = np.zeros(x.size, bool)
                expected[np.argsort(order, kind="stable")[:m]] = True
                np.testing.assert_array_equal(cut.mask(all_keys, 0, np.empty(x.size, bool)), expected)


def _dare_mask(
    x: np.ndarray, density: float, seed: int, block: int, *, vector: int = 0, name: str = "t"
) -> np.ndarray:
    ws = Workspace(block)
    key = dare_key(seed, vector, name)
    blocks = TensorBlocks(x.size, block, lambda a, b, _: x[a:b], ws)
    pruning = prepare_pruning("random", blocks, x.size, density=density, key=key, ws=ws)
    return np.concatenate(
        [pruning.keep_mask(x[s : s + block], s, ws).copy() for s in range(0, x.size, block)]
    )


@pytest.mark.parametrize("density", [0.1, 0.37, 0.5, 0.999])
def test_dare_keeps_exactly_floor_density_n_on_any_block_size(density) -> None:
    x = np.ones(3 * DARE_CHUNK + 12345, np.float32)
    masks = [_dare_mask(x, density, seed=5, block=b) for b in (1000, DARE_CHUNK, 77777, x.size)]
    assert int(masks[0].sum()) == math.floor(density * x.size)
    for chunk in range(0, x.size, DARE_CHUNK):  # and ⌊d·e⌋ − ⌊d·s⌋ in every chunk
        e = min(x.size, chunk + DARE_CHUNK)
        assert int(masks[0][chunk:e].sum()) == math.floor(density * e) - math.floor(density * chunk)
    for other in masks[1:]:
        np.testing.assert_array_equal(other, masks[0])
    assert not np.array_equal(_dare_mask(x, density, seed=6, block=1000), masks[0])
    assert not np.array_equal(_dare_mask(x, density, seed=5, block=1000, vector=1), masks[0])
    assert not np.array_equal(_dare_mask(x, density, seed=5, block=1000, name="u"), masks[0])


def test_dare_rescale_factor_is_the_same_on_worker_threads_as_in_one_pass() -> None:
    """The L1 sums of ``rescale`` run block by block on threads: the factor equals one pass that adds
    the same per-block float64 sums in block order, bit for bit."""
    rng = np.random.default_rng(4)
    x = rng.standard_t(3, size=5 * DARE_CHUNK + 321).astype(np.float32)  # heavy tails: order matters
    block, key = 40_000, dare_key(9, 0, "t")
    threaded = TensorBlocks(x.size, block, lambda a, b, ws: x[a:b], Workspace(block))
    parallel = prepare_pruning(
        "random", threaded, x.size, density=0.3, rescale=True, key=key, ws=Workspace(block)
    )
    before = after = 0.0  # the serial pass: per-block float64 sums, in block order
    for s in range(0, x.size, block):
        magnitude = np.abs(x[s : s + block])
        before += float(magnitude.sum(dtype=np.float64))
        kept_mask = parallel.keep_mask(x[s : s + block], s, Workspace(block))
        after += float((magnitude * kept_mask).sum(dtype=np.float64))
    kept = np.concatenate(
        [parallel.keep_mask(x[s : s + block], s, Workspace(block)).copy() for s in range(0, x.size, block)]
    )
    expected = float(np.abs(x).astype(np.float64).sum()) / float(np.abs(x[kept]).astype(np.float64).sum())
    assert parallel.scale == before / after
    assert parallel.scale == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("rescale", [True, False])
def test_dare_rescaled_is_the_input_in_expectation(rescale) -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(size=2048).astype(np.float32)
    density, seeds = 0.25, 400
    total = np.zeros(x.size)
    for seed in range(seeds):
        spec = merge_spec("dare_linear", 1, densities=[density], params={"rescale": rescale}, seed=seed)
        total += MergedDelta([ArraySource({"t": x}, "x")], spec).read_delta("t", 0, x.size)
    mean = total / seeds / (1.0 if rescale else density)
    # Each entry is kept with probability 1/4 exactly here (⌊0.25·2048⌋ of 2048), so its mean over
    # 400 seeds has a standard deviation of |x|·sqrt((1 − d)/(d·400)); 5 of them bound it. The L1
    # rescale factor adds a bias of order 1/n, far inside that.
    sigma = np.abs(x) * math.sqrt((1 - density) / (density * seeds))
    assert np.all(np.abs(mean - x) <= 5 * sigma + 1e-6)
    assert abs(mean.sum() - x.sum()) <= 5 * math.sqrt(float((sigma**2).sum()))


def test_dare_ties_combines_the_masked_deltas_as_defined(vectors) -> None:
    spec = merge_spec("dare_ties", 3, weights=[1.0, 0.5, 0.8], densities=[0.5, 0.3, 0.7], seed=9)
    merged = MergedDelta(vectors, spec)
    for name in vectors[0].shapes:
        prunings = merged.state(name, Workspace())
        flats = [v.arrays[name].reshape(-1) for v in vectors]
        ws = Workspace()
        masked = [ref.rescaled(f, p.keep_mask(f, 0, ws).copy(), True) for f, p in zip(flats, prunings)]
        expected = ref.gta(masked, [1.0, 0.5, 0.8], consensus=True, normalize=False)
        np.testing.assert_allclose(streamed(merged, name, 13).reshape(-1), expected, rtol=2e-7, atol=0)
        for f, p, d in zip(flats, prunings, [0.5, 0.3, 0.7]):
            assert p.kept == math.floor(d * f.size)


def test_registry_names_urls_and_duplicates() -> None:
    assert sorted(METHODS) == [
        "breadcrumbs", "breadcrumbs_ties", "dare_linear", "dare_ties", "ram", "task_arithmetic", "ties",
    ]  # fmt: skip
    assert all(m.reference_url.startswith("https://arxiv.org/abs/") for m in METHODS.values())
    with pytest.raises(ValueError, match="registered twice"):
        build_registry([METHODS["ties"], METHODS["ties"]])
    with pytest.raises(UnknownNameError, match="unknown merge method 'della'; valid: breadcrumbs"):
        get_method("della")


@pytest.mark.parametrize(
    ("method", "kwargs", "message"),
    [
        ("ties", {"params": {"gamma": 0.1}}, "ties has no parameter 'gamma'; its parameters: density"),
        ("task_arithmetic", {"densities": [0.5, 0.5]}, "task_arithmetic has no parameter 'density'"),
        ("ram", {"weights": [1, 2]}, "ram has no parameter 'weight'"),
        ("ties", {"weights": [1.0]}, "1 weight values for 2 vectors"),
        ("ties", {"densities": [0.5, 1.5]}, "density of vector 2: 1.5 is outside [0.0, 1.0]"),
        ("ties", {"params": {"normalize": 1.0}}, "normalize: 1.0 is not true or false"),
        ("breadcrumbs", {"params": {"lambda": float("nan")}}, "lambda: nan is not a finite number"),
    ],
)
def test_bad_parameters_are_one_line_errors(method, kwargs, message) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        merge_spec(method, 2, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_inputs_of_other_tensors_or_shapes_are_refused() -> None:
    a = ArraySource({"t": np.zeros(4, np.float32)}, "a")
    with pytest.raises(IncompatibleError, match=r"'t': shape \(5,\) in b ≠ \(4,\) in a"):
        MergedDelta([a, ArraySource({"t": np.zeros(5, np.float32)}, "b")], merge_spec("ties", 2))
    with pytest.raises(IncompatibleError, match="hold different tensors"):
        MergedDelta([a, ArraySource({"u": np.zeros(4, np.float32)}, "b")], merge_spec("ties", 2))


@pytest.mark.parametrize(
    ("method", "per", "shared"),
    [
        ("dare_linear", {"weight": [1.0, 0.6], "density": [0.3, 0.55]}, {}),
        ("dare_ties", {"weight": [1.0, -0.5], "density": [0.5, 0.2]}, {}),
        ("ties", {"weight": [1.0, 0.7], "density": [0.4, 0.2]}, {"rescale": True}),
        ("breadcrumbs", {"weight": [1.0, 0.5], "density": [0.6, 0.4]}, {"gamma": 0.05, "rescale": True}),
    ],
)
def test_masks_held_between_passes_change_no_bit_and_are_dropped_once_served(method, per, shared) -> None:
    """The rescale pass keeps each mask packed for the merge; the merge equals one that draws every
    mask again (budget 0), on blocks that do not start on a byte, and the bits go once served whole."""
    rng = np.random.default_rng(31)
    shapes = {"big": (3 * DARE_CHUNK + 101,), "w": (37, 53)}
    inputs = [
        ArraySource({k: rng.standard_t(3, size=s).astype(np.float32) for k, s in shapes.items()}, f"v{i}")
        for i in range(2)
    ]
    spec = merge_spec(method, 2, weights=per["weight"], densities=per["density"], params=shared, seed=3)
    drawn = MergedDelta(inputs, spec, stat_block_elements=40_000, mask_budget=0)
    big_bits = 2 * ((shapes["big"][0] + 7) // 8)
    for budget in (1 << 30, big_bits):  # room for every tensor, or for the big one only
        held = MergedDelta(inputs, spec, stat_block_elements=40_000, mask_budget=budget)
        for name in shapes:
            held.state(name, Workspace())
        assert held.held_mask_bytes == (
            big_bits + 2 * ((37 * 53 + 7) // 8) if budget > big_bits else big_bits
        )
        for name in shapes:
            for block in (1001, 8192):  # 1001: most blocks start inside a byte of the packed mask
                np.testing.assert_array_equal(
                    streamed(held, name, block), streamed(drawn, name, block), err_msg=f"{name} {block}"
                )
        assert held.held_mask_bytes == 0  # each tensor was served whole (then again, drawn anew)
    assert drawn.held_mask_bytes == 0
    # A statistics block that is not a whole number of bytes: the pass gives the holding up.
    odd = MergedDelta(inputs, spec, stat_block_elements=40_001)
    assert not any(p.bits.held for p in odd.state("big", Workspace()))  # its 2nd block starts at 40,001
    for name in shapes:
        np.testing.assert_array_equal(streamed(odd, name, 1001), streamed(drawn, name, 1001))
