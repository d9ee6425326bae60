//! A token whose `exp` lies beyond anything `SystemTime`/`Instant` can hold
//! (`u64::MAX` seconds, `1e19` or `1e300` as a float) is accepted as
//! "expires beyond the 100-year horizon": the connection is admitted and
//! works, the server does not panic, and a bystander stays served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use tether_test_util::{attack::Bystander, http, process::ServerProcess, ws::WsClient};

const SECRET: &str = "far-future-secret";

#[tokio::test]
async fn huge_exp_is_clamped_and_the_connection_works() {
    let server = ServerProcess::start(&["--jwt-secret", SECRET, "--allow-anonymous"]).await;
    let mut bystander = Bystander::join(server.addr).await;
    for exp in [json!(u64::MAX), json!(1e19), json!(1e300)] {
        let token = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "far", "exp": exp, "subscribe": ["*"]}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        let url = format!("ws://{}/ws?token={token}", server.addr);
        let mut client = WsClient::try_connect(&url, &[])
            .await
            .unwrap_or_else(|e| panic!("exp {exp}: refused: {e}"));
        assert_eq!(client.recv().await["type"], "welcome", "exp {exp}");
        // The session's timers (heartbeat and expiry) run: it is served.
        let reply = client.subscribe(1, "far", None).await;
        assert_eq!(reply["type"], "subscribed", "exp {exp}: {reply}");
        let sent = http::publish(server.addr, "far", json!({"exp": exp.to_string()})).await;
        let m = client.recv_type("message").await;
        assert_eq!(m["offset"], sent["offset"], "exp {exp}");
        client.send(json!({"type": "ping"})).await;
        client.recv_type("pong").await;
        bystander.still_served().await;
    }
}
