//! `cargo test -p berth-build --release --test bench -- --ignored --nocapture`: the issue's
//! build benchmark (FROM busybox + ENV + WORKDIR + five RUN + COPY of a 51 MB folder + CMD),
//! cold and fully cached, berth only (compare with docker's legacy builder by hand).

use std::time::Instant;

use berth_build::{BuildOptions, Builder, OciRunner};
use berth_image::{ImageService, ImportOptions};

mod common;

#[test]
#[ignore]
fn bench_cold_and_cached() {
    let dir = tempfile::Builder::new()
        .prefix("berthtestbench")
        .tempdir()
        .unwrap();
    let images = ImageService::open(dir.path().join("data")).unwrap();
    images
        .import(
            std::io::Cursor::new(common::busybox_tar()),
            Some("busybox:latest"),
            &ImportOptions::default(),
        )
        .unwrap();
    let runner = OciRunner::new(
        env!("CARGO_BIN_EXE_berth-build-step"),
        &dir.path().join("runtime"),
        &dir.path().join("bundles"),
    );
    let ctx = dir.path().join("ctx");
    let data = ctx.join("data");
    std::fs::create_dir_all(&data).unwrap();
    // 51 MB: 51 files of 1 MB with distinct contents
    for i in 0..51u32 {
        let chunk: Vec<u8> = (0..1 << 20)
            .map(|j: u32| (j.wrapping_mul(31).wrapping_add(i)) as u8)
            .collect();
        std::fs::write(data.join(format!("f{i}")), chunk).unwrap();
    }
    let df = "FROM busybox\nENV A=1\nWORKDIR /app\nRUN echo 1 > /r1\nRUN echo 2 > /r2\nRUN echo 3 > /r3\nRUN echo 4 > /r4\nRUN echo 5 > /r5\nCOPY data /app/data\nCMD [\"sh\"]\n";
    let mut cold = Vec::new();
    let mut cached = Vec::new();
    for round in 0..5 {
        let opts = BuildOptions {
            context: ctx.clone(),
            dockerfile: Some(df.into()),
            no_cache: true,
            ..Default::default()
        };
        let b = Builder::new(&images, &runner).unwrap();
        let t = Instant::now();
        b.build(&opts, &|_| {}).unwrap();
        cold.push(t.elapsed().as_secs_f64());
        let opts = BuildOptions {
            no_cache: false,
            ..opts
        };
        let t = Instant::now();
        let r = b.build(&opts, &|_| {}).unwrap();
        cached.push(t.elapsed().as_secs_f64());
        assert_eq!(r.executed, 0, "round {round}");
    }
    cold.sort_by(f64::total_cmp);
    cached.sort_by(f64::total_cmp);
    println!(
        "nproc={} cold median {:.3}s (min {:.3}) cached median {:.3}s (min {:.3})",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cold[2],
        cold[0],
        cached[2],
        cached[0]
    );
}
