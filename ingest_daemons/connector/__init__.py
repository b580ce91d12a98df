"""The connector: one process serving one shard of one feed, from exchange WebSocket to JetStream."""
