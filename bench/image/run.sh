#!/usr/bin/env bash
# Benchmark: load (+ unpack) of a ~200 MB image, berth vs `docker load` (private dockerd) vs
# skopeo + umoci, interleaved, medians and ratios. Not for CI: installs docker.io, skopeo and
# umoci with apt when missing.
#
#   bench/image/run.sh [RUNS] [SIZE_MB]        (default 7 runs, 200 MB)
#   BERTH=/path/to/berth bench/image/run.sh    (default: target/release/berth, built if absent)
set -euo pipefail

RUNS=${1:-7}
SIZE_MB=${2:-200}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BERTH=${BERTH:-$REPO/target/release/berth}
SUFFIX=berthbench$$
WORK=$(mktemp -d /var/tmp/$SUFFIX.XXXX)
DOCKERD_PID=

cleanup() {
    set +e
    if [ -n "$DOCKERD_PID" ]; then
        kill "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
    fi
    grep " $WORK" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need dockerd || ! need skopeo || ! need umoci; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io skopeo umoci >/dev/null || true
fi
if [ ! -x "$BERTH" ]; then
    (cd "$REPO" && cargo build --release -p berth)
fi

echo "== machine: $(nproc) cpus, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== berth: $("$BERTH" --version 2>/dev/null || echo "$BERTH")"
need dockerd && echo "== dockerd: $(dockerd --version)"
need skopeo && echo "== skopeo: $(skopeo --version)"
need umoci && echo "== umoci: $(umoci --version)"

IMG=$WORK/image.tar
python3 "$HERE/gen.py" "$IMG" "$SIZE_MB" >/dev/null
BYTES=$(stat -c %s "$IMG")
echo "== image: $BYTES bytes (two uncompressed layers: random, text), docker save format"

# private dockerd
DOCKER=
if need dockerd && need docker; then
    mkdir -p "$WORK/docker/data" "$WORK/docker/exec"
    dockerd --data-root "$WORK/docker/data" --exec-root "$WORK/docker/exec" \
        -H "unix://$WORK/docker/d.sock" --pidfile "$WORK/docker/d.pid" \
        --bridge none --iptables=false --ip6tables=false >"$WORK/docker/log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do
        docker -H "unix://$WORK/docker/d.sock" version >/dev/null 2>&1 && break
        sleep 0.5
    done
    if docker -H "unix://$WORK/docker/d.sock" version >/dev/null 2>&1; then
        DOCKER="docker -H unix://$WORK/docker/d.sock"
    else
        echo "dockerd did not start; skipping docker"
    fi
fi

now() { date +%s.%N; }
declare -A T
run_berth() {
    local root=$WORK/berth-root
    rm -rf "$root"
    local a b
    a=$(now)
    "$BERTH" image --data-root "$root" load -q -i "$IMG"
    b=$(now)
    T[berth]+="$(echo "$b - $a" | bc) "
    # leave no mounts or state behind
    rm -rf "$root"
}
run_docker() {
    local a b
    a=$(now)
    $DOCKER load -q -i "$IMG" >/dev/null
    b=$(now)
    T[docker]+="$(echo "$b - $a" | bc) "
    $DOCKER rmi -f berthbench/image:latest >/dev/null
}
run_umoci() {
    local d=$WORK/oci a b
    rm -rf "$d" "$WORK/bundle"
    a=$(now)
    skopeo --insecure-policy copy --quiet "docker-archive:$IMG" "oci:$d:img" >/dev/null
    umoci unpack --image "$d:img" "$WORK/bundle" >/dev/null
    b=$(now)
    T[skopeo_umoci]+="$(echo "$b - $a" | bc) "
    rm -rf "$d" "$WORK/bundle"
}

# warm-up (page cache, daemon)
run_berth
[ -n "$DOCKER" ] && run_docker
T=()
for i in $(seq "$RUNS"); do
    run_berth
    [ -n "$DOCKER" ] && run_docker
    need skopeo && need umoci && run_umoci
    sync
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
printf '%-14s %10s %10s %s\n' tool "median s" "MB/s" "runs (s)"
declare -A M
for k in berth docker skopeo_umoci; do
    [ -n "${T[$k]:-}" ] || continue
    M[$k]=$(echo "${T[$k]}" | median)
    printf '%-14s %10.3f %10.1f %s\n' "$k" "${M[$k]}" "$(echo "$BYTES / 1000000 / ${M[$k]}" | bc -l)" "${T[$k]}"
done
for k in docker skopeo_umoci; do
    [ -n "${M[$k]:-}" ] && printf 'berth speedup vs %s: %.2fx\n' "$k" "$(echo "${M[$k]} / ${M[berth]}" | bc -l)"
done
