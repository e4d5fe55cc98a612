#!/usr/bin/env bash
# Progress lines for a long command whose output goes to a log file (the Go tool build:
# 20 minutes of `go build` that would otherwise print nothing).
#
#   tools/progress.sh LABEL LOGFILE -- COMMAND [ARG...]
#       run COMMAND with stdout and stderr appended to LOGFILE (kept in full); while it
#       runs, print to stderr every $MESHFLEET_PROGRESS_INTERVAL seconds (default 30):
#         [tools] LABEL: still building after 2m30s; 412 packages so far, last: k8s.io/apiserver/pkg/server
#       Exits with COMMAND's exit status.
#   . tools/progress.sh     (tools/build-tools.sh) defines progress_watch PID LOGFILE LABEL [START]
#
# "Packages" are the import paths `go build -v` writes as it compiles them; any other
# last line of the log (e.g. "go: downloading ...") is shown as it is.

progress_interval() { # whole seconds, at least 1 (MESHFLEET_PROGRESS_INTERVAL, default 30)
  local v="${MESHFLEET_PROGRESS_INTERVAL:-30}"
  v="${v%%.*}"
  [[ "$v" =~ ^[0-9]+$ ]] || v=30
  ((v >= 1)) || v=1
  echo "$v"
}

progress_duration() { # seconds -> 45s, 2m05s, 1h03m (as plugins/plugin_utils/progress.py)
  local s="$1"
  if ((s < 60)); then printf '%ds' "$s"
  elif ((s < 3600)); then printf '%dm%02ds' $((s / 60)) $((s % 60))
  else printf '%dh%02dm' $((s / 3600)) $((s % 3600 / 60)); fi
}

progress_line() { # label logfile start_epoch
  local label="$1" logf="$2" start="$3" now last count
  now="$(date +%s)"
  # the log's own header lines start with '#'; go -v prints one import path per line
  count="$(grep -cE '^[A-Za-z0-9_.~-]+(/[A-Za-z0-9_.~+-]+)*$' "$logf" 2>/dev/null)" || count=0
  last="$(grep -v '^#' "$logf" 2>/dev/null | grep -v '^[[:space:]]*$' | tail -n 1 | cut -c1-160)" || last=""
  if [[ -z "$last" ]]; then
    printf '[tools] %s: still building after %s; nothing compiled yet\n' "$label" "$(progress_duration $((now - start)))"
  else
    printf '[tools] %s: still building after %s; %s packages so far, last: %s\n' \
      "$label" "$(progress_duration $((now - start)))" "$count" "$last"
  fi
}

progress_watch() { # pid logfile label [start_epoch]: a line every interval while pid lives
  local pid="$1" logf="$2" label="$3" start="${4:-$(date +%s)}" every waited
  every="$(progress_interval)"
  while kill -0 "$pid" 2>/dev/null; do
    waited=0
    while ((waited < every)); do
      sleep 1
      kill -0 "$pid" 2>/dev/null || return 0
      waited=$((waited + 1))
    done
    progress_line "$label" "$logf" "$start" >&2
  done
}

progress_main() {
  if (($# < 4)) || [[ "$3" != "--" ]]; then
    echo "usage: $0 LABEL LOGFILE -- COMMAND [ARG...]" >&2
    return 2
  fi
  local label="$1" logf="$2" start pid watcher rc=0
  shift 3
  start="$(date +%s)"
  "$@" >>"$logf" 2>&1 &
  pid=$!
  progress_watch "$pid" "$logf" "$label" "$start" &
  watcher=$!
  trap 'kill "$pid" "$watcher" 2>/dev/null; exit 143' TERM INT
  wait "$pid" || rc=$?
  kill "$watcher" 2>/dev/null || true
  wait "$watcher" 2>/dev/null || true
  return "$rc"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -uo pipefail
  progress_main "$@"
  exit $?
fi
