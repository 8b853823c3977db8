//! berth-registry (under construction).
#![forbid(unsafe_code)]
