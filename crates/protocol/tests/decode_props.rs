//! Property tests of the two decoders that read untrusted input, the client
//! frame decoder (`ClientMessage::decode`) and the HTTP publish-body decoder
//! (`decode_publish_body`): no input makes them panic, unknown fields never
//! change what a valid message decodes to, and every error to a request whose
//! `id` could be read carries that `id`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use proptest::prelude::*;
use serde_json::{json, Value};
use tether_protocol::{decode_publish_body, ClientMessage, ErrorCode, ServerMessage};

/// Cases per property: enough to cover the shapes, a few seconds in all.
fn config() -> ProptestConfig {
    ProptestConfig::with_cases(512)
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field names a client message does not use. Server-side names are
/// included on purpose: they were once typed and refused wrong types.
fn extra_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "client",
            "ping_interval_ms",
            "pong_timeout_ms",
            "version",
            "epoch",
            "offset",
            "recovered",
            "publications",
            "code",
            "message",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z_]{1,12}",
        ".{0,8}",
    ]
    .prop_filter("not a client field", |n| {
        !["type", "id", "channel", "data", "recover", "key"].contains(&n.as_str())
    })
}

/// Distinct extra fields (repeated unknown names are fine too, but distinct
/// ones keep the expectation simple).
fn extras() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::btree_map(extra_name(), any_json(), 0..5)
        .prop_map(|m| m.into_iter().collect())
}

fn channel() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:@/-]{1,20}"
}

/// A frame from `(name, value)` pairs in the given order; repeated names
/// stay repeated (a JSON map could not hold them).
fn frame(pairs: &[(String, Value)]) -> String {
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn pair(k: &str, v: Value) -> (String, Value) {
    (k.to_owned(), v)
}

/// A valid id-bearing request as its fields (without extras).
fn valid_request() -> impl Strategy<Value = (u64, Vec<(String, Value)>)> {
    let subscribe = (
        any::<u64>(),
        channel(),
        prop::option::of((".{0,8}", any::<u64>())),
    )
        .prop_map(|(id, ch, recover)| {
            let mut p = vec![
                pair("type", json!("subscribe")),
                pair("id", json!(id)),
                pair("channel", json!(ch)),
            ];
            if let Some((epoch, offset)) = recover {
                p.push(pair("recover", json!({"epoch": epoch, "offset": offset})));
            }
            (id, p)
        });
    let unsubscribe = (any::<u64>(), channel()).prop_map(|(id, ch)| {
        (
            id,
            vec![
                pair("type", json!("unsubscribe")),
                pair("id", json!(id)),
                pair("channel", json!(ch)),
            ],
        )
    });
    let publish = (
        any::<u64>(),
        channel(),
        any_json(),
        prop::option::of("[a-z0-9-]{1,40}"),
    )
        .prop_map(|(id, ch, data, key)| {
            let mut p = vec![
                pair("type", json!("publish")),
                pair("id", json!(id)),
                pair("channel", json!(ch)),
                pair("data", data),
            ];
            if let Some(key) = key {
                p.push(pair("key", json!(key)));
            }
            (id, p)
        });
    prop_oneof![subscribe, unsubscribe, publish]
}

/// A JSON value that is not a string.
fn non_string() -> impl Strategy<Value = Value> {
    any_json().prop_filter("not a string", |v| !v.is_string())
}

/// One way to break a valid request without touching its `id`.
#[derive(Debug, Clone)]
enum Break {
    /// `type` of another JSON type.
    TypeNotString(Value),
    /// `type` a string no client message has.
    UnknownType(String),
    /// `channel` of another JSON type.
    ChannelNotString(Value),
    /// `channel` breaking the naming rule.
    BadChannelName(String),
    RemoveChannel,
    /// `recover` neither null nor a position (applies to subscribe).
    BadRecover(Value),
    /// `key` neither null nor a 1–256-byte string (applies to publish).
    BadKey(Value),
    /// `data` removed (applies to publish).
    RemoveData,
    /// A known field other than `id` given a second time.
    Repeat(usize),
}

fn breakage() -> impl Strategy<Value = Break> {
    prop_oneof![
        non_string().prop_map(Break::TypeNotString),
        ".{0,12}"
            .prop_filter("unknown", |t| {
                !["subscribe", "unsubscribe", "publish", "ping"].contains(&t.as_str())
            })
            .prop_map(Break::UnknownType),
        non_string().prop_map(Break::ChannelNotString),
        prop_oneof![
            Just(String::new()),
            "[a-z]{0,5}[ !#$%^&*()]{1,3}",
            "a{256,300}"
        ]
        .prop_map(Break::BadChannelName),
        Just(Break::RemoveChannel),
        any_json()
            .prop_filter("not a position", |v| {
                let position = v.get("epoch").is_some_and(Value::is_string)
                    && v.get("offset").is_some_and(Value::is_u64);
                !v.is_null() && !position
            })
            .prop_map(Break::BadRecover),
        prop_oneof![
            non_string().prop_filter("not null", |v| !v.is_null()),
            Just(json!("")),
            "k{257,300}".prop_map(Value::from),
        ]
        .prop_map(Break::BadKey),
        Just(Break::RemoveData),
        any::<usize>().prop_map(Break::Repeat),
    ]
}

/// Applies `b` to the fields of a `kind` request; `false` when it does not
/// apply to that type.
fn apply(b: &Break, kind: &str, fields: &mut Vec<(String, Value)>) -> bool {
    let set = |fields: &mut Vec<(String, Value)>, k: &str, v: Value| {
        fields.retain(|(n, _)| n != k);
        fields.push(pair(k, v));
    };
    match b {
        Break::TypeNotString(v) => set(fields, "type", v.clone()),
        Break::UnknownType(t) => set(fields, "type", json!(t)),
        Break::ChannelNotString(v) => set(fields, "channel", v.clone()),
        Break::BadChannelName(n) => set(fields, "channel", json!(n)),
        Break::RemoveChannel => fields.retain(|(n, _)| n != "channel"),
        Break::BadRecover(v) if kind == "subscribe" => set(fields, "recover", v.clone()),
        Break::BadKey(v) if kind == "publish" => set(fields, "key", v.clone()),
        Break::RemoveData if kind == "publish" => fields.retain(|(n, _)| n != "data"),
        Break::Repeat(i) => {
            let known: Vec<(String, Value)> =
                fields.iter().filter(|(n, _)| n != "id").cloned().collect();
            let copy = known[i % known.len()].clone();
            fields.push(copy);
        }
        _ => return false,
    }
    true
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn no_string_makes_a_decoder_panic(text in ".{0,200}") {
        let _ = ClientMessage::decode(&text);
        let _ = ServerMessage::decode(&text);
        let _ = decode_publish_body(text.as_bytes(), 64);
    }

    #[test]
    fn no_bytes_make_the_body_decoder_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_publish_body(&body, 64);
        if let Ok(text) = std::str::from_utf8(&body) {
            let _ = ClientMessage::decode(text);
        }
    }

    /// Objects assembled from protocol-ish pieces reach deeper than random
    /// text: known names with any value, repeated or not, in any order.
    #[test]
    fn no_object_makes_a_decoder_panic(
        pairs in prop::collection::vec(
            (prop_oneof![
                prop::sample::select(vec![
                    "type", "id", "channel", "data", "recover", "key", "client", "offset",
                    "epoch", "publications", "code", "message", "ping_interval_ms",
                ]).prop_map(str::to_owned),
                extra_name(),
            ], prop_oneof![
                any_json(),
                prop::sample::select(vec![
                    "subscribe", "unsubscribe", "publish", "ping", "welcome", "subscribed",
                    "message", "ack", "error", "pong",
                ]).prop_map(Value::from),
            ]),
            0..8,
        )
    ) {
        let text = frame(&pairs);
        let _ = ClientMessage::decode(&text);
        let _ = ServerMessage::decode(&text);
        let _ = decode_publish_body(text.as_bytes(), 64);
    }

    #[test]
    fn extra_fields_never_change_a_valid_request(
        (_, fields) in valid_request(),
        extra in extras(),
        seed in any::<u64>(),
    ) {
        let plain = ClientMessage::decode(&frame(&fields));
        prop_assert!(plain.is_ok(), "{plain:?}");
        let mut all = fields.clone();
        all.extend(extra);
        // Rotate so that extras come before, between and after known fields.
        let n = all.len();
        all.rotate_left((seed as usize) % n);
        prop_assert_eq!(ClientMessage::decode(&frame(&all)), plain);
    }

    #[test]
    fn a_ping_ignores_every_other_field(extra in extras()) {
        let mut fields = vec![pair("type", json!("ping"))];
        fields.extend(extra);
        prop_assert_eq!(ClientMessage::decode(&frame(&fields)), Ok(ClientMessage::Ping));
    }

    #[test]
    fn every_error_keeps_a_readable_id(
        (id, mut fields) in valid_request(),
        b in breakage(),
        extra in extras(),
    ) {
        let kind = fields[0].1.as_str().unwrap_or_default().to_owned();
        prop_assume!(apply(&b, &kind, &mut fields));
        fields.extend(extra);
        let text = frame(&fields);
        match ClientMessage::decode(&text) {
            Ok(m) => prop_assert!(false, "{b:?}: {text} decoded as {m:?}"),
            Err(e) => {
                prop_assert_eq!(e.id, Some(id), "{:?}: {} -> {}", b, text, e);
                prop_assert!(e.code != ErrorCode::MalformedJson, "{text} -> {e}");
            }
        }
    }

    #[test]
    fn valid_bodies_decode_whatever_else_they_carry(
        ch in channel(),
        data in any_json(),
        key in prop::option::of("[a-z0-9-]{1,40}"),
        extra in extras(),
    ) {
        let mut fields = vec![pair("channel", json!(ch)), pair("data", data.clone())];
        if let Some(k) = &key {
            fields.push(pair("key", json!(k)));
        }
        fields.extend(extra);
        let text = frame(&fields);
        let body = decode_publish_body(text.as_bytes(), 1 << 20);
        prop_assert!(body.is_ok(), "{text} -> {body:?}");
        let body = body.unwrap();
        prop_assert_eq!(&body.channel, &ch);
        prop_assert_eq!(body.data.get(), data.to_string());
        prop_assert_eq!(body.key, key);
    }

    #[test]
    fn broken_bodies_are_bad_request_or_invalid_channel(
        (_, mut fields) in valid_request().prop_filter("publish", |(_, f)| f[0].1 == "publish"),
        b in breakage(),
        extra in extras(),
    ) {
        // A body is a publish without `type` and `id`.
        fields.retain(|(n, _)| n != "type" && n != "id");
        let applies = !matches!(b, Break::TypeNotString(_) | Break::UnknownType(_))
            && apply(&b, "publish", &mut fields);
        prop_assume!(applies);
        fields.extend(extra);
        let text = frame(&fields);
        match decode_publish_body(text.as_bytes(), 1 << 20) {
            Ok(body) => prop_assert!(false, "{b:?}: {text} decoded as {body:?}"),
            Err(e) => {
                prop_assert!(
                    matches!(e.code, ErrorCode::BadRequest | ErrorCode::InvalidChannel),
                    "{text} -> {e}"
                );
                prop_assert_eq!(e.id, None);
            }
        }
    }
}
