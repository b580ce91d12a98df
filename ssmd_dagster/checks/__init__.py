"""Asset checks: stream drift (``streams``) and per-partition archive checks (``archive``)."""
