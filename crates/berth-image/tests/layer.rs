//! Layer applier integration tests.
