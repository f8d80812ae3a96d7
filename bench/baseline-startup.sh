#!/usr/bin/env bash
# The floor under cco's start-up, for benchmark 1: one clone, 26 worktrees on their own branches and 26 tmux
# sessions running the fake agent with the same hook command as cco's (so SessionStart
# reaches the bench the same way, at the same cost). No orchestration: no config seeding, no state, no launch order.
#   baseline-startup.sh DIR BARE_REPO TMUX_SOCKET NAME...
# Environment: NODE, CLIENT (bin/cco-client.mjs), FAKE (the fake claude), CTL (the bench's control socket),
# ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL (the mock model).
set -eu
dir=$1 bare=$2 socket=$3
shift 3
git clone -q "$bare" "$dir/repo"
git -C "$dir/repo" checkout -q --detach
hook="env -u NODE_EXTRA_CA_CERTS '$NODE' '$CLIENT' hook"
settings="{\"hooks\":{\"SessionStart\":[{\"matcher\":\"*\",\"hooks\":[{\"type\":\"command\",\"command\":\"$hook SessionStart\"}]}],\"UserPromptSubmit\":[{\"hooks\":[{\"type\":\"command\",\"command\":\"$hook UserPromptSubmit\"}]}]}}"
pids=()
export IS_SANDBOX=1 CCO_SOCKET="$CTL" CCO_TOKEN=bench CCO_GENERATION=0
# git worktree add is not safe in parallel on one repository (it reads the other worktrees' registrations while
# they are written), so registration runs in turn and the checkout, the slow part, in parallel, as cco does.
for name in "$@"; do
  git -C "$dir/repo" worktree add -q --no-checkout --no-track -b "bench/$name" "$dir/worktrees/$name" origin/main
done
for name in "$@"; do
  (
    wt="$dir/worktrees/$name"
    cfg="$dir/instances/$name"
    git -C "$wt" reset -q --hard
    mkdir -p "$cfg"
    printf '%s' "$settings" > "$cfg/settings.json"
    tmux -L "$socket" -f /dev/null new-session -d -s "$name" -c "$wt" -x 200 -y 50 \
      -e CLAUDE_CONFIG_DIR="$cfg" -e CCO_INSTANCE="$name" \
      "$FAKE" --dangerously-skip-permissions
  ) &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
