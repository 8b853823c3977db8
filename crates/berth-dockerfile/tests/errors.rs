//! Error messages: every one names the line and says what was expected.

use berth_dockerfile::*;

fn err(text: &str) -> ParseError {
    match parse(text) {
        Ok(d) => {
            let shown: String = text.chars().take(200).collect();
            let got: String = format!("{d:?}").chars().take(300).collect();
            panic!("expected an error for {shown:?}, got {got}")
        }
        Err(e) => e,
    }
}

#[test]
fn messages_with_line_numbers() {
    let cases: &[(&str, &str)] = &[
        ("", "Dockerfile:0: file with no instructions"),
        ("# only a comment\n\n", "Dockerfile:2: file with no instructions"),
        ("ARG A\n", "Dockerfile:1: no FROM instruction"),
        ("RUN x\n", "Dockerfile:1: RUN before the first FROM: expected FROM (only ARG may come before it)"),
        ("FROM a\nRUUN x\n", "Dockerfile:2: unknown instruction: RUUN (did you mean RUN?)"),
        ("FROM a\nCOPPY x y\n", "Dockerfile:2: unknown instruction: COPPY (did you mean COPY?)"),
        ("FROM a\nFOOBAR x\n", "Dockerfile:2: unknown instruction: FOOBAR"),
        ("FROM a\n\n\n\n\n\nENV\n", "Dockerfile:7: ENV requires at least one argument"),
        ("FROM a\nLABEL\n", "Dockerfile:2: LABEL requires at least one argument"),
        ("FROM a\nENV onlykey\n", "Dockerfile:2: ENV requires two arguments in the legacy form (key value), or key=value"),
        ("FROM a\nENV a=b c\n", "Dockerfile:2: syntax error - can't find = in \"c\". Must be of the form: name=value"),
        ("FROM a\nENV =b\n", "Dockerfile:2: ENV names can not be blank"),
        ("FROM a\nARG =b\n", "Dockerfile:2: ARG names can not be blank"),
        ("FROM a\nARG\n", "Dockerfile:2: ARG requires at least one argument"),
        ("FROM a\nRUN\n", "Dockerfile:2: RUN requires at least one argument"),
        ("FROM a\nCOPY onlyone\n", "Dockerfile:2: COPY requires at least two arguments (one or more sources, then the destination)"),
        ("FROM a\nADD x\n", "Dockerfile:2: ADD requires at least two arguments (one or more sources, then the destination)"),
        ("FROM a\nUSER\n", "Dockerfile:2: USER requires exactly one argument"),
        ("FROM a\nWORKDIR\n", "Dockerfile:2: WORKDIR requires exactly one argument"),
        ("FROM a\nSTOPSIGNAL\n", "Dockerfile:2: STOPSIGNAL requires exactly one argument"),
        ("FROM a\nEXPOSE\n", "Dockerfile:2: EXPOSE requires at least one argument"),
        ("FROM a\nEXPOSE 80/icmp\n", "Dockerfile:2: invalid port \"80/icmp\": expected the protocol tcp, udp or sctp"),
        ("FROM a\nEXPOSE 70000\n", "Dockerfile:2: invalid port \"70000\": expected a port number from 1 to 65535"),
        ("FROM a\nVOLUME\n", "Dockerfile:2: VOLUME requires at least one argument"),
        ("FROM a\nVOLUME [\"\"]\n", "Dockerfile:2: VOLUME specified can not be an empty string"),
        ("FROM a\nSHELL /bin/sh -c\n", "Dockerfile:2: SHELL requires the arguments to be in JSON form, like [\"/bin/sh\", \"-c\"]"),
        ("FROM a\nSHELL []\n", "Dockerfile:2: SHELL requires at least one argument"),
        ("FROM a\nCMD [1, 2]\n", "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only"),
        ("FROM a\nCOPY --form=x a b\n", "Dockerfile:2: unknown flag: --form for COPY (did you mean --from?)"),
        ("FROM a\nRUN --mount=type=cache,target=/x --netwrk=none x\n", "Dockerfile:2: unknown flag: --netwrk for RUN (did you mean --network?)"),
        ("FROM a\nCMD --foo x\n", "Dockerfile:2: unknown flag: --foo for CMD"),
        ("FROM a\nCOPY --from a b\n", "Dockerfile:2: missing a value on flag: --from"),
        ("FROM a\nCOPY --link=maybe a b\n", "Dockerfile:2: expecting boolean value for flag --link, not: maybe"),
        ("FROM a\nCOPY --from=x --from=y a b\n", "Dockerfile:2: duplicate flag specified: --from"),
        ("FROM a\nRUN --network=bridge x\n", "Dockerfile:2: unsupported network mode \"bridge\": expected default, none or host"),
        ("FROM a\nRUN --security=weird x\n", "Dockerfile:2: unsupported security mode \"weird\": expected sandbox or insecure"),
        ("FROM a\nRUN --mount=type=cache x\n", "Dockerfile:2: cache mount requires a target"),
        ("FROM a\nADD --checksum=sha256:x a b c\n", "Dockerfile:2: checksum can't be specified for multiple sources"),
        ("FROM\n", "Dockerfile:1: FROM requires either one or three arguments (image [AS name])"),
        ("FROM a b\n", "Dockerfile:1: FROM requires either one or three arguments (image [AS name])"),
        ("FROM a AS 1st\n", "Dockerfile:1: invalid name for build stage: \"1st\", name can't start with a number or contain symbols"),
        ("FROM a AS x\nFROM b AS X\n", "Dockerfile:2: duplicate stage name \"x\""),
        ("FROM --plat=x a\n", "Dockerfile:1: unknown flag: --plat for FROM (did you mean --platform?)"),
        ("FROM a\nONBUILD ONBUILD RUN x\n", "Dockerfile:2: chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("FROM a\nONBUILD FROM b\n", "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"),
        ("FROM a\nONBUILD MAINTAINER me\n", "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("FROM a\nONBUILD\n", "Dockerfile:2: ONBUILD requires at least one argument"),
        ("FROM a\nONBUILD RUUN x\n", "Dockerfile:2: unknown instruction: RUUN (did you mean RUN?)"),
        ("FROM a\nHEALTHCHECK\n", "Dockerfile:2: HEALTHCHECK requires at least one argument (NONE or CMD ...)"),
        ("FROM a\nHEALTHCHECK NONE x\n", "Dockerfile:2: HEALTHCHECK NONE takes no arguments"),
        ("FROM a\nHEALTHCHECK RUN x\n", "Dockerfile:2: unknown type \"RUN\" in HEALTHCHECK: expected CMD or NONE"),
        ("FROM a\nHEALTHCHECK CMD\n", "Dockerfile:2: missing command after HEALTHCHECK CMD"),
        ("FROM a\nHEALTHCHECK --retries=-1 CMD x\n", "Dockerfile:2: HEALTHCHECK --retries cannot be negative (-1)"),
        ("FROM a\nHEALTHCHECK --interval=10us CMD x\n", "Dockerfile:2: HEALTHCHECK --interval \"10us\" cannot be less than 1ms"),
        ("FROM a\nHEALTHCHECK --timeout=soon CMD x\n", "Dockerfile:2: HEALTHCHECK --timeout: invalid duration \"soon\": expected a number with a unit, like 30s or 1m30s"),
        ("FROM a\nHEALTHCHECK --color=red CMD x\n", "Dockerfile:2: unknown flag: --color for HEALTHCHECK"),
        ("FROM a\nRUN <<EOF\nline\n", "Dockerfile:2: unterminated heredoc: expected a line with EOF"),
        ("FROM a\nCOPY <<EOF /x\nbody\nEOF2\n", "Dockerfile:2: unterminated heredoc: expected a line with EOF"),
        ("# escape=x\nFROM a\n", "Dockerfile:1: invalid escape token 'x': expected ` or \\"),
        ("# escape=`\n# escape=\\\nFROM a\n", "Dockerfile:2: only one escape parser directive can be used"),
        ("FROM a\nMAINTAINER\n", "Dockerfile:2: MAINTAINER requires exactly one argument"),
    ];
    for (text, want) in cases {
        assert_eq!(err(text).to_string(), *want, "for {text:?}");
    }
}

#[test]
fn multi_line_instruction_errors_span_their_lines() {
    let e = err("FROM a\nRUN --mount=type=tmpfs \\\n  --bogus \\\n  true\n");
    assert_eq!((e.line, e.end_line), (2, 4));
    assert!(matches!(e.detail, Detail::UnknownFlag { .. }));
    assert_eq!(e.kind(), berth_core::ErrorKind::InvalidInput);
}

#[test]
fn size_limits() {
    let long = format!("FROM a\nRUN {}\n", "x".repeat(MAX_LINE + 1));
    assert!(matches!(err(&long).detail, Detail::TooLarge("line", _)));
    let cont = format!("FROM a\nRUN {}", "yy \\\n".repeat(MAX_LINE / 2));
    assert!(matches!(err(&cont).detail, Detail::TooLarge("line", _)));
    let doc = format!(
        "FROM a\nRUN <<E\n{}E\n",
        "z".repeat(1024).repeat(MAX_HEREDOC / 1024 + 1)
    );
    assert!(matches!(err(&doc).detail, Detail::TooLarge("heredoc", _)));
}

#[test]
fn expansion_errors_carry_the_line() {
    let d = parse("FROM a\nWORKDIR ${DIR:?set DIR}\n").unwrap();
    let none: Vec<(String, String)> = vec![];
    let e = d.stages[0].instructions[0]
        .expand(&none, d.escape)
        .unwrap_err();
    assert_eq!(e.to_string(), "Dockerfile:2: DIR: set DIR");
    let d = parse("FROM busybox:${TAG\n").unwrap();
    assert_eq!(
        d.stages[0]
            .expand_base(&none, '\\')
            .unwrap_err()
            .to_string(),
        "Dockerfile:1: syntax error: missing '}'"
    );
}
