#!/usr/bin/env bash
# Fails if the test suite left anything behind: tests name everything they create with "berthtest".
set -uo pipefail
leaks=0
if grep -q berthtest /proc/self/mountinfo; then
  echo "leak: mounts"; grep berthtest /proc/self/mountinfo | head; leaks=1
fi
found=$(find /sys/fs/cgroup -maxdepth 4 -type d -name '*berthtest*' 2>/dev/null | head)
if [ -n "$found" ]; then echo "leak: cgroups"; echo "$found"; leaks=1; fi
procs=$(ps -eo pid,args | grep -v -e grep -e leakcheck | grep berthtest | head)
if [ -n "$procs" ]; then echo "leak: processes"; echo "$procs"; leaks=1; fi
links=$(ip -o link 2>/dev/null | grep -i berthtest | head)
if [ -n "$links" ]; then echo "leak: network devices"; echo "$links"; leaks=1; fi
if ip netns list 2>/dev/null | grep -q berthtest; then echo "leak: netns"; leaks=1; fi
tmp=$(find /tmp -maxdepth 1 -name '*berthtest*' 2>/dev/null | head)
if [ -n "$tmp" ]; then echo "leak: temp files"; echo "$tmp"; leaks=1; fi
[ "$leaks" = 0 ] && echo "leak check: clean"
exit "$leaks"
