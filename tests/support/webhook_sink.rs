//! A mock webhook receiver for the webhook channel's tests: a real actix-web server on
//! 127.0.0.1, port 0, on a thread of its own.
//!
//! It records every request (method, path and query, headers, body), checks the Standard
//! Webhooks signature when it was given the key, and answers from a script of replies (status,
//! `Retry-After`, delay), then 200 once the script is used up. The server stops on drop.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The path and, when present, `?` and the query.
    pub target: String,
    /// Names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The signature check, when the sink knows the key.
    pub signature_ok: Option<bool>,
}

impl Recorded {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    /// Waited before answering.
    pub delay: Duration,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status, retry_after: None, delay: Duration::ZERO, body: String::new() }
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    script: VecDeque<Reply>,
    key: Option<Vec<u8>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    arrived: Condvar,
}

/// A running mock receiver.
pub struct WebhookSink {
    pub port: u16,
    shared: Arc<Shared>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebhookSink {
    /// Starts the receiver; `key` is the signing secret as configured (`whsec_…` or raw).
    pub fn start(key: Option<&str>) -> WebhookSink {
        let shared = Arc::new(Shared::default());
        shared.state.lock().unwrap().key = key.map(decode_key);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let data = web::Data::from(shared.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new().app_data(data.clone()).default_service(web::to(receive))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run();
                tx.send(server.handle()).unwrap();
                let _ = server.await;
            })
        });
        // The socket is already listening; this only waits for the handle used to stop it.
        let handle = rx.recv_timeout(Duration::from_secs(10)).expect("the webhook sink did not start");
        WebhookSink { port, shared, handle, thread: Some(thread) }
    }

    /// A URL on this receiver.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }

    /// Queues replies for the next requests.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.state.lock().unwrap().script.extend(replies);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    /// Waits until `n` requests have arrived, or panics at the deadline.
    pub fn wait_for(&self, n: usize, deadline: Duration) -> Vec<Recorded> {
        let end = Instant::now() + deadline;
        let mut state = self.shared.state.lock().unwrap();
        while state.requests.len() < n {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{} of {n} requests arrived within {deadline:?}", state.requests.len());
            state = self.shared.arrived.wait_timeout(state, left).unwrap().0;
        }
        state.requests.clone()
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        // `stop` sends the command at once; its future only reports completion.
        drop(self.handle.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn receive(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let reply = {
        let mut state = shared.state.lock().unwrap();
        let mut rec = Recorded {
            method: req.method().to_string(),
            target: req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default(),
            headers,
            body: body.to_vec(),
            signature_ok: None,
        };
        rec.signature_ok = state.key.as_deref().map(|k| verify(k, &rec));
        state.requests.push(rec);
        shared.arrived.notify_all();
        state.script.pop_front().unwrap_or_else(|| Reply::status(200))
    };
    if !reply.delay.is_zero() {
        actix_web::rt::time::sleep(reply.delay).await;
    }
    let mut resp = HttpResponse::build(actix_web::http::StatusCode::from_u16(reply.status).unwrap());
    if let Some(ra) = &reply.retry_after {
        resp.insert_header(("Retry-After", ra.as_str()));
    }
    resp.body(reply.body)
}

/// The receiver's side of Standard Webhooks: `whsec_` keys are base64 after the prefix.
fn decode_key(key: &str) -> Vec<u8> {
    match key.strip_prefix("whsec_") {
        Some(b64) => BASE64.decode(b64).expect("test key is valid base64"),
        None => key.as_bytes().to_vec(),
    }
}

/// True when one of the `v1,` signatures matches `{id}.{timestamp}.{body}`, compared in
/// constant time.
fn verify(key: &[u8], rec: &Recorded) -> bool {
    let (Some(id), Some(ts), Some(sigs)) =
        (rec.header("webhook-id"), rec.header("webhook-timestamp"), rec.header("webhook-signature"))
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&rec.body);
    sigs.split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| BASE64.decode(b64).ok())
        .any(|sig| mac.clone().verify_slice(&sig).is_ok())
}
