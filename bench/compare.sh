#!/usr/bin/env bash
# Runs retryd's load generator and the peer harness (../shared/bench/peers: graphile-worker,
# pg-boss, pgbench) one after the other on the same Postgres, and prints one table with the
# ratios retryd/peer. Takes about 5 minutes on an idle machine; keep the machine otherwise quiet.
#   bash bench/compare.sh            # from the project root
# Env: BENCH_OUT (default bench/results), BENCH_JOBS (20000 chunks/jobs), RETRYD_BENCH_ARGS
#      (extra flags for `retryd bench`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PEERS="$ROOT/../shared/bench/peers"
OUT="$(realpath -m "${BENCH_OUT:-bench/results}")"
STAMP="$(date +%Y%m%d-%H%M%S)"
JOBS="${BENCH_JOBS:-20000}"
mkdir -p "$OUT"

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

echo "== building retryd (release)"
cargo build --release --quiet

echo "== retryd bench on Postgres ($JOBS chunks)"
psql -X -q -h 127.0.0.1 -U postgres -d postgres \
  -c "DROP DATABASE IF EXISTS retryd_bench WITH (FORCE)" -c "CREATE DATABASE retryd_bench"
# shellcheck disable=SC2086
timeout 900 ./target/release/retryd bench \
  --bench-database-url postgres://postgres@127.0.0.1:5432/retryd_bench \
  --chunks "$JOBS" --json "$OUT/retryd-$STAMP.jsonl" ${RETRYD_BENCH_ARGS:-} 2>&1 \
  | grep -v ' WARN ' | tee "$OUT/retryd-$STAMP.txt"

echo "== peers (graphile-worker, pg-boss, pgbench)"
BENCH_OUT="$OUT/peers-$STAMP" BENCH_JOBS="$JOBS" timeout 1200 bash "$PEERS/run.sh" >"$OUT/peers-$STAMP.txt" 2>&1 \
  || echo "WARNING: the peer harness exited with an error (see $OUT/peers-$STAMP.txt)"
grep -E 'RUN NOT CLEAN|WARNING' "$OUT/peers-$STAMP.txt" || true

echo "== side by side"
python3 "$ROOT/bench/compare.py" "$OUT/retryd-$STAMP.jsonl" "$OUT"/peers-"$STAMP"/results-*.jsonl \
  | tee "$OUT/compare-$STAMP.txt"
