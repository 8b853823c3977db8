//! Fuzz the Dockerfile parser and everything the builder does with its result: expansion of
//! every step, RUN mount specs, ARG resolution. Nothing may panic, whatever the input.
#![no_main]

use berth_dockerfile::{expand, expand_words, parse, resolve_arg, Instruction};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = vec![
        ("A".to_string(), "a b".to_string()),
        ("EMPTY".to_string(), String::new()),
        ("P".to_string(), "/x/y.z".to_string()),
    ];
    let _ = expand(text, &env, '\\');
    let _ = expand_words(text, &env, '`');
    let Ok(df) = parse(text) else { return };
    let globals = df.global_args(&env).unwrap_or_default();
    for stage in &df.stages {
        let _ = stage.expand_base(&globals, df.escape);
        let _ = stage.expand_platform(&globals, df.escape);
        for step in &stage.instructions {
            let _ = step.expand(&env, df.escape);
            match &step.instruction {
                Instruction::Run(run) => {
                    let _ = run.mount_specs(&env, df.escape);
                }
                Instruction::Arg(args) => {
                    for arg in args {
                        let _ = resolve_arg(arg, &env, &globals, &env, df.escape);
                    }
                }
                _ => {}
            }
        }
    }
});
