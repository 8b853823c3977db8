#!/usr/bin/env bash
# Runtime benchmark: create + start + wait-for-exit + delete of /bin/true, berth vs runc vs crun.
#
#   sudo bench/runtime/run.sh            # RUNS=30 WARMUP=3 MODE=steps
#   RUNS=50 MODE=both bench/runtime/run.sh
#
# Env: RUNS (measured rounds, >= 20 recommended), WARMUP (unmeasured rounds), MODE (steps: create,
# start, wait, delete as separate commands; run: foreground `run`, which also deletes; both),
# SKIP_BUILD=1 (use the existing target/release/berth), NO_INSTALL=1 (do not apt-get peers),
# RUNTIMES="berth runc crun" (subset/order), SECCOMP=docker (give every runtime Docker's default
# seccomp profile, as `docker run` would).
# Runtimes are interleaved (A B C A B C ...). Needs root. Not a test: never run in CI.
set -euo pipefail

RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
MODE=${MODE:-steps}
RUNTIMES=${RUNTIMES:-"berth runc crun"}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
die() { echo "run.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
[ -x /bin/busybox ] || die "needs busybox-static at /bin/busybox (apt-get install busybox-static)"

# PID 1 on these machines does not reap orphans, and a container's init is orphaned when the
# runtime that created it exits: run under tini as a subreaper so every init gets reaped.
if [ -z "${BERTH_BENCH_REAPED:-}" ] && command -v tini >/dev/null; then
  export BERTH_BENCH_REAPED=1
  exec tini -s -g -- "$0" "$@"
fi

# Peers come from Debian packages, installed only when benchmarking.
if [ -z "${NO_INSTALL:-}" ]; then
  need=()
  for p in runc crun jq; do command -v "$p" >/dev/null || need+=("$p"); done
  if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >/dev/null || echo "note: could not install ${need[*]}" >&2
  fi
fi
command -v jq >/dev/null || die "needs jq to write config.json"

if [ -z "${SKIP_BUILD:-}" ]; then
  (cd "$repo" && cargo build --release -p berth >&2) || echo "note: berth build failed; benchmarking peers only" >&2
fi
BERTH="$repo/target/release/berth"

work=$(mktemp -d /tmp/berthbench.XXXXXX)
crun_ns=""
cleanup() {
  set +e
  [ -n "${watchdog:-}" ] && kill "$watchdog" 2>/dev/null && wait "$watchdog" 2>/dev/null
  for rt in "${active[@]:-}"; do
    [ -n "$rt" ] || continue
    for id in $(ls "$work/root-$rt" 2>/dev/null); do rt_cmd "$rt" delete --force "$id" >/dev/null 2>&1; done
  done
  if [ -n "$crun_ns" ]; then umount "$crun_ns" 2>/dev/null; umount "$work/ns" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- bundle: busybox rootfs running /bin/true -------------------------------------------------
bundle="$work/bundle"
mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/proc" "$bundle/rootfs/dev" "$bundle/rootfs/sys" "$bundle/rootfs/tmp"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for applet in sh true ls; do ln -s busybox "$bundle/rootfs/bin/$applet"; done
if command -v runc >/dev/null; then (cd "$bundle" && runc spec)
elif [ -x "$BERTH" ]; then (cd "$bundle" && "$BERTH" runtime spec)
else die "no runc and no berth binary to generate config.json"; fi
jq '.process.args = ["/bin/true"] | .process.terminal = false | .root = {"path": "rootfs", "readonly": true}' \
  "$bundle/config.json" > "$bundle/config.json.new" && mv "$bundle/config.json.new" "$bundle/config.json"
if [ "${SECCOMP:-}" = docker ]; then
  # Docker's default profile as berth builds it (for runc's default capabilities), for everyone.
  (cd "$repo" && BERTH_DUMP_DOCKER_PROFILE="$work/profile.json" cargo test -q -p berth-runtime \
    --test seccomp -- --exact docker_profile_round_trips_through_json >/dev/null 2>&1) \
    || die "could not dump Docker's default profile"
  jq --slurpfile p "$work/profile.json" '.linux.seccomp = $p[0]' "$bundle/config.json" \
    > "$bundle/config.json.new" && mv "$bundle/config.json.new" "$bundle/config.json"
fi

# --- crun: a persistent private mount namespace without /sys/fs/cgroup/unified ------------------
# crun 1.8 refuses the hybrid cgroup layout (cgroup v1 controllers plus a cgroup2 mount at
# /sys/fs/cgroup/unified). Each crun call enters a namespace where that mount is gone; the
# `nsenter` exec this costs is measured below and printed, so it can be subtracted.
setup_crun_ns() {
  mkdir -p "$work/ns"
  mount --bind "$work/ns" "$work/ns"
  mount --make-private "$work/ns"
  touch "$work/ns/mnt"
  unshare --mount="$work/ns/mnt" --propagation private sh -c \
    'if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi'
  crun_ns="$work/ns/mnt"
}

rt_cmd() { # rt_cmd RUNTIME ARGS... : run one runtime command with its own --root
  local rt=$1; shift
  case $rt in
    berth) "$BERTH" runtime --root "$work/root-berth" "$@" ;;
    runc) runc --root "$work/root-runc" "$@" ;;
    crun) nsenter --mount="$crun_ns" crun --root "$work/root-crun" "$@" ;;
  esac
}

# Wait until process $1 has exited (gone or zombie), polling /proc with bash builtins only.
wait_exit() {
  local pid=$1 stat start=${EPOCHREALTIME/./}
  while read -r stat < "/proc/$pid/stat" 2>/dev/null; do
    stat=${stat##*) }
    [ "${stat%% *}" = Z ] && return 0
    (( ${EPOCHREALTIME/./} - start > 10000000 )) && { echo "pid $pid still running after 10s" >&2; return 1; }
  done
  return 0
}

# One measured cycle; prints elapsed microseconds.
cycle() {
  local rt=$1 mode=$2 id=$3 t0 t1 pid
  t0=${EPOCHREALTIME/./}
  if [ "$mode" = run ]; then
    rt_cmd "$rt" run --bundle "$bundle" "$id" </dev/null >/dev/null || return 1
  else
    rt_cmd "$rt" create --bundle "$bundle" --pid-file "$work/$id.pid" "$id" </dev/null >/dev/null || return 1
    rt_cmd "$rt" start "$id" || return 1
    read -r pid < "$work/$id.pid"
    wait_exit "$pid" || return 1
    rt_cmd "$rt" delete "$id" || return 1
  fi
  t1=${EPOCHREALTIME/./}
  rm -f "$work/$id.pid"
  echo $(( t1 - t0 ))
}

# Watchdog: a runtime command stuck for more than 30 s is killed (by pid; only processes whose
# command line carries this run's unique work dir), so its runtime is reported as failed.
(
  while sleep 5; do
    for pid in $(pgrep -f -- "--root $work/root-" || true); do
      age=$(ps -o etimes= -p "$pid" 2>/dev/null | tr -d ' ')
      if [ -n "$age" ] && [ "$age" -gt 30 ]; then
        echo "watchdog: killing stuck $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" >&2
        kill -9 "$pid" 2>/dev/null
      fi
    done
  done
) &
watchdog=$!

active=()
for rt in $RUNTIMES; do
  case $rt in
    berth) if [ -x "$BERTH" ]; then active+=(berth); else echo "skip berth: $BERTH not built" >&2; fi ;;
    runc) if command -v runc >/dev/null; then active+=(runc); else echo "skip runc: not installed" >&2; fi ;;
    crun) if command -v crun >/dev/null; then setup_crun_ns; active+=(crun); else echo "skip crun: not installed" >&2; fi ;;
    *) die "unknown runtime $rt" ;;
  esac
done
for rt in "${active[@]}"; do mkdir -p "$work/root-$rt"; done

modes=$MODE; [ "$MODE" = both ] && modes="steps run"

echo "== machine: $(nproc) cpus, kernel $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for rt in "${active[@]}"; do
  case $rt in
    berth) echo "== berth $(git -C "$repo" rev-parse --short HEAD 2>/dev/null) ($("$BERTH" --version 2>/dev/null | head -1))" ;;
    runc) echo "== $(runc --version | head -1)" ;;
    crun) echo "== $(crun --version | head -1) (through nsenter into a mount ns without /sys/fs/cgroup/unified)" ;;
  esac
done
if [ -n "$crun_ns" ]; then
  t0=${EPOCHREALTIME/./}; for _ in 1 2 3 4 5 6 7 8 9 10; do nsenter --mount="$crun_ns" /bin/true; done; t1=${EPOCHREALTIME/./}
  t2=${EPOCHREALTIME/./}; for _ in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done; t3=${EPOCHREALTIME/./}
  awk -v a=$((t1 - t0)) -v b=$((t3 - t2)) 'BEGIN { printf "== nsenter overhead per crun call: %.2f ms (4 calls per steps cycle, 1 per run)\n", (a - b) / 10000 }'
fi
echo "== $RUNS measured rounds after $WARMUP warm-up rounds, interleaved: ${active[*]}; seccomp: ${SECCOMP:-none}"

for mode in $modes; do
  declare -A failed=()
  for rt in "${active[@]}"; do : > "$work/times-$mode-$rt"; done
  for ((i = 0; i < WARMUP + RUNS; i++)); do
    for rt in "${active[@]}"; do
      [ -n "${failed[$rt]:-}" ] && continue
      id="bench-$rt-$mode-$i"
      if us=$(cycle "$rt" "$mode" "$id" 2>"$work/err"); then
        (( i >= WARMUP )) && echo "$us" >> "$work/times-$mode-$rt"
      else
        failed[$rt]=1
        echo "$rt ($mode) failed at round $i: $(head -c 400 "$work/err")" >&2
        rt_cmd "$rt" delete --force "$id" >/dev/null 2>&1 || true
      fi
    done
  done
  echo
  echo "mode $mode: $([ "$mode" = run ] && echo 'run (foreground, deletes on exit)' || echo 'create + start + wait for exit + delete')"
  base=""
  [ -s "$work/times-$mode-berth" ] && base=$(sort -n "$work/times-$mode-berth" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '%-6s %5s %10s %10s %10s %14s\n' runtime n "median ms" "p90 ms" "min ms" "median/berth"
  for rt in "${active[@]}"; do
    f="$work/times-$mode-$rt"
    [ -s "$f" ] || { printf '%-6s %5s %s\n' "$rt" 0 "(no data)"; continue; }
    sort -n "$f" | awk -v rt="$rt" -v base="$base" '
      { a[NR] = $1 }
      END {
        med = a[int((NR + 1) / 2)]; p90 = a[int(NR * 0.9 + 0.999999)]; if (p90 == "") p90 = a[NR]
        ratio = (base == "" ? "-" : sprintf("%.2f", med / base))
        printf "%-6s %5d %10.2f %10.2f %10.2f %14s\n", rt, NR, med / 1000, p90 / 1000, a[1] / 1000, ratio
      }'
  done
  unset failed
done
