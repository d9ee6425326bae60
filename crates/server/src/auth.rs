//! What a connection is allowed to do. Filled from JWT claims when auth is
//! configured; anonymous connections get [`Grant::anonymous`].

use std::time::SystemTime;

/// The permissions and expiry of one connection.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// The `sub` claim, when a token was presented.
    pub user: Option<String>,
    /// When the token expires; the connection is closed with 4002 then.
    pub expires_at: Option<SystemTime>,
    /// Channel patterns this connection may subscribe to; `None` = any.
    pub subscribe: Option<Vec<String>>,
    /// Channel patterns this connection may publish to; `None` = any.
    pub publish: Option<Vec<String>>,
}

impl Grant {
    /// An anonymous connection may do anything (only used when anonymous
    /// access is allowed).
    pub fn anonymous() -> Self {
        Grant::default()
    }

    pub fn can_subscribe(&self, channel: &str) -> bool {
        matches_any(self.subscribe.as_deref(), channel)
    }

    pub fn can_publish(&self, channel: &str) -> bool {
        matches_any(self.publish.as_deref(), channel)
    }
}

/// `None` allows everything; otherwise an entry matches exactly, `*` matches
/// all, and `prefix*` matches any channel starting with `prefix`.
fn matches_any(patterns: Option<&[String]>, channel: &str) -> bool {
    let Some(patterns) = patterns else {
        return true;
    };
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => p == channel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let g = Grant {
            subscribe: Some(vec!["news".into(), "chat:*".into()]),
            publish: Some(vec![]),
            ..Grant::default()
        };
        assert!(g.can_subscribe("news"));
        assert!(g.can_subscribe("chat:room1"));
        assert!(!g.can_subscribe("newsroom"));
        assert!(!g.can_publish("news"));
        assert!(Grant::anonymous().can_publish("anything"));
    }
}
