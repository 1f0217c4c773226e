"""The worker side of Ray: a unit's cells on one engine start, every outcome a ``CellResult``
(``unit``), and the watcher that kills what an engine started when its worker dies (``reaper``)."""
