"""The CLI's calls to the API server: Migrations and DockerHosts, through the kubernetes client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, cast

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from ferry.api import DOCKER_HOSTS, EVACUATIONS, GROUP, MIGRATIONS, VERSION
from ferry.cluster import load_kube_config


class ClientError(Exception):
    """What the CLI cannot do, said on stderr with exit code 1."""


class MigrationApi(Protocol):
    namespace: str  # the one to use when the command names none

    def create_migration(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def get_migration(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list_migrations(self, namespace: str | None) -> list[dict[str, Any]]:
        """In one namespace, or in all of them (None)."""
        ...

    def list_docker_hosts(self) -> list[dict[str, Any]]: ...

    def create_evacuation(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def get_evacuation(self, name: str) -> dict[str, Any] | None: ...

    def create_docker_host(self, body: dict[str, Any]) -> None: ...

    def create_secret(self, body: dict[str, Any]) -> None: ...

    def delete_secret(self, namespace: str, name: str) -> None: ...


class KubeApi:
    """The cluster of the kubeconfig ($KUBECONFIG, or ~/.kube/config), or the one we run in."""

    def __init__(self) -> None:
        try:
            load_kube_config()
        except (kubernetes.config.ConfigException, OSError) as error:
            raise ClientError(f"no cluster to talk to (set KUBECONFIG): {error}") from None
        self.namespace = _current_namespace()
        self._custom = kubernetes.client.CustomObjectsApi()
        self._core = kubernetes.client.CoreV1Api()

    def create_migration(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = body["metadata"]["namespace"]
        with _calling("create the Migration"):
            created = self._custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, MIGRATIONS, body
            )
        return cast(dict[str, Any], created)

    def get_migration(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            with _calling(f"read Migration {namespace}/{name}"):
                found = self._custom.get_namespaced_custom_object(GROUP, VERSION, namespace, MIGRATIONS, name)
        except _NotFound:
            return None
        return cast(dict[str, Any], found)

    def list_migrations(self, namespace: str | None) -> list[dict[str, Any]]:
        with _calling("list Migrations"):
            if namespace is None:
                listing = self._custom.list_cluster_custom_object(GROUP, VERSION, MIGRATIONS)
            else:
                listing = self._custom.list_namespaced_custom_object(GROUP, VERSION, namespace, MIGRATIONS)
        return _items(listing)

    def list_docker_hosts(self) -> list[dict[str, Any]]:
        with _calling("list DockerHosts"):
            listing = self._custom.list_cluster_custom_object(GROUP, VERSION, DOCKER_HOSTS)
        return _items(listing)

    def create_evacuation(self, body: dict[str, Any]) -> dict[str, Any]:
        with _calling("create the Evacuation"):
            created = self._custom.create_cluster_custom_object(GROUP, VERSION, EVACUATIONS, body)
        return cast(dict[str, Any], created)

    def get_evacuation(self, name: str) -> dict[str, Any] | None:
        try:
            with _calling(f"read Evacuation {name}"):
                found = self._custom.get_cluster_custom_object(GROUP, VERSION, EVACUATIONS, name)
        except _NotFound:
            return None
        return cast(dict[str, Any], found)

    def create_docker_host(self, body: dict[str, Any]) -> None:
        with _calling("create the DockerHost"):
            self._custom.create_cluster_custom_object(GROUP, VERSION, DOCKER_HOSTS, body)

    def create_secret(self, body: dict[str, Any]) -> None:
        with _calling("create the Secret"):  # the client sends a dict as it is, in the API's field names
            self._core.create_namespaced_secret(
                body["metadata"]["namespace"], cast(kubernetes.client.V1Secret, body)
            )

    def delete_secret(self, namespace: str, name: str) -> None:
        with _calling(f"delete Secret {namespace}/{name}"):
            self._core.delete_namespaced_secret(name, namespace)


class _NotFound(ClientError):
    pass


def _items(listing: object) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], cast(dict[str, Any], listing).get("items", []))


def _current_namespace() -> str:
    """The kubeconfig context's namespace, as kubectl takes it; `default` without one."""
    try:
        _, active = kubernetes.config.list_kube_config_contexts()
    except (kubernetes.config.ConfigException, OSError):
        return "default"
    return str(active.get("context", {}).get("namespace") or "default")


@contextmanager
def _calling(what: str) -> Iterator[None]:
    """Turns the API server's refusals and unreachability into a ClientError that says what failed."""
    try:
        yield
    except ApiException as error:
        failure = _NotFound if error.status == 404 else ClientError
        raise failure(f"cannot {what}: {_server_message(error)}") from None
    except urllib3.exceptions.HTTPError as error:
        raise ClientError(f"cannot {what}: the API server does not answer ({error})") from None


def _server_message(error: ApiException) -> str:
    """The API server's own explanation (a Status object's message), else the HTTP reason."""
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"
