#!/usr/bin/env bash
# One-time (and idempotent) set-up: Debian packages the corpus and scoring need, then .venv with
# Python 3.9 and the pinned stack from requirements.lock. Called by `make setup/demo/test`.
#
#   utils/setup_env.sh [--no-apt]
#
# Python 3.9 is searched as: $LM2AM_PYTHON, python3.9 on PATH (if it really runs), pyenv's 3.9.x,
# then `uv python find 3.9`. k2 1.23.4 only has a cp39 binary, hence the exact version.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
no_apt=false
[ "${1:-}" = "--no-apt" ] && no_apt=true

# Debian packages: speech synthesizers and voices, sox/flac, text sources, the Asterisk prompts
# and music, and NIST sctk for scoring.
APT_PACKAGES="flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng
  libespeak-ng1 sox libsox-fmt-all flac wordnet-base fortunes fortunes-min bible-kjv bible-kjv-text
  asterisk-moh-opsound-wav asterisk-core-sounds-en-g722 asterisk-core-sounds-en sctk"
# Optional: a single-node Slurm for the cluster-runner tests (installed when root; the tests
# skip with a reason where it is missing).
APT_OPTIONAL="slurm-wlm munge"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in $APT_PACKAGES; do installed "$p" || missing+=("$p"); done
if [ "$(id -u)" = 0 ] && ! $no_apt; then
  for p in $APT_OPTIONAL; do installed "$p" || missing+=("$p"); done
fi
if [ ${#missing[@]} -gt 0 ] && ! $no_apt; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages: ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

find_python39() {
  local c v
  for c in "${LM2AM_PYTHON:-}" python3.9; do
    [ -n "$c" ] || continue
    if v=$("$c" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) && [ "$v" = 3.9 ]; then
      command -v "$c"; return 0
    fi
  done
  if command -v pyenv >/dev/null; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.9(\.[0-9]+)?$' | sort -V -r); do
      c=$(PYENV_VERSION=$v pyenv which python3.9 2>/dev/null) && [ -x "$c" ] && { echo "$c"; return 0; }
    done
  fi
  if command -v uv >/dev/null && c=$(uv python find 3.9 2>/dev/null); then echo "$c"; return 0; fi
  return 1
}

venv=.venv
want=$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ -x $venv/bin/python ] && [ "$($venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != 3.9 ]; then
  echo "setup: $venv is not Python 3.9; recreating it"
  rm -rf $venv
fi
if [ ! -x $venv/bin/python ]; then
  py=$(find_python39) || {
    echo "setup: Python 3.9 not found (tried \$LM2AM_PYTHON, python3.9 on PATH, pyenv, uv); install it, e.g. 'pyenv install 3.9' or 'uv python install 3.9', or set LM2AM_PYTHON=/path/to/python3.9" >&2
    exit 1
  }
  echo "setup: creating $venv with $py"
  "$py" -m venv $venv
fi
if [ "$(cat $venv/.lm2am-installed 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the pinned Python stack into $venv (first time: a few minutes, ~3.7 GB)"
  # pip, not uv: k2's wheels are tagged py3.9-none-any etc., and only pip picks the cp39 one.
  $venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock
  $venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > $venv/.lm2am-installed
fi
$venv/bin/python -m lm2am.doctor $($no_apt && echo --no-system)
