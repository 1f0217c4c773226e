#!/usr/bin/env bash
# One long orchestrator run across several GPU-machine calls, without a cell cut at every call's end.
#
# A call on the GPU machine may last 10 minutes, and processes it leaves behind are killed when it
# returns, except those in a new session (setsid), which live until the machine is given back. So
# the first call starts the run in its own session from a copy of the tree, later calls only watch
# it, and the last one interrupts it (SIGINT to its process group, as Ctrl-C would: complete cells
# are kept, the rest cancelled, engine processes reaped) and packs the stores into $OUT:
#
#   bash scripts/gpu_session.sh start NAME -- python -m orchestrator +sweep=h200_study store.dir=/root/h200_store
#   bash scripts/gpu_session.sh watch NAME SECONDS [STORE ...]   # sleep, then the log's tail and the stores' tables
#   bash scripts/gpu_session.sh keep NAME EVERY [STORE ...]      # pack every EVERY s until the run ends or the call is cut
#   bash scripts/gpu_session.sh stop NAME [STORE ...]            # interrupt, check the GPU is free, pack $OUT/NAME.tgz
#
# `watch` and `stop` also write $OUT/NAME.tgz (the stores and the log as they are), so a call that
# never comes back loses only what ran after the previous one. The copy of the tree (/root/tree)
# keeps the run's imports apart from the next call's fresh working tree. Run from the repo root,
# with PYTHONPATH holding the staged wheels (/root/site) as after ../shared/gpu/recv.sh. Its files
# (tree, NAME.log, NAME.pid) go under $GPU_SESSION_ROOT (default /root).
set -uo pipefail
cmd=${1:?start | watch | keep | stop}; name=${2:?NAME}; shift 2
root=${GPU_SESSION_ROOT:-/root}; tree=$root/tree; log=$root/$name.log; pidf=$root/$name.pid

pack() {  # pack the stores given and the log into $OUT/$name.tgz
  local args=() s
  for s in "$@"; do [ -d "$s" ] && args+=(-C "$(dirname "$s")" "$(basename "$s")"); done
  # to a part file first, then renamed: a call cut by its time limit mid-pack keeps the previous pack.
  # tar exits 1 when a file changed while read (the run's log grows): the pack is whole, keep it
  [ -n "${OUT:-}" ] || return 0
  local rc=0
  tar czf "$OUT/$name.tgz.part" -C "$root" "$(basename "$log")" "${args[@]}" || rc=$?
  if [ "$rc" -le 1 ]; then mv -f "$OUT/$name.tgz.part" "$OUT/$name.tgz"
  else echo "gpu_session: pack failed (tar exit $rc); the previous $name.tgz stays" >&2; rm -f "$OUT/$name.tgz.part"; fi
}

tables() {
  local s
  for s in "$@"; do
    echo "== $s"; (cd "$tree" && python scripts/store_table.py "$s" | cut -c1-160 | tail -n 30)
  done
}

case $cmd in
  start)
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || { echo "gpu_session: start needs a command after --" >&2; exit 2; }
    if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
      echo "gpu_session: $name already runs (pid $(cat "$pidf"))" >&2; exit 2
    fi
    rm -rf "$tree" && mkdir -p "$tree" && tar --exclude=./.gpu --exclude=./.whl -cf - . | tar -xf - -C "$tree"
    export PYTHONPATH="$tree${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1  # the copy before the call's tree
    cd "$tree" || exit 1
    # a simple command in the background: no subshell keeps this shell's stdout open
    # and SIGINT back to its default: a shell's background job starts with it ignored, and a
    # program that does not set its own handler would never see the stop's Ctrl-C
    setsid nohup python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
open(sys.argv[1], "w").write(str(os.getpid()))
os.execvp(sys.argv[2], sys.argv[2:])' "$pidf" "$@" > "$log" 2>&1 < /dev/null &
    sleep 2; echo "gpu_session: $name started (pid $(cat "$pidf")), log $log"
    ;;
  watch)
    secs=${1:?SECONDS}; shift
    pid=$(cat "$pidf")
    for _ in $(seq "$secs"); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && echo "gpu_session: $name still runs" || echo "gpu_session: $name has ended"
    tail -c 3000 "$log"; nvidia-smi --query-gpu=memory.used,power.draw --format=csv,noheader
    tables "$@"; pack "$@"
    ;;
  keep)  # the last call of an allowance: runs until the device time is spent, packing as it goes
    every=${1:?EVERY}; shift
    [ "$every" -ge 1 ] 2>/dev/null || { echo "gpu_session: keep needs EVERY >= 1 (seconds)" >&2; exit 2; }
    pid=$(cat "$pidf")
    while kill -0 "$pid" 2>/dev/null; do
      for _ in $(seq "$every"); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      pack "$@"; echo "gpu_session: packed at $(date +%T); $(grep -c '' "$log") log lines"
    done
    echo "gpu_session: $name has ended"; tail -c 3000 "$log"; tables "$@"; pack "$@"
    ;;
  stop)
    pid=$(cat "$pidf")
    if kill -0 "$pid" 2>/dev/null; then
      kill -INT -- "-$pid"
      for i in $(seq 90); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      echo "gpu_session: $name exited ${i}s after SIGINT"
      sleep 12  # the reaper's SIGKILL comes 10 s after its SIGTERM
    fi
    echo "GPU memory used: $(nvidia-smi --query-gpu=memory.used --format=csv,noheader)"
    nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader
    ps -eo pid,ppid,etimes,args | grep -E '[V]LLM|[v]llm.entrypoints' || echo "no vLLM process left"
    tail -c 2000 "$log"; tables "$@"; pack "$@"
    ;;
  *) echo "gpu_session: unknown command $cmd (start | watch | keep | stop)" >&2; exit 2 ;;
esac
