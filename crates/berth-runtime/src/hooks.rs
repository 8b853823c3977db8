//! hooks (under construction).
