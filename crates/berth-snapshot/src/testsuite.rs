//! The conformance suite every [`Snapshotter`](crate::Snapshotter) implementation must pass.
