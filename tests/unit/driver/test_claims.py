"""Claims on a store (``driver.claims``): a dead driver's claim is ignored and its file removed by
the next driver (issue 27: a killed driver's claim stayed in ``claims/`` forever); a live one holds."""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict

from orchestrator.driver.claims import DIRNAME, CellClaims, Claim
from orchestrator.store.sweep_store import Store


def _write(store: Store, claim: Claim) -> None:
    store.filesystem.create_dir(f"{store.root}/{DIRNAME}", recursive=True)
    store.write_text(f"{DIRNAME}/{claim.driver_id}.json", json.dumps(asdict(claim)))


def test_stale_claims_are_removed_and_a_live_one_keeps_its_cells(tmp_path):
    store = Store.open(str(tmp_path))
    now = time.time()
    expired = Claim("expired", "elsewhere", 1, now - 600, now - 600, ["a"])  # not refreshed for 10 min
    dead_here = Claim("deadhere", socket.gethostname(), 2**22 + 12345, now - 5, now - 1, ["b"])  # no such pid
    live = Claim("live", "elsewhere", 1, now - 30, now, ["c"])
    for claim in (expired, dead_here, live):
        _write(store, claim)
    assert not os.path.exists(f"/proc/{dead_here.pid}")
    mine = CellClaims(store, ttl_s=60.0)
    kept, held = mine.claim(["a", "b", "c"])
    assert kept == {"a", "b"} and set(held) == {"c"} and held["c"].driver_id == "live"
    files = sorted(p.name for p in (tmp_path / DIRNAME).iterdir())
    assert files == sorted(["live.json", f"{mine.mine.driver_id}.json"])  # the two stale files are gone
    mine.release()
    assert sorted(p.name for p in (tmp_path / DIRNAME).iterdir()) == ["live.json"]
