#!/usr/bin/env bash
# tests/valgrind.sh — runs the command-line tests (tests/cli/test_*.sh, or the scripts named as
# arguments) with every mopt invocation under valgrind's memcheck, and fails on any definite leak
# or memory error. Each invocation logs to its own file; clean runs leave empty logs (-q).
# The tests' own checks still apply, so a run also shows that behaviour is the same under
# valgrind. Env: MOPT (default bin/mopt), JOBS (scripts run in parallel, default: CPU count).
# usage: tests/valgrind.sh [test_NAME.sh...]
set -uo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind: not installed (make deps installs it)"; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/mopt-valgrind.XXXXXX")
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/logs"
# A private copy: a rebuild replacing bin/mopt under a running valgrind ends it with SIGBUS.
real=$W/mopt.bin
cp "${MOPT:-bin/mopt}" "$real"
{
    echo '#!/bin/sh'
    echo "exec valgrind -q --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \\"
    echo "    --error-exitcode=99 --log-file='$W/logs/%p.log' '$real' \"\$@\""
} >"$W/mopt"
chmod +x "$W/mopt"
# By default the tests of the readers and the filter conventions (a few hundred runs, about
# 3 minutes on 2 cores); VALGRIND_ALL=1 runs every CLI test (kernels under memcheck: much longer).
scripts=("$@")
if [ ${#scripts[@]} -eq 0 ]; then
    if [ "${VALGRIND_ALL:-0}" = 1 ]; then scripts=($(cd tests/cli && ls test_*.sh))
    else scripts=(test_cat.sh test_info.sh test_badinput.sh test_pipeline.sh); fi
fi
start=$(date +%s)
printf '%s\n' "${scripts[@]}" |
    xargs -P "${JOBS:-$(nproc)}" -I{} sh -c 'cd tests/cli && MOPT="$0" bash {} 2>&1 | tail -n 15' "$W/mopt" |
    tee "$W/out"
runs=$(ls "$W/logs" | wc -l)
bad=$(find "$W/logs" -type f -size +0 | wc -l)
echo "valgrind: ${#scripts[@]} scripts, $runs mopt runs in $(($(date +%s) - start)) s; $bad with errors or definite leaks"
if [ "$bad" -gt 0 ]; then
    for f in $(find "$W/logs" -type f -size +0 | head -n 5); do echo "--- $f"; head -n 40 "$f"; done
    exit 1
fi
if grep -Eq ': [0-9]+ passed, [1-9][0-9]* failed' "$W/out"; then
    echo "valgrind: some tests failed under valgrind"
    exit 1
fi
exit 0
