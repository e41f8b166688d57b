//! The raw Jenkins (Tikal) listeners over real sockets: clients that behave like the plugin
//! (TCP: connect, write the exact fixture bytes, flush, close, read nothing; UDP: one datagram
//! per message) against a gateway with a console rule, read back from the outbox.
//!
//! Where a test must know that the listener has *finished* with a message that stores nothing
//! (refused, malformed, oversize), its client half-closes and reads until the listener closes
//! the connection, which it does once the message is handled. Every wait has a deadline.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use herald::clock::SystemClock;
use herald::config;
use herald::gateway::Gateway;
use herald::listen::{self, Limits, Listeners, Transport};
use herald::outbox::memory::MemoryOutbox;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::watch;

const DEADLINE: Duration = Duration::from_secs(10);
const MAX_BODY: usize = 4096;
/// A second loopback address (Linux routes all of 127/8 to `lo`): the allow-listed sender.
const OTHER_LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A gateway with raw listeners on loopback port 0 and an outbox the test reads.
struct Rig {
    outbox: Arc<MemoryOutbox>,
    listeners: Option<Listeners>,
    shutdown: watch::Sender<bool>,
    tcp: SocketAddr,
    udp: SocketAddr,
}

async fn rig(source_extra: &str, limits: Limits) -> Rig {
    // The listeners' logs, shown for failing tests (or with --nocapture).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "herald=info".into()),
        )
        .with_test_writer()
        .try_init();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = {MAX_BODY}

[delivery]
dedup_window = "0s"

[sources.jenkins]
tcp = "127.0.0.1:0"
udp = "127.0.0.1:0"
{source_extra}

[channels.stdout]
type = "console"

[[rules]]
name = "all"
channels = ["stdout"]
"#
    );
    let cfg = config::parse(&text, &|_| None).expect("test config is valid");
    let outbox = Arc::new(MemoryOutbox::new());
    let built = Gateway::build(&cfg, outbox.clone(), Arc::new(SystemClock)).expect("gateway builds");
    let (shutdown, rx) = watch::channel(false);
    let listeners = listen::spawn_with(&cfg, Arc::new(built.gateway), rx, limits).await.expect("binds");
    let tcp = listeners.local_addr("jenkins", Transport::Tcp).expect("tcp bound");
    let udp = listeners.local_addr("jenkins", Transport::Udp).expect("udp bound");
    Rig { outbox, listeners: Some(listeners), shutdown, tcp, udp }
}

impl Rig {
    /// Waits until the outbox holds `n` deliveries; returns their statuses, sorted.
    async fn statuses(&self, n: usize) -> Vec<String> {
        let start = tokio::time::Instant::now();
        loop {
            let all = self.outbox.all();
            if all.len() >= n {
                let mut s: Vec<String> = all.into_iter().map(|d| d.headline.status).collect();
                s.sort();
                return s;
            }
            assert!(start.elapsed() < DEADLINE, "expected {n} deliveries, have {}", all.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/inbound/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn sorted(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// What the plugin does: a new socket, the bytes, flush, close; it never reads.
async fn tikal_tcp(addr: SocketAddr, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    s.flush().await.expect("flush");
}

/// One datagram from a fresh socket on `from`.
async fn tikal_udp(from: IpAddr, addr: SocketAddr, bytes: &[u8]) {
    let s = UdpSocket::bind(SocketAddr::new(from, 0)).await.expect("bind client");
    s.send_to(bytes, addr).await.expect("send");
}

/// Sends from `from`, half-closes, and returns once the listener has closed the connection,
/// that is, once it is done with the message. Write errors are expected when the listener
/// drops the connection early (oversize, refused peer).
async fn tcp_until_handled(from: IpAddr, addr: SocketAddr, bytes: &[u8]) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind client");
    let mut s = socket.connect(addr).await.expect("connect");
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the listener did not close the connection");
    assert!(rest.is_empty(), "the listener must never reply");
}

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn json_and_xml_over_tcp() {
    let rig = rig("", Limits::default()).await;
    for name in [
        "jenkins-tikal-started.json",
        "jenkins-tikal-completed-success.xml",
        "jenkins-tikal-finalized-failure.xml",
        "jenkins-tikal-completed-unstable.json",
    ] {
        tikal_tcp(rig.tcp, &fixture(name)).await;
    }
    assert_eq!(rig.statuses(4).await, sorted(&["started", "success", "failure", "unstable"]));
}

#[tokio::test]
async fn json_and_xml_over_udp() {
    let rig = rig("", Limits::default()).await;
    tikal_udp(LOCAL, rig.udp, &fixture("jenkins-tikal-queued.json")).await;
    tikal_udp(LOCAL, rig.udp, &fixture("jenkins-tikal-started.xml")).await;
    tikal_udp(LOCAL, rig.udp, &fixture("jenkins-tikal-finalized-failure.json")).await;
    assert_eq!(rig.statuses(3).await, sorted(&["waiting", "started", "failure"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_tcp_senders() {
    let rig = rig("", Limits::default()).await;
    let files = [
        ("jenkins-tikal-queued.json", "waiting"),
        ("jenkins-tikal-started.xml", "started"),
        ("jenkins-tikal-completed-success.json", "success"),
        ("jenkins-tikal-finalized-failure.xml", "failure"),
        ("jenkins-tikal-completed-unstable.json", "unstable"),
    ];
    let mut expected = Vec::new();
    let mut senders = Vec::new();
    for i in 0..50 {
        let (file, status) = files[i % files.len()];
        expected.push(status);
        let (addr, bytes) = (rig.tcp, fixture(file));
        senders.push(tokio::spawn(async move { tikal_tcp(addr, &bytes).await }));
    }
    for s in senders {
        s.await.expect("sender");
    }
    assert_eq!(rig.statuses(50).await, sorted(&expected));
    let counts = rig.outbox.all().iter().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(d.event_id.clone()).or_insert(0) += 1;
        m
    });
    assert_eq!(counts.len(), 50, "one event per message");
}

#[tokio::test]
async fn malformed_messages_are_dropped_and_the_listener_survives() {
    let rig = rig("", Limits::default()).await;
    let bad: [&[u8]; 5] = [
        b"{\"name\":\"acme-api\",\"build\":{", // cut short
        b"<job><name>acme</job>",              // mismatched XML
        b"<project><name>x</name></project>",  // XML, but not Tikal's <job>
        b"{\"hello\":\"world\"}",              // JSON, but not Tikal
        b"\x00\x01\x02 not a document \xff",   // noise
    ];
    for body in bad {
        tcp_until_handled(LOCAL, rig.tcp, body).await;
        tikal_udp(LOCAL, rig.udp, body).await;
    }
    tcp_until_handled(LOCAL, rig.tcp, b"").await; // a port probe
    tikal_tcp(rig.tcp, &fixture("jenkins-tikal-completed-success.json")).await;
    tikal_udp(LOCAL, rig.udp, &fixture("jenkins-tikal-started.json")).await;
    assert_eq!(rig.statuses(2).await, sorted(&["success", "started"]));
    assert_eq!(rig.outbox.all().len(), 2);
}

/// A valid Tikal message padded past `max_body_bytes` with a long log, so only the cap
/// can stop it.
fn oversize() -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("jenkins-tikal-completed-success.json")).expect("fixture");
    v["build"]["log"] = serde_json::Value::String("x".repeat(3 * MAX_BODY));
    serde_json::to_vec(&v).expect("json")
}

#[tokio::test]
async fn oversize_messages_are_dropped_and_the_listener_survives() {
    let rig = rig("", Limits::default()).await;
    let big = oversize();
    assert!(big.len() > MAX_BODY && big.len() < 65507);
    tcp_until_handled(LOCAL, rig.tcp, &big).await;
    tikal_udp(LOCAL, rig.udp, &big).await;
    tikal_tcp(rig.tcp, &fixture("jenkins-tikal-finalized-failure.json")).await;
    tikal_udp(LOCAL, rig.udp, &fixture("jenkins-tikal-queued.json")).await;
    assert_eq!(rig.statuses(2).await, sorted(&["failure", "waiting"]));
    assert_eq!(rig.outbox.all().len(), 2);
}

#[tokio::test]
async fn silent_clients_do_not_block_others() {
    let rig = rig("", Limits::default()).await;
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(TcpStream::connect(rig.tcp).await.expect("connect"));
    }
    tikal_tcp(rig.tcp, &fixture("jenkins-tikal-started.json")).await;
    assert_eq!(rig.statuses(1).await, vec!["started".to_string()]);
    drop(silent);
}

#[tokio::test]
async fn the_read_timeout_cuts_silent_clients() {
    let limits = Limits { read_timeout: Duration::from_millis(200), ..Limits::default() };
    let rig = rig("", limits).await;
    let mut silent = TcpStream::connect(rig.tcp).await.expect("connect");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(DEADLINE, silent.read(&mut buf)).await.expect("closed by the listener");
    assert!(matches!(read, Ok(0) | Err(_)), "the listener must never reply");
    // A slow sender that stalls half-way is cut too, and stores nothing.
    let mut slow = TcpStream::connect(rig.tcp).await.expect("connect");
    slow.write_all(&fixture("jenkins-tikal-started.json")[..100]).await.expect("write");
    let read = tokio::time::timeout(DEADLINE, slow.read(&mut buf)).await.expect("closed by the listener");
    assert!(matches!(read, Ok(0) | Err(_)));
    tikal_tcp(rig.tcp, &fixture("jenkins-tikal-queued.json")).await;
    assert_eq!(rig.statuses(1).await, vec!["waiting".to_string()]);
}

#[tokio::test]
async fn peers_outside_allow_ips_are_refused() {
    let rig = rig(r#"allow_ips = ["127.0.0.2"]"#, Limits::default()).await;
    let body = fixture("jenkins-tikal-completed-success.json");
    tcp_until_handled(LOCAL, rig.tcp, &body).await;
    // The UDP loop checks peers in arrival order: the refused datagram is judged first.
    tikal_udp(LOCAL, rig.udp, &body).await;
    tikal_udp(OTHER_LOOPBACK, rig.udp, &fixture("jenkins-tikal-started.json")).await;
    tcp_until_handled(OTHER_LOOPBACK, rig.tcp, &fixture("jenkins-tikal-queued.json")).await;
    assert_eq!(rig.statuses(2).await, sorted(&["started", "waiting"]));
    assert_eq!(rig.outbox.all().len(), 2, "nothing from 127.0.0.1 is stored");
}

/// Today `Gateway::receive` checks the source token, which raw messages cannot carry: a
/// source with a token refuses them all. (This flips once the gateway has a raw entry point.)
#[tokio::test]
async fn raw_messages_need_no_token_even_when_http_does() {
    // A raw message cannot carry the token the HTTP endpoint requires; allow_ips guards it.
    let rig = rig(r#"token = "hook-token-1""#, Limits::default()).await;
    tcp_until_handled(LOCAL, rig.tcp, &fixture("jenkins-tikal-started.json")).await;
    assert_eq!(rig.statuses(1).await, vec!["started".to_string()]);
}

#[tokio::test]
async fn stop_closes_the_sockets_even_with_a_silent_client() {
    let limits = Limits { drain: Duration::from_millis(100), ..Limits::default() };
    let mut rig = rig("", limits).await;
    tikal_tcp(rig.tcp, &fixture("jenkins-tikal-started.json")).await;
    assert_eq!(rig.statuses(1).await, vec!["started".to_string()]);
    let _silent = TcpStream::connect(rig.tcp).await.expect("connect");
    let listeners = rig.listeners.take().expect("running");
    tokio::time::timeout(DEADLINE, listeners.stop()).await.expect("stop returns after the drain");
    assert!(TcpStream::connect(rig.tcp).await.is_err(), "the TCP port is closed");
    UdpSocket::bind(rig.udp).await.expect("the UDP port is free again");
}

#[tokio::test]
async fn the_shutdown_channel_stops_the_listeners() {
    let rig = rig("", Limits::default()).await;
    rig.shutdown.send(true).expect("listeners are subscribed");
    let start = tokio::time::Instant::now();
    while TcpStream::connect(rig.tcp).await.is_ok() {
        assert!(start.elapsed() < DEADLINE, "the TCP port is still open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::timeout(DEADLINE, rig.listeners.expect("running").stop()).await.expect("stopped");
}

#[tokio::test]
async fn a_busy_address_fails_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let text = format!("[sources.jenkins]\ntcp = \"{addr}\"\n[channels.c]\ntype = \"console\"\n");
    let cfg = config::parse(&text, &|_| None).expect("valid");
    let built = Gateway::build(&cfg, Arc::new(MemoryOutbox::new()), Arc::new(SystemClock)).expect("builds");
    let (_tx, rx) = watch::channel(false);
    let err = match listen::spawn(&cfg, Arc::new(built.gateway), rx).await {
        Ok(_) => panic!("the address is taken"),
        Err(e) => e,
    };
    assert!(err.to_string().contains(&format!("tcp {addr}")), "{err}");
    assert!(err.to_string().contains("[sources.jenkins].tcp"), "{err}");
}
