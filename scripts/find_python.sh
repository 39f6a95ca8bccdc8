#!/usr/bin/env bash
# Print the path of a Python >= 3.12 (Django 6 needs it): PYTHON if set, else the first found on
# PATH or in pyenv's versions. Exits 1 with a message if there is none.
set -u
candidates=()
[ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
for name in python3.12 python3.13 python3; do
  command -v "$name" >/dev/null 2>&1 && candidates+=("$(command -v "$name")")
done
for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12* "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13* /usr/local/bin /usr/bin; do
  for name in python3.12 python3.13; do
    [ -x "$dir/bin/$name" ] && candidates+=("$dir/bin/$name")
    [ -x "$dir/$name" ] && candidates+=("$dir/$name")
  done
done
for candidate in "${candidates[@]}"; do
  if "$candidate" -c 'import sys, venv, sqlite3; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
    echo "$candidate"
    exit 0
  fi
done
echo "No Python 3.12 or newer found (Django 6 needs it). Install one, or set PYTHON=/path/to/python3.12." >&2
exit 1
