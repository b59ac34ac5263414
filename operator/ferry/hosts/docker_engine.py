"""The Docker Engine API of one host, reached through its SSH connection.

The docker SDK's own ssh:// transport opens its own connection from ~/.ssh files and always runs
plain `docker system dial-stdio`; ferry needs the pinned, Secret-keyed session it already has and
the host's configured socket, so it mounts a small adapter that opens each HTTP connection as a
`docker -H unix://SOCKET system dial-stdio` channel on that session. Endpoints the SDK does not wrap
(checkpoints among them) are called through its private request helpers: `_EngineClient` and the
adapter it mounts hold every use of the SDK's internals.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, cast
from urllib.parse import urlsplit

import docker
import docker.errors
import docker.types
import requests
import urllib3
from docker.transport.basehttpadapter import BaseHTTPAdapter

from ferry.hosts import host_calls
from ferry.hosts.errors import HostError
from ferry.hosts.ssh import SSHSession

API_VERSION = "1.41"  # Docker 20.10; later engines still serve it
TIMEOUT = 30.0  # seconds without a byte from the engine: a dead link or daemon shows up quickly
LONG_TIMEOUT = 900.0  # checkpoints, restores and image copies of big workloads answer late


class NotFound(HostError, LookupError):
    pass


class DockerError(HostError):
    pass


class _DialStdioConnection(urllib3.connection.HTTPConnection):
    def __init__(self, session: SSHSession, docker_socket: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._session = session
        self._docker_socket = docker_socket
        self._timeout = timeout

    def connect(self) -> None:
        self.sock = self._session.open(
            ["docker", "-H", f"unix://{self._docker_socket}", "system", "dial-stdio"],
            timeout=self._timeout,
            counted=False,
        )


class _DialStdioPool(urllib3.connectionpool.HTTPConnectionPool):
    def __init__(self, session: SSHSession, docker_socket: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout, maxsize=16)
        self._session = session
        self._docker_socket = docker_socket
        self._timeout = timeout

    def _new_conn(self) -> _DialStdioConnection:
        return _DialStdioConnection(self._session, self._docker_socket, self._timeout)


class _DialStdioAdapter(BaseHTTPAdapter):  # type: ignore[misc]
    def __init__(self, session: SSHSession, docker_socket: str, timeout: float) -> None:
        super().__init__()
        self._pool = _DialStdioPool(session, docker_socket, timeout)

    def get_connection(self, url: str, proxies: Any = None) -> _DialStdioPool:
        return self._pool

    def close(self) -> None:
        super().close()
        self._pool.close()


class _EngineClient(docker.APIClient):  # type: ignore[misc]
    """docker-py's low-level client over ferry's session: with the adapter it mounts, the only code
    that uses docker-py's internals.

    Why they are used: docker-py's ssh:// transport cannot use ferry's session, so the dial-stdio
    adapter (on docker-py's adapter base, which carries its fix for requests 2.32) is mounted over
    the URL prefix its ssh:// clients send to; and docker-py has no call for some endpoints ferry
    needs (checkpoints, `start --checkpoint`, `inspect --size`, a load with a long timeout), so
    `endpoint` calls those, and the create from the body ferry builds, through its private request
    helpers (they quote path arguments, add the API version, raise its errors). Kept in one place so
    that a docker-py upgrade that changes these breaks here alone.
    """

    def __init__(self, session: SSHSession, docker_socket: str) -> None:
        super().__init__(base_url="ssh://ferry", version=API_VERSION, use_ssh_client=True, timeout=TIMEOUT)
        self.mount("http+docker://ssh", _DialStdioAdapter(session, docker_socket, TIMEOUT))
        self._host = session.name

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        """Every request to the Engine passes here: it is one host call once answered."""
        host_calls.starting()
        response = super().request(method, url, *args, **kwargs)
        path = urlsplit(str(url)).path.removeprefix(f"/v{API_VERSION}")
        host_calls.completed(self._host, "docker", [str(method), path])
        return cast(requests.Response, response)

    def endpoint(
        self, method: str, path: str, *path_args: str, body: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> requests.Response:
        """`method` on `path` (formatted with `path_args`); `body` is sent as JSON, in a POST."""
        url = self._url(path, *path_args)
        if body is not None:
            response = self._post_json(url, data=dict(body), **kwargs)
        else:
            response = {"GET": self._get, "POST": self._post, "DELETE": self._delete}[method](url, **kwargs)
        self._raise_for_status(response)
        return cast(requests.Response, response)


class DockerEngine:
    """Typed calls to one host's Docker Engine; each raises NotFound or DockerError."""

    def __init__(self, session: SSHSession, docker_socket: str) -> None:
        self.host = session.name
        self.api = _EngineClient(session, docker_socket)
        self._root_dir: str | None = None

    def _call(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except docker.errors.NotFound as error:
            raise NotFound(f"{what} on {self.host}: {error.explanation or error}") from None
        except docker.errors.APIError as error:
            raise DockerError(f"{what} on {self.host} failed: {error.explanation or error}") from None
        except requests.RequestException as error:
            raise DockerError(f"{what} on {self.host}: cannot reach the Docker Engine: {error}") from None

    def info(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("docker info", self.api.info))

    def version(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("docker version", self.api.version))

    def root_dir(self) -> str:
        if self._root_dir is None:
            self._root_dir = str(self.info()["DockerRootDir"])
        return self._root_dir

    def checkpoint_dir(self, container_id: str, checkpoint: str) -> str:
        """Where `docker checkpoint create` writes, and where `docker start --checkpoint` reads."""
        return f"{self.root_dir()}/containers/{container_id}/checkpoints/{checkpoint}"

    def inspect_container(self, name_or_id: str) -> dict[str, Any]:
        return cast(
            dict[str, Any], self._call(f"container {name_or_id}", self.api.inspect_container, name_or_id)
        )

    def find_container(self, name_or_id: str) -> dict[str, Any] | None:
        try:
            return self.inspect_container(name_or_id)
        except NotFound:
            return None

    def running_containers(self) -> list[dict[str, Any]]:
        return self.list_containers()

    def list_containers(self, *, stopped_too: bool = False) -> list[dict[str, Any]]:
        """`docker ps` (`-a` with `stopped_too`): each container's Id, Names, Labels and State."""
        return cast(list[dict[str, Any]], self._call("docker ps", self.api.containers, all=stopped_too))

    def writable_layer_bytes(self, container_id: str) -> int:
        """SizeRw of `docker inspect --size`: what the container wrote over its image."""
        response = self._call(
            f"sizing container {container_id[:12]}",
            self.api.endpoint,
            "GET",
            "/containers/{0}/json",
            container_id,
            params={"size": 1},
            timeout=LONG_TIMEOUT,
        )
        return int(response.json().get("SizeRw") or 0)

    def network_names(self) -> set[str]:
        networks = cast(list[dict[str, Any]], self._call("docker network ls", self.api.networks))
        return {str(network["Name"]) for network in networks}

    def inspect_network(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._call(f"network {name}", self.api.inspect_network, name))

    def create_network(self, spec: Mapping[str, Any]) -> None:
        """A network as `docker network inspect` describes one (Name, Driver, IPAM, Options, ...);
        Docker refuses a name taken already."""
        ipam = spec.get("IPAM") or {}
        self._call(
            f"creating network {spec['Name']}",
            self.api.create_network,
            spec["Name"],
            driver=spec.get("Driver"),
            options=spec.get("Options") or None,
            ipam=docker.types.IPAMConfig(
                driver=ipam.get("Driver") or "default",
                pool_configs=[
                    docker.types.IPAMPool(**pool_arguments(pool)) for pool in ipam.get("Config") or []
                ],
                options=ipam.get("Options") or None,
            ),
            check_duplicate=True,
            internal=bool(spec.get("Internal")),
            labels=spec.get("Labels") or None,
            enable_ipv6=bool(spec.get("EnableIPv6")),
            attachable=bool(spec.get("Attachable")),
        )

    def networks_labelled(self, key: str, value: str) -> list[str]:
        found = self._call("docker network ls", self.api.networks, filters={"label": f"{key}={value}"})
        return [str(network["Name"]) for network in found]

    def remove_network(self, name: str) -> None:
        with contextlib.suppress(NotFound):  # already gone
            self._call(f"removing network {name}", self.api.remove_network, name)

    def has_image(self, image_id: str) -> bool:
        try:
            self._call(f"image {image_id}", self.api.inspect_image, image_id)
            return True
        except NotFound:
            return False

    def inspect_image(self, name_or_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._call(f"image {name_or_id}", self.api.inspect_image, name_or_id))

    def save_image(self, name_or_id: str) -> Iterator[bytes]:
        """Streams `docker save` of one image (a tar)."""
        response = self._call(
            f"saving image {name_or_id}", self.api.get_image, name_or_id, chunk_size=1 << 20
        )
        return cast(Iterator[bytes], response)

    def load_image(self, tar_stream: Iterable[bytes]) -> None:
        response = self._call(
            "loading image",
            self.api.endpoint,
            "POST",
            "/images/load",
            data=tar_stream,
            params={"quiet": "1"},
            timeout=LONG_TIMEOUT,
        )
        self._call("loading image", self._raise_for_stream_error, response)

    @staticmethod
    def _raise_for_stream_error(response: requests.Response) -> None:
        """`docker load` reports failures inside a 200 response's JSON messages."""
        for line in response.iter_lines():
            if line.strip().startswith(b"{") and b'"error"' in line:
                raise docker.errors.APIError(line.decode(errors="replace"), response=response)

    def create_container(self, name: str, body: Mapping[str, Any]) -> str:
        response = self._call(
            f"creating container {name}",
            self.api.endpoint,
            "POST",
            "/containers/create",
            body=body,
            params={"name": name},
        )
        return cast(str, response.json()["Id"])

    def start(self, container_id: str, checkpoint: str | None = None) -> None:
        params = {"checkpoint": checkpoint} if checkpoint else {}
        self._call(
            f"starting container {container_id[:12]}",
            self.api.endpoint,
            "POST",
            "/containers/{0}/start",
            container_id,
            params=params,
            timeout=LONG_TIMEOUT,
        )

    def stop(self, container_id: str, timeout: int = 10) -> None:
        self._call(f"stopping container {container_id[:12]}", self.api.stop, container_id, timeout=timeout)

    def set_restart_policy(self, container_id: str, policy: Mapping[str, Any]) -> None:
        what = f"updating container {container_id[:12]}"
        self._call(what, self.api.update_container, container_id, restart_policy=dict(policy))

    def remove_container(self, container_id: str, *, volumes: bool = False) -> None:
        """Removes the container, running or not; with `volumes`, its anonymous volumes too (`rm -v`)."""
        with contextlib.suppress(NotFound):
            self._call(
                f"removing container {container_id[:12]}",
                self.api.remove_container,
                container_id,
                v=volumes,
                force=True,
            )

    def find_volume(self, name: str) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], self._call(f"volume {name}", self.api.inspect_volume, name))
        except NotFound:
            return None

    def create_volume(self, name: str, labels: Mapping[str, str]) -> dict[str, Any]:
        """A local volume; Docker returns the volume of that name instead when one exists (with its
        own labels)."""
        return cast(
            dict[str, Any],
            self._call(f"creating volume {name}", self.api.create_volume, name, labels=dict(labels)),
        )

    def volumes_labelled(self, key: str, value: str) -> list[str]:
        found = self._call("docker volume ls", self.api.volumes, filters={"label": f"{key}={value}"})
        return [str(volume["Name"]) for volume in found.get("Volumes") or []]

    def remove_volume(self, name: str) -> None:
        with contextlib.suppress(NotFound):  # already gone
            self._call(f"removing volume {name}", self.api.remove_volume, name)

    def create_checkpoint(self, container_id: str, name: str, *, exit: bool = True) -> None:
        self._call(
            f"checkpointing container {container_id[:12]}",
            self.api.endpoint,
            "POST",
            "/containers/{0}/checkpoints",
            container_id,
            body={"CheckpointID": name, "Exit": exit},
            timeout=LONG_TIMEOUT,
        )

    def list_checkpoints(self, container_id: str) -> list[str]:
        response = self._call(
            "listing checkpoints", self.api.endpoint, "GET", "/containers/{0}/checkpoints", container_id
        )
        return [entry["Name"] for entry in response.json() or []]

    def delete_checkpoint(self, container_id: str, name: str) -> None:
        """Idempotent: a checkpoint already gone is no error (Docker 20.10 says so with a 500)."""
        path = "/containers/{0}/checkpoints/{1}"
        try:
            self._call("deleting checkpoint", self.api.endpoint, "DELETE", path, container_id, name)
        except NotFound:
            pass
        except DockerError as error:
            if "does not exist" not in str(error):
                raise

    def close(self) -> None:
        self.api.close()


def pool_arguments(pool: Mapping[str, Any]) -> dict[str, Any]:
    """An IPAM pool as `docker network inspect` shows it, as the SDK's IPAMPool takes it."""
    names = {
        "Subnet": "subnet",
        "IPRange": "iprange",
        "Gateway": "gateway",
        "AuxiliaryAddresses": "aux_addresses",
    }
    return {names[key]: value for key, value in pool.items() if key in names and value}
