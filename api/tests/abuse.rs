//! Hostile requests, generated: random methods, paths and query strings (known and unknown
//! parameters, repeated ones, bad dates, huge values, percent-encoded bytes of any value,
//! path traversal) sent byte for byte to the API on a loopback port. Whatever arrives, the
//! answer is never a 5xx, and every error is a JSON body with an `error` message.

mod common;

use std::net::SocketAddr;
use std::sync::OnceLock;

use common::{request, serve_on_loopback};
use meterflow_api::ApiConfig;
use meterflow_store::{SqliteStore, Store};
use meterflow_testkit::conformance::fragment;
use proptest::prelude::*;

/// One runtime and one server for every case: a server that degrades over many requests
/// should fail here too.
fn server() -> &'static (tokio::runtime::Runtime, SocketAddr) {
    static SERVER: OnceLock<(tokio::runtime::Runtime, SocketAddr)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let addr = rt.block_on(async {
            let store = SqliteStore::open_in_memory().expect("store");
            store
                .put(vec![
                    fragment(
                        "EE00027",
                        "2019-01-01",
                        1,
                        "a.csv",
                        2,
                        &[Some(1_500_000); 48],
                    ),
                    fragment("EE00027", "2019-01-02", 1, "a.csv", 3, &[Some(1); 10]),
                ])
                .await
                .expect("put");
            serve_on_loopback(
                store,
                ApiConfig {
                    max_range_days: 366,
                },
            )
            .await
        });
        (rt, addr)
    })
}

/// Any bytes, percent-encoded: invalid UTF-8, NUL, `&`, `=`, `/`, `%` itself.
fn encoded() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), 0..12)
        .prop_map(|bytes| bytes.iter().map(|b| format!("%{b:02X}")).collect())
}

/// Printable ASCII that may break the request line or the query: spaces, `#`, `?`, `%`.
fn raw() -> impl Strategy<Value = String> {
    "[ -~]{0,24}"
}

/// One of `texts`.
fn pick(texts: &[&str]) -> impl Strategy<Value = String> {
    let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
    proptest::sample::select(texts)
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        pick(&[
            "2019-01-01",
            "2019-01-02",
            "01-01-2019",
            "2019-02-30",
            "0000-01-01",
            "9999-12-31",
            "-1",
            "18446744073709551616",
            "EE00027",
            "",
        ]),
        Just("x".repeat(5000)),
        encoded(),
        raw(),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        pick(&["from", "to", "meterId", "date", "format", "prefix", "limit"]),
        encoded(),
        raw(),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        pick(&[
            "/",
            "/meters/EE00027/daily",
            "/meters//daily",
            "/meters/EE00027",
            "/meters/EE00027/daily/more",
            "/health",
            "/openapi.json",
            "/..%2f..%2fetc%2fpasswd",
            "//meters/EE00027/daily",
            "*",
        ]),
        encoded().prop_map(|m| format!("/meters/{m}/daily")),
        raw().prop_map(|m| format!("/meters/{m}/daily")),
        raw().prop_map(|p| format!("/{p}")),
        Just(format!("/{}", "a".repeat(20_000))),
    ]
}

fn target() -> impl Strategy<Value = String> {
    (
        path(),
        proptest::collection::vec((key(), value()), 0..5),
        any::<bool>(),
    )
        .prop_map(|(path, params, bare)| {
            let query: Vec<String> = params
                .iter()
                .map(|(k, v)| {
                    if bare && v.is_empty() {
                        k.clone()
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect();
            match query.is_empty() {
                true => path,
                false => format!("{path}?{}", query.join("&")),
            }
        })
}

fn method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just("GET"),
        1 => Just("HEAD"),
        1 => Just("POST"),
        1 => Just("PUT"),
        1 => Just("DELETE"),
        1 => Just("OPTIONS"),
        1 => Just("BREW"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_request_gets_a_5xx_and_every_error_is_json(method in method(), target in target()) {
        let (rt, addr) = server();
        let (status, json, body) = rt.block_on(request(*addr, method, &target));
        prop_assert!(status < 500, "{method} {target} → {status} {body}");
        if status >= 400 && method != "HEAD" {
            prop_assert!(
                json["error"].is_string(),
                "{method} {target} → {status} without a JSON error: {body:?}"
            );
        }
    }
}
