#!/usr/bin/env bash
# A/B: this checkout's Herald against another revision's, measured in turn in one session, so
# the machine's drift favours neither. Each round runs bench/run.sh once for each build (the
# order alternates); the table gives each measure's median over the rounds for both, and their
# ratio.
#
#   bash bench/compare.sh REV [ROUNDS]      # e.g. bash bench/compare.sh 61806b6 3
#
# REV is built in a worktree under target/compare/ (kept between calls, so a second comparison
# against the same revision skips the build). Writes bench/results/compare.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REV=${1:?usage: bash bench/compare.sh REV [ROUNDS]}
ROUNDS=${2:-3}
OLD_SHORT=$(git rev-parse --short "$REV")
NEW_SHORT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src 2>/dev/null || echo '+')"
TREE=$ROOT/target/compare/$OLD_SHORT
OUT=$ROOT/target/compare/results
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ ! -d "$TREE" ]; then
  log "checking out $OLD_SHORT in $TREE"
  git worktree add --detach "$TREE" "$REV" >/dev/null
fi
log "building $OLD_SHORT"
(cd "$TREE" && CARGO_TARGET_DIR=$TREE/target cargo build --release --bin herald)
log "building this checkout ($NEW_SHORT)"
cargo build --release --examples --bins

rm -rf "$OUT"
mkdir -p "$OUT"
for round in $(seq "$ROUNDS"); do
  order="old new"
  (( round % 2 == 0 )) && order="new old"
  for which in $order; do
    if [ "$which" = old ]; then bin=$TREE/target/release/herald name=$OLD_SHORT; else bin=$ROOT/target/release/herald name=$NEW_SHORT; fi
    log "round $round: $which ($name)"
    BENCH_RUNS=1 BENCH_SKIP_BUILD=1 BENCH_HERALD=$bin BENCH_BUILT_FROM=$name BENCH_RESULTS=$OUT/$which-$round \
      bash bench/run.sh >/dev/null
  done
done

# value WHICH BENCH SERVER KEY: that figure from every round of one build.
value() {
  cat "$OUT"/"$1"-*/latest.jsonl | grep "\"bench\":\"$2\",\"server\":\"$3\"" |
    sed -n "s/.*\"$4\":\([-0-9.eE+]*\).*/\1/p"
}
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
row() {
  local label=$1 bench=$2 server=$3 key=$4 old new
  old=$(value old "$bench" "$server" "$key" | median)
  new=$(value new "$bench" "$server" "$key" | median)
  awk -v l="$label" -v o="$old" -v n="$new" 'BEGIN { if (o == 0) printf "| %s | %.1f | %.1f | — |\n", l, o, n; else printf "| %s | %.1f | %.1f | %.2f |\n", l, o, n, n / o }'
}
{
  echo "# Herald $NEW_SHORT against $OLD_SHORT"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores; medians of $ROUNDS rounds, builds measured in turn. Rerun: \`bash bench/compare.sh $OLD_SHORT $ROUNDS\`."
  echo
  echo "| measure | $OLD_SHORT | $NEW_SHORT | new / old |"
  echo "|---|---:|---:|---:|"
  row "ingest: requests/s" ingest herald rps
  row "ingest: p99 ms" ingest herald p99_ms
  row "ingest: CPU µs per request" ingest herald cpu_us_per_req
  row "ingest: of which the accept path, µs" ingest herald accept_us
  row "ingest: of which the store writer, µs" ingest herald store_us
  row "ingest: of which the delivery worker, µs" ingest herald delivery_us
  row "ingest: machine idle, %" ingest herald idle_pct
  row "ingest: ceiling requests/s (same rounds)" ingest ceiling rps
  row "ingest, store only: requests/s" ingest store-only rps
  row "ingest, store only: p99 ms" ingest store-only p99_ms
  row "ingest, to a limited robot: requests/s" ingest paced rps
  row "ingest, to a limited robot: p99 ms" ingest paced p99_ms
  row "end to end: events/s" e2e herald e2e_eps
  row "end to end: poster → sink direct, events/s (same rounds)" e2e direct e2e_eps
  row "end to end: peak RSS kB" e2e herald hwm_kb
  row "idle: RSS kB" idle herald rss_kb
  row "idle: ms to the first answer" idle herald start_ms
} >"$ROOT/bench/results/compare.md"
cat "$ROOT/bench/results/compare.md"
