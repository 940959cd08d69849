"""rvec.atomic and rvec.outputs: one writer for files and folders, leftovers of dead processes
removed by the next run, protected output paths, OS errors as typed one-line errors."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mounts import tmpfs
from rvec.atomic import (
    atomic_dir,
    atomic_file,
    remove_stale,
    temp_sibling,
    write_bytes,
    write_json,
    write_text,
)
from rvec.errors import (
    DiskFullError,
    ForeignOutputError,
    OutputError,
    OutputPathError,
    OutputPermissionError,
    ReadOnlyOutputError,
    UnsafeOutputError,
    os_error,
)
from rvec.outputs import check_output_target

SRC = str(Path(__file__).resolve().parents[2] / "src")


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def dead_owner_partial(final: Path, *, kind: str = "partial") -> Path:
    """A temporary sibling made by a real rvec process that then exited (its pid is gone)."""
    code = (
        "import sys; from pathlib import Path; from rvec.atomic import temp_sibling; "
        f"p = temp_sibling(Path(sys.argv[1]), kind={kind!r}); p.mkdir(); (p / 'shard').write_bytes(b'x' * 4096); "
        "print(p)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(final)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    return Path(done.stdout.strip())


def test_files_are_written_whole_with_nothing_beside(tmp_path: Path) -> None:
    write_json(tmp_path / "a" / "r.json", {"acc": 0.5}, indent=1)
    write_text(tmp_path / "a" / "r.md", "# r\n")
    write_bytes(tmp_path / "a" / "r.bin", b"\x00\x01")
    assert json.loads((tmp_path / "a" / "r.json").read_text()) == {"acc": 0.5}
    assert (tmp_path / "a" / "r.md").read_text() == "# r\n"
    assert names(tmp_path / "a") == ["r.bin", "r.json", "r.md"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a" / "r.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_file_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as fh:
        fh.write(b"half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert names(tmp_path) == ["r.json"]


def test_stale_partials_of_dead_processes_are_removed_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stale = dead_owner_partial(tmp_path / "vec")
    legacy = tmp_path / f".old.rvec-partial-{stale.name.split('-')[2]}-0123abcd"  # pre-1.x names
    legacy.mkdir()
    mine = temp_sibling(tmp_path / "vec")
    mine.mkdir()
    pid = os.getpid()
    reused = (
        tmp_path / f".x.rvec-partial-{pid}-1-{stale.name.split('-')[4]}-00000000"
    )  # our pid, not our start
    reused.mkdir()
    remote = tmp_path / ".x.rvec-partial-1-1-ffffffff-00000000"  # another machine's process
    remote.mkdir()
    (tmp_path / ".vec.rvec-partial-notes").mkdir()  # not rvec's naming: never touched
    with caplog.at_level(logging.WARNING, logger="rvec.atomic"):
        removed = remove_stale(tmp_path)
    assert sorted(removed) == sorted([stale, legacy, reused])
    assert sorted(names(tmp_path)) == sorted([mine.name, remote.name, ".vec.rvec-partial-notes"])
    assert len(caplog.records) == 3
    assert all("left by an interrupted rvec process" in r.getMessage() for r in caplog.records)


def test_a_stale_previous_output_is_restored_when_its_replacement_never_arrived(tmp_path: Path) -> None:
    old = dead_owner_partial(tmp_path / "vec", kind="old")
    assert remove_stale(tmp_path) == [old]
    assert names(tmp_path) == ["vec"]
    assert (tmp_path / "vec" / "shard").stat().st_size == 4096
    again = dead_owner_partial(tmp_path / "vec", kind="old")
    remove_stale(tmp_path)  # this time the final output exists: the old copy is garbage
    assert names(tmp_path) == ["vec"] and not again.exists()


def test_atomic_dir_sweeps_its_folder_first(tmp_path: Path) -> None:
    stale = dead_owner_partial(tmp_path / "out")
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "rvec.json").write_text('{"kind": "t", "rvec_version": "0"}')
    assert not stale.exists()
    assert names(tmp_path) == ["out"]


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_replacing_a_file_or_link_leaves_nothing_beside(tmp_path: Path, kind: str) -> None:
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "data").write_text("precious")
    final = tmp_path / "out"
    if kind == "file":
        final.write_text("a file")
    else:
        final.symlink_to(keep)
    with pytest.raises(ForeignOutputError), atomic_dir(final, overwrite=True):
        pass
    with atomic_dir(final, overwrite_foreign=True) as tmp:
        (tmp / "new").write_text("new")
    assert names(tmp_path) == ["keep", "out"]
    assert not final.is_symlink() and names(final) == ["new"]
    assert (keep / "data").read_text() == "precious"


def test_protected_places_are_refused_even_with_both_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "home" / "work"
    (work / "model").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(work)
    flags = {"overwrite": True, "overwrite_foreign": True}
    cases = {
        Path("/"): "is a filesystem root",
        Path("."): "is the working folder",
        Path(".."): "is the home folder",  # also an ancestor of the working folder
        tmp_path: "is an ancestor of the working folder",
        work / "model": "is an input of this command",
    }
    for path, fragment in cases.items():
        with pytest.raises(UnsafeOutputError, match=fragment):
            check_output_target(path, inputs=[work / "model"], **flags)
    (tmp_path / "elsewhere" / "sub").mkdir(parents=True)
    with pytest.raises(UnsafeOutputError, match="holds an input of this command"):
        check_output_target(tmp_path / "elsewhere", inputs=[tmp_path / "elsewhere" / "sub" / "v"], **flags)
    with pytest.raises(UnsafeOutputError, match="is part of an input of this command"):
        check_output_target(tmp_path / "elsewhere" / "sub", inputs=[tmp_path / "elsewhere"], **flags)


@pytest.mark.parametrize(
    ("code", "cls", "text"),
    [
        (errno.EROFS, ReadOnlyOutputError, "read-only filesystem; choose an -o on a writable filesystem"),
        (errno.ENOSPC, DiskFullError, "no space left on the device (the output needs 0.002 GB);"),
        (errno.EDQUOT, DiskFullError, "disk quota exceeded"),
        (errno.EACCES, OutputPermissionError, "permission denied; choose an -o you may write to"),
        (errno.EPERM, OutputPermissionError, "operation not permitted"),
        (errno.ENOTDIR, OutputPathError, "a part of the path is a file, not a folder"),
        (errno.EEXIST, OutputPathError, "a file is in the way"),
        (errno.EISDIR, OutputPathError, "is a folder where a file must go"),
        (errno.EIO, OutputError, "cannot write (Input/output error); check the path and the filesystem"),
    ],
)
def test_os_errors_become_typed_one_line_errors(code: int, cls: type, text: str) -> None:
    err = os_error(OSError(code, os.strerror(code)), "out/", needed=2_000_000)
    assert type(err) is cls and isinstance(err, OSError)
    assert str(err).startswith("out/: ") and text in str(err) and "\n" not in str(err)
    assert err.os_errno == code


def test_a_disk_that_fills_while_writing_gives_one_typed_error_and_no_leftovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", size="256k") as disk:
        with (
            pytest.raises(DiskFullError, match="no space left on the device"),
            atomic_dir(disk / "out") as tmp,
        ):
            (tmp / "shard").write_bytes(b"x" * 1024 * 1024)  # needed_bytes understated: the write finds out
        with pytest.raises(DiskFullError, match=r"out/r\.json: no space left"):
            write_bytes(disk / "out" / "r.json", b"x" * 1024 * 1024)
        assert names(disk) == ["out"] and names(disk / "out") == []
        with (
            pytest.raises(DiskFullError, match=r"needs 0\.001 GB free"),
            atomic_dir(disk / "big", needed_bytes=1_000_000),
        ):
            pass
        assert names(disk) == ["out"]
