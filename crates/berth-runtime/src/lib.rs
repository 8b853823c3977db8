//! berth-runtime (under construction).
#![forbid(unsafe_code)]
