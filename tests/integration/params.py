"""Settings shared by the integration fixtures and tests."""

# Gossip interval of the test clusters (the image's local preset: 200 ms rounds, 6 s leases).
INTERVAL = 0.2
# Peers per round.
FANOUT = 3
