"""status.progress on the real lab: `kubectl get -w` sees the image copied before the freeze against
its size, then the freeze's transfer with what it expected (at the freeze) and what it moved (at the
thaw); none once the Migration ended. `kubectl get -o wide` has the Progress column."""

from __future__ import annotations

from tests.e2e.lab import Counter, Lab, OperatorProcess, unique

MiB = 1 << 20
BLOB = 48 * MiB  # random, in the image: its copy moves that much at least
FIELDS = ("phase", "progress.step", "progress.movedBytes", "progress.expectedBytes")
WATCHED = " ".join(f"{{.status.{field}}}" for field in FIELDS) + '{"\\n"}'


def image_with_blob(lab: Lab) -> str:
    """An image on node1 only, holding BLOB bytes of random data."""
    image, builder = f"ferry-e2e/{unique('blob')}", unique("builder")
    lab.run_container("node1", builder, f"head -c {BLOB} /dev/urandom > /blob")
    lab.docker("node1", "wait", builder)
    lab.docker("node1", "commit", builder, image)
    lab.docker("node1", "rm", builder)
    return image


def watched(lab: Lab, name: str, migrate: Counter) -> list[list[str]]:
    """(phase, step, moved, expected) of each change `kubectl get -w` showed while `name` moved."""
    with lab.watching(name, WATCHED) as printed:
        lab.migration(name, migrate.name, target="node2")
        lab.wait_until(name)
    return [line.split(" ") for line in printed if line.strip()]


def test_kubectl_get_watch_shows_the_bytes_of_the_image_copy_and_of_the_freeze(
    lab: Lab, operator: OperatorProcess
) -> None:
    image = image_with_blob(lab)
    counter, name = Counter(lab, image=image), unique("mig-progress")
    try:
        changes = watched(lab, name, counter)
        wide = lab.kubectl("get", "migrations", name, "-o", "wide").stdout.splitlines()[0].split()
    finally:
        for host in lab.hosts:
            lab.docker(host, "rm", "-f", counter.name, check=False)
            lab.docker(host, "rmi", image, check=False)

    image_copy = [change for change in changes if change[1] == "image"]
    assert image_copy[0][:3] == ["Preparing", "image", "0"] and int(image_copy[0][3]) >= BLOB, changes
    assert max(int(change[2]) for change in image_copy) >= BLOB, changes
    # the first change of each phase that showed the transfer (a watch shows metadata changes too)
    transfer = {change[0]: change for change in reversed(changes) if change[1] == "transfer"}
    assert transfer["Transferring"][2] == "0" and int(transfer["Transferring"][3]) > 0, changes
    assert int(transfer["Restoring"][2]) > 0 and transfer["Restoring"][3] == transfer["Transferring"][3]
    assert changes[-1] == ["Succeeded", "", "", ""]
    assert wide == ["NAME", "WORKLOAD", "SOURCE", "TARGET", "PHASE", "PROGRESS", "DOWNTIME", "AGE"]
