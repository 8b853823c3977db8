//! htpasswd basic auth and the bearer-token flow (challenge -> /token -> scoped access).

mod common;

use base64::Engine as _;
use berth_core::Digest;
use common::*;

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn htpasswd(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("htpasswd");
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
    std::fs::write(&p, format!("alice:{hash}\n")).expect("write htpasswd");
    p
}

#[tokio::test]
async fn htpasswd_basic_auth() {
    let tmp = tempfile::Builder::new()
        .prefix("berthtest-auth-")
        .tempdir()
        .expect("tmp");
    let hp = htpasswd(tmp.path());
    let reg = start_with(|c| c.htpasswd = Some(hp)).await;
    let a = reg.addr;
    let r = get(a, "/v2/").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "UNAUTHORIZED");
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Basic realm=\"berth-registry\"")
    );
    assert_eq!(
        r.header("docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    let bad = basic("alice", "wrong");
    let r = send(a, "GET", "/v2/", &[("authorization", &bad)], Vec::new()).await;
    assert_eq!(r.status, 401);
    let good = basic("alice", "s3cret");
    let r = send(a, "GET", "/v2/", &[("authorization", &good)], Vec::new()).await;
    assert_eq!(r.status, 200);
    let data = b"authed blob".to_vec();
    let d = Digest::sha256_of(&data);
    let path = format!("/v2/private/blobs/uploads/?digest={d}");
    assert_eq!(send(a, "POST", &path, &[], data.clone()).await.status, 401);
    assert_eq!(
        send(a, "POST", &path, &[("authorization", &good)], data.clone())
            .await
            .status,
        201
    );
    let r = send(
        a,
        "GET",
        &format!("/v2/private/blobs/{d}"),
        &[("authorization", &good)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.body, data);
    assert_eq!(get(a, &format!("/v2/private/blobs/{d}")).await.status, 401);
}

#[tokio::test]
async fn anonymous_pull_allows_only_reads() {
    let tmp = tempfile::Builder::new()
        .prefix("berthtest-auth-")
        .tempdir()
        .expect("tmp");
    let hp = htpasswd(tmp.path());
    let reg = start_with(|c| {
        c.htpasswd = Some(hp);
        c.anonymous_pull = true;
    })
    .await;
    let a = reg.addr;
    let good = basic("alice", "s3cret");
    let data = b"public".to_vec();
    let d = Digest::sha256_of(&data);
    let r = send(
        a,
        "POST",
        &format!("/v2/pub/blobs/uploads/?digest={d}"),
        &[("authorization", &good)],
        data.clone(),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(get(a, &format!("/v2/pub/blobs/{d}")).await.body, data);
    assert_eq!(get(a, "/v2/").await.status, 200);
    assert_eq!(get(a, "/v2/_catalog").await.status, 401);
    assert_eq!(
        send(a, "POST", "/v2/pub/blobs/uploads/", &[], Vec::new())
            .await
            .status,
        401
    );
    assert_eq!(
        send(a, "DELETE", &format!("/v2/pub/blobs/{d}"), &[], Vec::new())
            .await
            .status,
        401
    );
}

fn parse_challenge(h: &str) -> std::collections::HashMap<String, String> {
    let rest = h.strip_prefix("Bearer ").expect("bearer challenge");
    let mut m = std::collections::HashMap::new();
    for part in rest.split("\",") {
        let (k, v) = part.split_once('=').expect("k=v");
        m.insert(k.trim().to_string(), v.trim_matches('"').to_string());
    }
    m
}

#[tokio::test]
async fn token_flow_with_scopes() {
    let tmp = tempfile::Builder::new()
        .prefix("berthtest-auth-")
        .tempdir()
        .expect("tmp");
    let hp = htpasswd(tmp.path());
    let reg = start_with(|c| {
        c.htpasswd = Some(hp);
        c.token = Some(berth_registry::TokenConfig {
            key: b"token-secret".to_vec(),
            issuer: "berth-test".into(),
            realm: String::new(),
            service: "berth-test-registry".into(),
            ttl_secs: 300,
        });
    })
    .await;
    let a = reg.addr;
    // The challenge names the realm, service and needed scope.
    let r = send(a, "POST", "/v2/team/app/blobs/uploads/", &[], Vec::new()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "UNAUTHORIZED");
    let ch = parse_challenge(&r.header("www-authenticate").expect("challenge"));
    assert_eq!(ch["realm"], format!("http://{a}/token"));
    assert_eq!(ch["service"], "berth-test-registry");
    assert_eq!(ch["scope"], "repository:team/app:push,pull");
    // Wrong password at the token endpoint.
    let token_path = format!("/token?service={}&scope={}", ch["service"], ch["scope"]);
    let r = send(
        a,
        "GET",
        &token_path,
        &[("authorization", &basic("alice", "nope"))],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 401);
    // Anonymous: a token with no access.
    let r = get(a, &token_path).await;
    assert_eq!(r.status, 200);
    let anon = r.json()["token"].as_str().expect("token").to_string();
    let r = send(
        a,
        "POST",
        "/v2/team/app/blobs/uploads/",
        &[("authorization", &format!("Bearer {anon}"))],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 401);
    // Alice gets what she asked for, on that repository only.
    let r = send(
        a,
        "GET",
        &token_path,
        &[("authorization", &basic("alice", "s3cret"))],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    let tok = body["token"].as_str().expect("token").to_string();
    assert_eq!(body["access_token"], body["token"]);
    let bearer = format!("Bearer {tok}");
    let data = b"token pushed".to_vec();
    let d = Digest::sha256_of(&data);
    let r = send(
        a,
        "POST",
        &format!("/v2/team/app/blobs/uploads/?digest={d}"),
        &[("authorization", &bearer)],
        data.clone(),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = send(
        a,
        "GET",
        &format!("/v2/team/app/blobs/{d}"),
        &[("authorization", &bearer)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.body, data);
    // Another repository, or an action not granted: 401 with a challenge for that scope.
    let r = send(
        a,
        "GET",
        &format!("/v2/team/other/blobs/{d}"),
        &[("authorization", &bearer)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 401);
    let ch = parse_challenge(&r.header("www-authenticate").expect("challenge"));
    assert_eq!(ch["scope"], "repository:team/other:pull");
    assert_eq!(ch["error"], "insufficient_scope");
    let r = send(
        a,
        "DELETE",
        &format!("/v2/team/app/blobs/{d}"),
        &[("authorization", &bearer)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 401);
    // A tampered token is refused.
    // Flip one character in the middle of the signature.
    let mut forged: Vec<char> = tok.chars().collect();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    let r = send(
        a,
        "GET",
        &format!("/v2/team/app/blobs/{d}"),
        &[("authorization", &format!("Bearer {forged}"))],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 401);
    let ch = parse_challenge(&r.header("www-authenticate").expect("challenge"));
    assert_eq!(ch["error"], "invalid_token");
    // The OAuth2 password grant (POST, as containerd sends it).
    let form = "grant_type=password&username=alice&password=s3cret&service=berth-test-registry&client_id=test&scope=repository%3Ateam%2Fapp%3Apull";
    let r = send(
        a,
        "POST",
        "/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        form.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(r.status, 200);
    let oauth = format!(
        "Bearer {}",
        r.json()["access_token"].as_str().expect("access_token")
    );
    let r = send(
        a,
        "GET",
        &format!("/v2/team/app/blobs/{d}"),
        &[("authorization", &oauth)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = send(
        a,
        "POST",
        "/v2/team/app/blobs/uploads/",
        &[("authorization", &oauth)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 401, "pull-only token pushed");
    let bad = form.replace("s3cret", "nope");
    let r = send(
        a,
        "POST",
        "/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        bad.into_bytes(),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = send(
        a,
        "POST",
        "/token",
        &[],
        b"grant_type=refresh_token&refresh_token=x".to_vec(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "unsupported_grant_type");
    // Catalog needs registry:catalog:*.
    let r = send(
        a,
        "GET",
        "/v2/_catalog",
        &[("authorization", &bearer)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = send(
        a,
        "GET",
        "/token?service=berth-test-registry&scope=registry:catalog:*",
        &[("authorization", &basic("alice", "s3cret"))],
        Vec::new(),
    )
    .await;
    let cat = format!("Bearer {}", r.json()["token"].as_str().expect("token"));
    let r = send(
        a,
        "GET",
        "/v2/_catalog",
        &[("authorization", &cat)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["repositories"], serde_json::json!(["team/app"]));
}
