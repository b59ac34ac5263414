"""The real lab (hack/lab up) and the operator process for the end-to-end session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.lab import REPO, Lab, OperatorProcess


@pytest.fixture(scope="session")
def lab() -> Lab:
    lab = Lab()
    lab.lab("up", timeout=600)
    return lab


@pytest.fixture(scope="session")
def operator(lab: Lab) -> Iterator[OperatorProcess]:
    """`ferry run` against the lab's API server; its log is .lab/logs/operator-e2e-*.log."""
    process = OperatorProcess(REPO / ".lab" / "logs" / "operator-e2e-main.log")
    process.start()
    yield process
    process.stop()
