//! The shared test vectors (also read by the JS client's tests) decode as they say.
#![allow(clippy::expect_used)] // test code: a panic is a test failure

use serde_json::Value;
use tether_protocol::{ClientMessage, ServerMessage};

fn vectors() -> Value {
    serde_json::from_str(include_str!("../vectors/messages.json")).expect("vector file is JSON")
}

fn as_json(text: &str) -> Value {
    serde_json::from_str(text).expect("encoder emits JSON")
}

#[test]
fn client_vectors() {
    let v = vectors();
    let cases = v["client_to_server"].as_array().expect("array");
    assert!(cases.len() > 10);
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let frame = case["frame"].as_str().expect("frame");
        let result = ClientMessage::decode(frame);
        match (&case["expect"]["decoded"], result) {
            (Value::Null, Ok(m)) => panic!("{name}: expected an error, decoded {m:?}"),
            (Value::Null, Err(e)) => {
                assert_eq!(e.code.as_str(), case["expect"]["error"]["code"], "{name}");
                assert_eq!(
                    e.id.map(Value::from).unwrap_or(Value::Null),
                    case["expect"]["error"]["id"],
                    "{name}"
                );
            }
            (expected, Ok(m)) => assert_eq!(&as_json(&m.encode()), expected, "{name}"),
            (_, Err(e)) => panic!("{name}: {e}"),
        }
    }
}

#[test]
fn server_vectors() {
    let v = vectors();
    for case in v["server_to_client"].as_array().expect("array") {
        let name = case["name"].as_str().unwrap_or("?");
        let frame = case["frame"].as_str().expect("frame");
        let m = ServerMessage::decode(frame).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(as_json(&m.encode()), case["expect"]["decoded"], "{name}");
    }
}
