//! Unit tests of the checks on a loaded configuration (`validate.rs`):
//! ranges, caps of 0, and refusals naming each setting as it was given.

use super::*;
use tests::{flags, no_env};

#[test]
fn absurd_rates_are_refused() {
    for key in [
        "messages-per-second",
        "handshake-rate-per-ip",
        "publish-rate-per-ip",
        "new-channel-rate-per-ip",
    ] {
        for value in [
            "1e-300", "1e-320", "0.0009", "0", "-1", "nan", "inf", "-inf",
        ] {
            let err = load(None, no_env, &flags(&[(key, value)]))
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(err.contains("at least 0.001"), "--{key} {value}: {err}");
            assert!(err.contains(&format!("--{key} {value:?}: ")), "{err}");
        }
        assert!(load(None, no_env, &flags(&[(key, "0.001")])).is_ok());
        assert!(load(None, no_env, &flags(&[(key, "1e9")])).is_ok());
    }
}

/// A cap of 0 is refused, naming the setting the way it was given: a
/// flag, an environment variable or a file key.
#[test]
fn zero_caps_are_refused_naming_where_they_came_from() {
    let dir = std::env::temp_dir().join(format!("tether-cfg-zero-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let file = dir.join("tether.toml");
    for flag in [
        "max-connections",
        "max-connections-per-ip",
        "max-channels",
        "max-subscriptions",
        "handshake-burst-per-ip",
        "publish-burst-per-ip",
        "messages-burst",
        "send-queue",
        "max-subscriptions-total",
        "max-subscriptions-per-ip",
        "new-channel-burst-per-ip",
        "max-long-poll-sessions",
        "max-long-poll-sessions-per-ip",
    ] {
        let key = KEYS.iter().find(|k| k.flag == flag).expect("a setting");
        let refused = |r: Result<Config, ConfigError>| r.map(|_| ()).unwrap_err().to_string();
        let err = refused(load(None, no_env, &flags(&[(flag, "0")])));
        let want = format!("--{flag} \"0\": must be at least 1 (0 would refuse ");
        assert!(err.contains(&want), "{err}");
        let var = key.env_var();
        let err = refused(load(None, |k| (k == var).then(|| "0".into()), &[]));
        assert!(
            err.contains(&format!(
                "environment variable {var}=\"0\": must be at least 1"
            )),
            "{err}"
        );
        std::fs::write(&file, format!("[{}]\n{} = 0\n", key.section, key.key)).expect("write");
        let err = refused(load(Some(&file), no_env, &[]));
        let dotted = format!(
            "{}.{} = 0 in {}: must be at least 1",
            key.section,
            key.key,
            file.display()
        );
        assert!(err.contains(&dotted), "{err}");
        assert!(
            load(None, no_env, &flags(&[(flag, "1")])).is_ok(),
            "--{flag} 1"
        );
    }
}

/// A check on two settings names each the way it was given, or by its
/// flag and default when it was not.
#[test]
fn refusals_of_two_settings_name_both_as_given() {
    let err = load(
        None,
        |k| (k == "TETHER_LIMITS_MAX_MESSAGE_BYTES").then(|| "2000000".into()),
        &[],
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "--history-max-channel-bytes (default 1048576): must be at least \
             TETHER_LIMITS_MAX_MESSAGE_BYTES + 1024 (2001024)"
        ),
        "{err}"
    );
    assert!(!err.contains("  "), "no stray spaces: {err}");
}

#[test]
fn zero_timeouts_are_refused() {
    for key in ["long-poll-timeout", "handshake-timeout", "write-timeout"] {
        let err = load(None, no_env, &flags(&[(key, "0s")]))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("--{key}")) && err.contains("must be above 0"),
            "{err}"
        );
        assert!(
            load(None, no_env, &flags(&[(key, "1ms")])).is_ok(),
            "--{key} 1ms"
        );
    }
}

#[test]
fn absurd_durations_are_refused() {
    for key in ["ping-interval", "history-ttl", "write-timeout"] {
        let err = load(None, no_env, &flags(&[(key, "9223372036854775807")]))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("must be at most 8760h (365 days)"),
            "--{key}: {err}"
        );
        assert!(err.contains(&format!("--{key} ")), "--{key}: {err}");
    }
    assert!(load(None, no_env, &flags(&[("history-meta-ttl", "365d")])).is_ok());
    let err = load(None, no_env, &flags(&[("ipv6-prefix", "129")]))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 to 128"), "{err}");
}

#[test]
fn history_byte_caps_must_hold_a_publication() {
    let err = load(
        None,
        no_env,
        &flags(&[("history-max-channel-bytes", "1000")]),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(err.contains("--max-message-bytes + 1024"), "{err}");
    let err = load(
        None,
        no_env,
        &flags(&[
            ("history-max-channel-bytes", "2000000"),
            ("history-max-bytes", "1000000"),
        ]),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(err.contains("--history-max-bytes"), "{err}");
}

#[test]
fn hooks_need_a_secret_and_sane_bounds() {
    let url = "http://127.0.0.1:9/connect";
    let err = load(None, no_env, &flags(&[("hook-connect", url)]))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("--hook-connect needs --hook-secret"), "{err}");
    let ok = flags(&[("hook-rpc", url), ("hook-secret", "s")]);
    let config = load(None, no_env, &ok).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.hooks.timeout, std::time::Duration::from_secs(2));
    assert_eq!(config.hooks.concurrency, 256);
    assert!(config.to_toml().contains("secret = \"<set>\""));
    for (given, says) in [
        (
            ("hook-rpc", "ftp://x/"),
            "--hook-rpc \"ftp://x/\": expected an http:// or https://",
        ),
        (
            ("hook-timeout", "0s"),
            "--hook-timeout \"0s\": must be above 0",
        ),
        (("hook-timeout", "2m"), "must be above 0 and at most 1m"),
        (("hook-concurrency", "0"), "must be at least 1"),
        (
            ("hook-cookies", "session"),
            "--hook-cookies \"session\": that is what the connect",
        ),
    ] {
        let err = load(None, no_env, &flags(&[given, ("hook-secret", "s")]))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{given:?}: {err}");
    }
    for (given, says) in [
        (("hook-cookies", "a b"), "is not a cookie name"),
        (("hook-headers", "x y"), "is not a header name"),
        (("hook-headers", "Cookie"), "list them in --hook-cookies"),
    ] {
        let all = flags(&[given, ("hook-connect", url), ("hook-secret", "s")]);
        let err = load(None, no_env, &all)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{given:?}: {err}");
    }
}

#[test]
fn a_connect_hook_counts_as_client_authentication_on_a_public_bind() {
    let public = ("listen", "0.0.0.0:8080");
    let hook = ("hook-connect", "http://10.0.0.9:9000/connect");
    let secret = ("hook-secret", "s");
    assert!(load(
        None,
        no_env,
        &flags(&[public, hook, secret, ("api-key", "k")])
    )
    .is_ok());
    let err = load(None, no_env, &flags(&[public, hook, secret]))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("with a connect hook but no --api-key"),
        "{err}"
    );
    // Other hooks authenticate nobody.
    let rpc = ("hook-rpc", "http://10.0.0.9:9000/rpc");
    let err = load(
        None,
        no_env,
        &flags(&[public, rpc, secret, ("api-key", "k")]),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(err.contains("no JWT key or connect hook"), "{err}");
}

#[test]
fn a_rule_with_a_hook_needs_its_url() {
    let dir = std::env::temp_dir().join(format!("tether-cfg-hookrule-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let file = dir.join("tether.toml");
    let text = "[[channels]]\npattern = \"a\"\n\n[[channels]]\npattern = \"chat:*\"\n\
                publish_hook = true\nsubscribe_hook = true\n";
    std::fs::write(&file, text).expect("write");
    let err = load(Some(&file), no_env, &[])
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "subscribe_hook = true at {} line 7: needs --hook-subscribe URL",
            file.display()
        )),
        "{err}"
    );
    let sub = flags(&[
        ("hook-subscribe", "http://127.0.0.1:9/s"),
        ("hook-secret", "s"),
    ]);
    let err = load(Some(&file), no_env, &sub)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("publish_hook = true at"), "{err}");
    assert!(err.contains("line 6: needs --hook-publish URL"), "{err}");
    let both = flags(&[
        ("hook-subscribe", "http://127.0.0.1:9/s"),
        ("hook-publish", "http://127.0.0.1:9/p"),
        ("hook-secret", "s"),
    ]);
    let config = load(Some(&file), no_env, &both).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.channels[1].publish_hook && config.channels[1].subscribe_hook);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn events_need_an_http_url_and_a_secret() {
    let refused = |given: &[(&str, &str)]| {
        load(None, no_env, &flags(given))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let url = ("events-url", "http://127.0.0.1:9000/events");
    let err = refused(&[url]);
    assert!(err.contains("--events-url needs --hook-secret"), "{err}");
    let err = refused(&[
        ("events-url", "https://example.com/e"),
        ("hook-secret", "s"),
    ]);
    assert!(
        err.contains("--events-url \"https://example.com/e\": https:// is not supported"),
        "{err}"
    );
    let err = refused(&[("events-url", "example.com/e"), ("hook-secret", "s")]);
    assert!(err.contains("expected http://host:port/path"), "{err}");
    let err = refused(&[url, ("hook-secret", "s"), ("events-queue", "0")]);
    assert!(
        err.contains("--events-queue \"0\": must be at least 1"),
        "{err}"
    );
    let err = refused(&[url, ("hook-secret", "s"), ("events-retry-max", "1ms")]);
    assert!(
        err.contains("--events-retry-max \"1ms\": expected 100ms to"),
        "{err}"
    );
    let err = refused(&[("broker", "redis"), ("node-ttl", "500ms")]);
    assert!(
        err.contains("--node-ttl \"500ms\": expected 1s to 1h"),
        "{err}"
    );
    let c = load(None, no_env, &flags(&[url, ("hook-secret", "s")])).unwrap();
    assert_eq!(c.events.url.as_deref(), Some(url.1));
    assert!(
        !c.to_toml().contains("secret = \"s\""),
        "the secret is masked"
    );
}
