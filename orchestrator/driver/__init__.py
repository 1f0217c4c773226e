"""The driver side of Ray: config -> cells (``grid``), one sweep (``runner``), Ray tasks with
retries and deadlines (``dispatch``, its pure decisions in ``dispatch_state``), where tasks can run
(``placement``), one driver per cell (``claims``), the live display (``progress``) and the head's
address for workers (``netaddr``)."""
