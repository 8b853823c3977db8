//! berth-content (under construction).
#![forbid(unsafe_code)]
