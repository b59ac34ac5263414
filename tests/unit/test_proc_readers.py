"""The host layer's /proc and path readers, run against this machine with a local shell standing in
for the SSH session: the scripts are the real ones."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ferry.hosts import processes
from ferry.hosts.files import HostFiles
from ferry.hosts.ssh import CommandResult

ROOT = (0, 0, 0, 0)


class LocalCommands:
    """Runs argv here, as a host's SSH session would run it there."""

    name = "local"

    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 120.0, check: bool = True
    ) -> CommandResult:
        done = subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout, check=check)
        return CommandResult(done.returncode, done.stdout, done.stderr)


def test_inspecting_a_process_reads_its_executable_users_and_namespace() -> None:
    info = processes.inspect_process(LocalCommands(), os.getpid())

    assert info is not None
    assert info.program == os.path.realpath(sys.executable)
    real, effective, saved = os.getresuid()
    assert info.uids == (real, effective, saved, effective)  # the filesystem UID follows the effective one
    assert info.in_host_mount_namespace  # the test runs where its shell runs
    assert not info.kernel_thread
    assert info.session == os.getsid(0)


def test_inspecting_a_process_lists_its_open_files(tmp_path: Path) -> None:
    opened = tmp_path / "open.txt"
    opened.write_text("x")
    with opened.open() as _:
        info = processes.inspect_process(LocalCommands(), os.getpid())

    assert info is not None and str(opened) in info.open_files()


def test_a_process_that_does_not_exist_is_none() -> None:
    assert processes.inspect_process(LocalCommands(), 2**22 + 1) is None  # above pid_max's limit


def test_a_deleted_executable_keeps_its_path_as_the_program() -> None:
    info = processes.ProcessInfo(7, "/opt/app/bin/app (deleted)", "app", 7, {}, ROOT)

    assert info.program == "/opt/app/bin/app"


def test_a_process_without_an_executable_or_with_the_kernel_flag_is_a_kernel_thread() -> None:
    assert processes.ProcessInfo(2, "", "kthreadd", 0, {}, ROOT).kernel_thread
    assert processes.ProcessInfo(9, "/x", "x", 0, {}, ROOT, flags=0x00208040).kernel_thread


def test_a_process_whose_status_cannot_be_read_whole_is_none() -> None:
    """It ended between two reads: its UIDs are missing, and none may be assumed."""

    class Ending(LocalCommands):
        def run(
            self,
            argv: Sequence[str],
            *,
            input: bytes | None = None,
            timeout: float = 120.0,
            check: bool = True,
        ) -> CommandResult:
            return CommandResult(0, b"/opt/app\napp\n7 0\n\nmnt:[1]\nmnt:[1]\n", b"")

    assert processes.inspect_process(Ending(), 7) is None


def test_user_names_are_read_from_the_hosts_passwd_and_unknown_uids_left_out() -> None:
    assert processes.user_names(LocalCommands(), [0, 0, 4_000_000]) == {0: "root"}


def test_this_process_is_recognised_on_the_machine_it_runs_on() -> None:
    assert processes.is_this_process(LocalCommands(), os.getpid())
    assert not processes.is_this_process(LocalCommands(), os.getppid())


def test_a_path_resolves_through_symbolic_links_and_a_missing_one_to_none(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    files = HostFiles(LocalCommands())

    assert files.resolve(str(tmp_path / "link")) == str((tmp_path / "real").resolve())
    assert files.resolve(str(tmp_path / "missing")) is None
