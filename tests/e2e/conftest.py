"""The real lab (hack/lab up) and one operator process for the whole end-to-end session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.lab import KUBECONFIG, REPO, Lab


@pytest.fixture(scope="session")
def lab() -> Lab:
    subprocess.run([str(REPO / "hack" / "lab"), "up"], check=True, timeout=600)
    return Lab()


@pytest.fixture(scope="session")
def operator(lab: Lab) -> Iterator[Path]:
    """`ferry run` against the lab's API server; its log is kept in .lab/logs/operator-e2e.log."""
    log_path = REPO / ".lab" / "logs" / "operator-e2e.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ferry", "run"],
            env={**os.environ, "KUBECONFIG": str(KUBECONFIG)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
