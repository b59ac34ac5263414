"""The install manifests and samples are valid for a real API server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.lab import REPO, Lab

SAMPLES = sorted((REPO / "manifests" / "samples").glob("*.yaml"))


def test_the_kustomization_applies_on_a_real_api_server(lab: Lab) -> None:
    applied = lab.kubectl("apply", "--dry-run=server", "-k", str(REPO / "manifests"), check=False)
    assert applied.returncode == 0, applied.stderr


@pytest.mark.parametrize("sample", SAMPLES, ids=[path.name for path in SAMPLES])
def test_every_sample_is_accepted(lab: Lab, sample: Path) -> None:
    applied = lab.kubectl("apply", "--dry-run=server", "-f", str(sample), check=False)
    assert applied.returncode == 0, applied.stderr
