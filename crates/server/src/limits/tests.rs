//! Admission's unit tests.

use super::*;

fn cfg() -> LimitsConfig {
    LimitsConfig {
        max_connections: 3,
        max_connections_per_ip: 2,
        handshake_rate_per_ip: 1.0,
        handshake_burst_per_ip: 2,
        ..LimitsConfig::default()
    }
}

#[test]
fn per_ip_and_global_caps() {
    let a = Admission::new(cfg(), 1, 1000);
    let ip1: IpAddr = [10, 0, 0, 1].into();
    let ip2: IpAddr = [10, 0, 0, 2].into();
    let p1 = a.admit(ip1).expect("first");
    let _p2 = a.admit(ip1).expect("second");
    assert_eq!(a.admit(ip1).err(), Some(Denied::IpFull));
    let _p3 = a.admit(ip2).expect("other ip");
    assert_eq!(a.admit(ip2).err(), Some(Denied::NodeFull));
    drop(p1);
    assert_eq!(a.connections(), 2);
}

#[test]
fn handshake_bucket_limits_bursts() {
    let mut c = cfg();
    c.max_connections_per_ip = 100;
    c.max_connections = 100;
    let a = Admission::new(c, 1, 1000);
    let ip: IpAddr = [10, 0, 0, 1].into();
    let _a = a.admit(ip).expect("1");
    let _b = a.admit(ip).expect("2");
    assert!(matches!(a.admit(ip), Err(Denied::HandshakeRate { .. })));
}

#[test]
fn socket_budget_refuses_before_the_file_limit() {
    let a = Admission::new(cfg(), 1, 1);
    let _s1 = a.socket(None).expect("s1");
    let _s2 = a.socket(None).expect("s2");
    assert_eq!(a.admit([10, 0, 0, 1].into()).err(), Some(Denied::FileLimit));
}

#[test]
fn sockets_count_per_address_and_an_upgrade_counts_once() {
    let a = Admission::new(cfg(), 1, 1000);
    let ip: IpAddr = [10, 0, 0, 1].into();
    let s1 = a.socket(Some(ip)).expect("first socket");
    let _s2 = a.socket(Some(ip)).expect("second socket");
    assert_eq!(a.socket(Some(ip)).err().map(|_| ()), Some(()));
    // Another address is unaffected.
    let _other = a.socket(Some([10, 0, 0, 2].into())).expect("other address");
    // Upgrading s1 takes its place over: still two held, no refusal.
    let permit = a.admit_on(ip, Some(&s1), Lane::Tether).expect("upgrade");
    assert_eq!(a.held_by(ip), 2);
    drop(s1);
    assert_eq!(a.held_by(ip), 2, "the connection keeps the socket's place");
    drop(permit);
    assert_eq!(a.held_by(ip), 1);
    // An unkeyed socket (a trusted proxy's) counts nowhere per address.
    let proxied = a.socket(None).expect("proxy socket");
    let _p = a
        .admit_on(ip, Some(&proxied), Lane::Tether)
        .expect("room for one more");
    assert_eq!(a.held_by(ip), 2);
    assert_eq!(
        a.admit_on(ip, Some(&proxied), Lane::Tether).err(),
        Some(Denied::IpFull)
    );
}

#[test]
fn long_polling_sessions_are_not_in_the_file_budget() {
    let mut c = cfg();
    c.max_long_poll_sessions = 100;
    c.max_long_poll_sessions_per_ip = 100;
    c.handshake_burst_per_ip = 100;
    let a = Admission::new(c, 1, 1);
    let ip: IpAddr = [10, 0, 0, 1].into();
    let _socket = a.socket(Some(ip)).expect("the request's socket");
    let _s1 = a.admit_on(ip, None, Lane::LongPoll).expect("no descriptor");
    assert!(!a.over_file_budget(), "a session holds no descriptor");
    let _s2 = a.admit_on(ip, None, Lane::LongPoll).expect("second");
    assert_eq!(a.connections(), 2);
    assert_eq!(a.held_by(ip), 1, "sessions are not sockets of the address");
}

#[test]
fn long_polling_sessions_have_their_own_caps_apart_from_websockets() {
    let mut c = cfg();
    c.max_connections = 3;
    c.max_connections_per_ip = 2;
    c.max_long_poll_sessions = 3;
    c.max_long_poll_sessions_per_ip = 2;
    c.handshake_burst_per_ip = 100;
    let a = Admission::new(c, 1, 1000);
    let (ip1, ip2): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
    let mut held: Vec<_> = (0..2)
        .map(|_| a.admit_on(ip1, None, Lane::LongPoll).expect("session"))
        .collect();
    assert_eq!(
        a.admit_on(ip1, None, Lane::LongPoll).err(),
        Some(Denied::LongPollIpFull)
    );
    held.push(
        a.admit_on(ip2, None, Lane::LongPoll)
            .expect("other address"),
    );
    assert_eq!(
        a.admit_on(ip2, None, Lane::LongPoll).err(),
        Some(Denied::LongPollFull)
    );
    // The sessions take none of the WebSockets' places, node or address.
    let _ws: Vec<_> = (0..2).map(|_| a.admit(ip1).expect("websocket")).collect();
    assert_eq!(a.admit(ip1).err(), Some(Denied::IpFull));
    let _ws2 = a.admit(ip2).expect("the third WebSocket place");
    assert_eq!(a.admit(ip2).err(), Some(Denied::NodeFull));
    drop(held.remove(0));
    assert_eq!(a.longpoll_sessions(), 2);
    let _again = a
        .admit_on(ip1, None, Lane::LongPoll)
        .expect("a place came back");
}

#[test]
fn echo_has_its_own_cap() {
    let mut c = cfg();
    c.max_connections_per_ip = 100;
    c.handshake_burst_per_ip = 100;
    let a = Admission::new(c, 1, 1000);
    let ip: IpAddr = [10, 0, 0, 1].into();
    let _e = a.admit_on(ip, None, Lane::Echo).expect("echo");
    assert_eq!(
        a.admit_on(ip, None, Lane::Echo).err(),
        Some(Denied::EchoFull)
    );
    let _w: Vec<_> = (0..3)
        .map(|_| a.admit(ip).expect("ws unaffected"))
        .collect();
    assert_eq!(a.admit(ip).err(), Some(Denied::NodeFull));
}

#[test]
fn ipv6_addresses_share_their_prefix() {
    let mut c = cfg();
    c.max_connections_per_ip = 1;
    let a = Admission::new(c, 1, 1000);
    let _s = a
        .socket(Some("2001:db8::1".parse().unwrap()))
        .expect("first");
    assert!(a.socket(Some("2001:db8::ffff:2".parse().unwrap())).is_err());
    assert!(a.socket(Some("2001:db8:0:1::1".parse().unwrap())).is_ok());
}

#[test]
fn publish_bucket_per_address() {
    let mut c = cfg();
    c.publish_rate_per_ip = 1.0;
    c.publish_burst_per_ip = 2;
    let a = Admission::new(c, 1, 1000);
    let ip: IpAddr = [10, 0, 0, 1].into();
    assert!(a.take_publish(ip).is_ok());
    assert!(a.take_publish(ip).is_ok());
    assert!(a.take_publish(ip).is_err());
    assert!(a.take_publish([10, 0, 0, 2].into()).is_ok());
}
