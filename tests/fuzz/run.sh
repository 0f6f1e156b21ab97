#!/usr/bin/env bash
# tests/fuzz/run.sh — builds the libFuzzer harnesses with clang (-fsanitize=fuzzer,address,
# undefined) into build/fuzz, replays the regression inputs (tests/fuzz/regress/TARGET/*: every
# crash ever found), then fuzzes each target for FUZZ_SECONDS (default 60), NPROC at a time.
# Corpora: build/fuzz/corpus/TARGET (grows between runs) seeded from tests/fuzz/corpus/TARGET
# (small checked-in seeds), the libonnx-testdata models and files tests/fuzz/make_seeds.py writes.
# A summary per target (executions, seconds, crashes) goes to build/fuzz/summary.txt; new crash
# inputs to build/fuzz/crashes/. Exit 1 if any target crashed or a regression input fails.
# Every target runs by default (exec_run too: crafted models through the executor).
#
# usage: tests/fuzz/run.sh [TARGET...]     env: FUZZ_SECONDS, NPROC, CLANG, PY
set -euo pipefail
cd "$(dirname "$0")/../.."
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
NPROC=${NPROC:-$(nproc)}
CLANG=${CLANG:-clang}
PY=${PY:-.venv/bin/python}
B=build/fuzz
GEN=build/gen
mkdir -p "$B/obj" "$B/bin" "$B/seeds" "$B/corpus" "$B/crashes" "$B/logs"
command -v "$CLANG" >/dev/null || { echo "fuzz: $CLANG not found (make deps installs clang)"; exit 1; }
[ -f "$GEN/onnx.pb-c.c" ] || make --no-print-directory "$GEN/onnx.pb-c.h"

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
OPENBLAS=$(pkg-config --cflags openblas 2>/dev/null || echo -I/usr/include/x86_64-linux-gnu/openblas-pthread)
CFLAGS="-O1 -g -std=gnu11 -pthread $SAN -fsanitize=fuzzer-no-link -I. -I$GEN -Ilibopt/ir $OPENBLAS -DMOPT_VERSION=\"fuzz\""
LIBS="-lprotobuf-c -lcsv -lz -lm -pthread $(pkg-config --libs openblas 2>/dev/null || echo -lopenblas)"

# ---- build: the library (no CUDA) as one archive, objects rebuilt when a dependency changed ----
srcs=("$GEN/onnx.pb-c.c")
for d in libopt/ir libopt/passes libopt/exec libopt/exec/cpu formats calib; do
    for f in "$d"/*.c; do [ -f "$f" ] && srcs+=("$f"); done
done
stale() { # stale OBJ: true when OBJ is missing or older than a file its .d lists
    local o=$1 d=${1%.o}.d
    [ -f "$o" ] && [ -f "$d" ] || return 0
    local f
    for f in $(sed -e 's/\\$//' -e 's/^[^:]*://' "$d"); do
        [ "$f" -nt "$o" ] && return 0
    done
    return 1
}
todo=()
objs=()
for s in "${srcs[@]}"; do
    o=$B/obj/${s%.c}.o
    objs+=("$o")
    if stale "$o"; then todo+=("$s"); fi
done
if [ ${#todo[@]} -gt 0 ]; then
    echo "fuzz: compiling ${#todo[@]} library files with $CLANG"
    printf '%s\n' "${todo[@]}" | xargs -P "$NPROC" -I{} sh -c \
        'o='"$B"'/obj/$(echo {} | sed "s/\.c$/.o/"); mkdir -p "$(dirname "$o")"; '"$CLANG $CFLAGS"' -w -MMD -c {} -o "$o"'
    rm -f "$B/libopt-fuzz.a"
fi
[ -f "$B/libopt-fuzz.a" ] || ar rcs "$B/libopt-fuzz.a" "${objs[@]}"

# TARGET SOURCE EXTRA_FLAGS
TARGETS=(
    "onnx_load onnx_load.c"
    "external_data external_data.c"
    "tensor_pb tensorfile.c -DFUZZ_FMT=OPT_TFMT_PB"
    "tensor_npy tensorfile.c -DFUZZ_FMT=OPT_TFMT_NPY"
    "tensor_csv tensorfile.c -DFUZZ_FMT=OPT_TFMT_CSV"
    "tensor_idx tensorfile.c -DFUZZ_FMT=OPT_TFMT_IDX"
    "tstream tstream.c"
    "huffman_decode huffman.c -DFUZZ_DECODE"
    "huffman_round_trip huffman.c"
    "calib_table calib_table.c"
    "exec_run exec_run.c"
)
want=("$@")
selected=()
for t in "${TARGETS[@]}"; do
    name=${t%% *}
    if [ ${#want[@]} -eq 0 ] || [[ " ${want[*]} " == *" $name "* ]]; then
        selected+=("$t")
    fi
done
for t in "${selected[@]}"; do
    read -r name src extra <<<"$t"
    exe=$B/bin/$name
    if [ ! -x "$exe" ] || [ "tests/fuzz/$src" -nt "$exe" ] || [ tests/fuzz/fuzz_util.h -nt "$exe" ] ||
       [ "$B/libopt-fuzz.a" -nt "$exe" ]; then
        $CLANG $CFLAGS -Wall -Wextra -Wno-unused-parameter -fsanitize=fuzzer $extra "tests/fuzz/$src" \
            "$B/libopt-fuzz.a" $LIBS -o "$exe"
    fi
done

# ---- seeds ----------------------------------------------------------------------------------
if [ ! -f "$B/seeds/.stamp" ] || [ tests/fuzz/make_seeds.py -nt "$B/seeds/.stamp" ]; then
    rm -rf "$B/seeds" && mkdir -p "$B/seeds"
    if [ -x "$PY" ] || command -v "$PY" >/dev/null; then
        "$PY" tests/fuzz/make_seeds.py "$B/seeds"
    else
        echo "fuzz: no Python ($PY): only checked-in seeds"
    fi
    touch "$B/seeds/.stamp"
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# ---- regressions: every input that ever crashed a target must now pass ----------------------
rfail=0
for t in "${selected[@]}"; do
    name=${t%% *}
    d=tests/fuzz/regress/$name
    [ -d "$d" ] && [ -n "$(ls -A "$d")" ] || continue
    if "$B/bin/$name" -runs=1 "$d"/* >"$B/logs/$name.regress.log" 2>&1; then
        echo "fuzz: $name: $(ls "$d" | wc -l) regression inputs pass"
    else
        echo "fuzz: $name: a regression input fails (see $B/logs/$name.regress.log)"
        tail -n 30 "$B/logs/$name.regress.log"
        rfail=1
    fi
done

# ---- fuzz ---------------------------------------------------------------------------------
fuzz_one() { # fuzz_one NAME
    local name=$1 max=4096
    case $name in onnx_load|exec_run) max=65536 ;; tensor_*|tstream|huffman_*) max=16384 ;; esac
    # Crash files of earlier runs move aside, so the count below is this run's.
    mkdir -p "$B/crashes/old"
    find "$B/crashes" -maxdepth 1 -type f -name "$name-*" -exec mv -t "$B/crashes/old" {} +
    local corpus=$B/corpus/$name
    mkdir -p "$corpus"
    local dirs=("$corpus")
    for d in "tests/fuzz/corpus/$name" "$B/seeds/$name"; do [ -d "$d" ] && dirs+=("$d"); done
    "$B/bin/$name" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -max_len=$max \
        -print_final_stats=1 -artifact_prefix="$B/crashes/$name-" "${dirs[@]}" \
        >"$B/logs/$name.log" 2>&1
    local rc=$?
    local runs secs
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$B/logs/$name.log" | tail -n1)
    secs=$(sed -nE 's/^Done [0-9]+ runs in ([0-9]+) second.*/\1/p' "$B/logs/$name.log" | tail -n1)
    local crashes
    crashes=$(ls "$B/crashes" | grep -c "^$name-" || true)
    printf '%-20s %10s executions %5s s  exit %d  new-crash-files %d\n' "$name" "${runs:-?}" "${secs:-$FUZZ_SECONDS}" "$rc" "$crashes"
}
export -f fuzz_one
export B FUZZ_SECONDS
: >"$B/summary.txt"
if [ "$FUZZ_SECONDS" -gt 0 ]; then
    echo "fuzz: ${#selected[@]} targets, ${FUZZ_SECONDS}s each, $NPROC at a time"
    for t in "${selected[@]}"; do echo "${t%% *}"; done |
        xargs -P "$NPROC" -I{} bash -c 'fuzz_one {}' >>"$B/summary.txt"
    sort -o "$B/summary.txt" "$B/summary.txt"
    cat "$B/summary.txt"
fi
bad=$(awk '$7 != 0 || $9 != 0 {print $1}' "$B/summary.txt" | tr '\n' ' ')
if [ -n "$bad" ]; then
    echo "fuzz: crashes in: $bad(inputs in $B/crashes, logs in $B/logs)"
    for n in $bad; do grep -m3 -E 'ERROR|property violated|runtime error' "$B/logs/$n.log" | sed "s/^/  $n: /"; done
    exit 1
fi
[ "$rfail" -eq 0 ] || exit 1
echo "fuzz: no crashes"
