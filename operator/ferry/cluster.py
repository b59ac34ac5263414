"""The operator's own reads and writes of Kubernetes objects (besides what kopf does)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from ferry.api import GROUP, MIGRATIONS, VERSION, SecretKeyRef
from ferry.migration.errors import ClusterUnavailable


class ClusterError(ClusterUnavailable):
    """The API server did not answer, or refused: the one error every method here raises (the
    migration layer knows it as ClusterUnavailable: try again later)."""


class Conflict(ClusterError):
    """The object changed since the resourceVersion a write was conditional on."""


@contextmanager
def api_call(what: str) -> Iterator[None]:
    """Turns a failed call into a ClusterError saying what was asked."""
    try:
        yield
    except ApiException as error:
        if error.status == 409:
            raise Conflict(f"{what}: the object changed meanwhile") from None
        raise ClusterError(f"{what}: {error.status} {error.reason}") from None
    except urllib3.exceptions.HTTPError as error:
        raise ClusterError(f"{what}: {error}") from None


def load_kube_config() -> None:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


class Cluster:
    def __init__(self, api_client: kubernetes.client.ApiClient | None = None) -> None:
        if api_client is None:
            configuration = kubernetes.client.Configuration.get_default_copy()
            configuration.connection_pool_maxsize = 64  # many migrations, each with a lease renewer
            api_client = kubernetes.client.ApiClient(configuration)
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.coordination = kubernetes.client.CoordinationV1Api(api_client)

    def secret_value(self, ref: SecretKeyRef) -> str:
        with api_call(f"reading Secret {ref.namespace}/{ref.name}"):
            secret = self.core.read_namespaced_secret(ref.name, ref.namespace)
        data = secret.data or {}
        if ref.key not in data:
            raise ClusterError(f"Secret {ref.namespace}/{ref.name} has no key '{ref.key}'")
        return base64.b64decode(data[ref.key]).decode()

    def get_migration(self, namespace: str, name: str) -> dict[str, Any] | None:
        with api_call(f"reading Migration {namespace}/{name}"):
            try:
                return cast(
                    dict[str, Any],
                    self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, MIGRATIONS, name),
                )
            except ApiException as error:
                if error.status == 404:
                    return None
                raise

    def list_migrations(self) -> list[dict[str, Any]]:
        with api_call("listing the Migrations"):
            listing = cast(dict[str, Any], self.custom.list_cluster_custom_object(GROUP, VERSION, MIGRATIONS))
        return cast(list[dict[str, Any]], listing.get("items", []))

    def create_migration(self, namespace: str, body: dict[str, Any]) -> bool:
        """Creates the Migration; False when one of its name exists already."""
        name = body["metadata"]["name"]
        with api_call(f"creating Migration {namespace}/{name}"):
            try:
                self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, MIGRATIONS, body)
            except ApiException as error:
                if error.status == 409:
                    return False
                raise
        return True

    def delete_migration(self, namespace: str, name: str) -> None:
        """Asks for the Migration's deletion (its finalizer lets ferry cancel or finish it first)."""
        with api_call(f"deleting Migration {namespace}/{name}"):
            try:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, MIGRATIONS, name)
            except ApiException as error:
                if error.status != 404:
                    raise

    def patch_migration_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """Writes the status if the Migration is still at `resource_version`; returns the new object."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        with api_call(f"writing the status of Migration {namespace}/{name} at {resource_version}"):
            return cast(
                dict[str, Any],
                self.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, MIGRATIONS, name, body
                ),
            )

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        # the client sends a dict as it is, in the API's own field names
        self.core.create_namespaced_event(namespace, cast(kubernetes.client.CoreV1Event, body))
