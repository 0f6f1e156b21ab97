# tests/cli/lib.sh — helpers for command-line tests. Each test script sources this, runs cases
# with `check`, and ends with `finish`. MOPT names the binary under test.
set -u
: "${MOPT:?MOPT must name the mopt binary}"
MOPT=$(realpath "$MOPT")
TESTDATA=/usr/share/libonnx-testdata/data
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/mopt-cli.XXXXXX")
trap 'rm -rf "$T"' EXIT
PASS=0
FAIL=0

# check NAME EXPECTED_EXIT STDERR_REGEX -- CMD...   Runs CMD (stdout to $T/out, stderr to $T/err),
# checks the exit code and that stderr matches the extended regex (use '' for "anything").
check() {
    local name=$1 want=$2 re=$3
    shift 4
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ "$rc" -ne "$want" ]; then
        echo "FAIL $name: exit $rc, wanted $want; stderr: $(head -c 400 "$T/err")"
        FAIL=$((FAIL + 1))
        return 1
    fi
    if [ -n "$re" ] && ! grep -Eq -- "$re" "$T/err"; then
        echo "FAIL $name: stderr does not match /$re/: $(head -c 400 "$T/err")"
        FAIL=$((FAIL + 1))
        return 1
    fi
    PASS=$((PASS + 1))
    return 0
}

# assert NAME CONDITION...   Passes when the command CONDITION succeeds.
assert() {
    local name=$1
    shift
    if "$@"; then PASS=$((PASS + 1)); else echo "FAIL $name"; FAIL=$((FAIL + 1)); fi
}

finish() {
    echo "$(basename "$0"): $PASS passed, $FAIL failed"
    [ "$FAIL" -eq 0 ]
}
