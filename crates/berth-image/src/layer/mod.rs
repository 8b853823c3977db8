//! Layer application and diff (under construction).
