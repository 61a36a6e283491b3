#!/usr/bin/env bash
# The standard side-by-side runs behind BENCHMARKS.md: full speed, then paced at 10k and 100k
# events/s (all against the simulator), then full speed against the pre-rendered load (--load
# prerendered: each client's own ceiling; no latency). PRERENDERED_DEFLATE=1 adds a run of it with
# permessage-deflate (--compression, tickwire clients only; the report shows wire B/msg).
# Writes a Markdown report, JSON and a PNG per run into $OUT (bench-results/ by default, which
# git ignores). Extra arguments go to every run (e.g. --runs 5, --peers ...; with
# PRERENDERED_DEFLATE=1, --peers applies to the deflate run too and must name tickwire clients only).
# Every report's table of runs shows each client's RSS at the start and end of its window.
#
#   benches/peers/run.sh                   # in a venv with tickwire (release build) and peers
#   OUT=/tmp/b benches/peers/run.sh --runs 5
#   PRERENDERED_DEFLATE=1 benches/peers/run.sh
#
# Every client and the simulator run on 127.0.0.1 in their own pinned processes; each run is
# bounded by the harness's timeouts.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT="${OUT:-bench-results}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"

"$PY" -m tickwire.bench --list

run() {
    local name=$1
    shift
    echo "== $name: $PY -m tickwire.bench $* =="
    # exit code 1 means "some run invalid": keep going, the report says which
    "$PY" -m tickwire.bench "$@" --json "$OUT/$name.json" --chart "$OUT/$name.png" \
        | tee "$OUT/$name.md" || true
}

run full-speed --runs 3 --seconds 5 "$@"
run paced-10k --runs 3 --seconds 5 --rate 10000 "$@"
run paced-100k --runs 3 --seconds 5 --rate 100000 "$@"
run prerendered --runs 3 --seconds 5 --load prerendered "$@"
if [[ "${PRERENDERED_DEFLATE:-0}" == 1 ]]; then
    run prerendered-deflate --runs 3 --seconds 5 --load prerendered --compression \
        --peers tickwire-count,tickwire-arrow,tickwire,tickwire-async "$@"
fi
echo "results in $OUT/"
