//! The end-to-end benchmark's receiver: a fast HTTP sink that answers every request except
//! `GET /stats` with `200 {}` and counts it, with no rate limit.
//!
//! `GET /stats` answers `{"count": N, "first_us": T, "last_us": T}`: how many requests have
//! arrived, and the wall-clock time (microseconds since the Unix epoch) of the first and the
//! latest one, so `bench/run.sh` can tell when N deliveries have arrived and when the last one
//! did. Times are taken when the whole body has been read.
//!
//! ```sh
//! cargo run --release --example bench_sink -- 127.0.0.1:9100 [WORKERS]
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpResponse, HttpServer};

#[derive(Default)]
struct Stats {
    count: AtomicU64,
    first_us: AtomicU64,
    last_us: AtomicU64,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

async fn receive(stats: web::Data<Stats>, body: web::Bytes) -> HttpResponse {
    std::hint::black_box(body);
    let now = now_us();
    // first_us is set once (0 means unset); last_us only moves forward.
    let _ = stats.first_us.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
    stats.last_us.fetch_max(now, Ordering::SeqCst);
    stats.count.fetch_add(1, Ordering::SeqCst);
    HttpResponse::Ok().content_type("application/json").body("{}")
}

async fn stats(stats: web::Data<Stats>) -> HttpResponse {
    let body = serde_json::json!({
        "count": stats.count.load(Ordering::SeqCst),
        "first_us": stats.first_us.load(Ordering::SeqCst),
        "last_us": stats.last_us.load(Ordering::SeqCst),
    });
    HttpResponse::Ok().content_type("application/json").body(body.to_string())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:9100".to_string());
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(1);
    let shared = web::Data::new(Stats::default());
    HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
            .route("/stats", web::get().to(stats))
            .default_service(web::to(receive))
    })
    .workers(workers)
    .backlog(4096)
    .bind(&listen)?
    .run()
    .await
}
