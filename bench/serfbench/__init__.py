"""Our nodes beside HashiCorp Serf on loopback (bench/serf_compare.py): each side's cluster, ports, byte counters."""
