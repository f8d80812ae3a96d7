#!/usr/bin/env bash
# The floor under cco's start-up with the real claude, for benchmark 1: one clone, a worktree per instance on its
# own branch, and a tmux session per instance running `claude --dangerously-skip-permissions`, all launched at
# once. No orchestration: no state, no run folder, no launch order, no token, no pipe-pane log.
#   baseline-startup-real.sh DIR BARE_REPO TMUX_SOCKET CLAUDE NAME...
# Before the clock starts the bench has written, for each NAME, the config dir DIR/instances/NAME/claude with
# ClaudeCode.prepareConfigDir (the same .claude.json and settings.json, hooks included, as cco writes) and
# DIR/env/NAME: the environment ClaudeCode.launchCommand gives the CLI, sourced by the pane's shell.
set -eu
dir=$1 bare=$2 socket=$3 claude=$4
shift 4
git clone -q "$bare" "$dir/repo"
git -C "$dir/repo" checkout -q --detach
# git worktree add is not safe in parallel on one repository, so registration runs in turn and the checkout,
# the slow part, in parallel with the launches.
for name in "$@"; do
  git -C "$dir/repo" worktree add -q --no-checkout --no-track -b "bench/$name" "$dir/worktrees/$name" origin/main
done
pids=()
for name in "$@"; do
  (
    wt="$dir/worktrees/$name"
    git -C "$wt" reset -q --hard
    tmux -L "$socket" -f /dev/null new-session -d -s "$name" -c "$wt" -x 200 -y 50 \
      ". '$dir/env/$name'; exec '$claude' --dangerously-skip-permissions"
  ) &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
