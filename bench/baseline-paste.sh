#!/usr/bin/env bash
# The floor under "every instance has its first prompt", for benchmark 1: the prompt file pasted into every
# pane at once the way cco pastes (load-buffer, bracketed paste-buffer, the same settle time, Enter).
#   baseline-paste.sh TMUX_SOCKET PROMPT_FILE SETTLE_SECONDS NAME...
set -eu
socket=$1 prompt=$2 settle=$3
shift 3
pids=()
for name in "$@"; do
  (
    tmux -L "$socket" -f /dev/null load-buffer -b "p-$name" - < "$prompt"
    tmux -L "$socket" -f /dev/null paste-buffer -p -d -b "p-$name" -t "=$name:"
    sleep "$settle"
    tmux -L "$socket" -f /dev/null send-keys -t "=$name:" Enter
  ) &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
