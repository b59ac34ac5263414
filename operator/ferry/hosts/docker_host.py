"""One Docker host: a part for each thing ferry talks to there, all over the host's one SSH session."""

from __future__ import annotations

from ferry.hosts.criu import Criu
from ferry.hosts.docker_engine import DockerEngine
from ferry.hosts.files import HostFiles
from ferry.hosts.netfilter import Netfilter
from ferry.hosts.peer_stream import PeerEndpoint
from ferry.hosts.runc import FastPathConfig, RuncHost
from ferry.hosts.ssh import SSHSession
from ferry.hosts.tree_copy import TreeCopy


class DockerHost:
    """One host: `ssh` runs commands there, `engine` is its Docker Engine, `files` its files, `trees`
    copies its directories (to other hosts too), `criu` runs CRIU, `netfilter` forwards its ports.
    `runc` is set when it opted into the fast path; `peer` when other hosts may stream to it directly
    (how they reach its sshd, where it keeps authorized keys)."""

    def __init__(
        self,
        name: str,
        session: SSHSession,
        docker_socket: str,
        *,
        fast_path: FastPathConfig | None = None,
        peer: PeerEndpoint | None = None,
    ) -> None:
        self.name = name
        self.ssh = session
        self.engine = DockerEngine(session, docker_socket)
        self.files = HostFiles(session)
        self.trees = TreeCopy(session, peer)
        self.criu = Criu(session)
        self.netfilter = Netfilter(session)
        self.runc = RuncHost(name, session, self.engine, fast_path) if fast_path is not None else None
        self.peer = peer

    def close(self) -> None:
        self.engine.close()
        self.ssh.close()
