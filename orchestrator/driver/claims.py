"""One driver per cell: claims on a store, so that the same sweep started twice on one store
runs each cell once.

Before dispatching, a driver writes ``claims/<driver_id>.json`` under the store (atomically: a
temporary file moved into place) naming the cells it is about to run, then reads every live
claim. A cell claimed by several live drivers goes to the earliest claim (claim time, then
driver id): every driver computes the same answer, so whichever order the two claims land in,
exactly one driver keeps each cell. The winner rewrites its claim with the cells it kept; the
others skip theirs and say so. A driver refreshes its claim every ``HEARTBEAT_S`` while it runs
and deletes it when it ends; a claim not refreshed for ``store.claim_ttl_s`` (a driver that was
killed on another host) is stale and ignored, and so, at once, is the claim of a driver on this
host whose process no longer exists; the next driver to read the claims removes such a stale file.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterable, List, Set, Tuple

from orchestrator.store.sweep_store import Store

HEARTBEAT_S = 10.0
DIRNAME = "claims"


@dataclass
class Claim:
    """A driver's claim on the cells it runs (times: ``time.time()`` seconds)."""

    driver_id: str
    host: str
    pid: int
    claimed_unix_s: float
    heartbeat_unix_s: float
    cell_ids: List[str] = field(default_factory=list)

    def order(self) -> Tuple[float, str]:
        return self.claimed_unix_s, self.driver_id

    def who(self) -> str:
        return f"pid {self.pid} on {self.host}"


class CellClaims:
    """This driver's claim on a store (see module doc)."""

    def __init__(self, store: Store, ttl_s: float):
        self.store = store
        self.ttl_s = float(ttl_s)
        now = time.time()
        self.mine = Claim(uuid.uuid4().hex[:12], socket.gethostname(), os.getpid(), now, now)
        self._last_beat = 0.0

    @property
    def _dir(self) -> str:
        return f"{self.store.root}/{DIRNAME}"

    def claim(self, cell_ids: Iterable[str]) -> Tuple[Set[str], Dict[str, Claim]]:
        """-> (the cells this driver runs, {cell id: the other live claim that holds it})."""
        self.mine.cell_ids = sorted(cell_ids)
        self._write()
        others = [c for c in self.live() if c.driver_id != self.mine.driver_id]
        held: Dict[str, Claim] = {}
        for other in sorted(others, key=Claim.order):
            if other.order() < self.mine.order():
                for cid in set(other.cell_ids) & set(self.mine.cell_ids):
                    held.setdefault(cid, other)
        self.mine.cell_ids = [c for c in self.mine.cell_ids if c not in held]
        self._write()
        return set(self.mine.cell_ids), held

    def live(self) -> List[Claim]:
        """Every claim on the store refreshed within the TTL."""
        from pyarrow import fs as pafs

        now, out = time.time(), []
        sel = pafs.FileSelector(self._dir, allow_not_found=True)
        for info in self.store.filesystem.get_file_info(sel):
            if not info.path.endswith(".json"):
                continue
            try:
                with self.store.filesystem.open_input_stream(info.path) as f:
                    claim = Claim(**json.loads(f.read().decode()))
            except (OSError, ValueError, TypeError):  # vanished or half-visible: not a live claim
                continue
            if now - claim.heartbeat_unix_s <= self.ttl_s and not self._dead_here(claim):
                out.append(claim)
            elif claim.driver_id != self.mine.driver_id:  # a dead driver's claim: removed, not left forever
                self._remove(info.path)
        return out

    def _remove(self, path: str) -> None:
        try:
            self.store.filesystem.delete_file(path)
        except (OSError, FileNotFoundError):  # another driver removed it first
            pass

    def _dead_here(self, claim: Claim) -> bool:
        """The claim's driver ran on this host and its process is gone."""
        if claim.host != self.mine.host or claim.pid == self.mine.pid:
            return False
        try:
            os.kill(claim.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False

    def heartbeat(self) -> None:
        """Refresh the claim (at most every ``HEARTBEAT_S``)."""
        if time.time() - self._last_beat >= HEARTBEAT_S:
            self._write()

    def release(self) -> None:
        self._remove(f"{self._dir}/{self.mine.driver_id}.json")

    def _write(self) -> None:
        self.mine.heartbeat_unix_s = self._last_beat = time.time()
        self.store.filesystem.create_dir(self._dir, recursive=True)
        self.store.write_text(f"{DIRNAME}/{self.mine.driver_id}.json", json.dumps(asdict(self.mine)))
