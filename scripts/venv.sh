# Sourced by scripts/run and scripts/test: (re)installs the project into ./.venv when
# pyproject.toml changed since the last install. $1 = extras, e.g. "[test]".
ensure_venv() {
  local extras="$1" python="${PYTHON:-python3}"
  local stamp=".venv/.installed$extras"
  local want
  want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
  if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".$extras"
    echo "$want" > "$stamp"
  fi
}
