"""Assets: stream provisioning (``streams``) and the per-stream archive family (``archive``)."""
