//! fd-relative filesystem helpers.
