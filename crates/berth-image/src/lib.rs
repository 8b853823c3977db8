//! berth-image (under construction).
#![forbid(unsafe_code)]
