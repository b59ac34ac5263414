"""The one base of every error a host can raise (SSH, a command, the Docker Engine, a stream): the
migration layer catches `HostError`, not a list of types from several modules."""


class HostError(RuntimeError):
    """A host could not do what was asked: unreachable, refused, or the command failed."""
