#!/bin/sh
# Prints the `overhead` bench's last run as the README's table: the median ns
# per call of every benchmark (criterion's estimates.json), and each cb
# configuration over the best peer of the same group.
#
# Usage: benches/table.sh [criterion dir]   (default: $CARGO_TARGET_DIR/criterion
# or target/criterion)
set -eu
dir=${1:-${CARGO_TARGET_DIR:-target}/criterion}
median() {
    f="$dir/$1/$2/new/estimates.json"
    if [ -f "$f" ]; then jq '.median.point_estimate' "$f"; else echo nan; fi
}
row() { # label group cb-id cb-llm-id
    fs=$(median "$2" failsafe)
    rc=$(median "$2" recloser)
    cb=$(median "$2" "$3")
    llm=$(median "$2" "$4")
    awk -v l="$1" -v cb="$cb" -v llm="$llm" -v fs="$fs" -v rc="$rc" 'BEGIN {
        best = (fs < rc) ? fs : rc
        printf "| %s | %.1f | %.1f | %.1f | %.1f | %.2f× | %.2f× |\n", l, cb, llm, fs, rc, cb / best, llm / best
    }'
}
echo "| scenario | cb (builder defaults) | cb (\`llm\` preset) | failsafe | recloser | defaults / best peer | llm / best peer |"
echo "|---|---:|---:|---:|---:|---:|---:|"
row "closed, successful call" closed_success cb cb_llm
row "open, rejected (tripped by failures)" open_rejection cb_tripped cb_llm_tripped
row "open, rejected (forced open; peers tripped)" open_rejection cb_forced_open cb_llm_forced_open
row "closed, 2 threads sharing one breaker" two_threads cb cb_llm
