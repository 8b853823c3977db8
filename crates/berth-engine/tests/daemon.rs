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

/// Stopping lets a request in flight finish, ends event streams, and refuses new connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drains_requests_in_flight() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;

    let mut d = TestDaemon::start();
    let c = d.client();
    let saved = {
        d.import_busybox("berthtest/drain:1");
        let s = c.get("/images/get?names=berthtest%2Fdrain%3A1").await;
        assert_eq!(s.status, 200);
        c.req("DELETE", "/images/berthtest/drain:1", Bytes::new())
            .await;
        s.body
    };
    // an open events stream
    let ev_stream = tokio::net::UnixStream::connect(&d.sock).await.unwrap();
    let (mut etx, econn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(ev_stream))
            .await
            .unwrap();
    tokio::spawn(econn);
    let ev = etx
        .send_request(
            hyper::Request::builder()
                .uri("/events")
                .header("Host", "x")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    // a load whose body arrives slowly
    let (btx, brx) =
        tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(4);
    let body = StreamBody::new(futures_util::stream::unfold(brx, |mut rx| async move {
        rx.recv().await.map(|f| (f, rx))
    }));
    let stream = tokio::net::UnixStream::connect(&d.sock).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let load = tokio::spawn(
        tx.send_request(
            hyper::Request::builder()
                .method("POST")
                .uri("/images/load")
                .header("Host", "x")
                .body(body)
                .unwrap(),
        ),
    );
    let half = saved.len() / 2;
    btx.send(Ok(Frame::data(saved.slice(..half))))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // stop while the upload is half done
    let daemon = d.daemon.take().unwrap();
    let stopper = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        daemon.stop().unwrap();
        t.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!d.sock.exists(), "no new connections once stopping");
    btx.send(Ok(Frame::data(saved.slice(half..))))
        .await
        .unwrap();
    drop(btx);
    let resp = load.await.unwrap().expect("load answered");
    assert_eq!(resp.status(), 200);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&text).contains("Loaded image: berthtest/drain:1"),
        "{text:?}"
    );
    let ev_body = tokio::time::timeout(Duration::from_secs(3), ev.into_body().collect())
        .await
        .expect("events stream ends at stop");
    assert!(ev_body.is_ok());
    let took = stopper.await.unwrap();
    assert!(took < Duration::from_secs(5), "drained in {took:?}");
    eprintln!("stop with a load in flight took {took:?}");
}
