//! berth-sys: the only crate of berth allowed to use `unsafe`.
//!
//! Every `unsafe` block carries a `// SAFETY:` comment (enforced by
//! `clippy::undocumented_unsafe_blocks`). Each module wraps one family of syscalls behind a
//! safe API that returns `std::io::Result`.

pub mod mount;

pub mod seccomp;

pub mod bpf;
pub mod fd;
pub mod ns;
pub mod process;
