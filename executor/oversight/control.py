"""An operator's controls over a running bot: pause, resume, cancel-all and kill.

Every action takes effect first (a pause or a kill must not wait on the disk), then is
recorded in the ledger's ``operator_actions`` (time, action, source such as ``web``, and
what came of it) and announced to the alerts. What each one does:

* ``pause``: the order manager refuses new orders (Place, Replace) until ``resume``; the
  orders already working stay on the book, cancels still go out, fills still come in;
* ``resume``: new orders are allowed again (the kill switch, if engaged, still refuses them);
* ``cancel-all``: cancels every working order of ours (tracked, or open on the exchange
  with our client-id prefix), never anyone else's; it does not pause, so the strategy may
  quote again at once -- pause first to keep the book empty;
* ``kill``: engages the kill switch (creates its file, so it survives a restart) and cancels
  our orders; every new order is refused until the file is deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ACTIONS", "ActionResult", "Operator"]

log = logging.getLogger(__name__)

ACTIONS = ("pause", "resume", "cancel-all", "kill")


@dataclass(frozen=True)
class ActionResult:
    action: str
    source: str
    detail: str
    recorded: bool  # False: it took effect, but the ledger write failed (logged)


class Operator:
    """The four controls, over the bot's order manager, risk checker and ledger."""

    def __init__(self, *, store: Any, manager: Any, risk: Any,
                 notify: Callable[[str, str], None] | None = None) -> None:
        self.store = store
        self.manager = manager
        self.risk = risk
        self.notify = notify
        # Set the moment this operator engages the kill switch (before any await), so whoever
        # watches the kill-switch file can tell an operator's kill from the file appearing.
        self.killed = False

    @property
    def paused(self) -> bool:
        return bool(self.manager.paused)

    @property
    def kill_switch_engaged(self) -> bool:
        return bool(self.risk.kill_switch.is_engaged())

    async def act(self, action: str, source: str) -> ActionResult:
        """Run one of ``ACTIONS`` on behalf of ``source`` (``web``, ``terminal``, ...)."""
        if action == "pause":
            was = self.manager.paused
            self.manager.paused = True
            detail = "already paused" if was else "new orders refused; working orders stay"
        elif action == "resume":
            was = self.manager.paused
            self.manager.paused = False
            detail = "new orders allowed" if was else "was not paused"
            if self.kill_switch_engaged:
                detail += "; the kill switch is still engaged"
        elif action == "cancel-all":
            n = await self.manager.cancel_all_ours(f"operator cancel-all ({source})")
            detail = f"{n} cancel(s) sent"
        elif action == "kill":
            self.risk.kill_switch.engage(f"operator kill ({source})")
            self.killed = True
            n = await self.manager.cancel_all_ours(f"kill switch ({source})")
            detail = f"kill switch engaged ({self.risk.kill_switch.path}); {n} cancel(s) sent"
        else:
            raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        log.warning("operator %s from %s: %s", action, source, detail)
        recorded = True
        try:
            await self.store.add_operator_action(action, source, detail)
        except Exception as exc:  # noqa: BLE001 - the action stands; only its record is missing
            recorded = False
            log.error("operator %s could not be recorded in the ledger: %s", action, type(exc).__name__)
        if self.notify is not None:
            self.notify(action, f"operator {action} from {source}: {detail}")
        return ActionResult(action, source, detail, recorded)
