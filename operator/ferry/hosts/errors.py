"""The one base of every error a host can raise (SSH, a command, the Docker Engine, a stream): the
migration layer catches `HostError`, not a list of types from several modules."""


class HostError(RuntimeError):
    """A host could not do what was asked: unreachable, refused, or the command failed."""


def last_line(output: str | bytes, *, empty: str = "no error output") -> str:
    """The last line a command wrote (to its error output: what it said of why it failed); `empty`
    when it wrote nothing."""
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    lines = text.strip().splitlines()
    return lines[-1] if lines else empty
