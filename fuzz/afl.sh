#!/usr/bin/env bash
# Coverage-guided fuzzing of one cb fuzz target with AFL++ (afl.rs) on a
# stable toolchain. Usage:
#
#   fuzz/afl.sh <target> <minutes> [--no-build] [--no-save]
#
# <target> is one of the harnesses in fuzz/afl/src/bin/ (duration,
# config_file, layers, admin, breaker, fleet_message, stream); <minutes> may be fractional (0.5).
# The run starts from the committed seeds in fuzz/seeds/<target>/ and then:
#
# - prints execs/s, edges found / total, crashes and hangs (AFL's
#   fuzzer_stats);
# - prints every crashing or hanging input as a path and a hex dump, copies it
#   to fuzz/artifacts/<target>/ and exits 1;
# - otherwise (unless --no-save) minimises what the run found: afl-cmin over
#   the seeds and the new queue, then picks at most $AFL_SEEDS_MAX (10) new
#   inputs that add the most edges to what the seeds already reach, shrinks
#   each with `cargo afl tmin`, and writes them to
#   fuzz/seeds/<target>/afl-<hash> for you to commit.
#
# --no-build skips `cargo afl build` (CI builds once, then fuzzes targets in
# parallel). Needs cargo-afl (`cargo install cargo-afl --locked`, which also
# builds AFL++). Binaries go to $CARGO_TARGET_DIR (default target/afl); the
# run's output to target/afl-out/<target>/ (replaced by every run).
#
# Everything is in functions and the last line runs `main` and exits, so
# editing this file while a run is going does not change that run.
set -euo pipefail

usage() {
    echo "usage: fuzz/afl.sh <target> <minutes> [--no-build] [--no-save]" >&2
    echo "targets: $(basename -s .rs fuzz/afl/src/bin/*.rs | tr '\n' ' ')" >&2
    exit 2
}

# Prints the fuzzer_stats value `$2` of the run in `$1`.
stat() { awk -F' *: *' -v k="$2" '$1 == k { print $2 }' "$1/default/fuzzer_stats"; }

# The directory of the AFL++ tools cargo-afl built for this toolchain.
afl_bin() {
    local release
    release=$(rustc -vV | awk '/^release:/ { r = $2 } /^commit-hash:/ { h = substr($2, 1, 7) } END { print r "-" h }')
    ls -d "${XDG_DATA_HOME:-$HOME/.local/share}/afl.rs/rustc-$release"/afl.rs-*/afl/bin | tail -n 1
}

# Prints each input in `$1/default/{crashes,hangs}` as a path and a hex dump
# and copies it to fuzz/artifacts/<target>/; fails if there was any.
report_failures() {
    local out=$1 target=$2 found=0 kind input
    for kind in crashes hangs; do
        for input in "$out/default/$kind"/id:*; do
            [ -e "$input" ] || continue
            found=1
            mkdir -p "fuzz/artifacts/$target"
            cp "$input" "fuzz/artifacts/$target/"
            echo "-- $kind: $input (copied to fuzz/artifacts/$target/), $(wc -c <"$input") bytes:"
            od -A x -t x1z -v "$input" | head -n 64
        done
    done
    [ "$found" = 0 ]
}

# Adds at most `$max_new` minimised inputs of the run in `$out` that reach
# edges the seeds do not to `$seeds`.
save_new_seeds() {
    local target=$1 bin=$2 seeds=$3 out=$4 max_new=$5
    local work=$out/minimise aflbin f name small dest count=0 picked
    mkdir -p "$work/all" "$work/maps" "$work/seedmaps" "$work/candidates"
    cp "$seeds"/* "$work/all/"
    cp "$out/default/queue"/id:* "$work/all/" 2>/dev/null || true
    # A small set of seeds + queue reaching the same edges (AFL++'s awk
    # afl-cmin: the python one `cargo afl cmin` runs finds no edges in
    # afl.rs's binaries, and the bash one takes minutes per thousand inputs)
    # ...
    aflbin=$(afl_bin)
    AFL_PATH=$aflbin PATH=$aflbin:$PATH "$aflbin/afl-cmin.awk" -i "$work/all" -o "$work/min" \
        -t 2000 -- "$bin" >"$work/cmin.log" 2>&1 || {
        tail -n 20 "$work/cmin.log" >&2
        return 2
    }
    # ... of which the inputs that are not seeds already are candidates ...
    declare -A known
    for f in "$seeds"/*; do known[$(sha256sum <"$f" | cut -c1-64)]=1; done
    for f in "$work/min"/*; do
        [ -n "${known[$(sha256sum <"$f" | cut -c1-64)]:-}" ] || cp "$f" "$work/candidates/"
    done
    if [ -z "$(ls -A "$work/candidates")" ]; then
        echo "$target: no new inputs beyond the seeds' coverage"
        return 0
    fi
    # ... and at most $max_new of them are kept, greedily by the edges each
    # adds to what the seeds (and the ones already picked) reach.
    cargo afl showmap -q -e -i "$seeds" -o "$work/seedmaps" -t 2000 -- "$bin" >/dev/null 2>&1 || true
    cargo afl showmap -q -e -i "$work/candidates" -o "$work/maps" -t 2000 -- "$bin" >/dev/null 2>&1 || true
    picked=$(
        awk -v max="$max_new" '
            FILENAME ~ /\/seedmaps\// { covered[$1] = 1; next }
            { n = split(FILENAME, parts, "/"); f = parts[n]; files[f] = 1; edges[f] = edges[f] " " $1 }
            END {
                for (round = 0; round < max; round++) {
                    best = ""; gain = 0
                    for (f in files) {
                        g = 0; m = split(edges[f], es, " ")
                        for (i = 1; i <= m; i++) if (!(es[i] in covered)) g++
                        if (g > gain) { gain = g; best = f }
                    }
                    if (best == "") break
                    m = split(edges[best], es, " ")
                    for (i = 1; i <= m; i++) covered[es[i]] = 1
                    delete files[best]
                    print best
                }
            }' "$work/seedmaps"/* "$work/maps"/*
    )
    while IFS= read -r name; do
        [ -n "$name" ] || continue
        small=$work/tmin-$count
        if ! TMPDIR=$work cargo afl tmin -i "$work/candidates/$name" -o "$small" -t 2000 -- "$bin" >/dev/null 2>&1; then
            cp "$work/candidates/$name" "$small"
        fi
        dest=$seeds/afl-$(sha256sum <"$small" | cut -c1-12)
        cp "$small" "$dest"
        echo "new seed: $dest ($(wc -c <"$dest") bytes)"
        count=$((count + 1))
    done <<<"$picked"
    echo "$target: $count new seed(s) in $seeds/ (review and commit them)"
}

main() {
    cd "$(dirname "$0")/.."
    [ $# -ge 2 ] || usage
    local target=$1 minutes=$2 build=1 save=1 flag seconds
    shift 2
    for flag in "$@"; do
        case $flag in
            --no-build) build=0 ;;
            --no-save) save=0 ;;
            *) usage ;;
        esac
    done
    [ -f "fuzz/afl/src/bin/$target.rs" ] || usage
    seconds=$(awk -v m="$minutes" 'BEGIN { s = int(m * 60); if (s < 1) exit 1; print s }') || usage

    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/afl}
    local bin=$CARGO_TARGET_DIR/release/$target seeds=fuzz/seeds/$target out=target/afl-out/$target
    if [ "$build" = 1 ]; then
        cargo afl build --release --manifest-path fuzz/afl/Cargo.toml
    fi
    [ -x "$bin" ] || { echo "no harness at $bin: run without --no-build" >&2; exit 2; }

    # No terminal UI; do not insist on a `performance` CPU governor, a free
    # core to pin to (other work shares the machine), or on core dumps going
    # to a file rather than to a crash reporter.
    export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1
    if [ "$(cut -c1 /proc/sys/kernel/core_pattern 2>/dev/null)" = "|" ]; then
        export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
    fi

    rm -rf "$out"
    mkdir -p "$out"
    echo "== afl: $target for ${seconds}s from $seeds ($(ls "$seeds" | wc -l) seeds)"
    # -t 2000: an input taking over 2 s is a hang (every target runs an input
    # in well under a millisecond).
    cargo afl fuzz -i "$seeds" -o "$out" -V "$seconds" -t 2000 -- "$bin" >"$out/afl.log" 2>&1 || {
        tail -n 30 "$out/afl.log" >&2
        echo "afl-fuzz failed for $target (log: $out/afl.log)" >&2
        exit 2
    }
    printf '%-12s %6s s  %9s execs/s  edges %s/%s  corpus %s  crashes %s  hangs %s\n' \
        "$target" "$(stat "$out" run_time)" "$(stat "$out" execs_per_sec)" \
        "$(stat "$out" edges_found)" "$(stat "$out" total_edges)" "$(stat "$out" corpus_count)" \
        "$(stat "$out" saved_crashes)" "$(stat "$out" saved_hangs)"

    if ! report_failures "$out" "$target"; then
        echo "$target: AFL found crashes or hangs. Reproduce with: $bin < <file>" >&2
        echo "Fix the bug, then copy the file into $seeds/ as a regression seed." >&2
        exit 1
    fi
    if [ "$save" = 1 ]; then
        save_new_seeds "$target" "$bin" "$seeds" "$out" "${AFL_SEEDS_MAX:-10}"
    fi
}

main "$@"; exit
