//! The HTTP API: webhook intake, health, and the admin API over deliveries. Routes are here;
//! the accept pipeline is in `gateway`, and every error answer goes through `error::ApiError`.

mod admin;
mod error;
mod hooks;

use std::sync::Arc;

use actix_web::{web, HttpResponse};

pub use error::ApiError;

use crate::gateway::Gateway;
use crate::secret::Secret;

/// What every handler shares.
pub struct AppState {
    pub gateway: Arc<Gateway>,
    pub max_body_bytes: usize,
    /// How long a webhook's body may take to arrive once its headers are in.
    pub body_timeout: std::time::Duration,
    /// `server.admin_token`; `None` closes `/api`.
    pub admin_token: Option<Secret>,
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/hooks/{format}")
            .route(web::post().to(hooks::with_format))
            .route(web::get().to(hooks::with_format))
            .route(web::put().to(hooks::with_format))
            .route(web::delete().to(hooks::with_format)),
    )
    .service(
        web::resource("/hooks")
            .route(web::post().to(hooks::detected))
            .route(web::get().to(hooks::detected))
            .route(web::put().to(hooks::detected))
            .route(web::delete().to(hooks::detected)),
    )
    .route("/healthz", web::get().to(healthz))
    // The bulk route first: "retry" is not a delivery id.
    .route("/api/deliveries/retry", web::post().to(admin::retry_many))
    .route("/api/deliveries", web::get().to(admin::list))
    .route("/api/deliveries/{id}", web::get().to(admin::show))
    .route("/api/deliveries/{id}/retry", web::post().to(admin::retry_one))
    .default_service(web::to(not_found));
}

/// How long `/healthz` waits for the store's probe write: a health check must answer in time
/// even while the store waits on a lock.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `200 ok` while the gateway can accept events: the store commits a write. Otherwise 503
/// with the store's reason, so a load balancer sends webhooks elsewhere.
async fn healthz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let unhealthy = |why: String| ApiError::new(503, format!("the store cannot write: {why}"));
    match actix_web::rt::time::timeout(HEALTH_TIMEOUT, state.gateway.outbox.check()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok")),
        Ok(Err(e)) => Err(unhealthy(e.to_string())),
        Err(_) => Err(unhealthy(format!("no answer within {} s", HEALTH_TIMEOUT.as_secs()))),
    }
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(404, "no such endpoint"))
}
