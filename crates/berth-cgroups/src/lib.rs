//! berth-cgroups (under construction).
#![forbid(unsafe_code)]
