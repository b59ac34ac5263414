"""ferry's runtime wrapper (operator/ferry/hosts/ferry-runtime.sh), run with a stand-in runc that
records how it was called."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ferry.hosts.runc import wrapper_script

CONTAINER = "4f1c" * 16
SHIM_CREATE = [
    "--root", "/run/docker/runtime-ferry/moby", "--log", "/b/log.json", "--log-format", "json",
    "create", "--bundle", "/b", "--pid-file", "/b/init.pid", CONTAINER,
]  # fmt: skip


@pytest.fixture
def runtime(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(wrapper, restore root, file where the stand-in runc writes its arguments)."""
    wrapper = tmp_path / "ferry-runtime"
    wrapper.write_bytes(wrapper_script())
    wrapper.chmod(0o755)
    calls = tmp_path / "runc-calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    runc = bin_dir / "runc"
    runc.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {calls}\n')
    runc.chmod(0o755)
    restore_root = tmp_path / "restore"
    restore_root.mkdir()
    return wrapper, restore_root, calls


def call(runtime: tuple[Path, Path, Path], *args: str) -> list[str]:
    wrapper, restore_root, calls = runtime
    env = {
        **os.environ,
        "PATH": f"{wrapper.parent / 'bin'}:{os.environ['PATH']}",
        "FERRY_RESTORE_ROOT": str(restore_root),
    }
    subprocess.run([str(wrapper), *args], check=True, env=env)
    return calls.read_text().splitlines() if calls.exists() else []


def prepare(runtime: tuple[Path, Path, Path]) -> Path:
    prepared = runtime[1] / CONTAINER
    (prepared / "work").mkdir(parents=True)
    (prepared / "images").symlink_to(runtime[1].parent)
    return prepared


def test_create_of_an_unprepared_container_goes_to_runc_unchanged(runtime: tuple[Path, Path, Path]) -> None:
    assert call(runtime, *SHIM_CREATE) == [" ".join(SHIM_CREATE)]


def test_create_of_a_prepared_container_becomes_a_restore_from_its_images(
    runtime: tuple[Path, Path, Path],
) -> None:
    prepared = prepare(runtime)
    (called,) = call(runtime, *SHIM_CREATE)
    assert called == " ".join(
        [
            *SHIM_CREATE[:6],
            "restore", "--detach", "--image-path", f"{prepared}/images", "--work-path", f"{prepared}/work",
            *SHIM_CREATE[7:],
        ]
    )  # fmt: skip


def test_create_of_a_prepared_post_copy_restore_asks_runc_for_lazy_pages(
    runtime: tuple[Path, Path, Path],
) -> None:
    prepared = prepare(runtime)
    (prepared / "lazy-pages").touch()
    (called,) = call(runtime, *SHIM_CREATE)
    assert called == " ".join(
        [
            *SHIM_CREATE[:6],
            "restore", "--detach", "--image-path", f"{prepared}/images", "--work-path", f"{prepared}/work",
            "--lazy-pages",
            *SHIM_CREATE[7:],
        ]
    )  # fmt: skip


def test_start_after_a_restore_succeeds_without_runc_and_forgets_the_restore(
    runtime: tuple[Path, Path, Path],
) -> None:
    prepared = prepare(runtime)
    call(runtime, *SHIM_CREATE)
    calls = call(runtime, "--root", "/r", "start", CONTAINER)
    assert len(calls) == 1  # only the restore reached runc
    assert not prepared.exists()


def test_start_of_a_container_never_restored_goes_to_runc(runtime: tuple[Path, Path, Path]) -> None:
    prepare(runtime)
    assert call(runtime, "--root", "/r", "start", CONTAINER) == [f"--root /r start {CONTAINER}"]


def test_other_commands_go_to_runc_unchanged(runtime: tuple[Path, Path, Path]) -> None:
    prepare(runtime)
    assert call(runtime, "--root", "/r", "kill", CONTAINER, "9") == [f"--root /r kill {CONTAINER} 9"]
