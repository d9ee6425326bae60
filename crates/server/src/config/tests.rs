//! Unit tests of configuration loading, validation and the key table.

use super::*;
use std::collections::HashMap;

pub(super) fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn defaults_load_with_nothing_given() {
    let c = load(None, no_env, &[]).expect("defaults are valid");
    assert_eq!(c.heartbeat.ping_interval, Duration::from_secs(25));
    assert_eq!(c.server.listen.port(), 8080);
    assert!(c.server.echo);
}

#[test]
fn flags_beat_env_beat_file() {
    let dir = std::env::temp_dir().join(format!("tether-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let file = dir.join("t.toml");
    std::fs::write(
        &file,
        "[heartbeat]\nping_interval = \"5s\"\npong_timeout = \"3s\"\n[limits]\nsend_queue = 7\n",
    )
    .expect("write");
    let env: HashMap<String, String> = [
        ("TETHER_HEARTBEAT_PING_INTERVAL", "4s"),
        ("TETHER_LIMITS_SEND_QUEUE", "8"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect();
    let flags = vec![
        ("ping-interval".to_owned(), "1500ms".to_owned()),
        ("no-echo".to_owned(), String::new()),
        (
            "allowed-origins".to_owned(),
            "https://a.example, https://*.b.example".to_owned(),
        ),
    ];
    let c = load(Some(&file), |k| env.get(k).cloned(), &flags).expect("valid");
    assert_eq!(c.heartbeat.ping_interval, Duration::from_millis(1500));
    assert_eq!(c.heartbeat.pong_timeout, Duration::from_secs(3));
    assert_eq!(c.limits.send_queue, 8);
    assert!(!c.server.echo);
    assert_eq!(
        c.auth.allowed_origins,
        vec!["https://a.example", "https://*.b.example"]
    );
}

#[test]
fn bad_values_name_their_source() {
    let flags = vec![("ping-interval".to_owned(), "soon".to_owned())];
    let err = load(None, no_env, &flags).unwrap_err().to_string();
    assert!(err.contains("--ping-interval"), "{err}");
    assert!(err.contains("25s"), "{err}");
}

#[test]
fn public_bind_without_auth_is_refused_unless_anonymous() {
    let flags = vec![("listen".to_owned(), "0.0.0.0:8080".to_owned())];
    let err = load(None, no_env, &flags).unwrap_err().to_string();
    assert!(err.contains("--allow-anonymous"), "{err}");
    let mut flags = flags;
    flags.push(("allow-anonymous".to_owned(), String::new()));
    assert!(load(None, no_env, &flags).is_ok());
}

pub(super) fn flags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn public_bind_needs_both_halves_of_auth() {
    let public = ("listen", "0.0.0.0:8080");
    let jwt_only = load(None, no_env, &flags(&[public, ("jwt-secret", "s")]))
        .unwrap_err()
        .to_string();
    assert!(jwt_only.contains("no --api-key"), "{jwt_only}");
    assert!(jwt_only.contains("Add --api-key"), "{jwt_only}");
    let rsa_only = load(
        None,
        no_env,
        &flags(&[("listen", "[::]:8080"), ("jwt-public-key", "/k.pem")]),
    )
    .unwrap_err()
    .to_string();
    assert!(rsa_only.contains("no --api-key"), "{rsa_only}");
    let key_only = load(None, no_env, &flags(&[public, ("api-key", "k")]))
        .unwrap_err()
        .to_string();
    assert!(key_only.contains("no JWT key"), "{key_only}");
    assert!(key_only.contains("Add --jwt-secret"), "{key_only}");
    for err in [&jwt_only, &key_only] {
        assert!(err.contains("--allow-anonymous"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
    let both = flags(&[public, ("jwt-secret", "s"), ("api-key", "k")]);
    assert!(load(None, no_env, &both).is_ok());
    for half in [("jwt-secret", "s"), ("api-key", "k")] {
        let open = flags(&[public, half, ("allow-anonymous", "")]);
        assert!(load(None, no_env, &open).is_ok(), "{half:?}");
        // Loopback stays as easy as before.
        let local = flags(&[("listen", "127.0.0.1:8080"), half]);
        assert!(load(None, no_env, &local).is_ok(), "{half:?}");
    }
}

#[test]
fn trusted_proxies_are_validated() {
    let flags = vec![(
        "trusted-proxies".to_owned(),
        "10.0.0.0/8, 192.168.1.300".to_owned(),
    )];
    let err = load(None, no_env, &flags).unwrap_err().to_string();
    assert!(
        err.contains("192.168.1.300") && err.contains("--trusted-proxies"),
        "{err}"
    );
    let flags = vec![(
        "trusted-proxies".to_owned(),
        "10.0.0.0/8,::1,127.0.0.1".to_owned(),
    )];
    let c = load(None, no_env, &flags).expect("CIDRs and bare addresses");
    assert_eq!(c.proxy.trusted.len(), 3);
    let flags = vec![("proxy-protocol".to_owned(), String::new())];
    let err = load(None, no_env, &flags).unwrap_err().to_string();
    assert!(err.contains("--trusted-proxies"), "{err}");
    let flags = vec![("ipv6-prefix".to_owned(), "129".to_owned())];
    let err = load(None, no_env, &flags).unwrap_err().to_string();
    assert!(
        err.contains("--ipv6-prefix \"129\": must be 1 to 128"),
        "{err}"
    );
}

#[test]
fn forwarded_header_is_one_of_two_names() {
    let c = load(None, no_env, &[]).expect("defaults");
    assert_eq!(c.proxy.forwarded_header, ForwardedHeader::XForwardedFor);
    let env = |k: &str| (k == "TETHER_PROXY_FORWARDED_HEADER").then(|| "forwarded".to_owned());
    let c = load(None, env, &[]).expect("forwarded");
    assert_eq!(c.proxy.forwarded_header, ForwardedHeader::Forwarded);
    let flags = vec![("forwarded-header".to_owned(), "X-Real-IP".to_owned())];
    let err = load(None, no_env, &flags).unwrap_err().to_string();
    assert!(
        err.contains("--forwarded-header") && err.contains("x-forwarded-for"),
        "{err}"
    );
}

#[test]
fn print_config_round_trips_and_masks_secrets() {
    let flags = vec![("api-key".to_owned(), "hunter2".to_owned())];
    let c = load(None, no_env, &flags).expect("valid");
    let text = c.to_toml();
    assert!(!text.contains("hunter2"));
    let back: Config = toml::from_str(&text).expect("printed config parses");
    assert_eq!(back.heartbeat.ping_interval, c.heartbeat.ping_interval);
}

/// docs/configuration.md documents every flag and variable.
#[test]
fn every_key_is_documented() {
    let doc = include_str!("../../../../docs/configuration.md");
    for key in KEYS {
        assert!(
            doc.contains(&format!("`--{}`", key.flag)),
            "--{} undocumented",
            key.flag
        );
        assert!(
            doc.contains(&key.env_var()),
            "{} undocumented",
            key.env_var()
        );
    }
}

#[test]
fn every_key_has_a_unique_flag_and_env_var() {
    let mut flags: Vec<_> = KEYS.iter().map(|k| k.flag).collect();
    flags.sort_unstable();
    flags.dedup();
    assert_eq!(flags.len(), KEYS.len());
    // every key exists in the printed default config or is optional
    let printed = Config::default().to_toml();
    for key in KEYS
        .iter()
        .filter(|k| !k.help.contains("[default: random]"))
    {
        let optional = !key.help.contains("[default:") && !key.switch;
        assert!(
            optional || printed.contains(&format!("{} =", key.key)),
            "{}",
            key.key
        );
    }
}

/// Serde's and TOML's words that must never reach the user.
const INTERNALS: &[&str] = &[
    "untagged",
    "variant of",
    "expected usize",
    "expected u8",
    "expected u32",
    "expected f64",
    "expected a boolean",
    "socket address",
    "invalid type",
    "invalid value",
    "at 0",
    "Raw",
];

fn assert_plain(err: &str, names: &str) {
    for word in INTERNALS {
        assert!(!err.contains(word), "{word:?} leaked in: {err}");
    }
    assert!(err.contains(names), "{names:?} not named in: {err}");
}

/// Every setting, given a bad value as a flag, a variable or a file key,
/// is refused naming what was typed and where, in plain words.
#[test]
fn every_refusal_names_the_input_and_where_in_plain_words() {
    let dir = std::env::temp_dir().join(format!("tether-cfg-plain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let file = dir.join("tether.toml");
    let mut refused = 0;
    for key in KEYS {
        for bad in ["%bad%", "-1", "1.5", "99999999999999999999999"] {
            let from_flag = load(None, no_env, &flags(&[(key.flag, bad)]));
            if let (Err(e), false) = (from_flag, key.switch) {
                assert_plain(&e.to_string(), &format!("--{} {bad:?}", key.flag));
                refused += 1;
            }
            let var = key.env_var();
            let from_env = load(None, |k| (k == var).then(|| bad.to_owned()), &[]);
            if let Err(e) = from_env {
                assert_plain(&e.to_string(), &format!("{var}={bad:?}"));
            }
        }
        for bad in ["\"%bad%\"", "-1", "[1]", "{ a = 1 }"] {
            let text = format!("[{}]\n{} = {bad}\n", key.section, key.key);
            std::fs::write(&file, text).expect("write");
            if let Err(e) = load(Some(&file), no_env, &[]) {
                let err = e.to_string();
                assert_plain(&err, &format!("{}.{} = ", key.section, key.key));
                assert!(err.contains("tether.toml"), "{err}");
            }
        }
    }
    assert!(
        refused > 40,
        "only {refused} refusals: the values are not bad enough"
    );
}

#[test]
fn refusals_say_what_is_accepted() {
    let err = |pairs: &[(&str, &str)]| {
        load(None, no_env, &flags(pairs))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = err(&[("listen", "8097")]);
    assert!(
        e.contains("bare port") && e.contains("127.0.0.1:8097"),
        "{e}"
    );
    let e = err(&[("listen", "example.com:8080")]);
    assert!(e.contains("not resolved"), "{e}");
    let e = err(&[("history-ttl", "soon")]);
    assert!(e.contains("a duration like 25s, 500ms, 10m or 24h"), "{e}");
    let e = err(&[("history-size", "many")]);
    assert!(e.contains("a whole number"), "{e}");
    let e = err(&[("messages-per-second", "fast")]);
    assert!(e.contains("a number"), "{e}");
    let e = err(&[("broker", "kafka")]);
    assert!(e.contains("memory or redis"), "{e}");
    let e = err(&[("history-ttl", "800d")]);
    assert!(
        e.starts_with("invalid configuration: --history-ttl \"800d\": "),
        "{e}"
    );
    // Text settings take digits as text.
    let c = load(
        None,
        no_env,
        &flags(&[("node-id", "5"), ("listen", "localhost:0")]),
    );
    let c = c.expect("valid");
    assert_eq!(c.server.node_id.as_deref(), Some("5"));
    assert!(c.server.listen.ip().is_loopback());
}

#[test]
fn unknown_file_keys_and_sections_suggest_the_right_name() {
    let dir = std::env::temp_dir().join(format!("tether-cfg-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let file = dir.join("tether.toml");
    for (text, says) in [
        (
            "[history]\ntll = \"5m\"\n",
            "unknown key history.tll (did you mean history.ttl?)",
        ),
        (
            "[histroy]\nttl = \"5m\"\n",
            "unknown section [histroy] (did you mean history?)",
        ),
        ("[server]\nttl = \"5m\"\n", "history.ttl"),
    ] {
        std::fs::write(&file, text).expect("write");
        let err = load(Some(&file), no_env, &[])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(says) && err.contains("tether.toml"), "{err}");
    }
}

#[test]
fn misspelled_tether_variables_are_refused_like_unknown_toml_keys() {
    let err = check_env_names(["PATH", "TETHER_HISTORY_TLL"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TETHER_HISTORY_TLL") && err.contains("TETHER_HISTORY_TTL"),
        "{err}"
    );
    let err = check_env_names(["TETHER_HISTROY_TTL"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean TETHER_HISTORY_TTL"), "{err}");
    assert!(check_env_names(["TETHER_LIMITS_FOO"]).is_err());
    for rules in ["TETHER_CHANNELS", "TETHER_CHANNELS_PATTERN"] {
        let err = check_env_names([rules]).unwrap_err().to_string();
        assert!(err.contains("only from the TOML file"), "{err}");
    }
    let fine = ["TETHER_HISTORY_TTL", "TETHER_SOAK_SECS", "HOME"];
    assert!(check_env_names(NOT_SETTINGS.iter().copied().chain(fine)).is_ok());
}

/// `--print-config` writes durations as the docs do, and its output loads
/// back to the same configuration.
#[test]
fn printed_config_reads_like_the_docs_and_loads_back_identically() {
    let c = load(
        None,
        no_env,
        &flags(&[
            ("history-ttl", "1h 30m"),
            ("write-timeout", "1500ms"),
            ("drain-jitter", "250ms"),
            ("listen", "127.0.0.1:0"),
        ]),
    )
    .expect("valid");
    let text = c.to_toml();
    for line in [
        "meta_ttl = \"24h\"",
        "ping_interval = \"25s\"",
        "ttl = \"1h30m\"",
        "idempotency_window = \"5m\"",
        "write_timeout = \"1s500ms\"",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
    let dir = std::env::temp_dir().join(format!("tether-cfg-print-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let file = dir.join("printed.toml");
    std::fs::write(&file, &text).expect("write");
    let back = load(Some(&file), no_env, &[]).expect("printed config loads");
    assert_eq!(back.to_toml(), text);
}

/// The error lines docs/configuration.md shows are the ones `tether serve`
/// prints: each `$ [VAR=value] tether serve --flag value` line is run
/// through the same checks, and its next line must match exactly.
#[test]
fn documented_error_lines_are_what_tether_prints() {
    let doc = include_str!("../../../../docs/configuration.md");
    let lines: Vec<&str> = doc.lines().collect();
    let mut checked = 0;
    for pair in lines.windows(2) {
        let Some(command) = pair[0].strip_prefix("$ ") else {
            continue;
        };
        let Some((vars, args)) = command.split_once("tether serve") else {
            continue;
        };
        let env: HashMap<String, String> = vars
            .split_whitespace()
            .filter_map(|v| v.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let args: Vec<&str> = args.split_whitespace().collect();
        let pairs: Vec<(String, String)> = args
            .chunks(2)
            .map(|p| {
                let flag = p[0].trim_start_matches("--").to_owned();
                (flag, p.get(1).map(|v| v.to_string()).unwrap_or_default())
            })
            .collect();
        let result = check_env_names(env.keys().map(String::as_str))
            .and_then(|()| load(None, |k| env.get(k).cloned(), &pairs));
        let printed = format!("tether: {}", result.map(|_| ()).unwrap_err());
        assert_eq!(printed, pair[1], "for `{command}`");
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} documented error lines found");
}

/// `[[channels]]` rules print back as `[[channels]]` tables that load again
/// to the same rules, and the rest of the configuration is unchanged.
#[test]
fn channel_rules_print_and_load_back_identically() {
    let dir = std::env::temp_dir().join(format!("tether-cfg-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let file = dir.join("rules.toml");
    std::fs::write(
        &file,
        "[history]\nsize = 50\n\n[[channels]]\npattern = \"chat:*\"\nhistory_size = 0\n\
         history_ttl = \"90s\"\nclient_publish = false\n\n[[channels]]\npattern = \"*\"\n",
    )
    .expect("write");
    let c = load(Some(&file), no_env, &[]).expect("valid");
    assert_eq!(c.channels.len(), 2);
    assert_eq!(c.channels[0].history_ttl, Some(Duration::from_secs(90)));
    assert!(!c.channels[0].client_publish && c.channels[1].client_publish);
    let text = c.to_toml();
    for line in [
        "[[channels]]",
        "pattern = \"chat:*\"",
        "history_ttl = \"1m30s\"",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
    let printed = dir.join("printed.toml");
    std::fs::write(&printed, &text).expect("write");
    let back = load(Some(&printed), no_env, &[]).expect("printed config loads");
    assert_eq!(back.channels, c.channels);
    assert_eq!(back.to_toml(), text);
    // No rule: nothing printed, today's behaviour.
    assert!(!Config::default().to_toml().contains("[[channels]]"));
}
