# Background jobs for recipes: run independent commands side by side, at most $max_bg at once,
# and fail the stage if any of them failed (each job's own runner names its log).
#   . utils/background.sh
#   max_bg=2; for x in a b c; do bg_run my_function $x; done; bg_wait
# Sourced, not executed. Works with `set -e`: a failing job never stops its siblings midway.

max_bg=${max_bg:-1}
_bg_started=0
_bg_dir=$(mktemp -d "${TMPDIR:-/tmp}/bg_jobs.XXXXXX")
trap 'rm -rf "$_bg_dir"' EXIT

# bg_run CMD [ARGS...]: start CMD in the background once fewer than $max_bg jobs run.
bg_run() {
  while [ "$(jobs -rp | wc -l)" -ge "$max_bg" ]; do sleep 1; done
  _bg_started=$((_bg_started + 1))
  local ok="$_bg_dir/$_bg_started.ok"
  ( "$@" && touch "$ok" ) &
}

# bg_wait: wait for every job started by bg_run; exit 1 unless all of them succeeded.
bg_wait() {
  wait
  local ok n=$_bg_started
  ok=$(find "$_bg_dir" -name '*.ok' | wc -l)
  rm -f "$_bg_dir"/*.ok
  _bg_started=0
  if [ "$ok" -ne "$n" ]; then
    echo "ERROR: $((n - ok)) of $n background jobs failed (their logs are named above)" >&2
    exit 1
  fi
}
