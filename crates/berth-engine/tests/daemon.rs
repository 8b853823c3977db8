//! Daemon process duties: orphan reaping as a child subreaper without stealing the exit
//! status of children someone waits for.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::TestDaemon;

fn zombie_children() -> Vec<i32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(s) = std::fs::read_to_string(t.path().join("children")) else {
            continue;
        };
        for pid in s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            if let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                if st
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                {
                    out.push(pid);
                }
            }
        }
    }
    out
}

#[test]
fn orphans_are_reaped_waited_children_are_not() {
    let d = TestDaemon::start();
    // a child we wait for ourselves, exempted, exiting with 7
    let mut mine = Command::new("/bin/busybox")
        .args(["sh", "-c", "exit 7"])
        .spawn()
        .expect("spawn busybox (install busybox-static)");
    d.engine().reaper.exempt(mine.id() as i32);
    // an orphan: sh exits at once, its background sleep is re-parented to us
    let st = Command::new("/bin/busybox")
        .args(["sh", "-c", "/bin/busybox sleep 0.3 & echo $!"])
        .output()
        .unwrap();
    let orphan: i32 = String::from_utf8_lossy(&st.stdout).trim().parse().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let ppid = std::fs::read_to_string(format!("/proc/{orphan}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().nth(1).unwrap().to_string())
        });
    assert_eq!(
        ppid.as_deref(),
        Some(std::process::id().to_string().as_str()),
        "adopted by the subreaper"
    );
    let t = Instant::now();
    loop {
        let gone = !std::path::Path::new(&format!("/proc/{orphan}")).exists();
        if gone {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "orphan {orphan} not reaped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("orphan reaped after {:?}", t.elapsed());
    // our exempted child is still ours to wait for
    let status = mine.wait().expect("wait for our own child");
    assert_eq!(status.code(), Some(7));
    d.engine().reaper.release(mine.id() as i32);
    assert!(zombie_children().is_empty(), "{:?}", zombie_children());
}
