"""What a twin container would get on its target, and whether the target DockerHost allows it.

The twin is created with the source container's HostConfig (ferry.migration.container_config), so
whatever the source container may do on its host, the twin may do on the target: run privileged,
mount host paths, use host devices. Each needs the target's allowance (spec.allowPrivileged,
spec.allowHostPaths, spec.allowDevices); "privileged" is meant as Kubernetes' PodSecurity
"baseline" level means it: --privileged, a host namespace, added capabilities, confinement off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ferry.api import DockerHostSpec
from ferry.migration.container_data import bind_sources
from ferry.migration.errors import Problem
from ferry.workloads import is_under

# Docker's default capabilities: adding any other is a privilege (as in PodSecurity baseline).
DEFAULT_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
        "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    }
)  # fmt: skip
HOST_NAMESPACES = {
    "NetworkMode": "--network", "PidMode": "--pid", "IpcMode": "--ipc", "UTSMode": "--uts",
    "UsernsMode": "--userns",
}  # fmt: skip
UNCONFINED = frozenset(
    {"seccomp=unconfined", "apparmor=unconfined", "label=disable", "systempaths=unconfined"}
)


def privileges(host_config: Mapping[str, Any]) -> list[str]:
    """What makes the container privileged, each as the `docker run` option that asked for it."""
    found = ["--privileged"] if host_config.get("Privileged") else []
    for key, option in HOST_NAMESPACES.items():
        if host_config.get(key) == "host":
            found.append(f"{option} host")
    for capability in host_config.get("CapAdd") or []:
        if capability.upper().removeprefix("CAP_") not in DEFAULT_CAPABILITIES:
            found.append(f"--cap-add {capability}")
    for option in host_config.get("SecurityOpt") or []:
        if option.replace(":", "=", 1) in UNCONFINED:
            found.append(f"--security-opt {option}")
    return found


def host_paths(info: dict[str, Any]) -> list[str]:
    """The host paths the container mounts: bind mounts, and local volumes a mount defines with a
    device (`--mount type=volume,volume-opt=device=/path`), which Docker creates again on the target."""
    found = [source for source, _ in bind_sources(info)]
    for mount in info["HostConfig"].get("Mounts") or []:
        options = ((mount.get("VolumeOptions") or {}).get("DriverConfig") or {}).get("Options") or {}
        if mount.get("Type") == "volume" and str(options.get("device", "")).startswith("/"):
            found.append(options["device"])
    return sorted(set(found))


def devices(host_config: Mapping[str, Any]) -> list[str]:
    """The host devices the container uses: --device, --device-cgroup-rule, --gpus."""
    found = [device.get("PathOnHost", "?") for device in host_config.get("Devices") or []]
    found += [f"cgroup rule '{rule}'" for rule in host_config.get("DeviceCgroupRules") or []]
    found += [
        f"{request.get('Driver') or 'device'} request" for request in host_config.get("DeviceRequests") or []
    ]
    return found


def twin_problem(name: str, info: dict[str, Any], target: DockerHostSpec) -> Problem | None:
    """Every allowance the twin would need and the target does not give, in one Problem (the reason
    is the first one's)."""
    host_config, host = info["HostConfig"], f"DockerHost '{target.name}'"
    refused: list[tuple[str, str]] = []
    if not target.allow_privileged and (found := privileges(host_config)):
        refused.append(
            (
                "PrivilegedNotAllowed",
                f"container '{name}' would run privileged on {target.name} ({', '.join(found)}), which "
                f"{host} does not allow: set its spec.allowPrivileged: true, or run the container "
                "without them",
            )
        )
    if outside := [path for path in host_paths(info) if not allowed_host_path(path, target)]:
        allowed = ", ".join(target.allow_host_paths)
        refused.append(
            (
                "HostPathNotAllowed",
                f"container '{name}' mounts host path {', '.join(outside)}, outside {host}'s "
                f"spec.allowHostPaths ([{allowed}]): add it there, or a directory above it",
            )
        )
    if not target.allow_devices and (found := devices(host_config)):
        refused.append(
            (
                "DevicesNotAllowed",
                f"container '{name}' uses host devices ({', '.join(found)}), which {host} does not "
                "allow: set its spec.allowDevices: true",
            )
        )
    if not refused:
        return None
    return Problem(refused[0][0], "; ".join(message for _, message in refused))


def allowed_host_path(path: str, target: DockerHostSpec) -> bool:
    return any(is_under(path, allowed) for allowed in target.allow_host_paths)


def linked_host_path_problem(
    name: str, info: dict[str, Any], target: DockerHostSpec, resolve: Callable[[str], str | None]
) -> Problem | None:
    """A host path the target allows by its name but whose symbolic links (resolved by `resolve`, on
    the target, as a mount follows them) lead outside spec.allowHostPaths."""
    for path in host_paths(info):
        resolved = resolve(path)
        if resolved is not None and not allowed_host_path(resolved, target):
            return Problem(
                "HostPathNotAllowed",
                f"host path {path} of container '{name}' leads to {resolved} on {target.name} (through a "
                f"symbolic link), outside DockerHost '{target.name}'s spec.allowHostPaths",
            )
    return None
