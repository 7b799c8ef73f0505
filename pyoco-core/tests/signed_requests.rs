//! HMAC request signing against two real gateways on one nats-server: a signed request is
//! served; unsigned, tampered or stale ones are 401; a request replayed — to the same or to
//! another gateway — is 401, because the nonce store is shared in KV.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use pyoco::auth::sign;
use pyoco::testkit::{GatewayHandle, NatsServer, fast_config};
use serde_json::{Value, json};

const SECRET: &str = "topsecret";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Signed {
    ts: String,
    nonce: String,
    signature: String,
}

fn signed(method: &str, path: &str, body: &[u8], ts: String, nonce: &str) -> Signed {
    let signature = sign::sign(SECRET.as_bytes(), &ts, nonce, method, path, body);
    Signed {
        ts,
        nonce: nonce.into(),
        signature,
    }
}

async fn send(
    base: &str,
    method: &str,
    path: &str,
    body: &[u8],
    sig: Option<&Signed>,
) -> (u16, Value) {
    let http = reqwest::Client::new();
    let mut req = match method {
        "GET" => http.get(format!("{base}{path}")),
        _ => http
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body.to_vec()),
    };
    if let Some(s) = sig {
        req = req
            .header("X-Pyoco-Ts", &s.ts)
            .header("X-Pyoco-Nonce", &s.nonce)
            .header("X-Pyoco-Signature", &s.signature);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_requests_are_served_and_forged_stale_or_replayed_ones_refused() {
    let server = NatsServer::start();
    let mut config = fast_config(&server);
    config.http_hmac_secret = Some(SECRET.into());
    let one = GatewayHandle::start(config.clone()).await;
    let two = GatewayHandle::start(config).await;
    let (a, b) = (one.url(), two.url());

    // Health stays open: it is the readiness probe.
    assert_eq!(send(&a, "GET", "/health", b"", None).await.0, 200);
    let (status, body) = send(&a, "GET", "/runs", b"", None).await;
    assert_eq!(
        (status, &body["code"]),
        (401, &json!("invalid_signature")),
        "{body}"
    );

    let list = signed(
        "GET",
        "/runs?limit=5",
        b"",
        now().to_string(),
        "nonce-list-0001",
    );
    assert_eq!(
        send(&a, "GET", "/runs?limit=5", b"", Some(&list)).await.0,
        200
    );
    // The same request again, to either gateway, is a replay.
    for base in [&a, &b] {
        let (status, body) = send(base, "GET", "/runs?limit=5", b"", Some(&list)).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["detail"], "invalid signature: nonce already used");
    }

    let submit = br#"{"flow_name":"hello","tag":"nowhere"}"#;
    let good = signed(
        "POST",
        "/runs",
        submit,
        now().to_string(),
        "nonce-submit-01",
    );
    let (status, body) = send(&b, "POST", "/runs", submit, Some(&good)).await;
    assert_eq!(status, 200, "{body}");

    // A changed body, path or query breaks the signature.
    let other = signed(
        "POST",
        "/runs",
        submit,
        now().to_string(),
        "nonce-submit-02",
    );
    let tampered = br#"{"flow_name":"evil","tag":"nowhere"}"#;
    let (status, body) = send(&a, "POST", "/runs", tampered, Some(&other)).await;
    assert_eq!(
        (status, &body["detail"]),
        (401, &json!("invalid signature: signature mismatch"))
    );
    let (status, _) = send(
        &a,
        "GET",
        "/runs?limit=6",
        b"",
        Some(&signed(
            "GET",
            "/runs?limit=5",
            b"",
            now().to_string(),
            "nonce-query-01",
        )),
    )
    .await;
    assert_eq!(status, 401);

    // Stale and future timestamps are refused; milliseconds are understood.
    let stale = signed(
        "GET",
        "/runs",
        b"",
        (now() - 120).to_string(),
        "nonce-stale-001",
    );
    let (status, body) = send(&a, "GET", "/runs", b"", Some(&stale)).await;
    assert_eq!(status, 401);
    assert!(
        body["detail"].as_str().unwrap().contains("window"),
        "{body}"
    );
    let future = signed(
        "GET",
        "/runs",
        b"",
        (now() + 120).to_string(),
        "nonce-future-01",
    );
    assert_eq!(send(&a, "GET", "/runs", b"", Some(&future)).await.0, 401);
    let millis = signed(
        "GET",
        "/runs",
        b"",
        (now() * 1000).to_string(),
        "nonce-millis-01",
    );
    assert_eq!(send(&a, "GET", "/runs", b"", Some(&millis)).await.0, 200);

    // A bad nonce or a missing header is refused with the reason.
    let (status, body) = send(
        &a,
        "GET",
        "/runs",
        b"",
        Some(&signed("GET", "/runs", b"", now().to_string(), "x")),
    )
    .await;
    assert_eq!(status, 401, "{body}");

    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_client_signs_every_request_the_watch_included() {
    let stack =
        pyoco::testkit::Stack::start_with(|c| c.http_hmac_secret = Some(SECRET.into())).await;
    let base = stack.gateway.url();
    let unsigned = pyoco::HttpClient::new(&base).unwrap();
    let err = unsigned.list_runs(&Default::default()).await.unwrap_err();
    assert_eq!(err.code(), Some("invalid_signature"), "{err}");

    let client = pyoco::HttpClient::new(&base)
        .unwrap()
        .with_hmac_secret(SECRET);
    let yaml = b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 7}}}\n";
    let submitted = client.submit_yaml(yaml, "signed", None).await.unwrap();
    let run_id = submitted["run_id"].as_str().unwrap().to_string();
    // The watch connects (signed) and follows the run to its end.
    let run = pyoco::testkit::wait_terminal(&client, &run_id).await;
    assert_eq!(run["status"], "COMPLETED", "{run}");
    let mut watch = client.watch_run(&run_id, Default::default());
    let mut last = None;
    while let Some(event) = futures::StreamExt::next(&mut watch).await {
        last = Some(event.unwrap());
    }
    assert!(last.unwrap().is_terminal());
    assert_eq!(
        client.list_runs(&Default::default()).await.unwrap().len(),
        1
    );
    stack.stop().await;
}
