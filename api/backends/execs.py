"""What the execs router needs from the engine.

docker exec: /containers/{id}/exec and /exec/{id}/...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from daemon.execs.service import ExecInstance


class ExecBackend(Protocol):
    def create(self, ref: str, body: Any) -> str:
        """The new exec's id."""

    def get(self, exec_id: str) -> ExecInstance: ...

    def check_start(self, exec_id: str) -> ExecInstance:
        """Raises what start() would refuse the exec with, without starting it."""

    async def start(self, exec_id: str, tty: bool | None = None) -> ExecInstance:
        """Starts the command; its process and streams are on the instance."""

    async def resize(self, exec_id: str, height: int, width: int) -> None: ...
