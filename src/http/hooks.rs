//! `/hooks` and `/hooks/{format}`: read the body within its limit, hand the request to the
//! gateway, answer 202 with the routes once the deliveries are stored.

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Serialize;

use super::error::ApiError;
use super::AppState;
use crate::gateway::{strip_token, HookError};
use crate::ingest::Inbound;

#[derive(Serialize)]
struct RouteBody<'a> {
    rule: &'a str,
    channel: &'a str,
}

#[derive(Serialize)]
struct AcceptedBody<'a> {
    event_id: &'a str,
    status: &'a str,
    routes: Vec<RouteBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate_of: Option<&'a str>,
}

/// `POST /hooks/{format}` (and GET/PUT/DELETE for `jenkins-status`).
pub async fn with_format(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    handle(state, req, Some(path.into_inner()), body).await
}

/// `POST /hooks`: the format is detected.
pub async fn detected(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    handle(state, req, None, body).await
}

async fn handle(
    state: web::Data<AppState>,
    req: HttpRequest,
    format: Option<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body =
        actix_web::rt::time::timeout(state.body_timeout, read_limited(&req, payload, state.max_body_bytes))
            .await
            .map_err(|_| HookError::BodyTimeout(state.body_timeout))??;
    // The Job Status plugin's GET form appends its own `?…` to the URL it was given, so a URL
    // with `?token=S` gets a second `?` where a `&` belongs (its values come percent-encoded).
    // Every other sender's query is read as sent.
    let appended =
        format.as_deref() == Some("jenkins-status") && req.method() == actix_web::http::Method::GET;
    let raw_query =
        if appended { req.query_string().replace('?', "&") } else { req.query_string().to_string() };
    let query = strip_token(&raw_query);
    let headers = req
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_ascii_lowercase(), v.to_string())))
        .collect();
    let inbound = Inbound { method: req.method().as_str(), headers, query: &query, body: &body };
    let peer = req.peer_addr().map(|a| a.ip());
    let accepted = match state.gateway.receive(format.as_deref(), &inbound, &raw_query, peer).await {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(
                format = format.as_deref().unwrap_or("auto"),
                status = e.status(),
                "webhook refused: {e}"
            );
            return Err(e.into());
        }
    };
    let views: Vec<AcceptedBody<'_>> = accepted
        .iter()
        .map(|a| AcceptedBody {
            event_id: &a.event_id,
            status: a.status.as_str(),
            routes: a.routes.iter().map(|r| RouteBody { rule: &r.rule, channel: &r.channel }).collect(),
            duplicate_of: a.duplicate_of.as_deref(),
        })
        .collect();
    // One event: SPEC's body. Several (Alertmanager): the first's, plus every event. None (a
    // GitHub ping): 200.
    let body = match views.len() {
        0 => return Ok(HttpResponse::Ok().json(serde_json::json!({ "events": [] }))),
        1 => return Ok(HttpResponse::Accepted().json(&views[0])),
        _ => serde_json::to_value(&views[0]).map(|mut v| {
            v["events"] = serde_json::to_value(&views).unwrap_or_default();
            v
        }),
    }
    .map_err(|e| ApiError::new(500, e.to_string()))?;
    Ok(HttpResponse::Accepted().json(body))
}

/// Reads the whole body, refusing with 413 as soon as it passes `limit`. A compressed body is
/// refused (415) before it is read: no CI sender compresses its webhooks, and a small
/// compressed body can expand far past the limit before it could be checked.
async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, HookError> {
    if let Some(encoding) = req.headers().get(actix_web::http::header::CONTENT_ENCODING) {
        let encoding = String::from_utf8_lossy(encoding.as_bytes()).trim().to_string();
        if !encoding.eq_ignore_ascii_case("identity") {
            return Err(HookError::Encoded(encoding));
        }
    }
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(HookError::TooLarge(limit));
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| HookError::Malformed(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(HookError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
