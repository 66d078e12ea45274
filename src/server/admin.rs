//! The admin port: health, readiness, metrics, status, and model and catalog control.
//!
//! Reads (`GET`) are open to whoever can reach the port, which should be only the
//! operator's network. Control (`POST /admin/reload/...`) needs
//! `Authorization: Bearer <admin.token>`, compared in constant time; without a
//! configured token control is off (403). A reload without `?path=` loads the
//! configured file again. Loading runs on a blocking thread; a file that fails to load
//! (or a model built for another feature spec) is answered 422 with the reason and the
//! serving state does not change. A model with or without a conversion head may replace
//! either kind; the answer (and `/admin/status`) says how many CPA campaigns cannot bid
//! with the model now serving, for want of one.
//!
//! `/readyz` is 503 with the reason while starting, while draining, and while no
//! campaign can bid (every one has spent its daily budget); a fleet instance that cannot
//! reach Redis is ready, and says it is degraded and why ([`crate::fleet`]).
//! `/admin/status` shows what
//! is served, readiness, and spend: today's total and per campaign (the highest
//! [`STATUS_MAX_CAMPAIGNS`] spenders), with budgets and which are at theirs.
//! `/admin/pacing` shows every campaign of the catalog: budget, spend, bids in flight,
//! pacing rate, throttled and refused opportunities, and today's plan and spend by
//! UTC hour ([`crate::economics::Economics::status`]).
//!
//! Model variants ([`crate::variants`]): `GET /admin/variants` shows those serving, what
//! each did so far, and the changes made; control, with the token:
//! `POST /admin/variants/add?name=<name>&path=<model.onnx>&share=<0..1>[&role=shadow]`
//! (a shadow scores its share of the requests and bids nothing),
//! `POST /admin/variants/share?name=&share=`, `POST /admin/variants/promote?name=` and
//! `POST /admin/variants/rollback?name=` (each with an optional `why=` for the log). A
//! refused change (a model that does not load, another feature spec, other heads, a
//! name in use, a share the others leave no room for) is answered 422 with the reason
//! and changes nothing.

use super::handler::{method_not_allowed, text};
use super::AppState;
use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => match not_ready(&state) {
            // Degraded is still ready: it bids as before, the fleet's ledger aside.
            None => match state.bidder.fleet().and_then(|f| f.degraded()) {
                Some(why) => text(StatusCode::OK, &format!("ready, degraded: {why}\n")),
                None => text(StatusCode::OK, "ready\n"),
            },
            Some(why) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("not ready: {why}\n")),
        },
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(state.bidder.render_metrics())));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            r
        }
        (&Method::GET, "/admin/status") => status(&state),
        (&Method::GET, "/admin/pacing") => {
            let serving = state.bidder.state();
            let body = serde_json::json!({ "campaigns": state.bidder.economics().status(&serving.accounts) });
            let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        (&Method::GET, "/admin/variants") => json(&variants_status(&state)),
        (&Method::POST, "/admin/reload/catalog" | "/admin/reload/model") => match authorize(&state, &req) {
            Err(denied) => denied,
            Ok(()) => reload(state, &req).await,
        },
        (&Method::POST, path @ ("/admin/variants/add" | VARIANT_SHARE | VARIANT_PROMOTE | VARIANT_ROLLBACK)) => {
            match authorize(&state, &req) {
                Err(denied) => denied,
                Ok(()) => change_variants(state, path, req.uri().query().unwrap_or_default()).await,
            }
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/admin/status" | "/admin/pacing" | "/admin/variants") => {
            method_not_allowed("GET")
        }
        (_, "/admin/reload/catalog" | "/admin/reload/model") => method_not_allowed("POST"),
        (_, "/admin/variants/add" | VARIANT_SHARE | VARIANT_PROMOTE | VARIANT_ROLLBACK) => method_not_allowed("POST"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(response)
}

const VARIANT_SHARE: &str = "/admin/variants/share";
const VARIANT_PROMOTE: &str = "/admin/variants/promote";
const VARIANT_ROLLBACK: &str = "/admin/variants/rollback";

fn json(body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The variants serving (their share, model and results), the results of those that
/// served before, and the changes made.
pub(super) fn variants_status(state: &AppState) -> serde_json::Value {
    let serving = state.bidder.state();
    let set = &serving.variants;
    let incumbent_share = crate::variants::FULL_SHARE - set.candidates_share();
    let tallies = state.bidder.variant_tallies();
    let tally = |name: &str| tallies.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
    let serving_now: Vec<serde_json::Value> = set
        .all()
        .iter()
        .map(|v| {
            let t = tally(&v.name);
            serde_json::json!({
                "name": v.name,
                "role": v.role.label(),
                "share": f64::from(if v.role == crate::variants::Role::Incumbent { incumbent_share } else { v.share }) / 1e4,
                "model": { "path": v.model.path.display().to_string(), "kind": v.model.kind, "version": v.model.version, "heads": v.model.heads.label() },
                "since_unix": v.since_unix,
                "results": t,
                "calibration": t.and_then(|t| t.calibration()),
                "drift": v.drift.as_deref().map(crate::variants::drift::Drift::report),
                "shadow": (v.role == crate::variants::Role::Shadow)
                    .then(|| v.counters.shadow.read(v.counters.requests.load(Ordering::Relaxed))),
            })
        })
        .collect();
    let retired: Vec<serde_json::Value> = tallies
        .iter()
        .filter(|(n, _)| set.get(n).is_none())
        .map(|(n, t)| serde_json::json!({ "name": n, "results": t, "calibration": t.calibration() }))
        .collect();
    serde_json::json!({ "serving": serving_now, "retired": retired, "changes": state.bidder.variant_changes() })
}

/// The first value of `key` in `query`, percent-decoded.
fn param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| crate::notice::percent_decode(v).into_owned())
    })
}

/// One change to the variants (module doc). Opening a model runs on a blocking thread.
async fn change_variants(state: Arc<AppState>, path: &str, query: &str) -> Response<Full<Bytes>> {
    let Some(name) = param(query, "name") else {
        return text(StatusCode::BAD_REQUEST, "name= (the variant) is required\n");
    };
    let why = param(query, "why").unwrap_or_else(|| "by the operator".into());
    let share = match param(query, "share").map(|s| s.parse::<f64>().ok().and_then(crate::variants::share_bp)) {
        Some(None) => return text(StatusCode::BAD_REQUEST, "share= must be a number from 0 to 1\n"),
        Some(Some(bp)) => Some(bp),
        None => None,
    };
    let model = param(query, "path").map(PathBuf::from);
    let role = match param(query, "role").as_deref() {
        None | Some("candidate") => crate::variants::Role::Candidate,
        Some("shadow") => crate::variants::Role::Shadow,
        Some(other) => return text(StatusCode::BAD_REQUEST, &format!("role={other}: candidate or shadow\n")),
    };
    let action = path.rsplit('/').next().unwrap_or_default().to_string();
    let work = tokio::task::spawn_blocking(move || {
        let bidder = &state.bidder;
        match action.as_str() {
            "add" => match (model, share) {
                (Some(model), Some(share)) => bidder.add_variant(&name, &model, share, role),
                _ => Err(anyhow::anyhow!("add needs path= (the variant's model) and share= (0 to 1)")),
            },
            "share" => match share {
                Some(share) => bidder.set_share(&name, share),
                None => Err(anyhow::anyhow!("share needs share= (0 to 1)")),
            },
            "promote" => bidder.promote(&name, &why),
            _ => bidder.roll_back(&name, &why),
        }
        .map(|set| {
            let serving: Vec<String> =
                set.all().iter().map(|v| format!("{} ({}, {})", v.name, v.role.label(), v.model.version)).collect();
            format!("{action} {name}: done; serving {}\n", serving.join(", "))
        })
    });
    match work.await {
        Ok(Ok(message)) => text(StatusCode::OK, &message),
        Ok(Err(e)) => {
            eprintln!("ctrbid: admin: variants: refused, nothing changed: {e:#}");
            text(StatusCode::UNPROCESSABLE_ENTITY, &format!("refused, nothing changed: {e:#}\n"))
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("the variants task failed: {e}\n")),
    }
}

/// Why the bidder should get no traffic now, if it should not: starting or draining,
/// or no campaign can bid (every one has spent its daily budget: every answer would be
/// 204 until the next UTC day, so the traffic is better sent to an instance that bids).
fn not_ready(state: &AppState) -> Option<&'static str> {
    if state.draining.load(Ordering::Acquire) {
        return Some("draining");
    }
    if !state.ready.load(Ordering::Acquire) {
        return Some("starting");
    }
    let serving = state.bidder.state();
    let campaigns = serving.selector.catalog().campaigns.len();
    (serving.selector.exhausted_count() >= campaigns)
        .then_some("every campaign has spent its daily budget; bidding resumes at the next UTC day")
}

/// Campaigns listed by name in `/admin/status` at most (the highest spenders).
const STATUS_MAX_CAMPAIGNS: usize = 100;

fn status(state: &AppState) -> Response<Full<Bytes>> {
    let serving = state.bidder.state();
    let notices = state.bidder.notices();
    let selector = &serving.selector;
    let spenders = notices.spenders();
    let not_ready_because = not_ready(state);
    let campaigns: Vec<serde_json::Value> = spenders
        .iter()
        .take(STATUS_MAX_CAMPAIGNS)
        .map(|(id, usd)| {
            let index = selector.campaign_index(id);
            serde_json::json!({
                "id": id,
                "spend_today_usd": usd,
                // A campaign billed today but no longer in the catalog has no budget.
                "daily_budget_usd": index.map(|ci| selector.catalog().campaigns[ci as usize].daily_budget),
                "at_budget": index.is_some_and(|ci| selector.is_exhausted(ci)),
            })
        })
        .collect();
    let body = serde_json::json!({
        "ready": not_ready_because.is_none(),
        "not_ready_because": not_ready_because,
        "model": {
            "path": serving.model().path.display().to_string(),
            "kind": serving.model().kind,
            "version": serving.model().version,
            "trained_at": serving.model().trained_at,
            "spec_sha256": serving.model().spec_sha256,
            "heads": serving.model().heads.label(),
        },
        "variants": variants_status(state),
        "fleet": state.bidder.fleet().map_or_else(|| serde_json::json!({ "backend": "memory" }), |f| f.status()),
        "catalog": {
            "campaigns": serving.selector.catalog().campaigns.len(),
            "creatives": serving.selector.catalog().creatives.len(),
            "cpa_campaigns_without_conversion_head": serving.unpriceable_cpa_campaigns(),
        },
        "spend": {
            "today_usd": notices.spend_total(),
            "campaigns_with_spend": spenders.len(),
            "campaigns_at_budget": selector.exhausted_count(),
            "notice_ledger_entries": notices.ledger_len(),
            "campaigns": campaigns,
        },
    });
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `Ok` when the request carries the configured bearer token.
#[allow(clippy::result_large_err)]
fn authorize(state: &AppState, req: &Request<Incoming>) -> Result<(), Response<Full<Bytes>>> {
    let Some(token) = state.admin_token.as_deref() else {
        return Err(text(
            StatusCode::FORBIDDEN,
            "admin control is off: set admin.token (or CTRBID_ADMIN_TOKEN) to enable it\n",
        ));
    };
    let presented =
        req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if constant_time_eq(p.trim().as_bytes(), token.as_bytes()) => Ok(()),
        _ => {
            let mut r = text(StatusCode::UNAUTHORIZED, "a valid bearer token is required\n");
            r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"ctrbid-admin\""));
            Err(r)
        }
    }
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn reload(state: Arc<AppState>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let is_model = req.uri().path().ends_with("/model");
    let requested = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("path="))
        .map(|p| PathBuf::from(crate::notice::percent_decode(p).into_owned()));
    let path =
        requested.unwrap_or_else(|| if is_model { state.model_path.clone() } else { state.catalog_path.clone() });
    let shown = path.display().to_string();
    let work = tokio::task::spawn_blocking(move || {
        let loaded = if is_model {
            state
                .bidder
                .reload_model(&path)
                .map(|info| format!("model {} loaded (kind {}, heads {})", shown, info.kind, info.heads.label()))
        } else {
            state.bidder.reload_catalog(&path).map(|n| format!("catalog {shown} loaded: {n} campaigns"))
        };
        loaded.map(|mut message| {
            let n = state.bidder.state().unpriceable_cpa_campaigns();
            if n > 0 {
                message.push_str(&format!("; {n} CPA campaigns cannot bid: the model has no conversion head"));
            }
            message.push('\n');
            message
        })
    });
    // Every admin action goes to the log with its result, whoever holds the token.
    let action = if is_model { "reload model" } else { "reload catalog" };
    match work.await {
        Ok(Ok(message)) => {
            eprintln!("ctrbid: admin: {action}: {}", message.trim_end());
            text(StatusCode::OK, &message)
        }
        Ok(Err(e)) => {
            eprintln!("ctrbid: admin: {action} failed, serving state unchanged: {e:#}");
            text(StatusCode::UNPROCESSABLE_ENTITY, &format!("reload failed, serving state unchanged: {e:#}\n"))
        }
        Err(e) => {
            eprintln!("ctrbid: admin: {action}: the reload task failed: {e}");
            text(StatusCode::INTERNAL_SERVER_ERROR, &format!("reload task failed: {e}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret-token-123", b"secret-token-123"));
        assert!(!constant_time_eq(b"secret-token-124", b"secret-token-123"));
        assert!(!constant_time_eq(b"secret", b"secret-token-123"));
    }
}
