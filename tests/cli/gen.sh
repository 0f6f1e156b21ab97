# tests/cli/gen.sh — sourced by CLI tests after lib.sh: sets PY and writes the generated test
# models (tests/cli/gen_models.py, fixed seed) into $G = $T/g.
PY=${PY:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
G=$T/g
"$PY" "$ROOT/tests/cli/gen_models.py" "$G" || { echo "gen_models.py failed"; exit 1; }
