//! rootfs (under construction).
