#!/usr/bin/env bash
# Removes what finished or crashed cco runs leave behind: runs `cco cleanup "$@"`, and when the cco CLI cannot start
# (broken build or dependencies) does the same safe steps itself: the run's tmux sessions by exact name on the run's
# own socket, its worktrees, optionally its merged branches; runs whose orchestrator is alive are never touched, and
# nothing outside a run folder is (a copied folder's state.json names the original's worktrees and sessions).
#
#   scripts/cleanup.sh [--config DIR | RUN_FOLDER ...] [--dry-run] [--branches] [--all]
#
# CCO_CLEANUP_STANDALONE=1 skips the CLI. CCO_CLEANUP_JSON=node|python3|sed picks how state.json is read
# (default: the first of those available; sed only understands plain values without JSON escapes).
set -u

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ "${CCO_CLEANUP_STANDALONE:-}" != "1" ] && command -v node >/dev/null 2>&1; then
  node "$root/bin/cco.js" cleanup "$@"
  code=$?
  # 0 done, 2 usage or config error, 130 interrupted: answers of a CLI that started.
  case $code in 0 | 2 | 130) exit "$code" ;; esac
  # 1 is also what a failed start looks like: does the CLI start at all?
  if node "$root/bin/cco.js" --version >/dev/null 2>&1; then exit "$code"; fi
  echo "cleanup.sh: the cco CLI does not start (broken build or dependencies?); cleaning up without it" >&2
fi

# ---------------------------------------------------------------------------------------------------------------
# Standalone cleanup.

usage() {
  sed -n 's/^#   \(scripts\/cleanup.sh .*\)/usage: \1/p' "${BASH_SOURCE[0]}"
}

config="" dry_run=0 branches=0 all=0
folders=()
while [ $# -gt 0 ]; do
  case "$1" in
    -c | --config) [ $# -ge 2 ] || { echo "cleanup.sh: $1 needs a directory" >&2; exit 2; }; config="$2"; shift 2 ;;
    --config=*) config="${1#--config=}"; shift ;;
    --dry-run) dry_run=1; shift ;;
    --branches) branches=1; shift ;;
    --all) all=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; folders+=("$@"); break ;;
    -*) echo "cleanup.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) folders+=("$1"); shift ;;
  esac
done

reader="${CCO_CLEANUP_JSON:-}"
if [ -z "$reader" ]; then
  if command -v node >/dev/null 2>&1; then reader=node
  elif command -v python3 >/dev/null 2>&1; then reader=python3
  else reader=sed
  fi
fi

# Prints `key<TAB>value` for the top-level string fields of a JSON file, then `session`/`worktree` lines per instance.
json_fields() {
  # Regular files only: reading a FIFO would wait for a writer forever.
  [ -f "$1" ] || return 1
  case "$reader" in
    node)
      node -e '
        const v = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))
        if (v === null || typeof v !== "object") process.exit(1)
        for (const [k, x] of Object.entries(v)) if (typeof x === "string" && !/[\t\n]/.test(x)) console.log(k + "\t" + x)
        for (const i of Array.isArray(v.instances) ? v.instances : []) {
          if (typeof i.session === "string") console.log("session\t" + i.session)
          if (typeof i.worktree === "string") console.log("worktree\t" + i.worktree)
        }' "$1" 2>/dev/null ;;
    python3)
      python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
if not isinstance(v, dict): sys.exit(1)
for k, x in v.items():
    if isinstance(x, str) and "\t" not in x and "\n" not in x: print(k + "\t" + x)
for i in v.get("instances") or []:
    if isinstance(i.get("session"), str): print("session\t" + i["session"])
    if isinstance(i.get("worktree"), str): print("worktree\t" + i["worktree"])' "$1" 2>/dev/null ;;
    sed)
      grep -q '^[[:space:]]*{' "$1" 2>/dev/null || return 1
      for key in runId repoDir targetBranch tmuxSocket logDirectory session worktree; do
        grep -o "\"$key\"[[:space:]]*:[[:space:]]*\"[^\"]*\"" "$1" | sed "s/^\"$key\"[[:space:]]*:[[:space:]]*\"\\(.*\\)\"\$/$key	\\1/"
      done ;;
    *) echo "cleanup.sh: CCO_CLEANUP_JSON must be node, python3 or sed" >&2; exit 2 ;;
  esac
}

field() { printf '%s\n' "$1" | awk -F '\t' -v k="$2" '$1 == k { sub(/^[^\t]*\t/, ""); print; exit }'; }
fields() { printf '%s\n' "$1" | awk -F '\t' -v k="$2" '$1 == k { sub(/^[^\t]*\t/, ""); print }'; }

is_run_folder() { [ -f "$1/state.json" ] || [ -f "$1/cco.lock" ] || [ -f "$1/combined.log" ]; }

# A process with this pid exists (someone else's counts: kill -0 then fails with EPERM, ps still sees it).
pid_alive() {
  case "$1" in '' | 0 | *[!0-9]*) return 1 ;; esac
  kill -0 "$1" 2>/dev/null && return 0
  ps -p "$1" >/dev/null 2>&1
}

# Whether path $2 lies inside folder $1 (physical paths; a path that is gone counts as written).
inside_folder() {
  local p="$2"
  [ -d "$p" ] && p="$(cd "$p" 2>/dev/null && pwd -P)"
  case "$p" in "$1"/*) return 0 ;; esac
  return 1
}

fallback_socket="cco"
targets=()   # "explicit<TAB>folder" or "scanned<TAB>folder"
scan() {
  local d
  for d in "$1"/*/; do
    d="${d%/}"
    [ "$(basename "$d")" = latest ] && continue
    [ -d "$d" ] && is_run_folder "$d" && targets+=("scanned	$(cd "$d" && pwd -P)")
  done
}

if [ ${#folders[@]} -gt 0 ]; then
  for f in "${folders[@]}"; do
    [ -d "$f" ] || { echo "cleanup.sh: $f: no such directory" >&2; exit 1; }
    # Physical paths: `logs/latest` and the run folder it names are one run.
    f="$(cd "$f" && pwd -P)"
    if is_run_folder "$f"; then targets+=("explicit	$f")
    else
      before=${#targets[@]}
      scan "$f"
      [ ${#targets[@]} -gt "$before" ] || { echo "cleanup.sh: $f: not a run folder, and no run folders in it" >&2; exit 1; }
    fi
  done
fi
if [ -n "$config" ]; then
  [ -f "$config/orchestrator.json" ] || { echo "cleanup.sh: $config/orchestrator.json: file not found" >&2; exit 2; }
  config="$(cd "$config" && pwd -P)"
  cfg="$(json_fields "$config/orchestrator.json")" || { echo "cleanup.sh: $config/orchestrator.json cannot be read" >&2; exit 2; }
  socket_value="$(field "$cfg" tmuxSocket)"
  [ -n "$socket_value" ] && fallback_socket="$socket_value"
  if [ ${#folders[@]} -eq 0 ]; then
    logdir="$(field "$cfg" logDirectory)"
    case "$logdir" in '') logdir="$config" ;; /*) ;; *) logdir="$config/$logdir" ;; esac
    [ -d "$logdir" ] && scan "$logdir"
    [ ${#targets[@]} -gt 0 ] || { echo "no runs in $logdir"; exit 0; }
  fi
fi
[ ${#targets[@]} -gt 0 ] || { echo "cleanup.sh: nothing to clean: give --config DIR or one or more RUN_FOLDERs" >&2; exit 1; }

# verb DONE WOULD: the past tense, or with --dry-run what would be done.
verb() { if [ "$dry_run" = 1 ]; then printf '%s' "$2"; else printf '%s' "$1"; fi; }
# Lines of stdin joined by ", ", each without the run folder prefix.
joined() { sed "s|^$1/||" | paste -sd ',' - | sed 's/,/, /g'; }
failed=0
runs=0 total_sessions=0 total_worktrees=0 total_branches=0

clean_run() {
  local kind="$1" folder="$2"
  local run_id repo target socket state lock_pid="" has_lock=0 problems=0 did=0 why
  local -a sessions=() worktrees=()
  if [ -f "$folder/cco.lock" ]; then
    has_lock=1
    lock_pid="$(tr -cd '0-9' <"$folder/cco.lock")"
    if pid_alive "$lock_pid"; then
      echo "$(basename "$folder")  $folder"
      if [ "$kind" = explicit ]; then
        echo "  refused: its orchestrator is alive (pid $lock_pid); stop it first (Ctrl-C where it runs, or kill $lock_pid)"
        failed=1
      else
        echo "  skipped: its orchestrator is alive (pid $lock_pid)"
      fi
      return
    fi
  fi
  runs=$((runs + 1))

  local name
  if state="$(json_fields "$folder/state.json")" && [ -n "$(field "$state" runId)" ]; then
    run_id="$(field "$state" runId)"
    repo="$(field "$state" repoDir)"
    target="$(field "$state" targetBranch)"
    socket="$(field "$state" tmuxSocket)"
    while IFS= read -r name; do [ -n "$name" ] && sessions+=("$name"); done < <(fields "$state" session)
    while IFS= read -r name; do [ -n "$name" ] && worktrees+=("$name"); done < <(fields "$state" worktree)
    echo "$run_id  $folder"
  else
    run_id="$(basename "$folder")"
    repo="$folder/repo" target="" socket="$fallback_socket"
    echo "$run_id  $folder"
    echo "  note: state.json missing or unreadable; using the folder's layout (sessions on tmux -L $socket)"
  fi
  # Only what lies inside this folder (physical paths) is this run's: a copied folder's state.json names the
  # original's clone, worktrees and sessions.
  if [ "$repo" != "$folder/repo" ] && ! inside_folder "$folder" "$repo"; then
    echo "  note: left $repo alone: state.json names it, but it is outside this run folder (a copied folder?)"
    repo="$folder/repo"
  fi
  local -a own=() foreign=()
  for name in "${worktrees[@]+"${worktrees[@]}"}"; do
    if inside_folder "$folder" "$name"; then own+=("$name"); else foreign+=("$name"); fi
  done
  if [ ${#foreign[@]} -gt 0 ]; then
    echo "  note: left ${#foreign[@]} worktree(s) alone that state.json names outside this run folder: $(printf '%s\n' "${foreign[@]}" | paste -sd ',' - | sed 's/,/, /g')"
  fi
  worktrees=("${own[@]+"${own[@]}"}")
  # The folder's own worktrees/ and session logs name instances too.
  for name in "$folder"/worktrees/*/; do
    [ -d "$name" ] || continue
    name="$(basename "$name")"
    worktrees+=("$folder/worktrees/$name")
    sessions+=("cco-$run_id-$name")
  done
  for name in "$folder"/session-*.log; do
    [ -f "$name" ] || continue
    name="$(basename "$name" .log)"
    sessions+=("cco-$run_id-${name#session-}")
  done

  # Sessions: exact names that exist on this run's socket, started in a directory inside this folder, and nothing else.
  local present s dir
  local -a to_kill=() not_ours=()
  present="$(tmux -L "$socket" list-sessions -F '#{session_name}	#{session_path}' 2>/dev/null)"
  while IFS= read -r s; do
    [ -n "$s" ] || continue
    dir="$(printf '%s\n' "$present" | awk -F '\t' -v k="$s" '$1 == k { sub(/^[^\t]*\t/, ""); print; exit }')"
    printf '%s\n' "$present" | awk -F '\t' -v k="$s" '$1 == k { found = 1 } END { exit !found }' || continue
    if inside_folder "$folder" "$dir"; then to_kill+=("$s"); else not_ours+=("$s"); fi
  done < <(printf '%s\n' "${sessions[@]+"${sessions[@]}"}" | sort -u)
  if [ ${#not_ours[@]} -gt 0 ]; then
    echo "  note: left ${#not_ours[@]} tmux session(s) alone whose directory is outside this run folder: $(printf '%s\n' "${not_ours[@]}" | paste -sd ',' - | sed 's/,/, /g')"
  fi
  if [ ${#to_kill[@]} -gt 0 ]; then
    if [ "$dry_run" = 0 ]; then
      for s in "${to_kill[@]}"; do tmux -L "$socket" kill-session -t "=$s" 2>/dev/null & done
      wait
    fi
    echo "  $(verb killed "would kill") ${#to_kill[@]} tmux session(s) on tmux -L $socket: $(printf '%s\n' "${to_kill[@]}" | joined "$folder")"
    total_sessions=$((total_sessions + ${#to_kill[@]}))
    did=1
  fi

  # Worktrees: registered ones through git, leftovers inside the folder's worktrees/ by removal.
  local registered="" wt need_prune=0
  local -a removed=()
  [ -d "$repo" ] && registered="$(git -C "$repo" worktree list --porcelain 2>/dev/null | sed -n 's/^worktree //p')"
  while IFS= read -r wt; do
    [ -n "$wt" ] || continue
    if printf '%s\n' "$registered" | grep -Fxq -- "$wt"; then
      need_prune=1
      [ -d "$wt" ] || continue
      removed+=("$wt")
      if [ "$dry_run" = 0 ]; then
        (git -C "$repo" worktree remove --force "$wt" >/dev/null 2>&1 || case "$wt" in "$folder"/worktrees/*) rm -rf -- "$wt" ;; esac) &
      fi
    elif [ -d "$wt" ]; then
      case "$wt" in
        "$folder"/worktrees/*) removed+=("$wt"); [ "$dry_run" = 0 ] && rm -rf -- "$wt" & ;;
      esac
    fi
  done < <(printf '%s\n' "${worktrees[@]+"${worktrees[@]}"}" | sort -u)
  wait
  if [ "$dry_run" = 0 ]; then
    [ -d "$repo" ] && [ "$need_prune" = 1 ] && git -C "$repo" worktree prune 2>/dev/null
    for wt in "${removed[@]+"${removed[@]}"}"; do
      [ -e "$wt" ] && { echo "  problem: could not remove $wt"; problems=$((problems + 1)); }
    done
  fi
  if [ ${#removed[@]} -gt 0 ]; then
    echo "  $(verb removed "would remove") ${#removed[@]} worktree(s): $(printf '%s\n' "${removed[@]}" | joined "$folder")"
    total_worktrees=$((total_worktrees + ${#removed[@]}))
    did=1
  fi

  # Merged run branches.
  if [ "$branches" = 1 ]; then
    if [ -z "$target" ]; then echo "  note: branches not checked: the target branch is unknown without state.json"
    elif [ ! -d "$repo" ]; then echo "  note: branches not checked: no clone at $repo"
    else
      local merged
      if merged="$(git -C "$repo" for-each-ref --format='%(refname)' "--merged=refs/heads/$target" "refs/heads/cco/$run_id/" 2>&1)"; then
        merged="$(printf '%s\n' "$merged" | sed -n 's|^refs/heads/||p')"
        if [ -n "$merged" ]; then
          if [ "$dry_run" = 0 ]; then
            # shellcheck disable=SC2086 # branch names have no spaces
            git -C "$repo" branch -D -- $merged >/dev/null 2>&1 || { echo "  problem: git branch -D failed"; problems=$((problems + 1)); }
          fi
          echo "  $(verb deleted "would delete") $(printf '%s\n' "$merged" | wc -l | tr -d ' ') merged branch(es): $(printf '%s\n' "$merged" | joined "$folder")"
          total_branches=$((total_branches + $(printf '%s\n' "$merged" | wc -l)))
          did=1
        fi
      else
        echo "  problem: listing branches merged into $target: $(printf '%s\n' "$merged" | head -1)"
        problems=$((problems + 1))
      fi
    fi
  fi

  # --all: the Claude config dirs, and the clone unless it holds commits that exist nowhere else.
  if [ "$all" = 1 ]; then
    local -a gone=()
    [ -d "$folder/instances" ] && gone+=("$folder/instances")
    if [ -d "$repo" ]; then
      case "$repo" in
        "$folder"/*)
          local unpushed
          unpushed="$(git -C "$repo" rev-list --count --branches --not --remotes 2>/dev/null)"
          if [ "$unpushed" = 0 ]; then gone+=("$repo")
          else echo "  note: kept $repo: ${unpushed:-unknown number of} commit(s) on local branches are on no remote"
          fi ;;
        *) echo "  note: kept $repo: it is outside the run folder" ;;
      esac
    fi
    if [ ${#gone[@]} -gt 0 ]; then
      [ "$dry_run" = 0 ] && rm -rf -- "${gone[@]}"
      echo "  $(verb removed "would remove") $(printf '%s\n' "${gone[@]}" | joined "$folder")"
      did=1
    fi
  fi

  if [ "$has_lock" = 1 ]; then
    [ "$dry_run" = 0 ] && rm -f -- "$folder/cco.lock"
    if [ -n "$lock_pid" ]; then why="pid $lock_pid is not running"; else why="unreadable"; fi
    echo "  $(verb removed "would remove") a stale cco.lock ($why)"
    did=1
  fi
  [ "$did" = 0 ] && [ "$problems" = 0 ] && echo "  nothing to clean"
  [ "$problems" -gt 0 ] && failed=1
}

for t in "${targets[@]}"; do
  clean_run "${t%%	*}" "${t#*	}"
done
echo "$(verb cleaned "would clean") $runs run(s): $total_sessions session(s), $total_worktrees worktree(s)$([ "$branches" = 1 ] && echo ", $total_branches branch(es)")$(verb "" "; nothing was changed") (standalone cleanup)"
exit "$failed"
