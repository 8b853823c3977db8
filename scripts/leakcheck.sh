#!/usr/bin/env bash
# Leak check for the test suite: everything a test creates carries "berthtest" in its name, and
# nothing of that kind may remain after the run (mounts, cgroups, processes, network devices,
# network namespaces, nftables tables, temp dirs).
#   leakcheck.sh snapshot FILE   record what exists before the run (left by something else)
#   leakcheck.sh check [FILE]    fail if anything beyond FILE's baseline remains
set -uo pipefail
list() {
  grep berthtest /proc/self/mountinfo | awk '{print "mount " $5}'
  find /sys/fs/cgroup -maxdepth 5 -type d -name '*berthtest*' 2>/dev/null | sed 's/^/cgroup /'
  ps -eo pid=,args= | grep berthtest | grep -v -e grep -e leakcheck | sed 's/^ */process /'
  ip -o link 2>/dev/null | grep -i berthtest | awk -F': ' '{print "link " $2}'
  ip netns list 2>/dev/null | grep berthtest | awk '{print "netns " $1}'
  nft list tables 2>/dev/null | grep berthtest | sed 's/^/nft /'
  find /tmp -maxdepth 1 -name '*berthtest*' 2>/dev/null | sed 's/^/tmp /'
}
case "${1:-check}" in
  snapshot) list | sort > "$2" ;;
  check)
    base=${2:-/dev/null}
    # processes are matched by command line only (their pids differ run to run)
    new=$(comm -13 <(sed 's/^process [0-9]* /process /' "$base" | sort -u) \
                   <(list | sed 's/^process [0-9]* /process /' | sort -u))
    if [ -n "$new" ]; then
      echo "leak check: the test run left these behind:"
      echo "$new" | head -40
      exit 1
    fi
    echo "leak check: clean"
    ;;
  *) echo "usage: leakcheck.sh snapshot FILE | check [FILE]"; exit 2 ;;
esac
