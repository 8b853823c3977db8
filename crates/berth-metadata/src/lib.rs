//! berth-metadata (under construction).
#![forbid(unsafe_code)]
