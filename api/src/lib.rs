//! The HTTP API: one `axum` router served by `meterflow serve` locally and by the API Lambda
//! behind a Function URL, so both answer with the same routes, JSON and errors.
//!
//! - `GET /meters/{meter}/daily?from=YYYY-MM-DD&to=YYYY-MM-DD[&format=csv]` — merged daily
//!   totals, as JSON or CSV.
//! - `GET /?meterId=EE00027&date=01-01-2019` — the original project's contract; `GET /` without
//!   those parameters is the web page that charts a meter's days (`page.html`, embedded).
//! - `GET /meters?prefix=EE&limit=50` — series ids starting with a prefix (finding a meter).
//! - `GET /health`, `GET /openapi.json`.
//!
//! Every client mistake is a 4xx with `{"error": "..."}` saying what to fix; a 5xx only ever
//! means the store failed (503 when retrying may help).

#[cfg(feature = "lambda")]
pub mod lambda;
pub mod parse_errors;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use meterflow_core::value::format_amount;
use meterflow_core::{Day, SeriesId};
use meterflow_store::{daily_totals, Store, StoreError};
use serde::Serialize;
use serde_json::value::RawValue;

/// The OpenAPI 3 description of the routes below (tested to match them).
pub const OPENAPI: &str = include_str!("openapi.json");

/// The web page: one self-contained HTML file (its CSS and JavaScript inline, no CDN, no
/// build step), so `meterflow serve` and the API Lambda serve it from the binary.
pub const PAGE: &str = include_str!("page.html");

/// Limits a deployment may tune.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Longest `from..=to` range accepted, in days (a year by default): bounds the work of one
    /// request.
    pub max_range_days: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_range_days: 366,
        }
    }
}

struct AppState<S> {
    store: Arc<S>,
    config: ApiConfig,
}

/// An error response: status plus `{"error": message}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = if e.is_retryable() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        ApiError(status, e.report())
    }
}

/// Builds the router over a store.
pub fn router<S: Store + 'static>(store: Arc<S>, config: ApiConfig) -> Router {
    let state = Arc::new(AppState { store, config });
    Router::new()
        .route("/", get(root::<S>))
        .route("/meters", get(meters::<S>))
        .route("/meters/{meter}/daily", get(daily::<S>))
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route(
            "/openapi.json",
            get(|| async { ([("content-type", "application/json")], OPENAPI) }),
        )
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such route; see /openapi.json".into(),
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET is supported".into(),
            )
        })
        .with_state(state)
}

/// The query parameters of a request, each given at most once (a repeated one is a 400:
/// taking the first or the last would silently answer another question than some client
/// meant). With `only`, a parameter the route does not take is a 400 too (a typo such as
/// `form=` would otherwise read as a missing `from`).
fn query(raw: Option<&str>, only: Option<&[&str]>) -> Result<HashMap<String, String>, ApiError> {
    let mut q = HashMap::new();
    for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if let Some(only) = only.filter(|only| !only.contains(&name.as_ref())) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{name}`; this route takes {}",
                only.join(" and ")
            )));
        }
        if q.insert(name.to_string(), value.into_owned()).is_some() {
            return Err(ApiError::bad_request(format!(
                "query parameter `{name}` is given more than once; give it once"
            )));
        }
    }
    Ok(q)
}

fn param<'a>(
    q: &'a HashMap<String, String>,
    name: &str,
    example: &str,
) -> Result<&'a str, ApiError> {
    q.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "missing query parameter `{name}` (for example {name}={example})"
            ))
        })
}

fn meter(raw: &str) -> Result<SeriesId, ApiError> {
    SeriesId::parse(raw.as_bytes()).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Exact decimal as a JSON number: `53.328` stays `53.328`.
fn amount(v: i64) -> Box<RawValue> {
    RawValue::from_string(format_amount(v))
        .expect("format_amount always renders a valid JSON number")
}

/// The body of `GET /meters/{meter}/daily` (and of `meterflow query`).
#[derive(Debug, Serialize)]
pub struct DailyReport {
    pub meter: String,
    pub unit: String,
    pub days: Vec<DayReport>,
}

#[derive(Debug, Serialize)]
pub struct DayReport {
    pub date: String,
    /// Exact decimal rendered from the fixed point.
    pub total: Box<RawValue>,
    pub intervals: usize,
    pub complete: bool,
    pub quality: &'static str,
    /// Fragments left out of this day because they carry another interval length than the
    /// day's newest data (a provider re-sent 5-minute data as half-hourly): shown, never
    /// dropped silently. Omitted when zero.
    #[serde(skip_serializing_if = "is_zero")]
    pub superseded: usize,
    /// This day's unit, when it is not the report's (a series delivered in two units, say
    /// kVArh data once sent labelled kWh): shown on the day rather than a total silently
    /// counted in the wrong unit. Omitted when it is the report's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl DayReport {
    /// The unit of this day, given the report's.
    pub fn unit_or<'a>(&'a self, report_unit: &'a str) -> &'a str {
        self.unit.as_deref().unwrap_or(report_unit)
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Merged daily totals of `series` over `from..=to`; days without data are omitted.
pub async fn daily_report<S: Store>(
    store: &S,
    series: &SeriesId,
    from: Day,
    to: Day,
) -> Result<DailyReport, StoreError> {
    let totals = daily_totals(store, series, from, to).await?;
    let totals: Vec<_> = totals.iter().filter(|t| t.intervals > 0).collect();
    // The series' unit is its first day's; a day in another unit says so itself.
    let unit = totals
        .first()
        .map_or_else(|| "kWh".to_string(), |t| t.unit.to_string());
    let days = totals
        .iter()
        .map(|t| DayReport {
            date: t.day.to_string(),
            total: amount(t.total),
            intervals: t.intervals,
            complete: t.complete(),
            quality: t.quality.label(),
            superseded: t.superseded,
            unit: (t.unit.as_str() != unit).then(|| t.unit.to_string()),
        })
        .collect();
    Ok(DailyReport {
        meter: series.to_string(),
        unit,
        days,
    })
}

/// The daily report as CSV: a header, then a day per line, totals as exact decimals, and
/// each day's own unit (so a file cut from a mixed-unit series still says what it holds).
pub fn daily_csv(report: &DailyReport) -> String {
    let mut out = String::from("date,total,unit,intervals,complete,quality,superseded\n");
    for d in &report.days {
        out += &format!(
            "{},{},{},{},{},{},{}\n",
            d.date,
            d.total.get(),
            d.unit_or(&report.unit),
            d.intervals,
            d.complete,
            d.quality,
            d.superseded
        );
    }
    out
}

async fn daily<S: Store>(
    State(st): State<Arc<AppState<S>>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw_query): RawQuery,
) -> Result<Response, ApiError> {
    let Path(raw) =
        path.map_err(|e| ApiError::bad_request(format!("bad meter in the path: {e}")))?;
    let series = meter(&raw)?;
    let q = query(raw_query.as_deref(), Some(&["from", "to", "format"]))?;
    let csv = match q.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`format` is json (the default) or csv, not `{other}`"
            )))
        }
    };
    let date = |name: &str| -> Result<Day, ApiError> {
        let v = param(&q, name, "2019-01-01")?;
        Day::parse_iso(v).map_err(|e| ApiError::bad_request(format!("`{name}`: {e}")))
    };
    let (from, to) = (date("from")?, date("to")?);
    if from > to {
        return Err(ApiError::bad_request(format!(
            "`from` ({from}) is after `to` ({to})"
        )));
    }
    let span = to.days() - from.days() + 1;
    if span > st.config.max_range_days as i32 {
        return Err(ApiError::bad_request(format!(
            "the range is {span} days; at most {} days per request, so split it",
            st.config.max_range_days
        )));
    }
    let report = daily_report(st.store.as_ref(), &series, from, to).await?;
    if !csv {
        // Sized for the report up front (a day is ~100 bytes of JSON): no regrowing the
        // body a year long.
        let mut body = Vec::with_capacity(128 + 112 * report.days.len());
        serde_json::to_writer(&mut body, &report).map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("rendering the report: {e}"),
            )
        })?;
        return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    let file = format!("attachment; filename=\"{series}_{from}_{to}.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, file),
        ],
        daily_csv(&report),
    )
        .into_response())
}

/// Most ids one `GET /meters` returns.
pub const MAX_METERS_LIMIT: usize = 1000;

#[derive(Serialize)]
struct MetersBody {
    meters: Vec<String>,
}

/// `GET /meters?prefix=EE&limit=50`: series ids starting with `prefix` (all without one),
/// ascending, at most `limit` (50 by default).
async fn meters<S: Store>(
    State(st): State<Arc<AppState<S>>>,
    RawQuery(raw_query): RawQuery,
) -> Result<Json<MetersBody>, ApiError> {
    let q = query(raw_query.as_deref(), Some(&["prefix", "limit"]))?;
    let prefix = q.get("prefix").map_or("", String::as_str);
    if !SeriesId::could_start(prefix) {
        return Err(ApiError::bad_request(
            "`prefix` may hold only ASCII letters, digits and - _ . : (at most 64), as meter ids do",
        ));
    }
    let limit = match q.get("limit") {
        None => 50,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_METERS_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`limit` must be a whole number from 1 to {MAX_METERS_LIMIT}, not `{v}`"
                ))
            })?,
    };
    let ids = st.store.series(prefix, limit).await?;
    Ok(Json(MetersBody {
        meters: ids.iter().map(|s| s.to_string()).collect(),
    }))
}

/// `GET /`: the original project's contract when asked with its parameters (`meterId`,
/// `date`), else the web page, whose own state (`meter`, `from`, `to`) is read by its script.
async fn root<S: Store>(
    state: State<Arc<AppState<S>>>,
    RawQuery(raw_query): RawQuery,
) -> Result<Response, ApiError> {
    let legacy_call = form_urlencoded::parse(raw_query.as_deref().unwrap_or("").as_bytes())
        .any(|(name, _)| name == "meterId" || name == "date");
    if legacy_call {
        return Ok(legacy(state, RawQuery(raw_query)).await?.into_response());
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response())
}

#[derive(Serialize)]
struct LegacyBody {
    #[serde(rename = "meterId")]
    meter_id: String,
    date: String,
    sum: Box<RawValue>,
}

async fn legacy<S: Store>(
    State(st): State<Arc<AppState<S>>>,
    RawQuery(raw_query): RawQuery,
) -> Result<Json<LegacyBody>, ApiError> {
    // Extra parameters are let through: clients of the original API may add their own (a
    // cache buster); a repeated one is still refused.
    let q = query(raw_query.as_deref(), None)?;
    let series = meter(param(&q, "meterId", "EE00027")?)?;
    let raw_date = param(&q, "date", "01-01-2019")?;
    let b = raw_date.as_bytes();
    if b.len() != 10 || b[2] != b'-' || b[5] != b'-' {
        return Err(ApiError::bad_request(format!(
            "`date` must be dd-MM-yyyy (like 01-01-2019), not `{raw_date}`"
        )));
    }
    let day = Day::parse(b).map_err(|e| {
        let e = e.accepting("dd-MM-yyyy only, like 31-01-2019");
        ApiError::bad_request(format!("`date`: {e}"))
    })?;
    let totals = daily_totals(st.store.as_ref(), &series, day, day).await?;
    let Some(t) = totals.into_iter().find(|t| t.intervals > 0) else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no readings for meter {series} on {raw_date}"),
        ));
    };
    Ok(Json(LegacyBody {
        meter_id: series.to_string(),
        date: raw_date.to_string(),
        sum: amount(t.total),
    }))
}

/// Serves the router on `listener` until the future is dropped or fails. Requests too
/// malformed for the router to see are answered with JSON errors too
/// ([`parse_errors::JsonParseErrors`]).
pub async fn serve<S: Store + 'static>(
    listener: tokio::net::TcpListener,
    store: Arc<S>,
    config: ApiConfig,
) -> std::io::Result<()> {
    axum::serve(parse_errors::Listener(listener), router(store, config)).await
}
