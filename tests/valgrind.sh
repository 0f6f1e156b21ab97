#!/usr/bin/env bash
# tests/valgrind.sh — runs every command-line test (tests/cli/test_*.sh, or the scripts named as
# arguments) with every mopt invocation under valgrind's memcheck, and fails on any memory error,
# any definite leak, or any test that fails under valgrind. Each invocation logs to its own file;
# clean runs leave empty logs (-q). The tests' own checks still apply, so a run also shows that
# behaviour is the same under valgrind.
#
# memcheck makes mopt 20 to 500 times slower (most on the vectorized kernels), so the scripts run
# with MOPT_TEST_SMALL=1: the cases that push thousands of images through a model use a few
# hundred or fewer (tests/cli/lib.sh: `small`, `fm_test`). Every mopt command line of every
# script still runs, under valgrind; only the data shrinks. A full run is about 480 mopt runs
# (see docs/reliability.md for the time it takes).
#
# Env: MOPT (default bin/mopt), JOBS (scripts run in parallel, default: CPU count), VG_TIMES=FILE
# (keep the per-run table: script, wall ms, CPU ms, arguments).
# usage: tests/valgrind.sh [test_NAME.sh...]
set -uo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind: not installed (make deps installs it)"; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/mopt-valgrind.XXXXXX")
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/logs" "$W/times.d"
# A private copy: a rebuild replacing bin/mopt under a running valgrind ends it with SIGBUS.
real=$W/mopt.bin
cp "${MOPT:-bin/mopt}" "$real"
# The wrapper records, per run: script, wall ms, CPU ms (valgrind's user+sys: what a loaded
# machine does not inflate), arguments; VG_TIMES=FILE keeps the table.
sed -e "s|@W@|$W|g" -e "s|@REAL@|$real|g" >"$W/mopt" <<'EOF'
#!/bin/bash
t0=$(date +%s%N)
valgrind -q --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
    --error-exitcode=99 --log-file='@W@/logs/%p.log' '@REAL@' "$@"
rc=$?
times >"@W@/times.d/$$.cpu" # (not in a pipe: a subshell would see no children)
cpu=$(awk 'END { split($1, u, /[ms]/); split($2, k, /[ms]/); printf "%d", (u[1] * 60 + u[2] + k[1] * 60 + k[2]) * 1000 }' "@W@/times.d/$$.cpu")
rm -f "@W@/times.d/$$.cpu"
printf '%s\t%d\t%d\t%s\n' "${VG_SCRIPT:-?}" $((($(date +%s%N) - t0) / 1000000)) "$cpu" "$*" >"@W@/times.d/$$"
exit $rc
EOF
chmod +x "$W/mopt"
# Every script by default, the slowest first so that the parallel jobs end together.
scripts=("$@")
if [ ${#scripts[@]} -eq 0 ]; then
    first=(test_quant.sh test_calib.sh test_prune.sh test_cluster.sh test_amp.sh test_qdq_exec.sh)
    scripts=("${first[@]}")
    for t in $(cd tests/cli && ls test_*.sh); do
        [[ " ${first[*]} " == *" $t "* ]] || scripts+=("$t")
    done
fi
export MOPT_TEST_SMALL=1
start=$(date +%s)
printf '%s\n' "${scripts[@]}" |
    xargs -P "${JOBS:-$(nproc)}" -I{} bash -c 'set -o pipefail; cd tests/cli && VG_SCRIPT={} MOPT="$0" bash {} 2>&1 | tail -n 15 || echo "valgrind: {} exited $?"' "$W/mopt" |
    tee "$W/out"
runs=$(ls "$W/logs" | wc -l)
cat "$W"/times.d/* >"$W/times" 2>/dev/null
[ -z "${VG_TIMES:-}" ] || cp "$W/times" "$VG_TIMES"
bad=$(find "$W/logs" -type f -size +0 | wc -l)
cpu=$(awk -F'\t' '{c += $3} END {printf "%d", c / 1000}' "$W/times")
echo "valgrind: ${#scripts[@]} scripts, $runs mopt runs in $(($(date +%s) - start)) s (valgrind CPU time $cpu s); $bad with errors or definite leaks"
echo "slowest runs (wall s, CPU s):"
sort -t$'\t' -k3,3nr "$W/times" | head -n 5 | awk -F'\t' '{printf "  %6.1f %6.1f  %s: mopt %.90s\n", $2 / 1000, $3 / 1000, $1, $4}'
if [ "$bad" -gt 0 ]; then
    for f in $(find "$W/logs" -type f -size +0 | head -n 5); do echo "--- $f"; head -n 40 "$f"; done
    exit 1
fi
if grep -Eq ': [0-9]+ passed, [1-9][0-9]* failed|^valgrind: .* exited' "$W/out"; then
    echo "valgrind: some tests failed under valgrind"
    exit 1
fi
exit 0
