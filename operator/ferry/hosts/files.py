"""Files and directories on one host, each handled by one command (an argument list: no path reaches
a shell unquoted)."""

from __future__ import annotations

from ferry.hosts.ssh import Commands


class HostFiles:
    def __init__(self, commands: Commands) -> None:
        self._commands = commands

    def exists(self, path: str) -> bool:
        return self._commands.run(["test", "-e", path], check=False, timeout=30).exit_code == 0

    def read(self, path: str) -> str | None:
        result = self._commands.run(["cat", "--", path], check=False, timeout=30)
        return result.text if result.exit_code == 0 else None

    def write(self, path: str, content: str) -> None:
        script = 'install -d -m 0700 -- "${1%/*}" && cat > "$1"'
        self._commands.run(["sh", "-c", script, "ferry-write", path], input=content.encode(), timeout=30)

    def make_private_directory(self, path: str) -> None:
        self._commands.run(["install", "-d", "-m", "0700", "--", path], timeout=30)

    def remove_tree(self, path: str) -> None:
        self._commands.run(["rm", "-rf", "--", path], timeout=120)

    def directory_bytes(self, path: str) -> int:
        return int(self._commands.run(["du", "-sb", "--", path], timeout=120).text.split()[0])

    def resolve(self, path: str) -> str | None:
        """The path with every symbolic link resolved, as a mount would follow them; None if it is missing."""
        result = self._commands.run(["realpath", "-e", "--", path], check=False, timeout=30)
        return result.text.strip() if result.exit_code == 0 else None
