//! The ingest benchmark's ceiling: a bare actix-web server that reads the body, parses it as
//! JSON into a `serde_json::Value` and answers `202 {}`. Nothing is stored, routed or
//! rendered, so this is what actix-web and serde_json alone can do on this machine; Herald's
//! `/hooks/flow` is measured against it in the same run (see `bench/run.sh`).
//!
//! It runs the same number of actix workers as Herald (2), on the same kind of route.
//!
//! ```sh
//! cargo run --release --example bench_ceiling -- 127.0.0.1:9000
//! ```

use actix_web::{web, App, HttpResponse, HttpServer};

/// Herald's `app::start` runs `.workers(2)`; the ceiling must match it.
const WORKERS: usize = 2;

/// The same body limit as Herald's default `server.max_body_bytes`.
const MAX_BODY: usize = 1024 * 1024;

async fn hook(_format: web::Path<String>, body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(value) => {
            std::hint::black_box(value);
            HttpResponse::Accepted().content_type("application/json").body("{}")
        }
        Err(e) => HttpResponse::BadRequest()
            .content_type("application/json")
            .body(serde_json::json!({ "error": e.to_string() }).to_string()),
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok")
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9000".to_string());
    HttpServer::new(|| {
        App::new()
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .route("/hooks/{format}", web::post().to(hook))
            .route("/healthz", web::get().to(healthz))
    })
    .workers(WORKERS)
    .bind(&listen)?
    .run()
    .await
}
