"""What clients of a container's published ports see across a live move (`spec.redirect: true`).

Just before the freeze the source host starts holding new connections to those ports (they wait,
they are not refused; see ferry.hosts.connection_hold), after letting the connections already open
end (the drain, bounded). Once the workload runs again, the hold is let go to wherever it runs:
after a cutover the source host forwards the ports to the target first, so held and new clients
reach the target; after a rollback they reach the restored source. A hold ends by itself if ferry
dies (`HOLD_SECONDS`), and its rules never drop traffic.
"""

from __future__ import annotations

import logging
from typing import Any

from ferry.hosts import connection_hold
from ferry.hosts.connection_hold import Drain
from ferry.hosts.docker_host import DockerHost
from ferry.migration.container_data import container_ports, published_ports
from ferry.migration.context import MigrationContext
from ferry.migration.errors import HostError
from ferry.migration.state import ConnectionHold

log = logging.getLogger(__name__)

HOLD_SECONDS = 60.0  # at most; longer than any freeze, short enough if ferry died holding
DRAIN_SECONDS = 0.3  # what connections open at the freeze get to finish


def redirect_tag(uid: str) -> str:
    """Tags the NAT rules of one Migration, which owns them (they go when it is deleted)."""
    return f"ferry:{uid}"


def hold_tag(uid: str) -> str:
    return f"ferry-hold:{uid}"


class ClientContinuity:
    def __init__(self, ctx: MigrationContext, source: DockerHost, target: DockerHost) -> None:
        self.ctx = ctx
        self.state = ctx.state
        self.source = source
        self.target = target

    @property
    def wanted(self) -> bool:
        return self.ctx.request.spec.redirect

    def hold(self, info: dict[str, Any]) -> None:
        """Holds new connections to the source's published ports, once those open have ended (or
        the drain's bound passed). A host that cannot hold (no python3, no NFQUEUE) is logged and
        the move goes on: its clients are refused during the freeze, as without a hold."""
        ports = published_ports(info)
        if not self.wanted or not self.ctx.request.spec.hold_connections or not ports:
            return
        drain = Drain(int(info["State"]["Pid"]), tuple(container_ports(info)), DRAIN_SECONDS)
        try:
            held = connection_hold.hold(
                self.source.ssh, ports, hold_tag(self.ctx.request.uid), HOLD_SECONDS, drain
            )
        except HostError as error:
            log.warning(
                "%s: new connections cannot be held on %s: %s", self.state.workload, self.source.name, error
            )
            return
        self.state.connection_hold = ConnectionHold(drained_ms=held.drained_ms, cut_by_freeze=held.still_open)

    def cut_over(self) -> None:
        """The target runs: the source host forwards the ports to it, then lets the held clients go."""
        if self.wanted and self.state.redirect is None:
            assert self.state.target_host is not None
            target_address = self.ctx.hosts.spec(self.state.target_host).address
            assert self.state.target_container_id is not None
            info = self.target.engine.inspect_container(self.state.target_container_id)
            ports = published_ports(info)
            self.source.netfilter.forward_ports(ports, target_address, redirect_tag(self.ctx.request.uid))
            self.state.redirect = ", ".join(
                f"{self.source.name}:{port}/{proto} -> {target_address}" for proto, port in ports
            )
        self.release()

    def roll_back(self) -> None:
        """Before the source runs again: its ports are its own again (no forwarding to the target)."""
        if self.state.redirect is not None:
            self.source.netfilter.remove_forwards(redirect_tag(self.ctx.request.uid))
            self.state.redirect = None

    def release(self) -> None:
        """Lets held clients go to wherever the source host's NAT sends them now; records what was held."""
        record = self.state.connection_hold
        if record is None or record.released:
            return
        held = connection_hold.release(self.source.ssh, hold_tag(self.ctx.request.uid))
        record.released = True
        if held is not None:  # else its holder was gone (it let go at its deadline): nothing counted
            record.connections, record.udp_dropped, record.held_ms = (
                held.connections,
                held.udp_dropped,
                held.held_ms,
            )
