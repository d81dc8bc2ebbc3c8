//! Policy: what is suppressed (allowlists), how critical an asset is, and what priority an
//! incident gets (severity x asset criticality).
//!
//! The default matrix keeps P1 rare on purpose: only critical severity on a normal or more
//! critical asset, or high severity on a critical asset. "Not everything is urgent."

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use globset::GlobSet;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::detector::Severity;

/// Ticket priority: P1 is "drop everything", P4 is "look at it this week".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    /// Urgent.
    P1,
    /// High.
    P2,
    /// Normal.
    P3,
    /// Low.
    P4,
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How much an asset matters.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Criticality {
    /// Lab machines, throwaway hosts.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Production services.
    High,
    /// Crown jewels: databases, identity, payment.
    Critical,
}

impl Criticality {
    /// All values, lowest first.
    pub const ALL: [Criticality; 4] = [
        Criticality::Low,
        Criticality::Normal,
        Criticality::High,
        Criticality::Critical,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Criticality::Low => "low",
            Criticality::Normal => "normal",
            Criticality::High => "high",
            Criticality::Critical => "critical",
        }
    }
}

/// Priority for each severity (rows, info..critical) and criticality (columns, low..critical).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matrix(pub [[Priority; 4]; 5]);

impl Default for Matrix {
    fn default() -> Matrix {
        use Priority::*;
        Matrix([
            // low   normal high critical    <- asset criticality
            [P4, P4, P4, P4], // info
            [P4, P4, P4, P3], // low
            [P4, P3, P3, P2], // medium
            [P3, P3, P2, P1], // high
            [P2, P1, P1, P1], // critical
        ])
    }
}

impl Matrix {
    /// The priority of `severity` on an asset of `criticality`.
    pub fn priority(&self, severity: Severity, criticality: Criticality) -> Priority {
        self.0[severity as usize][criticality.index()]
    }
}

/// Addresses and user names whose events are not incidents.
#[derive(Debug, Clone, Default)]
pub struct Allow {
    /// Networks (CIDR) matched against `source.ip` or `source.address`.
    pub networks: Vec<IpNet>,
    /// Exact user names matched against `user.name`.
    pub users: HashSet<String>,
}

impl Allow {
    fn is_empty(&self) -> bool {
        self.networks.is_empty() && self.users.is_empty()
    }

    fn allows(&self, ip: Option<IpAddr>, user: Option<&str>) -> bool {
        if let Some(ip) = ip {
            if self.networks.iter().any(|n| n.contains(&ip)) {
                return true;
            }
        }
        user.is_some_and(|u| self.users.contains(u))
    }
}

/// Hosts or files whose incidents carry a criticality.
#[derive(Debug, Clone)]
pub struct Asset {
    /// Name shown in tickets.
    pub name: String,
    /// The criticality of matching events.
    pub criticality: Criticality,
    /// Globs over `host.name`.
    pub hosts: GlobSet,
    /// Globs over the log file path (or source name).
    pub files: GlobSet,
}

/// The compiled policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Severity x criticality.
    pub matrix: Matrix,
    /// Assets, first match wins ties by taking the highest criticality.
    pub assets: Vec<Asset>,
    /// Applies to every detector.
    pub global: Allow,
    /// Per detector index.
    pub per_detector: HashMap<usize, Allow>,
}

/// The IP address of an event: `source.ip`, else `source.address` when it is an address.
/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) counts as IPv4, so one allowlist entry covers both.
pub fn event_ip<'a>(mut get: impl FnMut(&str) -> Option<&'a str>) -> Option<IpAddr> {
    let raw = get("source.ip").or_else(|| get("source.address"))?;
    let raw = raw.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = raw.parse().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

impl Policy {
    /// Whether an event of detector `detector` with these fields is allowlisted.
    pub fn allowlisted<'a>(
        &self,
        detector: usize,
        mut get: impl FnMut(&str) -> Option<&'a str>,
    ) -> bool {
        let specific = self.per_detector.get(&detector);
        if self.global.is_empty() && specific.is_none_or(Allow::is_empty) {
            return false;
        }
        let ip = event_ip(&mut get);
        let user = get("user.name");
        self.global.allows(ip, user) || specific.is_some_and(|a| a.allows(ip, user))
    }

    /// The criticality of an event on `host` read from `file`: the highest of the matching
    /// assets, `normal` when none matches.
    pub fn criticality(&self, host: Option<&str>, file: Option<&str>) -> Criticality {
        self.assets
            .iter()
            .filter(|a| {
                host.is_some_and(|h| a.hosts.is_match(h))
                    || file.is_some_and(|f| a.files.is_match(f))
            })
            .map(|a| a.criticality)
            .max()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Priority::*;

    #[test]
    fn default_matrix_keeps_p1_for_critical_or_high_on_critical_assets() {
        use Criticality as C;
        use Severity as S;
        let m = Matrix::default();
        let cases = [
            (S::Critical, C::Normal, P1),
            (S::Critical, C::Low, P2),
            (S::High, C::Critical, P1),
            (S::High, C::Normal, P3),
            (S::High, C::High, P2),
            (S::Medium, C::Normal, P3),
            (S::Medium, C::Critical, P2),
            (S::Low, C::Normal, P4),
            (S::Info, C::Critical, P4),
        ];
        for (s, c, want) in cases {
            assert_eq!(m.priority(s, c), want, "{s:?} x {c:?}");
        }
        // P1 only where the rule allows it.
        for s in Severity::ALL {
            for c in Criticality::ALL {
                if m.priority(s, c) == P1 {
                    assert!(s == S::Critical || (s == S::High && c == C::Critical));
                }
            }
        }
    }

    #[test]
    fn allowlists_match_networks_mapped_addresses_and_users() {
        let mut p = Policy::default();
        p.global.networks.push("10.0.0.0/8".parse().unwrap());
        let mut ssh = Allow::default();
        ssh.users.insert("backup".into());
        p.per_detector.insert(1, ssh);
        let check = |det, addr: Option<&str>, user: Option<&str>| {
            p.allowlisted(det, |k| match k {
                "source.address" => addr,
                "user.name" => user,
                _ => None,
            })
        };
        assert!(check(0, Some("10.1.2.3"), None));
        assert!(check(0, Some("::ffff:10.1.2.3"), None));
        assert!(!check(0, Some("11.1.2.3"), None));
        assert!(!check(0, Some("host.example"), None));
        assert!(check(1, Some("11.1.2.3"), Some("backup")));
        assert!(!check(0, Some("11.1.2.3"), Some("backup")));
    }
}
