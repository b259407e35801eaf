//! The web page in a real browser: `meterflow serve` on a loopback port over a store with
//! known days, and Debian's headless Chromium (installed by `.ci/run`) loading the page. The
//! rendered DOM must have one bar per day with data, a gap for the missing day, the styles
//! of incomplete, estimated and mixed days, the summary figures the API's totals give, and a
//! readable message for a bad range. Screenshots at a desktop's and a phone's width are
//! written to `target/browser-test/` as the test's artefacts.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use meterflow_core::Quality;
use meterflow_store::{SqliteStore, Store};
use meterflow_testkit::conformance::fragment;

const CHROMIUM: &str = "/usr/bin/chromium";

/// The store: EE00027 over 2019-01-01..07 with 01-04 missing, 01-05 incomplete, 01-03
/// estimated and 01-06 of mixed quality.
async fn store(path: &Path) {
    let store = SqliteStore::open(path).expect("a store file");
    let day = |date: &str, value: i64, slots: usize, quality: Quality| {
        let mut f = fragment(
            "EE00027",
            date,
            1,
            "browser.csv",
            2,
            &vec![Some(value); slots],
        );
        f.quality = quality;
        f
    };
    let mixed = Quality::ACTUAL.union(Quality::ESTIMATED);
    store
        .put(vec![
            day("2019-01-01", 1_000_000, 48, Quality::ACTUAL),
            day("2019-01-02", 500_000, 48, Quality::ACTUAL),
            day("2019-01-03", 250_000, 48, Quality::ESTIMATED),
            day("2019-01-05", 1_000_000, 20, Quality::ACTUAL),
            day("2019-01-06", 125_000, 48, mixed),
            day("2019-01-07", 2_000_000, 48, Quality::ACTUAL),
        ])
        .await
        .expect("put");
}

/// The body of `GET target`.
fn get(addr: &str, target: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .expect("a response")
}

/// Chromium, headless and offline, on `url`, with `args` (such as `--dump-dom`); its stdout.
/// Virtual time lets the page's fetches and rendering finish before the DOM is taken.
fn chromium(url: &str, profile: &Path, args: &[&str]) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`; .ci/run does)"
    );
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the element with `id` (up to its first child tag).
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let rest = &dom[start..];
    let open = rest.find('>').expect("a tag") + 1;
    let close = rest[open..].find('<').expect("text ends");
    &rest[open..open + close]
}

/// The `<rect class="bar …">` elements: (date, classes).
fn bars(dom: &str) -> Vec<(String, String)> {
    dom.split("<rect ")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>')?];
            let attr = |name: &str| {
                let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
                Some(tag[at..at + tag[at..].find('"')?].to_string())
            };
            let class = attr("class")?;
            class
                .split(' ')
                .any(|c| c == "bar")
                .then(|| (attr("data-date").unwrap_or_default(), class))
        })
        .collect()
}

/// Exact decimal arithmetic on the API's totals, independent of the page's BigInt code.
fn micro(text: &str) -> i64 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let neg = int.starts_with('-');
    let int: i64 = int.trim_start_matches('-').parse().expect("digits");
    let frac: i64 = format!("{frac:0<6}").parse().expect("digits");
    let v = int * 1_000_000 + frac;
    if neg {
        -v
    } else {
        v
    }
}

fn decimal(v: i64, places: usize) -> String {
    let unit = 10i64.pow(6 - places as u32);
    let rounded = (v.abs() + unit / 2) / unit * unit;
    let frac = format!("{:06}", rounded % 1_000_000);
    let frac = if places == 6 {
        frac.trim_end_matches('0').to_string()
    } else {
        frac[..places].to_string()
    };
    let sign = if v < 0 { "-" } else { "" };
    match frac.is_empty() {
        true => format!("{sign}{}", rounded / 1_000_000),
        false => format!("{sign}{}.{frac}", rounded / 1_000_000),
    }
}

fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("browser-test");
    std::fs::create_dir_all(&dir).expect("the artefact folder");
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_charts_a_meter_s_days_in_a_real_browser() {
    let t = tempfile::tempdir().expect("tempdir");
    let db = t.path().join("browser.db");
    store(&db).await;
    let (mut server, addr) = common::serve(&db, &["--listen", "127.0.0.1:0"]);
    let range = "from=2019-01-01&to=2019-01-07";
    let page = format!("http://{addr}/?meter=EE00027&{range}");
    let profile = t.path().join("profile");

    let dom = chromium(&page, &profile, &["--dump-dom", "--window-size=1000,1000"]);
    let bars = bars(&dom);
    let dates: Vec<&str> = bars.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(
        dates,
        [
            "2019-01-01",
            "2019-01-02",
            "2019-01-03",
            "2019-01-05",
            "2019-01-06",
            "2019-01-07"
        ],
        "one bar per day with data, none for 2019-01-04"
    );
    let class = |date: &str| &bars.iter().find(|(d, _)| d == date).expect("a bar").1;
    assert!(class("2019-01-03").contains("estimated"), "{bars:?}");
    assert!(class("2019-01-05").contains("incomplete"), "{bars:?}");
    assert!(class("2019-01-06").contains("mixed"), "{bars:?}");
    assert!(!class("2019-01-01").contains("incomplete"), "{bars:?}");
    assert!(!class("2019-01-01").contains("estimated"), "{bars:?}");

    // The summary equals what the API's exact totals give.
    let json: serde_json::Value =
        serde_json::from_str(&get(&addr, &format!("/meters/EE00027/daily?{range}")))
            .expect("the API's JSON");
    let body = get(&addr, &format!("/meters/EE00027/daily?{range}"));
    let totals: Vec<i64> = body
        .split("\"total\":")
        .skip(1)
        .map(|t| micro(t.split([',', '}']).next().expect("a number")))
        .collect();
    let days = json["days"].as_array().expect("days");
    assert_eq!(totals.len(), 6);
    let sum: i64 = totals.iter().sum();
    let (best, max) = totals
        .iter()
        .enumerate()
        .max_by_key(|(_, v)| **v)
        .expect("days");
    assert_eq!(text_of(&dom, "s-total"), format!("{} kWh", decimal(sum, 6)));
    assert_eq!(
        text_of(&dom, "s-mean"),
        format!("{} kWh", decimal(sum / totals.len() as i64, 3))
    );
    assert_eq!(
        text_of(&dom, "s-max"),
        format!(
            "{} kWh on {}",
            decimal(*max, 6),
            days[best]["date"].as_str().expect("date")
        )
    );
    let incomplete = days.iter().filter(|d| d["complete"] == false).count();
    assert_eq!(text_of(&dom, "s-incomplete"), incomplete.to_string());
    assert_eq!(text_of(&dom, "error"), "", "no error shown");

    // A bad range: the API's message on the page, no chart.
    let bad = format!("http://{addr}/?meter=EE00027&from=2019-01-07&to=2019-01-01");
    let dom = chromium(&bad, &profile, &["--dump-dom", "--window-size=1000,1000"]);
    assert!(
        text_of(&dom, "error").contains("is after"),
        "{}",
        text_of(&dom, "error")
    );
    assert!(
        dom.contains("id=\"result\" aria-live=\"polite\" hidden"),
        "the chart is hidden"
    );

    for (name, size) in [("page.png", "1000,1000"), ("page-phone.png", "390,1400")] {
        let shot = artefacts().join(name);
        let _ = std::fs::remove_file(&shot);
        let window = format!("--window-size={size}");
        chromium(
            &page,
            &profile,
            &[&window, &format!("--screenshot={}", shot.display())],
        );
        let png = std::fs::read(&shot).expect("the screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG screenshot");
    }

    server.kill().expect("stop the server");
    server.wait().expect("the server ended");
}
