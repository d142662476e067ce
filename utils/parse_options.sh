#!/usr/bin/env bash
# Kaldi-style option parsing for recipe and stage scripts.
#
# Source it after declaring defaults:      stage=0; nj=4; . utils/parse_options.sh
# Then  --stage 3 --nj 8  (or --nj=8)  sets those variables. Dashes in option names map to
# underscores (--stop-stage -> stop_stage). An option whose variable was not declared before
# sourcing is an error naming the option, so a typo never runs with a silent default.
# --help prints $help_message (if set) and the current values of the declared options.
# Boolean options take true/false explicitly (--use-gpu true), as in Kaldi.

__po_self="${0##*/}"
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      if [ -n "${help_message:-}" ]; then printf '%s\n' "$help_message"; else echo "Usage: $__po_self [options]"; fi
      exit 0 ;;
    --) shift; break ;;
    --*=*)
      __po_name="${1%%=*}"; __po_value="${1#*=}"; shift ;;
    --*)
      __po_name="$1"
      if [ $# -lt 2 ]; then echo "$__po_self: option $1 needs a value (e.g. $1 VALUE); see --help" >&2; exit 1; fi
      __po_value="$2"; shift 2 ;;
    *) break ;;
  esac
  __po_var="${__po_name#--}"; __po_var="${__po_var//-/_}"
  if ! [[ "$__po_var" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ -z "${!__po_var+set}" ]; then
    echo "$__po_self: invalid option $__po_name; run '$__po_self --help' for the valid options" >&2
    exit 1
  fi
  # Booleans must stay booleans: a typo such as --use-gpu ture is an error.
  __po_old="${!__po_var}"
  if { [ "$__po_old" = true ] || [ "$__po_old" = false ]; } && [ "$__po_value" != true ] && [ "$__po_value" != false ]; then
    echo "$__po_self: option $__po_name takes true or false, got '$__po_value'" >&2
    exit 1
  fi
  printf -v "$__po_var" '%s' "$__po_value"
done
unset __po_name __po_value __po_var __po_old __po_self
true
