#![forbid(unsafe_code)]
//! berth-distribution
