#!/usr/bin/env bash
# berth's main job on a fresh Debian 12 machine (root):
#   1. build berth;
#   2. the runtime floor: make a busybox root-filesystem bundle and run it with `berth runtime`
#      (runc's command line);
#   3. the engine: start `berth daemon` on private roots, import a busybox image, and run
#      containers from it with the `berth` client (Docker's syntax; the docker CLI works too:
#      DOCKER_HOST=unix://$work/berth.sock docker run --rm busybox echo hi).
# Everything lives in a temp dir that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ci-deps.sh
cargo build --release --quiet -p berth
BERTH=$PWD/target/release/berth

work=$(mktemp -d /tmp/berth-demo.XXXXXX)
sock=$work/berth.sock
cleanup() {
  "$BERTH" runtime --root "$work/runtime" delete --force demo >/dev/null 2>&1 || true
  if [ -S "$sock" ]; then "$BERTH" -H "unix://$sock" rm -f web >/dev/null 2>&1 || true; fi
  [ -f "$work/daemon.pid" ] && kill "$(cat "$work/daemon.pid")" 2>/dev/null && sleep 1
  pkill -f "berth shim.*$work" 2>/dev/null || true
  grep -o "$work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A busybox root filesystem.
rootfs=$work/bundle/rootfs
mkdir -p "$rootfs"/{bin,proc,sys,dev,tmp,etc,root}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" > "$rootfs/etc/passwd"
echo "root:x:0:" > "$rootfs/etc/group"

echo "== 1. berth runtime: a bundle run with runc's command line"
(cd "$work/bundle" && "$BERTH" runtime spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["sh", "-c", "echo hello from $(hostname) as uid $(id -u), pid $$"]
json.dump(spec, open(path, "w"), indent=2)
PY
"$BERTH" runtime --root "$work/runtime" run --bundle "$work/bundle" demo

echo "== 2. berth daemon + client: image -> container -> output"
"$BERTH" daemon --data-root "$work/data" --exec-root "$work/exec" -H "unix://$sock" \
  --pidfile "$work/daemon.pid" >"$work/daemon.log" 2>&1 &
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
b() { "$BERTH" -H "unix://$sock" "$@"; }
b version
tar -C "$rootfs" -cf "$work/busybox.tar" .
b import "$work/busybox.tar" busybox:latest
b images
b run --rm busybox echo "hello from a berth container"
b run -d --name web busybox sh -c 'echo serving; sleep 60' >/dev/null
b ps
b exec web sh -c 'echo exec in $(hostname)'
b logs web
b rm -f web
echo "demo: done"
