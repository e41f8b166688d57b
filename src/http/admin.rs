//! `/api/deliveries`: list, inspect and replay deliveries (dead letters included) over HTTP.
//! Every call needs `Authorization: Bearer <server.admin_token>` (the scheme in any case), and
//! the token is checked before anything else is read; without a configured token the API is
//! closed. The operations and the reading of their parameters are `crate::admin`'s, shared
//! with `herald deliveries`; this module owns the token check and the HTTP answers.

use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::ApiError;
use super::AppState;
use crate::admin::{self, Params};
use crate::gateway::{bearer_token, token_matches};
use crate::outbox::view::{DeliveryDetail, DeliveryView};

/// Refuses the request unless it carries the admin token. The messages never quote a token.
fn authorize(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(expected) = &state.admin_token else {
        return Err(ApiError::new(401, "the admin API is closed: set server.admin_token"));
    };
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .ok_or_else(|| ApiError::new(401, "missing Authorization: Bearer <admin token>"))?;
    if token_matches(given, expected) {
        Ok(())
    } else {
        Err(ApiError::new(401, "wrong admin token"))
    }
}

/// `GET /api/deliveries?state=&channel=&limit=`
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let filter = Params::from_query(req.query_string())?.list_filter()?;
    let found = admin::list(state.gateway.outbox.as_ref(), &filter).await?;
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
    let (d, attempts) = admin::show(state.gateway.outbox.as_ref(), &id).await?;
    Ok(HttpResponse::Ok().json(DeliveryDetail::new(&d, &attempts)))
}

/// `POST /api/deliveries/{id}/retry`
pub async fn retry_one(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let now = state.gateway.clock.now_ms();
    let n = admin::retry_named(state.gateway.outbox.as_ref(), std::slice::from_ref(&id), now).await?;
    state.gateway.handoff.stored(now);
    Ok(HttpResponse::Ok().json(serde_json::json!({ "retried": n })))
}

/// `POST /api/deliveries/retry?state=dead&channel=`: retries in bulk (dead by default).
pub async fn retry_many(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let filter = Params::from_query(req.query_string())?.retry_filter()?;
    let now = state.gateway.clock.now_ms();
    let n = admin::retry_matching(state.gateway.outbox.as_ref(), &filter, now).await?;
    state.gateway.handoff.stored(now);
    Ok(HttpResponse::Ok().json(serde_json::json!({ "retried": n })))
}
