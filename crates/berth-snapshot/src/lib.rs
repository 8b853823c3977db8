//! berth-snapshot (under construction).
#![forbid(unsafe_code)]
