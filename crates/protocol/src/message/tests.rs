//! Unit tests of message decoding, encoding and the publish body.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
use super::publish::PUBLISH_BODY_SHAPE;
use super::*;

fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_owned()).unwrap_or_else(|_| unreachable!())
}

#[test]
fn decodes_subscribe_with_recover() {
    let m = ClientMessage::decode(
        r#"{"type":"subscribe","id":1,"channel":"news","recover":{"epoch":"e","offset":41}}"#,
    );
    assert_eq!(
        m,
        Ok(ClientMessage::Subscribe {
            id: 1,
            channel: "news".into(),
            recover: Some(StreamPosition {
                epoch: "e".into(),
                offset: 41
            }),
        })
    );
}

#[test]
fn errors_keep_the_request_id() {
    let e = ClientMessage::decode(r#"{"type":"publish","id":7,"channel":"x"}"#).unwrap_err();
    assert_eq!((e.id, e.code), (Some(7), ErrorCode::BadRequest));
    let e = ClientMessage::decode(r#"{"type":"dance","id":8}"#).unwrap_err();
    assert_eq!((e.id, e.code), (Some(8), ErrorCode::UnknownType));
    let e = ClientMessage::decode(r#"{"type":"subscribe","id":9,"channel":"a b"}"#).unwrap_err();
    assert_eq!((e.id, e.code), (Some(9), ErrorCode::InvalidChannel));
    let e = ClientMessage::decode("{not json").unwrap_err();
    assert_eq!((e.id, e.code), (None, ErrorCode::MalformedJson));
    let e = ClientMessage::decode("[1,2]").unwrap_err();
    assert_eq!(e.code, ErrorCode::MalformedJson);
}

#[test]
fn fields_of_any_name_or_type_are_ignored() {
    assert_eq!(
        ClientMessage::decode(r#"{"type":"ping","client":5,"code":[1],"publications":"x"}"#),
        Ok(ClientMessage::Ping)
    );
    let m = ClientMessage::decode(
        r#"{"type":"subscribe","id":1,"channel":"a","offset":"x","data":{"deep":[[[]]]},"z":null}"#,
    );
    assert_eq!(
        m,
        Ok(ClientMessage::Subscribe {
            id: 1,
            channel: "a".into(),
            recover: None,
        })
    );
    // Escaped keys are the same keys.
    let m = ClientMessage::decode(r#"{"t\u0079pe":"unsubscribe","id":2,"channel":"a"}"#);
    assert_eq!(
        m,
        Ok(ClientMessage::Unsubscribe {
            id: 2,
            channel: "a".into()
        })
    );
    // A newer server's fields do not break an older client.
    let m = ServerMessage::decode(
        r#"{"type":"ack","id":3,"offset":4,"channel":7,"recover":1,"key":[]}"#,
    );
    assert_eq!(m, Ok(ServerMessage::Ack { id: 3, offset: 4 }));
    let m = ServerMessage::decode(r#"{"type":"pong","client":1,"offset":"x"}"#);
    assert_eq!(m, Ok(ServerMessage::Pong));
}

#[test]
fn every_error_keeps_a_readable_id() {
    for frame in [
        r#"{"type":5,"id":3}"#,
        r#"{"type":null,"id":3}"#,
        r#"{"type":["subscribe"],"id":3,"channel":"a"}"#,
        r#"{"id":3}"#,
        r#"{"type":"subscribe","id":3,"channel":7}"#,
        r#"{"type":"subscribe","id":3}"#,
        r#"{"type":"subscribe","id":3,"channel":"a","recover":"x"}"#,
        r#"{"type":"subscribe","id":3,"channel":"a","recover":{"epoch":"e"}}"#,
        r#"{"type":"subscribe","id":3,"channel":"a","recover":["e",41]}"#,
        r#"{"type":"unsubscribe","id":3,"channel":""}"#,
        r#"{"type":"publish","id":3,"channel":"a","key":9}"#,
        r#"{"type":"publish","id":3,"channel":"a","data":1,"key":""}"#,
        r#"{"type":"publish","id":3,"channel":"a"}"#,
        r#"{"type":"publish","id":3,"channel":"a","data":1,"channel":"b"}"#,
        r#"{"channel":"a","channel":"b","id":3,"type":"subscribe"}"#,
        r#"{"type":"dance","id":3}"#,
    ] {
        let e = ClientMessage::decode(frame).unwrap_err();
        assert_eq!(e.id, Some(3), "{frame}: {e}");
    }
}

#[test]
fn an_unreadable_id_is_none() {
    for frame in [
        r#"{"type":"subscribe","id":-1,"channel":"a"}"#,
        r#"{"type":"subscribe","id":"3","channel":"a"}"#,
        r#"{"type":"subscribe","id":3.5,"channel":"a"}"#,
        r#"{"type":"subscribe","id":1e999,"channel":"a"}"#,
        r#"{"type":"subscribe","id":3,"id":3,"channel":"a"}"#,
    ] {
        let e = ClientMessage::decode(frame).unwrap_err();
        assert_eq!(
            (e.id, e.code),
            (None, ErrorCode::BadRequest),
            "{frame}: {e}"
        );
    }
}

#[test]
fn duplicate_known_fields_are_refused_unknown_ones_skipped() {
    let e = ClientMessage::decode(r#"{"type":"publish","id":4,"channel":"a","data":1,"data":2}"#)
        .unwrap_err();
    assert_eq!((e.id, e.code), (Some(4), ErrorCode::BadRequest));
    assert!(e.message.contains("`data` appears more than once"), "{e}");
    assert_eq!(
        ClientMessage::decode(r#"{"type":"ping","x":1,"x":"y"}"#),
        Ok(ClientMessage::Ping)
    );
}

#[test]
fn data_is_kept_raw_and_null_is_data() {
    let m =
        ClientMessage::decode(r#"{"type":"publish","id":1,"channel":"a","data": {"b" : 1.50}}"#);
    match m {
        Ok(ClientMessage::Publish { data, .. }) => assert_eq!(data.get(), r#"{"b" : 1.50}"#),
        other => panic!("{other:?}"),
    }
    let m = ClientMessage::decode(r#"{"type":"publish","id":1,"channel":"a","data":null}"#);
    assert!(matches!(m, Ok(ClientMessage::Publish { data, .. }) if data.get() == "null"));
}

#[test]
fn deep_nesting_and_long_types_cost_no_stack_or_echo() {
    let deep = format!(
        r#"{{"type":"ping","x":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    // Skipped iteratively (no recursion, so no stack overflow) and ignored.
    assert_eq!(ClientMessage::decode(&deep), Ok(ClientMessage::Ping));
    let deep = format!(
        r#"{{"type":"subscribe","id":2,"channel":"a","recover":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let e = ClientMessage::decode(&deep).unwrap_err();
    assert_eq!((e.id, e.code), (Some(2), ErrorCode::BadRequest));
    let long = format!(r#"{{"type":"{}","id":1}}"#, "x".repeat(100_000));
    let e = ClientMessage::decode(&long).unwrap_err();
    assert_eq!((e.id, e.code), (Some(1), ErrorCode::UnknownType));
    assert!(e.message.len() < 200, "{}", e.message.len());
}

#[test]
fn publish_bodies() {
    let b = decode_publish_body(
        br#"{"channel":"a","data":[1, 2],"key":"k","extra":{"x":1}}"#,
        100,
    )
    .unwrap();
    assert_eq!(
        (b.channel.as_str(), b.data.get(), b.key.as_deref()),
        ("a", "[1, 2]", Some("k"))
    );
    let b = decode_publish_body(br#"{"data":null,"channel":"a","key":null}"#, 100).unwrap();
    assert_eq!((b.data.get(), b.key), ("null", None));
    for (body, code) in [
        (&b"{\"channel\":\"a\""[..], ErrorCode::BadRequest),
        (b"[1]", ErrorCode::BadRequest),
        (b"\xff\xfe", ErrorCode::BadRequest),
        (br#"{"channel":"a"}"#, ErrorCode::BadRequest),
        (br#"{"data":1}"#, ErrorCode::BadRequest),
        (br#"{"channel":1,"data":1}"#, ErrorCode::BadRequest),
        (
            br#"{"channel":"a","data":1,"key":""}"#,
            ErrorCode::BadRequest,
        ),
        (
            br#"{"channel":"a","data":1,"data":2}"#,
            ErrorCode::BadRequest,
        ),
        (
            br#"{"channel":"a","data":"0123456789"}"#,
            ErrorCode::BadRequest,
        ),
        (br#"{"channel":"a b","data":1}"#, ErrorCode::InvalidChannel),
    ] {
        let e = decode_publish_body(body, 10).unwrap_err();
        assert_eq!(
            (e.id, e.code),
            (None, code),
            "{}: {e}",
            String::from_utf8_lossy(body)
        );
        if code == ErrorCode::BadRequest && !e.message.contains("bytes; the limit") {
            assert!(e.message.starts_with(PUBLISH_BODY_SHAPE), "{e}");
        }
    }
}

#[test]
fn message_frame_is_valid_json_with_escaped_channel() {
    let frame = encode_message_frame("a\"b", 3, r#"{"x":1}"#);
    let v: serde_json::Value = serde_json::from_str(&frame).unwrap_or_default();
    assert_eq!(v["channel"], "a\"b");
    assert_eq!(v["offset"], 3);
    assert_eq!(v["data"]["x"], 1);
}

#[test]
fn server_messages_round_trip() {
    let msgs = vec![
        ServerMessage::Welcome {
            client: "c".into(),
            ping_interval_ms: 25000,
            pong_timeout_ms: 10000,
            version: 1,
            poll_timeout_ms: None,
            public_client: None,
        },
        ServerMessage::Welcome {
            client: "lp".into(),
            ping_interval_ms: 25000,
            pong_timeout_ms: 10000,
            version: 1,
            poll_timeout_ms: Some(25000),
            public_client: None,
        },
        ServerMessage::Subscribed {
            id: Some(1),
            channel: "news".into(),
            epoch: "e".into(),
            offset: 45,
            recovered: true,
            publications: vec![PublicationEntry {
                offset: 45,
                data: raw("{\"a\":1}"),
            }],
        },
        ServerMessage::Message {
            channel: "news".into(),
            offset: 46,
            data: raw("[1,2]"),
        },
        ServerMessage::Ack { id: 3, offset: 47 },
        ServerMessage::Error {
            id: Some(3),
            code: ErrorCode::Forbidden,
            message: "no".into(),
            channel: None,
        },
        ServerMessage::Error {
            id: None,
            code: ErrorCode::InvalidChannel,
            message: "bad name".into(),
            channel: Some("a b".into()),
        },
        ServerMessage::Subscribed {
            id: None,
            channel: "user:7".into(),
            epoch: "e".into(),
            offset: 3,
            recovered: false,
            publications: vec![],
        },
        ServerMessage::Rpc {
            id: 9,
            result: raw("{\"ok\":true}"),
        },
        ServerMessage::Close {
            code: 4002,
            reason: "token expired".into(),
        },
        ServerMessage::Pong,
    ];
    for m in msgs {
        assert_eq!(ServerMessage::decode(&m.encode()).as_ref(), Ok(&m));
    }
}

/// The vector file is what the JS client checks its retryable list against;
/// every code the server sends is in it.
#[test]
fn error_code_vectors_match_this_table() {
    let text = include_str!("../../vectors/error_codes.json");
    let rows: Vec<serde_json::Value> = serde_json::from_str(text).unwrap_or_default();
    assert_eq!(rows.len(), 13, "one row per ErrorCode but Unknown");
    for row in rows {
        let code: ErrorCode =
            serde_json::from_value(row["code"].clone()).unwrap_or(ErrorCode::Unknown);
        assert_ne!(code, ErrorCode::Unknown, "{row}");
        assert_eq!(row["code"], code.as_str());
        assert_eq!(row["retryable"], code.is_retryable(), "{row}");
    }
}

#[test]
fn join_and_leave_need_their_channel_and_client_and_keep_info_raw() {
    for frame in [
        r#"{"type":"join","channel":"room:1"}"#,
        r#"{"type":"leave","client":"a"}"#,
        r#"{"type":"join","channel":"room:1","client":7}"#,
    ] {
        let e = ServerMessage::decode(frame).expect_err(frame);
        assert_eq!(e.code, ErrorCode::BadRequest, "{frame}");
    }
    let m = ServerMessage::decode(r#"{"type":"leave","channel":"c","client":"a","info":{"x": 1}}"#)
        .expect("decodes");
    assert_eq!(
        m.encode(),
        r#"{"type":"leave","channel":"c","client":"a","user":null,"info":{"x": 1}}"#
    );
}

#[test]
fn rpc_method_is_checked_and_data_defaults_to_null() {
    let m =
        ClientMessage::decode(r#"{"type":"rpc","id":4,"method":"get_profile"}"#).expect("decodes");
    let v: serde_json::Value = serde_json::from_str(&m.encode()).unwrap_or_default();
    assert_eq!(
        v,
        serde_json::json!({"type": "rpc", "id": 4, "method": "get_profile", "data": null})
    );
    let long = "m".repeat(MAX_RPC_METHOD_LEN + 1);
    for frame in [
        r#"{"type":"rpc","id":4}"#.to_owned(),
        r#"{"type":"rpc","id":4,"method":""}"#.to_owned(),
        r#"{"type":"rpc","id":4,"method":7}"#.to_owned(),
        format!(r#"{{"type":"rpc","id":4,"method":"{long}"}}"#),
    ] {
        let e = ClientMessage::decode(&frame).expect_err(&frame);
        assert_eq!((e.id, e.code), (Some(4), ErrorCode::BadRequest), "{frame}");
    }
    let ok = "m".repeat(MAX_RPC_METHOD_LEN);
    assert!(ClientMessage::decode(&format!(r#"{{"type":"rpc","id":4,"method":"{ok}"}}"#)).is_ok());
    // An answer without `result` is a null result.
    let m = ServerMessage::decode(r#"{"type":"rpc","id":4}"#).expect("decodes");
    assert_eq!(m.encode(), r#"{"type":"rpc","id":4,"result":null}"#);
}
