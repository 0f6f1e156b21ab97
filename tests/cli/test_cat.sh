#!/usr/bin/env bash
# tests/cli/test_cat.sh — `mopt cat`, the identity stage: byte-for-byte output through files,
# stdin and stdout; -o naming the input; external data out and back from any working directory;
# file modes; the usage conventions (--help, --version, bad options exit 2, no model to a
# terminal); atomic writes that leave the previous file intact on a full disk.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/gen.sh"
O=$T/o
mkdir -p "$O"
GOOD=$G/good.onnx
MODEL=$TESTDATA/pytorch-converted/test_Conv2d/model.onnx

# --- identity ---------------------------------------------------------------------------------
check "cat FILE > stdout" 0 '' -- "$MOPT" cat "$MODEL"
assert "cat FILE > stdout: byte for byte" cmp -s "$T/out" "$MODEL"
check "cat < stdin > stdout" 0 '' -- bash -c '"$0" cat <"$1"' "$MOPT" "$MODEL"
assert "cat < stdin: byte for byte" cmp -s "$T/out" "$MODEL"
check "cat - (stdin named)" 0 '' -- bash -c '"$0" cat - <"$1"' "$MOPT" "$MODEL"
assert "cat -: byte for byte" cmp -s "$T/out" "$MODEL"
check "cat -o OUT" 0 '' -- "$MOPT" cat "$MODEL" -o "$O/a.onnx"
assert "cat -o: byte for byte" cmp -s "$O/a.onnx" "$MODEL"
assert "cat -o: nothing on stdout" [ ! -s "$T/out" ]
check "cat --output=OUT" 0 '' -- "$MOPT" cat --output="$O/b.onnx" "$MODEL"
assert "cat --output: byte for byte" cmp -s "$O/b.onnx" "$MODEL"
check "cat -o - (stdout named)" 0 '' -- "$MOPT" cat "$MODEL" -o -
assert "cat -o -: byte for byte" cmp -s "$T/out" "$MODEL"
check "cat without options records no history" 0 '' -- "$MOPT" info --json "$O/a.onnx"
assert "no mopt.history entry" grep -q '"history": \[$' "$T/out"

# --- -o naming the input ----------------------------------------------------------------------
cp "$MODEL" "$O/self.onnx"
check "-o naming the input" 0 '' -- "$MOPT" cat "$O/self.onnx" -o "$O/self.onnx"
assert "-o naming the input: unchanged bytes" cmp -s "$O/self.onnx" "$MODEL"
check "-o naming the input, to external data" 0 '' -- \
    "$MOPT" cat --external-data --size-threshold 0 "$O/self.onnx" -o "$O/self.onnx"
assert "-o naming the input: side file written" [ -s "$O/self.onnx.data" ]
assert "-o naming the input: model now smaller" [ "$(stat -c %s "$O/self.onnx")" -lt "$(stat -c %s "$MODEL")" ]
check "-o naming the input, back inline" 0 '' -- "$MOPT" cat --inline-data "$O/self.onnx" -o "$O/self.onnx"
check "inline again equals the original (python onnx)" 0 '' -- "$PY" -c '
import sys, onnx
a, b = onnx.load(sys.argv[1]), onnx.load(sys.argv[2])
h = [p.value for p in b.metadata_props if p.key == "mopt.history"]
assert len(h) == 1 and "--external-data" in h[0] and "--inline-data" in h[0], h
del b.metadata_props[:]
assert a == b and not any(t.data_location for t in b.graph.initializer)
' "$MODEL" "$O/self.onnx"
rm -f "$O/self.onnx.data"
check "the inlined model no longer needs the side file" 0 '' -- "$MOPT" cat "$O/self.onnx" -o "$O/self2.onnx"

# --- external data ----------------------------------------------------------------------------
mkdir -p "$O/ext"
check "--external-data" 0 '' -- "$MOPT" cat --external-data "$G/big.onnx" -o "$O/ext/m.onnx"
assert "--external-data: 256 KB side file" [ "$(stat -c %s "$O/ext/m.onnx.data")" = 262144 ]
assert "--external-data: small model file" [ "$(stat -c %s "$O/ext/m.onnx")" -lt 4096 ]
check "--external-data: onnx reads it" 0 '' -- "$PY" -c '
import sys, onnx, numpy as np
from onnx import numpy_helper as nh
a, b = onnx.load(sys.argv[1]), onnx.load(sys.argv[2])
assert np.array_equal(nh.to_array(a.graph.initializer[0]), nh.to_array(b.graph.initializer[0]))
' "$G/big.onnx" "$O/ext/m.onnx"
check "--data-name" 0 '' -- "$MOPT" cat --external-data --data-name w.bin "$G/big.onnx" -o "$O/ext/n.onnx"
assert "--data-name: side file named" [ -s "$O/ext/w.bin" ]
check "locations resolve against the model's directory, not the cwd" 0 '' -- \
    bash -c 'cd / && "$0" cat --inline-data "$1" -o "$2"' "$MOPT" "$O/ext/m.onnx" "$O/back.onnx"
check "--inline-data brings the tensor back" 0 '' -- "$PY" -c '
import sys, onnx
a, b = onnx.load(sys.argv[1]), onnx.load(sys.argv[2])
del b.metadata_props[:]
assert a == b
' "$G/big.onnx" "$O/back.onnx"
check "external model to stdout is written inline" 0 '' -- bash -c '"$0" cat "$1" >"$2"' "$MOPT" "$O/ext/m.onnx" "$O/stdout.onnx"
check "external model to stdout: same as the original" 0 '' -- "$PY" -c '
import sys, onnx
a, b = onnx.load(sys.argv[1]), onnx.load(sys.argv[2], load_external_data=False)
del b.metadata_props[:]
assert a == b and not b.graph.initializer[0].data_location
' "$G/big.onnx" "$O/stdout.onnx"
check "--external-data needs -o" 2 'needs an output file' -- "$MOPT" cat --external-data "$GOOD"
assert "--external-data needs -o: nothing on stdout" [ ! -s "$T/out" ]

# --- file modes -------------------------------------------------------------------------------
check "new file: 0666 minus umask 022" 0 '' -- bash -c 'umask 022 && "$0" cat "$1" -o "$2"' "$MOPT" "$GOOD" "$O/m1.onnx"
assert "mode 644" [ "$(stat -c %a "$O/m1.onnx")" = 644 ]
check "new file: umask 077" 0 '' -- bash -c 'umask 077 && "$0" cat "$1" -o "$2"' "$MOPT" "$GOOD" "$O/m2.onnx"
assert "mode 600" [ "$(stat -c %a "$O/m2.onnx")" = 600 ]
chmod 640 "$O/m1.onnx"
check "replaced file keeps its mode" 0 '' -- "$MOPT" cat "$GOOD" -o "$O/m1.onnx"
assert "mode 640 kept" [ "$(stat -c %a "$O/m1.onnx")" = 640 ]
check "side file: 0666 minus umask" 0 '' -- bash -c 'umask 002 && "$0" cat --external-data --size-threshold 1 "$1" -o "$2"' "$MOPT" "$GOOD" "$O/m3.onnx"
assert "side file mode 664" [ "$(stat -c %a "$O/m3.onnx.data")" = 664 ]

# --- usage ------------------------------------------------------------------------------------
check "mopt --help" 0 '' -- "$MOPT" --help
assert "mopt --help lists cat and info" grep -Eq '^  cat .*' "$T/out"
check "mopt --version" 0 '' -- "$MOPT" --version
assert "mopt --version prints the version" grep -Eq "^mopt $(cat "$ROOT/VERSION")$" "$T/out"
check "mopt cat --help" 0 '' -- "$MOPT" cat --help
assert "mopt cat --help: usage on stdout" grep -q '^usage: mopt cat' "$T/out"
check "mopt without a command" 2 'usage: mopt' -- "$MOPT"
check "unknown command" 2 "unknown command 'nosuch'" -- "$MOPT" nosuch
check "bad option" 2 '^mopt cat: .*--help' -- "$MOPT" cat --bogus "$GOOD"
check "two inputs" 2 "unexpected argument" -- "$MOPT" cat "$GOOD" "$GOOD"
check "bad --size-threshold" 2 "is not a byte count" -- "$MOPT" cat --external-data --size-threshold 12x "$GOOD" -o "$O/x.onnx"
check "--data-name with a slash" 2 "plain file name" -- "$MOPT" cat --external-data --data-name ../w.bin "$GOOD" -o "$O/x.onnx"
check "--external-data with --inline-data" 2 "exclude each other" -- "$MOPT" cat --external-data --inline-data "$GOOD" -o "$O/x.onnx"
assert "usage errors write nothing" [ ! -e "$O/x.onnx" ]
check "missing input file" 1 "^mopt cat: $O/nothere.onnx: cannot open: No such file" -- "$MOPT" cat "$O/nothere.onnx"
check "input is a directory" 1 "is a directory|Is a directory" -- "$MOPT" cat "$O"
check "output directory missing" 1 "cannot create a temporary file in '$O/nodir'" -- "$MOPT" cat "$GOOD" -o "$O/nodir/x.onnx"
# Terminals: no model is written to one, and a terminal on stdin is no model.
check "model to a terminal refused" 0 '' -- script -qec "'$MOPT' cat '$GOOD'; echo \"rc=\$?\"" /dev/null
assert "model to a terminal: refused with exit 2" grep -q 'refusing to write a model to a terminal' "$T/out"
assert "model to a terminal: exit 2" grep -q 'rc=2' "$T/out"
check "terminal on stdin" 0 '' -- script -qec "'$MOPT' cat -o '$O/t.onnx'; echo \"rc=\$?\"" /dev/null
assert "terminal on stdin: no input model, exit 2" grep -q 'no input model' "$T/out"
assert "terminal on stdin: exit 2" grep -q 'rc=2' "$T/out"

# --- atomic writes: temporary files in the target directory, fsync, rename, fsync the directory
if command -v strace >/dev/null; then
    # (LeakSanitizer cannot run under ptrace: a SAN=1 build must not look for leaks here.)
    check "strace a save with a side file" 0 '' -- env ASAN_OPTIONS=detect_leaks=0 \
        strace -f -e trace=openat,fsync,rename,renameat,renameat2 \
        -o "$T/strace.log" "$MOPT" cat --external-data --size-threshold 1 "$GOOD" -o "$O/s.onnx"
    check "temporaries in the target directory, fsynced, renamed, directory fsynced" 0 '' -- "$PY" - "$T/strace.log" "$O" <<'PYEOF'
import re, sys
log, d = open(sys.argv[1]).read().splitlines(), sys.argv[2]
fds, events = {}, []
for line in log:
    m = re.search(r'openat\(AT_FDCWD, "([^"]+)", ([^,)]+).*\) = (\d+)', line)
    if m:
        fds[m.group(3)] = m.group(1)
        events.append(("open", m.group(1), m.group(2)))
    m = re.search(r'fsync\((\d+)\) += 0', line)
    if m:
        events.append(("fsync", fds.get(m.group(1)), ""))
    m = re.search(r'rename(?:at2?)?\(.*"([^"]+)",.*"([^"]+)"', line)
    if m:
        events.append(("rename", m.group(1), m.group(2)))
tmp = [e[1] for e in events if e[0] == "open" and "O_CREAT" in e[2] and e[1].startswith(d + "/.")]
assert len(tmp) == 2, ("a temporary model and side file in the target directory", events)
order = [(k, a) for k, a, _ in events if k in ("fsync", "rename")]
for t in tmp:
    assert ("fsync", t) in order and ("rename", t) in order, (t, order)
    assert order.index(("fsync", t)) < order.index(("rename", t)), ("fsync before rename", t, order)
assert order[-1] == ("fsync", d), ("the directory is fsynced last", order)
ren = [a for k, a in order if k == "rename"]
assert ren[-1] == [t for t in tmp if ".s.onnx." in t and ".data." not in t][0], ("the model is renamed last", ren)
PYEOF
else
    echo "note: strace is not installed; the fsync/rename order of a save is not checked here"
fi

# --- -o naming something that is not a regular file: written in place, never replaced ---------
# (a rename over /dev/null, run as root, once turned the machine's /dev/null into a plain file)
mkfifo "$O/fifo"
timeout 120 cat "$O/fifo" >"$O/from-fifo" &  # (timeout: a failing mopt never opens it)
check "-o a FIFO" 0 '' -- "$MOPT" cat "$MODEL" -o "$O/fifo"
wait
assert "-o a FIFO: the model went through it" cmp -s "$O/from-fifo" "$MODEL"
assert "-o a FIFO: still a FIFO" [ -p "$O/fifo" ]
check "-o a FIFO with --external-data refused" 2 'needs a regular output file' -- \
    "$MOPT" cat --external-data "$MODEL" -o "$O/fifo"
if mknod -m 666 "$O/null" c 1 3 2>/dev/null; then
    check "-o a character device (a /dev/null)" 0 '' -- "$MOPT" cat "$MODEL" -o "$O/null"
    assert "-o a character device: still one" [ -c "$O/null" ]
    check "run -o DIR: output files that are devices stay devices" 0 '' -- bash -c \
        'mkdir -p "$1" && mknod -m 666 "$1/output_0.npy" c 1 3 && "$0" run "$2/model.onnx" -i "$2/test_data_set_0/input_0.pb" --format npy -o "$1" && [ -c "$1/output_0.npy" ]' \
        "$MOPT" "$O/devout" "$TESTDATA/node/test_relu"
else
    echo "note: mknod is not allowed here; -o a device is checked with the FIFO only"
fi

# --- nothing lost: a full disk leaves the previous file intact -------------------------------
cp "$GOOD" "$O/prev.onnx"
# ulimit -f: with SIGXFSZ ignored (as a shell trap passes on to mopt), write fails with EFBIG.
check "file size limit: exit 1" 1 "^mopt cat: .*prev\.onnx: writing .* failed: File too large" -- \
    bash -c 'trap "" XFSZ; ulimit -f 64; "$0" cat "$1" -o "$2"' "$MOPT" "$G/big.onnx" "$O/prev.onnx"
assert "file size limit: previous file intact" cmp -s "$GOOD" "$O/prev.onnx"
assert "file size limit: no temporary file left" [ -z "$(ls -A "$O" | grep '^\.prev')" ]
# Without the trap the kernel's SIGXFSZ ends mopt: the previous file must still be intact.
(bash -c 'ulimit -f 64; "$0" cat "$1" -o "$2"' "$MOPT" "$G/big.onnx" "$O/prev.onnx"; true) 2>/dev/null
assert "file size limit, SIGXFSZ: previous file intact" cmp -s "$GOOD" "$O/prev.onnx"
rm -f "$O"/.prev.onnx.*
# A real full file system, where mounting a tmpfs is allowed (root, not in every container).
mkdir -p "$T/full"
if mount -t tmpfs -o size=128k mopt-test "$T/full" 2>/dev/null; then
    trap 'umount "$T/full" 2>/dev/null; rm -rf "$T"' EXIT
    cp "$GOOD" "$T/full/prev.onnx"
    check "full tmpfs: exit 1" 1 "^mopt cat: .*prev\.onnx: writing .* failed: No space left on device" -- \
        "$MOPT" cat "$G/big.onnx" -o "$T/full/prev.onnx"
    assert "full tmpfs: previous file intact" cmp -s "$GOOD" "$T/full/prev.onnx"
    assert "full tmpfs: no temporary file left" [ "$(ls -A "$T/full")" = prev.onnx ]
    check "full tmpfs: external data side file" 1 "No space left on device" -- \
        "$MOPT" cat --external-data "$G/big.onnx" -o "$T/full/prev.onnx"
    assert "full tmpfs, side file: previous file intact" cmp -s "$GOOD" "$T/full/prev.onnx"
    assert "full tmpfs, side file: nothing left" [ "$(ls -A "$T/full")" = prev.onnx ]
    umount "$T/full"
else
    echo "note: cannot mount a tmpfs here; the full-disk case ran with ulimit -f only"
fi
finish
