#!/bin/bash
# create + start + wait + delete of /bin/true (one `run` each): berth vs runc vs crun, interleaved,
# medians and ratios. Not a test. Usage: runtime.sh [N] [path/to/berth]
# crun 1.8 refuses the hybrid cgroup layout, so the whole loop runs in a private mount namespace
# with /sys/fs/cgroup/unified unmounted (all three then use the v1 controllers).
set -eu
N=${1:-30}
BERTH=${2:-$(dirname "$0")/../../../target/release/berth}
BERTH=$(realpath "$BERTH")
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "needs /bin/busybox (busybox-static)" >&2; exit 1; }
W=$(mktemp -d /tmp/berthbench.XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/b/rootfs/bin" "$W/b/rootfs"/{proc,sys,dev,tmp,etc}
cp /bin/busybox "$W/b/rootfs/bin/"
for a in $(/bin/busybox --list); do [ -e "$W/b/rootfs/bin/$a" ] || ln -s busybox "$W/b/rootfs/bin/$a"; done
(cd "$W/b" && "$BERTH" runtime spec)
sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"\/bin\/true"/' "$W/b/config.json"
# crun 1.8 refuses ociVersion 1.2.0 ("unknown version specified")
sed -i 's/"ociVersion": "1.2.0"/"ociVersion": "1.0.2-dev"/' "$W/b/config.json"
sed -i "s#\"path\": \"rootfs\"#\"path\": \"$W/b/rootfs\"#" "$W/b/config.json"
PEERS="berth"
command -v runc >/dev/null && PEERS="$PEERS runc"
command -v crun >/dev/null && PEERS="$PEERS crun"
echo "machine: $(nproc) cpus, kernel $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
command -v runc >/dev/null && runc --version | head -1
command -v crun >/dev/null && crun --version | head -1
export W N BERTH PEERS
unshare -m bash -c '
umount /sys/fs/cgroup/unified 2>/dev/null || true
one() { # name cmd...
  local s=$(date +%s%N); "${@:2}" >/dev/null 2>&1 || echo "$1 failed" >&2; local e=$(date +%s%N)
  echo "$1 $(( (e-s)/1000 ))" >> "$W/times"
}
for p in $PEERS; do # warm-up
  case $p in berth) "$BERTH" runtime --root "$W/r-berth" run -b "$W/b" warm >/dev/null 2>&1 || true;;
             *) $p --root "$W/r-$p" run -b "$W/b" warm >/dev/null 2>&1 || true;; esac
done
for i in $(seq 1 "$N"); do
  for p in $PEERS; do
    case $p in berth) one berth "$BERTH" runtime --root "$W/r-berth" run -b "$W/b" c$i;;
               *) one $p $p --root "$W/r-$p" run -b "$W/b" c$i;; esac
  done
done'
med() { grep "^$1 " "$W/times" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
B=$(med berth)
for p in $PEERS; do
  M=$(med "$p")
  printf "%-6s median %6.1f ms  (berth/%s = %.2f)\n" "$p" "$(echo "$M/1000" | bc -l)" "$p" "$(echo "$B/$M" | bc -l)"
done
