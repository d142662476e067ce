# Source me (recipes do: . ./path.sh). Activates the project's venv and puts steps/ and utils/
# on PATH. Works through the recipe's symlink: the real location is resolved first.
LM2AM_ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
export LM2AM_ROOT
if [ ! -x "$LM2AM_ROOT/.venv/bin/python" ]; then
  echo "path.sh: $LM2AM_ROOT/.venv is missing; run 'make setup' in $LM2AM_ROOT first" >&2
  return 1 2>/dev/null || exit 1
fi
export VIRTUAL_ENV="$LM2AM_ROOT/.venv"
export PATH="$LM2AM_ROOT/.venv/bin:$LM2AM_ROOT/steps:$LM2AM_ROOT/utils:$PATH"
export LC_ALL=C             # C-locale sorting everywhere (Kaldi's "not sorted" errors)
export PYTHONUNBUFFERED=1   # logs appear as they happen
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one thread per job; the runner parallelizes
