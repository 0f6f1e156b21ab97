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

# Under tests/valgrind.sh (MOPT_TEST_SMALL=1) every mopt run is 20 to 500 times slower, so the
# cases that push thousands of images through a model use fewer: `small N M` prints M there and
# N otherwise. The command lines, and so the code paths, stay the same; only data sizes (and,
# where a smaller sample makes a statistic coarser, its tolerance) change.
small() { if [ "${MOPT_TEST_SMALL:-0}" = 1 ]; then echo "$2"; else echo "$1"; fi; }

# fm_test: the labelled split to --eval on: fashion-mnist:test (10,000 images), or with
# MOPT_TEST_SMALL=1 an IDX pair (gzip) holding its first 300 images, read by the same IDX reader.
# FM_TEST_N is the number of images either way.
FM_TEST_N=$(small 10000 300)
fm_test() {
    if [ "${MOPT_TEST_SMALL:-0}" != 1 ]; then echo fashion-mnist:test; return; fi
    local src=${MOPT_FASHION_MNIST:-/usr/share/datasets/fashion-mnist} n=$FM_TEST_N
    if [ ! -s "$T/fm-small-labels.gz" ]; then
        local count
        count=$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((n >> 24 & 255)) $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255)))
        { printf '\x00\x00\x08\x03'; printf "$count"; gzip -dc "$src/t10k-images-idx3-ubyte.gz" | tail -c +9 | head -c $((8 + n * 784)); } |
            gzip -1 >"$T/fm-small-images.gz"
        { printf '\x00\x00\x08\x01'; printf "$count"; gzip -dc "$src/t10k-labels-idx1-ubyte.gz" | tail -c +9 | head -c "$n"; } |
            gzip -1 >"$T/fm-small-labels.gz"
    fi
    echo "idx:$T/fm-small-images.gz,$T/fm-small-labels.gz"
}

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
