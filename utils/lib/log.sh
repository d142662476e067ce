# shellcheck shell=bash
# log MESSAGE...: one line with the time and file:line:function of the caller (icefall's and
# ESPnet's recipe log). Sourced by the recipes' run.sh and the shell steps: . utils/lib/log.sh
log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') ($fname:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
