//! Device access rules: v1 devices.allow/deny lines and the v2 BPF program.
