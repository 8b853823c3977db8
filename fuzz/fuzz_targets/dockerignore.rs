//! Fuzz `.dockerignore` parsing and matching: the first line of the input is the path to
//! match, the rest the patterns. Nothing may panic, and matching must stay fast.
#![no_main]

use berth_dockerfile::DockerIgnore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, patterns) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(di) = DockerIgnore::parse(patterns) {
        let _ = di.is_excluded(path);
        for prefix in path.split('/') {
            let _ = di.is_excluded(prefix);
        }
    }
});
