"""ferry installed as users install it: the image hack/image builds, run by a real kubelet (hack/node)
as the Deployment of manifests/ (`kubectl apply -k`), under its own ServiceAccount and RBAC.
The session's operator process is stopped meanwhile, so every migration here is the pods' work."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.lab import REPO, Counter, Lab, OperatorProcess, Scrape, unique, wait_for
from tests.e2e.test_faults import FAILING_RESTORE, assert_rolled_back, fake_criu

NODE_SCRIPT = REPO / "hack" / "node"
IMAGE_SCRIPT = REPO / "hack" / "image"
IMAGE_FILE = REPO / ".lab" / "images" / "ferry.tar"
MANIFESTS = REPO / "manifests"
NODE1_DOCKER = "/run/ferry-lab/node1/docker.sock"  # hack/image builds there: the lab's Docker hosts have one
NAMESPACE = "ferry-system"
SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:ferry"
RECOVERED = ("Succeeded", "RolledBack")
# On top of manifests/: test-pause annotations and a quick takeover, as the session's operator.
TEST_ARGS = ["--test-hooks", "--lease-seconds", "5"]


def run(*argv: str | Path, timeout: float = 900, **env: str) -> None:
    done = subprocess.run(
        [str(arg) for arg in argv], capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}
    )
    assert done.returncode == 0, f"{argv[0]} failed:\n{done.stdout}\n{done.stderr}"


class Deployed:
    """The Deployment's pods, as the API server sees them."""

    def __init__(self, lab: Lab, install: Path) -> None:
        self.lab = lab
        self.install = install  # the kustomization applied

    def pods(self) -> list[dict[str, Any]]:
        found = self.lab.kubectl(
            "get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=ferry", "-o", "json"
        )
        items: list[dict[str, Any]] = json.loads(found.stdout)["items"]
        return [pod for pod in items if "deletionTimestamp" not in pod["metadata"]]

    def ready_pods(self) -> list[dict[str, Any]]:
        return [
            pod
            for pod in self.pods()
            if any(
                c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
            )
        ]

    def wait_ready(self, replicas: int = 2) -> list[dict[str, Any]]:
        pods: list[dict[str, Any]] = wait_for(
            lambda: len(ready := self.ready_pods()) == replicas and ready, 240, f"{replicas} ready ferry pods"
        )
        return pods

    def logs(self, pod: str) -> str:
        return self.lab.kubectl("logs", "-n", NAMESPACE, pod, check=False).stdout

    def lease_holder_pod(self, migration_uid: str) -> str:
        """The pod that drives the Migration (the Lease's holder identity starts with its hostname)."""
        lease = self.lab.kubectl(
            "get", "lease", "-n", NAMESPACE, f"ferry-migration-{migration_uid}", "-o", "json", check=False
        )
        holder = json.loads(lease.stdout)["spec"]["holderIdentity"] if lease.returncode == 0 else ""
        names: list[str] = [pod["metadata"]["name"] for pod in self.pods()]
        return next(name for name in names if holder.startswith(name))


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status, answer.read().decode()


@pytest.fixture(scope="module")
def deployed(
    lab: Lab, operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    operator.stop()
    overlay = tmp_path_factory.mktemp("ferry-test-install")
    patch = [
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": arg} for arg in TEST_ARGS
    ]
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(MANIFESTS, overlay)],  # kustomize takes no absolute path
                "patches": [
                    {"target": {"kind": "Deployment", "name": "ferry"}, "patch": yaml.safe_dump(patch)}
                ],
            }
        )
    )
    try:
        run(NODE_SCRIPT, "up", timeout=300)
        run(IMAGE_SCRIPT, "--save", IMAGE_FILE, DOCKER_HOST=f"unix://{NODE1_DOCKER}")
        lab.docker("node1", "rmi", "ferry:0.1.0", "ferry-base:bookworm", check=False)
        lab.docker("node1", "image", "prune", "-f", check=False)
        run(NODE_SCRIPT, "load", IMAGE_FILE)
        lab.kubectl("apply", "-k", str(overlay))
        deployment = Deployed(lab, overlay)
        deployment.wait_ready()
        yield deployment
    finally:
        lab.kubectl("delete", "deployment", "ferry", "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
        wait_for(lambda: not Deployed(lab, overlay).pods(), 120, "the ferry pods to go")
        run(NODE_SCRIPT, "down", timeout=300)
        operator.start()


def test_the_pods_run_the_image_read_only_as_non_root_and_answer_their_liveness_probe(
    deployed: Deployed,
) -> None:
    for pod in deployed.wait_ready():
        [container] = pod["spec"]["containers"]
        assert container["image"] == "ferry:0.1.0"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["spec"]["serviceAccountName"] == "ferry"
        assert http_get(f"http://{pod['status']['podIP']}:8080/healthz")[0] == 200
    wait_for(lambda: deployed.lab.kubectl("get", "--raw", "/readyz").returncode == 0, 10, "the API server")
    for pod in deployed.ready_pods():
        [status] = pod["status"]["containerStatuses"]
        assert status["restartCount"] == 0, status


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("patch", "migrations.ferry.dev/status", "yes"),
        ("get", "secrets/ferry-ssh", "yes"),
        ("get", "secrets/another", "no"),
        ("list", "secrets", "no"),
        ("create", "pods", "no"),
        ("delete", "migrations.ferry.dev", "yes"),  # an Evacuation's, when it is deleted
        ("patch", "evacuations.ferry.dev/status", "yes"),
        ("delete", "dockerhosts.ferry.dev", "no"),
        ("delete", "evacuations.ferry.dev", "no"),
    ],
)
def test_the_service_account_may_do_what_ferry_needs_and_no_more(
    deployed: Deployed, verb: str, resource: str, allowed: str
) -> None:
    answer = deployed.lab.kubectl(
        "auth", "can-i", verb, resource, "-n", NAMESPACE, "--as", SERVICE_ACCOUNT, check=False
    )
    assert answer.stdout.strip() == allowed


def test_a_live_migration_by_the_deployed_operator_keeps_counting_on_the_target(deployed: Deployed) -> None:
    lab = deployed.lab
    counter, name = Counter(lab), unique("mig-deployed")
    lab.migration(name, counter.name, target="node2")
    status = lab.wait_until(name, timeout=180)["status"]
    assert status["phase"] == "Succeeded", status
    assert counter.assert_runs_once_and_continuous() == "node2"
    assert any(name in deployed.logs(pod["metadata"]["name"]) for pod in deployed.pods())


def test_a_restore_failing_under_the_deployed_operator_rolls_back_onto_the_source(deployed: Deployed) -> None:
    lab = deployed.lab
    counter, name = Counter(lab), unique("mig-deployed-rollback")
    with fake_criu(lab, "node2", FAILING_RESTORE):
        lab.migration(name, counter.name, target="node2")
        status = lab.wait_until(name, timeout=180)["status"]
    assert_rolled_back(lab, counter, status, reason="RestoreFailed")


def test_killing_the_pod_that_drives_a_migration_hands_it_to_the_other_replica(deployed: Deployed) -> None:
    lab = deployed.lab
    counter, name = Counter(lab), unique("mig-deployed-kill")
    lab.migration(name, counter.name, target="node2", pauses="Transferring=8")
    lab.wait_for_phase(name, "Transferring", timeout=120)
    uid = lab.get_migration(name)["metadata"]["uid"]
    driver = deployed.lease_holder_pod(uid)

    lab.kubectl("delete", "pod", "-n", NAMESPACE, driver, "--grace-period=0", "--force")

    status = lab.wait_until(name, timeout=240)["status"]
    assert status["phase"] in RECOVERED, status
    counter.assert_runs_once_and_continuous()
    survivors = [pod["metadata"]["name"] for pod in deployed.pods() if pod["metadata"]["name"] != driver]
    assert any(name in deployed.logs(pod) for pod in survivors)
    deployed.wait_ready()  # the Deployment replaced the pod


def test_the_pods_used_only_what_their_rbac_grants_and_their_metrics_count_the_migrations(
    deployed: Deployed,
) -> None:
    lab = deployed.lab
    counter, name = Counter(lab), unique("mig-deployed-metrics")
    lab.migration(name, counter.name, target="node2")
    assert lab.wait_until(name, timeout=180)["status"]["phase"] == "Succeeded"

    pods = deployed.wait_ready()
    scrapes = [Scrape(http_get(f"http://{pod['status']['podIP']}:9464/metrics")[1]) for pod in pods]
    succeeded = sum(
        value
        for scrape in scrapes
        for (metric, labels), value in scrape.samples.items()
        if metric == "ferry_migrations_total" and ("phase", "Succeeded") in labels
    )
    assert succeeded >= 1
    assert max(scrape.value("ferry_host_ready", host="node2") for scrape in scrapes) == 1.0
    for pod in pods:
        assert "Forbidden" not in deployed.logs(pod["metadata"]["name"])


def test_applying_the_install_again_changes_nothing(deployed: Deployed) -> None:
    applied = deployed.lab.kubectl("apply", "-k", str(deployed.install)).stdout.splitlines()
    assert applied and all(line.endswith(" unchanged") for line in applied), applied


def test_applying_a_finished_migration_again_changes_nothing_and_moves_nothing(deployed: Deployed) -> None:
    lab = deployed.lab
    counter, name = Counter(lab), unique("mig-deployed-gitops")
    lab.migration(name, counter.name, target="node2")
    assert lab.wait_until(name, timeout=180)["status"]["phase"] == "Succeeded"
    before = lab.get_migration(name)

    lab.migration(name, counter.name, target="node2")  # what a GitOps tool does on every sync

    after = lab.get_migration(name)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["status"] == before["status"]
    assert counter.assert_runs_once_and_continuous() == "node2"
