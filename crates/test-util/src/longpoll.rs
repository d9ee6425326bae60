//! A long-polling client over raw HTTP for the `/lp/` tests
//! (docs/longpoll.md): open, send and poll, checking on every answer the
//! headers `/lp/` always carries.

use crate::http::{self, HttpResponse};
use serde_json::{json, Value};
use std::net::SocketAddr;

#[derive(Clone)]
pub struct Lp {
    pub addr: SocketAddr,
    /// The session's credential: every request names it.
    pub client: String,
    /// What presence, join/leave, hooks and events show for it.
    pub public_client: String,
    /// Extra header lines sent with every request (a token, an Origin).
    pub headers: Vec<(String, String)>,
}

/// Checks what every `/lp/` answer carries, whatever its status.
pub fn uncached(res: &HttpResponse) {
    assert_eq!(res.header("Cache-Control"), Some("no-store"), "{res:?}");
    assert_eq!(res.header("X-Accel-Buffering"), Some("no"), "{res:?}");
}

/// `{"channels":{name:{"epoch":e,"offset":n}}}`.
pub fn positions(channels: &[(&str, &str, u64)]) -> Value {
    let map: serde_json::Map<String, Value> = channels
        .iter()
        .map(|(c, e, o)| (c.to_string(), json!({"epoch": e, "offset": o})))
        .collect();
    json!({ "channels": map })
}

impl Lp {
    pub async fn open(addr: SocketAddr) -> (Lp, Value) {
        Self::open_with(addr, &[]).await
    }

    pub async fn open_with(addr: SocketAddr, headers: &[(&str, &str)]) -> (Lp, Value) {
        let mut lp = Lp::with_client(addr, "");
        lp.headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let res = lp.post("/lp/open", &[], "").await;
        assert_eq!(res.status, 200, "{res:?}");
        assert_eq!(res.header("Content-Type"), Some("application/json"));
        let welcome = res.json();
        lp.client = welcome["client"]
            .as_str()
            .unwrap_or_else(|| panic!("no client id in {welcome}"))
            .to_owned();
        lp.public_client = welcome["public_client"]
            .as_str()
            .unwrap_or_else(|| panic!("no public client id in {welcome}"))
            .to_owned();
        (lp, welcome)
    }

    /// A client id this node has not handed out (another node's).
    pub fn with_client(addr: SocketAddr, client: &str) -> Lp {
        Lp {
            addr,
            client: client.into(),
            public_client: tether_server::session::public_id(client),
            headers: Vec::new(),
        }
    }

    /// `POST path?client=ID` (no `?client=` for `/lp/open`) with `query`
    /// pairs appended; checks the headers every answer carries.
    pub async fn post(&self, path: &str, query: &[(&str, &str)], body: &str) -> HttpResponse {
        let mut pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if path != "/lp/open" && !self.client.is_empty() {
            pairs.insert(0, format!("client={}", self.client));
        }
        let target = if pairs.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", pairs.join("&"))
        };
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "text/plain")];
        headers.extend(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let res = http::request(self.addr, "POST", &target, &headers, body).await;
        uncached(&res);
        res
    }

    pub async fn send_raw(&self, body: &str) -> HttpResponse {
        self.post("/lp/send", &[], body).await
    }

    pub async fn poll_raw(&self, body: &str) -> HttpResponse {
        self.post("/lp/poll", &[], body).await
    }

    /// A JSON array answer with status 200.
    fn array(res: HttpResponse) -> Vec<Value> {
        assert_eq!(res.status, 200, "{res:?}");
        match res.json() {
            Value::Array(a) => a,
            other => panic!("not an array: {other}"),
        }
    }

    pub async fn send(&self, messages: Value) -> Vec<Value> {
        Self::array(self.send_raw(&messages.to_string()).await)
    }

    pub async fn poll(&self, positions: Value) -> Vec<Value> {
        Self::array(self.poll_raw(&positions.to_string()).await)
    }
}
