# tests/cli/tensors.sh — sourced by CLI tests: writes small tensor files with printf, so the tests
# need no Python. npy FILE DESCR SHAPE writes a .npy header and appends stdin as the data;
# idx FILE TYPECODE DIM... writes an IDX header (big-endian dims) and appends stdin.

npy() {
    local file=$1 descr=$2 shape=$3
    local h="{'descr': '$descr', 'fortran_order': False, 'shape': ($shape), }"
    local total=$(( (10 + ${#h} + 1 + 63) / 64 * 64 ))
    local hl=$(( total - 10 ))
    h="$h$(printf '%*s' $(( hl - ${#h} - 1 )) '')"
    {
        printf '\x93NUMPY\x01\x00'
        printf "\\x$(printf %02x $(( hl & 255 )))\\x$(printf %02x $(( hl >> 8 )))"
        printf '%s\n' "$h"
        cat
    } >"$file"
}

# be32 N: N as 4 big-endian bytes.
be32() {
    printf "\\x$(printf %02x $(( ($1 >> 24) & 255 )))\\x$(printf %02x $(( ($1 >> 16) & 255 )))"
    printf "\\x$(printf %02x $(( ($1 >> 8) & 255 )))\\x$(printf %02x $(( $1 & 255 )))"
}

idx() {
    local file=$1 code=$2
    shift 2
    {
        printf "\\x00\\x00\\x$code\\x$(printf %02x $#)"
        for d in "$@"; do be32 "$d"; done
        cat
    } >"$file"
}

# zeros N: N zero bytes on stdout.
zeros() { head -c "$1" /dev/zero; }
