//! `/api/deliveries`: list, inspect and replay deliveries (dead letters included). Every call
//! needs `Authorization: Bearer <server.admin_token>`; without a configured token the API is
//! closed.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::outbox::view::{DeliveryDetail, DeliveryView};
use crate::outbox::{DeliveryState, ListFilter};

/// The most deliveries one listing returns.
const MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
pub struct Query {
    state: Option<String>,
    channel: Option<String>,
    limit: Option<usize>,
}

fn authorize(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(expected) = &state.admin_token else {
        return Err(ApiError::new(401, "the admin API is closed: set server.admin_token"));
    };
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::new(401, "missing Authorization: Bearer <admin token>"))?;
    let (a, b) = (Sha256::digest(given.trim().as_bytes()), Sha256::digest(expected.expose().as_bytes()));
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(ApiError::new(401, "wrong admin token"))
    }
}

fn filter(q: &Query, default_state: Option<DeliveryState>) -> Result<ListFilter, ApiError> {
    let state = match q.state.as_deref() {
        None | Some("") => default_state,
        Some(s) => Some(DeliveryState::parse(s).ok_or_else(|| {
            let known: Vec<&str> = DeliveryState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::new(400, format!("unknown state \"{s}\" (one of {})", known.join(", ")))
        })?),
    };
    Ok(ListFilter {
        state,
        channel: q.channel.clone().filter(|c| !c.is_empty()),
        limit: q.limit.unwrap_or(50).clamp(1, MAX_LIMIT),
    })
}

fn store_error(e: crate::outbox::OutboxError) -> ApiError {
    ApiError::new(503, e.to_string())
}

/// `GET /api/deliveries?state=&channel=&limit=`
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<Query>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let found = state.gateway.outbox.list(&filter(&q, None)?).await.map_err(store_error)?;
    let views: Vec<DeliveryView> = found.iter().map(DeliveryView::from).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "deliveries": views })))
}

/// `GET /api/deliveries/{id}`
pub async fn show(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    match state.gateway.outbox.get(&id).await.map_err(store_error)? {
        Some((d, attempts)) => Ok(HttpResponse::Ok().json(DeliveryDetail::new(&d, &attempts))),
        None => Err(ApiError::new(404, format!("no delivery \"{id}\""))),
    }
}

/// `POST /api/deliveries/{id}/retry`
pub async fn retry_one(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let outbox = &state.gateway.outbox;
    let Some((d, _)) = outbox.get(&id).await.map_err(store_error)? else {
        return Err(ApiError::new(404, format!("no delivery \"{id}\"")));
    };
    if !matches!(d.state, DeliveryState::Dead | DeliveryState::Retrying) {
        return Err(ApiError::new(
            409,
            format!(
                "delivery \"{id}\" is {}: only dead or retrying deliveries can be retried",
                d.state.as_str()
            ),
        ));
    }
    let now = state.gateway.clock.now_ms();
    let n =
        outbox.replay(std::slice::from_ref(&id), &ListFilter::default(), now).await.map_err(store_error)?;
    state.gateway.handoff.stored(now);
    Ok(HttpResponse::Ok().json(serde_json::json!({ "retried": n })))
}

/// `POST /api/deliveries/retry?state=dead&channel=`: retries in bulk (dead by default).
pub async fn retry_many(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<Query>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let filter = filter(&q, Some(DeliveryState::Dead))?;
    if !matches!(filter.state, Some(DeliveryState::Dead | DeliveryState::Retrying)) {
        return Err(ApiError::new(400, "state must be dead or retrying"));
    }
    let now = state.gateway.clock.now_ms();
    let n = state.gateway.outbox.replay(&[], &filter, now).await.map_err(store_error)?;
    state.gateway.handoff.stored(now);
    Ok(HttpResponse::Ok().json(serde_json::json!({ "retried": n })))
}
