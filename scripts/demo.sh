#!/usr/bin/env bash
# berth's main job on a fresh Debian 12 machine (root): build berth, make a busybox root
# filesystem bundle, and run a container from it with `berth runtime` (runc's command line).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ci-deps.sh
cargo build --release --quiet -p berth
BERTH=$PWD/target/release/berth

work=$(mktemp -d /tmp/berth-demo.XXXXXX)
root=$work/state
cleanup() { "$BERTH" runtime --root "$root" delete --force demo >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

# 1. A bundle: a busybox root filesystem plus runc's default config.json.
mkdir -p "$work/bundle/rootfs"/{bin,proc,sys,dev,tmp,etc}
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do ln -sf busybox "$work/bundle/rootfs/bin/$applet"; done
echo "root:x:0:0:root:/root:/bin/sh" > "$work/bundle/rootfs/etc/passwd"
(cd "$work/bundle" && "$BERTH" runtime spec)
# Run a non-interactive command instead of the default `sh` with a terminal.
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["sh", "-c", "echo hello from $(hostname) as uid $(id -u), pid $$; uname -s"]
json.dump(spec, open(path, "w"), indent=2)
PY

# 2. Run it in the foreground: output goes to our stdout, the exit code is the container's.
rc=0
"$BERTH" runtime --root "$root" run --bundle "$work/bundle" demo || rc=$?
echo "container exited with $rc"
exit "$rc"
