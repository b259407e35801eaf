//! The API served for real on an ephemeral loopback port, exercised over HTTP/1.1.

use std::net::SocketAddr;

mod common;

use common::{exchange, get, request, serve_on_loopback};
use meterflow_api::{ApiConfig, OPENAPI, PAGE};
use meterflow_store::{SqliteStore, Store};
use meterflow_testkit::conformance::fragment;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start() -> SocketAddr {
    let store = SqliteStore::open_in_memory().expect("store");
    let mut nem = fragment(
        "VABD000163-E1",
        "2004-02-01",
        1,
        "nem.csv",
        3,
        &[Some(1_111_000); 48],
    );
    nem.quality = meterflow_core::Quality::ACTUAL;
    let mut q1 = fragment(
        "VABD000163-Q1",
        "2004-02-01",
        1,
        "nem.csv",
        5,
        &[Some(2_222_000); 48],
    );
    q1.unit = meterflow_core::Unit::normalise("kVArh").0;
    // The next day of that reactive channel delivered labelled kWh: a unit mix-up the answer
    // must show, not hide in a total.
    let q1_kwh = fragment(
        "VABD000163-Q1",
        "2004-02-02",
        1,
        "mislabelled.csv",
        2,
        &[Some(1_000_000); 48],
    );
    // An older 5-minute delivery of a day later re-sent as half-hourly data: it cannot merge
    // slot by slot, so the day is the newer resolution's and the old fragment is superseded.
    let mut five = fragment("EE00027", "2019-01-05", 1, "old.csv", 2, &[]);
    (five.interval_minutes, five.slots) = (5, meterflow_core::Slots::new(288));
    five.slots.set(0, 7_000_000);
    store
        .put(vec![
            fragment(
                "EE00027",
                "2019-01-01",
                1,
                "a.csv",
                2,
                &[Some(9_000_000); 40],
            ),
            fragment(
                "EE00027",
                "2019-01-01",
                1,
                "a.csv",
                3,
                &[
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some(5_000_000),
                    Some(5_000_000),
                    Some(5_000_000),
                    Some(5_000_000),
                    Some(5_000_000),
                    Some(5_000_000),
                    Some(5_000_000),
                    Some(5_000_000),
                ],
            ),
            fragment("EE00027", "2019-01-03", 1, "a.csv", 4, &[Some(1)]),
            fragment("EE00027", "2019-01-05", 2, "new.csv", 2, &[Some(2_000_000)]),
            five,
            nem,
            q1,
            q1_kwh,
        ])
        .await
        .expect("put");
    serve_on_loopback(store, ApiConfig { max_range_days: 31 }).await
}

#[tokio::test]
async fn daily_totals_are_exact_and_merged() {
    let addr = start().await;
    let (status, json, body) =
        get(addr, "/meters/EE00027/daily?from=2019-01-01&to=2019-01-31").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json,
        serde_json::json!({"meter": "EE00027", "unit": "kWh", "days": [
            {"date": "2019-01-01", "total": 400, "intervals": 48, "complete": true, "quality": "unspecified"},
            {"date": "2019-01-03", "total": 0.000001, "intervals": 1, "complete": false, "quality": "unspecified"},
            {"date": "2019-01-05", "total": 2, "intervals": 1, "complete": false, "quality": "unspecified", "superseded": 1}
        ]})
    );
    let (_, _, body) = get(
        addr,
        "/meters/VABD000163-E1/daily?from=2004-02-01&to=2004-02-01",
    )
    .await;
    assert!(
        body.contains("\"total\":53.328,"),
        "exact decimal rendering: {body}"
    );
    let (_, json, _) = get(
        addr,
        "/meters/VABD000163-Q1/daily?from=2004-02-01&to=2004-02-01",
    )
    .await;
    assert_eq!(json["unit"], "kVArh");
    assert_eq!(json["days"][0]["total"].to_string(), "106.656");
    // A day delivered in another unit carries its own.
    let (_, json, _) = get(
        addr,
        "/meters/VABD000163-Q1/daily?from=2004-02-01&to=2004-02-02",
    )
    .await;
    assert_eq!(json["unit"], "kVArh");
    assert!(json["days"][0].get("unit").is_none(), "{json}");
    assert_eq!(
        (
            json["days"][1]["unit"].as_str(),
            json["days"][1]["total"].to_string()
        ),
        (Some("kWh"), "48".to_string()),
        "{json}"
    );
    let (status, json, _) = get(addr, "/meters/NOPE/daily?from=2019-01-01&to=2019-01-31").await;
    assert_eq!(
        (status, json["days"].as_array().map(Vec::len)),
        (200, Some(0))
    );
}

#[tokio::test]
async fn legacy_contract() {
    let addr = start().await;
    let (status, json, _) = get(addr, "/?meterId=EE00027&date=01-01-2019").await;
    assert_eq!(status, 200);
    assert_eq!(
        json,
        serde_json::json!({"meterId": "EE00027", "date": "01-01-2019", "sum": 400})
    );
    let (status, json, _) = get(addr, "/?meterId=EE00027&date=02-01-2019").await;
    assert_eq!(status, 404);
    assert!(json["error"].as_str().unwrap().contains("no readings"));
}

#[tokio::test]
async fn client_mistakes_are_4xx_json() {
    let addr = start().await;
    for (target, status, needle) in [
        ("/?date=01-01-2019", 400, "meterId"),
        ("/?meterId=EE00027", 400, "date"),
        ("/?meterId=EE00027&date=2019-01-01", 400, "dd-MM-yyyy"),
        ("/?meterId=EE00027&date=31-02-2019", 400, "no such day"),
        ("/?meterId=EE%2000027&date=01-01-2019", 400, "contains ' '"),
        ("/meters/EE00027/daily?from=2019-01-01", 400, "`to`"),
        (
            "/meters/EE00027/daily?from=2019-1-1&to=2019-01-02",
            400,
            "YYYY-MM-DD",
        ),
        (
            "/meters/EE00027/daily?from=2019-01-05&to=2019-01-01",
            400,
            "after",
        ),
        (
            "/meters/EE00027/daily?from=2019-01-01&to=2019-03-01",
            400,
            "at most 31 days",
        ),
        (
            "/meters/bad%2Fid/daily?from=2019-01-01&to=2019-01-02",
            400,
            "contains '/'",
        ),
        (
            "/meters/%FF/daily?from=2019-01-01&to=2019-01-02",
            400,
            "meter",
        ),
        ("/nope", 404, "no such route"),
        ("/meters/EE00027", 404, "no such route"),
        // A repeated parameter is refused, not silently last-wins (or first-wins).
        (
            "/meters/EE00027/daily?from=2019-01-01&to=2019-01-02&from=2019-01-02",
            400,
            "`from` is given more than once",
        ),
        (
            "/?meterId=EE00027&date=01-01-2019&meterId=EE00028",
            400,
            "`meterId` is given more than once",
        ),
        // A typo is named, not read as a missing parameter.
        (
            "/meters/EE00027/daily?form=2019-01-01&to=2019-01-02",
            400,
            "unknown query parameter `form`; this route takes from and to",
        ),
        // A date error suggests only the form the route accepts.
        (
            "/meters/EE00027/daily?from=31/01/2019&to=2019-01-02",
            400,
            "(accepted: YYYY-MM-DD only, like 2019-01-31)",
        ),
        (
            "/?meterId=EE00027&date=31-02-2019",
            400,
            "(accepted: dd-MM-yyyy only, like 31-01-2019)",
        ),
    ] {
        let (got, json, body) = get(addr, target).await;
        assert_eq!(got, status, "{target}: {body}");
        let msg = json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{target}: no JSON error in {body}"));
        assert!(msg.contains(needle), "{target}: {msg}");
    }
    let (got, json, _) = request(addr, "POST", "/health").await;
    assert_eq!((got, json["error"].is_string()), (405, true));
}

/// What hyper answers before the router sees a request (garbage, a URI too long, too many
/// headers) is JSON too, and the connection that follows a good request still works.
#[tokio::test]
async fn unparsable_requests_are_json_errors() {
    let addr = start().await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let many_headers = (0..120).fold("GET /health HTTP/1.1\r\nHost: x\r\n".to_string(), |r, i| {
        r + &format!("X-H{i}: {i}\r\n")
    }) + "\r\n";
    for (raw, status, needle) in [
        (long_uri, 414, "URI is too long"),
        (many_headers, 431, "headers are too many"),
        (
            "\x16\x03\x01 hello\r\n\r\n".to_string(),
            400,
            "not valid HTTP/1.1",
        ),
        (
            "GET /health HTTP/9.9\r\n\r\n".to_string(),
            400,
            "not valid HTTP/1.1",
        ),
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(raw.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read");
        let text = String::from_utf8(buf).expect("utf8");
        let (head, body) = text.split_once("\r\n\r\n").expect("a response");
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        let msg = json["error"].as_str().expect("error message");
        assert!(msg.contains(needle), "{msg}");
    }
    // Keep-alive: two requests on one connection, both answered whole.
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let two = "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    s.write_all(two.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8(buf).expect("utf8");
    assert_eq!(text.matches("{\"status\":\"ok\"}").count(), 2, "{text}");
}

#[tokio::test]
async fn health_and_openapi_describe_the_routes() {
    let addr = start().await;
    let (status, json, _) = get(addr, "/health").await;
    assert_eq!((status, json), (200, serde_json::json!({"status": "ok"})));
    let (status, json, _) = get(addr, "/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(
        json,
        serde_json::from_str::<serde_json::Value>(OPENAPI).unwrap()
    );
    let paths: Vec<&String> = json["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths.len(), 5);
    // Every documented route answers (not with the 404 fallback).
    for p in paths {
        let query = match p.as_str() {
            "/" => "?meterId=EE00027&date=01-01-2019",
            "/meters/{meter}/daily" => "?from=2019-01-01&to=2019-01-01",
            _ => "",
        };
        let target = p.replace("{meter}", "EE00027") + query;
        let (status, _, body) = get(addr, &target).await;
        assert_eq!(status, 200, "{target}: {body}");
    }
}

#[tokio::test]
async fn the_web_page_is_served_at_the_root_without_the_original_contract_s_parameters() {
    let addr = start().await;
    for target in [
        "/",
        "/?meter=EE00027&from=2019-01-01&to=2019-01-31",
        "/?meter=EE00027",
    ] {
        let (status, head, body) = exchange(addr, "GET", target).await;
        assert_eq!(status, 200, "{target}");
        assert!(
            head.contains("content-type: text/html; charset=utf-8"),
            "{head}"
        );
        assert_eq!(body, PAGE);
    }
    // The page is one file: no script, style or image from elsewhere.
    for needle in ["src=\"http", "href=\"http", "@import", "<link"] {
        assert!(!PAGE.contains(needle), "the page loads {needle}…");
    }
    // With the original contract's parameters, `/` is that contract still.
    let (status, json, _) = get(addr, "/?meterId=EE00027&date=01-01-2019").await;
    assert_eq!(status, 200);
    assert_eq!(json["meterId"], "EE00027");
}

#[tokio::test]
async fn daily_totals_as_csv_equal_the_json() {
    let addr = start().await;
    let range = "from=2019-01-01&to=2019-01-05";
    let (_, json, text) = get(addr, &format!("/meters/EE00027/daily?{range}")).await;
    // The totals as the JSON writes them (exact decimals; serde_json's f64 would not be).
    let totals: Vec<&str> = text
        .split("\"total\":")
        .skip(1)
        .map(|t| t.split([',', '}']).next().expect("a number"))
        .collect();
    let (status, head, csv) = exchange(
        addr,
        "GET",
        &format!("/meters/EE00027/daily?{range}&format=csv"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/csv; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("attachment; filename=\"EE00027_2019-01-01_2019-01-05.csv\""),
        "{head}"
    );
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("date,total,unit,intervals,complete,quality,superseded")
    );
    let days = json["days"].as_array().expect("days");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(totals.len(), days.len());
    assert_eq!(rows.len(), days.len());
    for ((row, day), total) in rows.iter().zip(days).zip(&totals) {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells[0], day["date"]);
        assert_eq!(cells[1], *total);
        assert_eq!(cells[2], day["unit"].as_str().unwrap_or("kWh"));
        assert_eq!(cells[3], day["intervals"].to_string());
        assert_eq!(cells[4], day["complete"].to_string());
        assert_eq!(cells[5], day["quality"]);
    }
    let (status, json, _) = get(addr, &format!("/meters/EE00027/daily?{range}&format=xml")).await;
    assert_eq!(status, 400);
    assert!(json["error"]
        .as_str()
        .unwrap()
        .contains("json (the default) or csv"));
}

#[tokio::test]
async fn meters_are_found_by_prefix() {
    let addr = start().await;
    let (status, json, _) = get(addr, "/meters?prefix=VABD&limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(
        json,
        serde_json::json!({"meters": ["VABD000163-E1", "VABD000163-Q1"]})
    );
    let (_, json, _) = get(addr, "/meters?limit=1").await;
    assert_eq!(json, serde_json::json!({"meters": ["EE00027"]}));
    let (_, json, _) = get(addr, "/meters?prefix=ZZ").await;
    assert_eq!(json, serde_json::json!({"meters": []}));
    for (target, needle) in [
        ("/meters?prefix=E%20E", "may hold only"),
        ("/meters?limit=0", "from 1 to 1000"),
        ("/meters?limit=1001", "from 1 to 1000"),
        ("/meters?limit=ten", "not `ten`"),
        ("/meters?prefx=EE", "unknown query parameter"),
    ] {
        let (status, json, body) = get(addr, target).await;
        assert_eq!(status, 400, "{target}: {body}");
        assert!(
            json["error"].as_str().unwrap().contains(needle),
            "{target}: {body}"
        );
    }
}
