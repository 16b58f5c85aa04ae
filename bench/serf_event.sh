#!/bin/sh
# Serf event handler used by bench/serf_compare.py: stamp the moment this agent runs the
# handler, then append one line per member in the event ("<unix time> <agent> <member line>")
# to $SERF_BENCH_EVENTS. The clock is read first, before stdin is consumed.
t=$(date +%s.%N)
while IFS= read -r line; do
    printf '%s %s %s\n' "$t" "$SERF_SELF_NAME" "$line" >> "$SERF_BENCH_EVENTS"
done
