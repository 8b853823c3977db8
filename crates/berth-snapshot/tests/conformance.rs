//! The conformance suite against both snapshotters.

use std::path::Path;

use berth_snapshot::{testsuite, NativeSnapshotter, OverlaySnapshotter, Snapshotter};

fn overlay(root: &Path) -> Box<dyn Snapshotter> {
    Box::new(OverlaySnapshotter::open(root).unwrap())
}

fn native(root: &Path) -> Box<dyn Snapshotter> {
    Box::new(NativeSnapshotter::open(root).unwrap())
}

macro_rules! suite {
    ($($case:ident),*) => {
        mod overlay_suite {
            $( #[test] fn $case() { berth_snapshot::testsuite::$case(super::overlay) } )*
        }
        mod native_suite {
            $( #[test] fn $case() { berth_snapshot::testsuite::$case(super::native) } )*
        }
    };
}

suite!(
    lifecycle,
    errors,
    usage,
    persistence,
    layers_and_whiteouts,
    concurrent_commits
);

#[test]
fn open_detects_overlay() {
    let root = testsuite::temp_root();
    let s = berth_snapshot::open(root.path()).unwrap();
    // This kernel and filesystem support overlay; CI's Debian 12 does too.
    assert_eq!(s.name(), "overlay");
    assert!(berth_snapshot::overlay_supported(root.path()));
    // The probe left nothing behind.
    let names: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("metadata.db"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}
