//! OCI hooks run for real: /bin/busybox sh as the hook program.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_runtime::hooks::{run_hooks, HookError};
use berth_runtime::oci_spec::runtime::Hook;

const BUSYBOX: &str = "/bin/busybox";

fn sh_hook(
    script: &str,
    extra_args: &[&str],
    env: Option<Vec<String>>,
    timeout: Option<i64>,
) -> Hook {
    assert!(
        Path::new(BUSYBOX).exists(),
        "these tests need busybox-static at {BUSYBOX}"
    );
    let mut args = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    args.extend(extra_args.iter().map(|s| s.to_string()));
    let mut h = Hook::default();
    h.set_path(BUSYBOX.into());
    h.set_args(Some(args));
    h.set_env(env);
    h.set_timeout(timeout);
    h
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berthtest")
        .tempdir()
        .unwrap()
}

#[test]
fn hook_gets_state_on_stdin_args_and_env() {
    // Each test runs in its own process (nextest), so this does not leak into other tests.
    std::env::set_var("BERTHTEST_INHERITED", "yes");
    let dir = tmp();
    let out = dir.path().join("out");
    let state = br#"{"ociVersion":"1.2.0","id":"berthtest-hooks","status":"created","pid":42,"bundle":"/b"}"#;
    let hook = sh_hook(
        r#"cat > "$OUT"; printf '%s|%s|%s|%s' "$0" "$1" "$FOO" "${BERTHTEST_INHERITED-unset}" > "$OUT.args""#,
        &["zeroth", "first"],
        Some(vec![
            format!("OUT={}", out.display()),
            "FOO=bar=baz".to_string(),
        ]),
        Some(5),
    );
    run_hooks(&[hook], state, "createRuntime").expect("hook succeeds");
    assert_eq!(std::fs::read(&out).unwrap(), state);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.args")).unwrap(),
        "zeroth|first|bar=baz|unset",
        "args after -c script, env exactly as given (nothing inherited)"
    );
    // Without `env`, the hook inherits the caller's environment (as runc does).
    let inherit = sh_hook(r#"test "$BERTHTEST_INHERITED" = yes"#, &[], None, Some(5));
    run_hooks(&[inherit], state, "createRuntime").expect("inherited env");
}

#[test]
fn hook_that_ignores_a_large_stdin_does_not_hang() {
    let state = vec![b' '; 512 * 1024];
    let hook = sh_hook("exit 0", &[], Some(vec![]), Some(10));
    let t = Instant::now();
    run_hooks(&[hook], &state, "prestart").expect("hook succeeds");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn failing_hook_reports_status_and_stderr() {
    let dir = tmp();
    let second = dir.path().join("second-ran");
    let hooks = [
        sh_hook("echo boom-from-hook >&2; exit 3", &[], Some(vec![]), None),
        sh_hook(
            &format!("touch {}", second.display()),
            &[],
            Some(vec![]),
            None,
        ),
    ];
    let e = run_hooks(&hooks, b"{}", "startContainer").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, HookError::Failed { .. }), "{msg}");
    assert!(
        msg.contains("startContainer hook /bin/busybox failed (exit status 3)"),
        "{msg}"
    );
    assert!(msg.contains("boom-from-hook"), "{msg}");
    assert!(!e.is_warning());
    assert!(!second.exists(), "stops at the first failure");
}

#[test]
fn missing_hook_binary_is_a_spawn_error() {
    let mut h = Hook::default();
    h.set_path("/nonexistent/berthtest-hook".into());
    let e = run_hooks(&[h], b"{}", "createRuntime").unwrap_err();
    assert!(matches!(e, HookError::Spawn { .. }), "{e}");
    assert_eq!(e.kind(), berth_core::ErrorKind::NotFound);
}

#[test]
fn poststart_and_poststop_failures_are_warnings_and_all_hooks_run() {
    for phase in ["poststart", "poststop"] {
        let dir = tmp();
        let marker = dir.path().join("second-ran");
        let hooks = [
            sh_hook("exit 7", &[], Some(vec![]), None),
            sh_hook(
                &format!("echo ok > {}", marker.display()),
                &[],
                Some(vec![]),
                None,
            ),
        ];
        let e = run_hooks(&hooks, b"{}", phase).unwrap_err();
        assert!(e.is_warning(), "{e}");
        assert!(
            e.to_string().starts_with(&format!(
                "{phase} hooks failed: {phase} hook /bin/busybox failed (exit status 7)"
            )),
            "{e}"
        );
        assert!(marker.exists(), "the second {phase} hook still ran");
    }
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{name}: {cmd}"));
            }
        }
    }
    found
}

#[test]
fn timeout_kills_the_hook_and_its_children() {
    // Orphaned grandchildren come back to us to be reaped.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let nonce = format!("{}.{:06}", 40 + std::process::id() % 50, nanos % 1_000_000);
    let script = format!("{BUSYBOX} sleep {nonce} & {BUSYBOX} sleep {nonce}; wait");
    let hook = sh_hook(&script, &[], Some(vec![]), Some(1));
    let t = Instant::now();
    let e = run_hooks(&[hook], b"{}", "createRuntime").unwrap_err();
    let took = t.elapsed();
    assert!(matches!(e, HookError::TimedOut { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "createRuntime hook /bin/busybox timed out after 1s"
    );
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(4),
        "{took:?}"
    );

    // Reap whatever was orphaned, then nothing of the hook may remain.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
            Ok(Some(_)) => continue,
            Err(rustix::io::Errno::CHILD) => break,
            _ if Instant::now() > deadline => break,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let left = processes_with(&format!("sleep {nonce}"));
    assert!(left.is_empty(), "hook processes left behind: {left:?}");
}

#[test]
fn chatty_failing_hook_does_not_block_and_error_is_bounded() {
    // 1 MiB on stderr would fill the pipe and block the hook if nobody read it.
    let hook = sh_hook(
        "i=0; while [ $i -lt 1024 ]; do printf '%1024s' x >&2; i=$((i+1)); done; exit 9",
        &[],
        Some(vec![]),
        Some(20),
    );
    let e = run_hooks(&[hook], b"{}", "createContainer").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("exit status 9"),
        "{}",
        &msg[..msg.len().min(300)]
    );
    assert!(
        msg.len() < 4096,
        "stderr excerpt is bounded: {} bytes",
        msg.len()
    );
}
