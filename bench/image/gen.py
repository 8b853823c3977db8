#!/usr/bin/env python3
"""Generate a ~SIZE_MB docker-archive (docker save format, manifest.json + OCI blobs) with two
uncompressed layers: one of random bytes, one of text files. Usage: gen.py OUT.tar [SIZE_MB]"""
import hashlib, io, json, os, random, sys, tarfile, time

out = sys.argv[1]
size_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 200
half = size_mb * (1 << 20) // 2
rng = random.Random(42)

def layer_tar(path, files):
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as t:
        dirs = set()
        for name, data in files:
            d = os.path.dirname(name)
            if d and d not in dirs:
                dirs.add(d)
                ti = tarfile.TarInfo(d); ti.type = tarfile.DIRTYPE; ti.mode = 0o755; ti.mtime = 1700000000
                t.addfile(ti)
            ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = 0o644; ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))

def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()

tmp = out + ".d"
os.makedirs(tmp, exist_ok=True)
# layer 1: random bytes in 8 MiB files
rand_files = []
left = half
i = 0
while left > 0:
    n = min(8 << 20, left)
    rand_files.append((f"data/random/{i:03d}.bin", os.urandom(n)))
    left -= n; i += 1
layer_tar(tmp + "/l1.tar", rand_files)
del rand_files
# layer 2: text files of ~64 KiB (words), like source trees
words = [("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))) for _ in range(5000)]
chunk = (" ".join(rng.choice(words) for _ in range(200000)) + "\n").encode()
text_files = []
left = half
i = 0
while left > 0:
    n = min(64 << 10, left)
    off = (i * 7919) % (len(chunk) - n)
    text_files.append((f"usr/share/text/{i // 100:03d}/{i:05d}.txt", chunk[off:off + n]))
    left -= n; i += 1
layer_tar(tmp + "/l2.tar", text_files)
diffs = [sha(tmp + "/l1.tar"), sha(tmp + "/l2.tar")]
cfg = json.dumps({
    "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
    "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d for d in diffs]},
    "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "ADD random"},
                {"created": "2024-01-01T00:00:00Z", "created_by": "ADD text"}],
}).encode()
cfg_hex = hashlib.sha256(cfg).hexdigest()
manifest = json.dumps([{"Config": f"blobs/sha256/{cfg_hex}", "RepoTags": ["berthbench/image:latest"],
                        "Layers": [f"blobs/sha256/{d}" for d in diffs]}]).encode()
with tarfile.open(out, "w") as t:
    for d, p in zip(diffs, ["l1.tar", "l2.tar"]):
        t.add(tmp + "/" + p, arcname=f"blobs/sha256/{d}")
    for name, data in [(f"blobs/sha256/{cfg_hex}", cfg), ("manifest.json", manifest)]:
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = 0o644
        t.addfile(ti, io.BytesIO(data))
for p in ["l1.tar", "l2.tar"]:
    os.unlink(tmp + "/" + p)
os.rmdir(tmp)
print(f"{out}: {os.path.getsize(out)} bytes, {len(text_files)} text files")
