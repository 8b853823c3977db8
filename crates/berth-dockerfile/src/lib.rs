//! berth-dockerfile (under construction).
#![forbid(unsafe_code)]
