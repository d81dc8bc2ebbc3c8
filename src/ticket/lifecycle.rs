//! The incident lifecycle: which ticket operations an incident change causes.
//!
//! Pure decisions, no I/O: given the incident, the ticket record for its fingerprint and the
//! time, [`Lifecycle::on_incident`] returns the operations to queue in the outbox (in the same
//! transaction as the incident change) and the updated ticket record.
//!
//! - A new fingerprint creates a ticket, unless a creation quota (global, per detector, per
//!   priority; `governor` rate limiters) is exhausted: then the incident goes into the storm
//!   digest of its detector for the current window (one digest ticket per detector and window,
//!   listing the incidents with their counts). The incident itself is always recorded.
//! - A recurrence adds at most one update comment per `update_interval`.
//! - Growing past `escalate_factors` times the count that opened the ticket raises the
//!   priority one step (never above P1) with a comment saying why.
//! - Whether a ticket was closed meanwhile is only known to the help desk: the delivery
//!   worker checks before commenting, and reopens (within `reopen_window`) or opens a new
//!   ticket referencing the old one.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::incident::Incident;
use crate::policy::Priority;
use crate::timestamp::{format_rfc3339, Millis};

/// `[tickets]`: lifecycle and flood-control settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketsConfig {
    /// At most one update comment per ticket per this interval.
    #[serde(
        default = "d_update",
        deserialize_with = "crate::detector::de_duration"
    )]
    pub update_interval: Duration,
    /// A recurrence within this long after the ticket was closed reopens it; later, a new
    /// ticket referencing the old one is opened.
    #[serde(
        default = "d_reopen",
        deserialize_with = "crate::detector::de_duration"
    )]
    pub reopen_window: Duration,
    /// Raise the priority one step when the count reaches each of these multiples of the count
    /// that opened the ticket.
    #[serde(default = "d_escalate")]
    pub escalate_factors: Vec<u64>,
    /// Ticket creation quotas.
    #[serde(default)]
    pub quota: QuotaConfig,
    /// The short customer-facing status text in every ticket body; placeholders `{title}`,
    /// `{first_seen}`, `{last_seen}`, `{priority}`, `{fingerprint}`. Default:
    /// [`crate::ticket::render::DEFAULT_STATUS_TEMPLATE`]; empty leaves the section out.
    #[serde(default)]
    pub status_template: Option<String>,
}

/// `[tickets.quota]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Tickets per hour over everything.
    #[serde(default = "d_global")]
    pub global_per_hour: u32,
    /// Tickets per hour per detector.
    #[serde(default = "d_detector")]
    pub per_detector_per_hour: u32,
    /// Tickets per hour per priority (`P1 = 3`: not everything is urgent).
    #[serde(default = "d_priority")]
    pub per_priority_per_hour: BTreeMap<Priority, u32>,
    /// Length of a storm-digest window (one digest ticket per detector and window).
    #[serde(
        default = "d_digest",
        deserialize_with = "crate::detector::de_duration"
    )]
    pub digest_window: Duration,
}

fn d_update() -> Duration {
    Duration::from_secs(15 * 60)
}
fn d_reopen() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn d_escalate() -> Vec<u64> {
    vec![10, 100]
}
fn d_global() -> u32 {
    60
}
fn d_detector() -> u32 {
    20
}
fn d_priority() -> BTreeMap<Priority, u32> {
    BTreeMap::from([(Priority::P1, 3), (Priority::P2, 10)])
}
fn d_digest() -> Duration {
    Duration::from_secs(3600)
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            global_per_hour: d_global(),
            per_detector_per_hour: d_detector(),
            per_priority_per_hour: d_priority(),
            digest_window: d_digest(),
        }
    }
}

impl Default for TicketsConfig {
    fn default() -> Self {
        TicketsConfig {
            update_interval: d_update(),
            reopen_window: d_reopen(),
            escalate_factors: d_escalate(),
            quota: QuotaConfig::default(),
            status_template: None,
        }
    }
}

/// The local record of one fingerprint's ticket in one help desk (the first source of truth:
/// some help desks' search indexes lag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRecord {
    /// Incident fingerprint (or digest key).
    pub fingerprint: String,
    /// Help desk name.
    pub helpdesk: String,
    /// The help desk's ticket id, once created.
    pub ticket_ref: Option<String>,
    /// Priority the ticket has (after escalations).
    pub priority: Priority,
    /// Incident count when the ticket was opened.
    pub opened_count: u64,
    /// Escalation steps taken.
    pub escalations: u32,
    /// When the last update comment was queued, and at which count.
    pub last_update_at: Millis,
    /// Count reported by the last update.
    pub last_update_count: u64,
    /// The previous ticket, when this one replaced a closed one.
    pub previous_ref: Option<String>,
    /// For digest tickets: incidents added since the last digest comment (at most
    /// [`DIGEST_LINES`]; the rest are counted in `pending_omitted`).
    pub pending_digest: Vec<String>,
    /// For digest tickets: incidents beyond [`DIGEST_LINES`] since the last digest comment.
    #[serde(default)]
    pub pending_omitted: u64,
}

/// Incidents listed by name in one digest comment; more are counted. Keeps the record (and
/// the comment) bounded however big the storm.
pub const DIGEST_LINES: usize = 50;

/// One operation for the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// Open a ticket for the incident (after looking for an open one with the key).
    Create {
        /// Incident snapshot at queue time.
        incident: Box<IncidentSnapshot>,
    },
    /// Add an update comment (the worker reopens or replaces a closed ticket first).
    Update {
        /// Incident snapshot at queue time.
        incident: Box<IncidentSnapshot>,
        /// Why.
        kind: crate::ticket::UpdateKind,
        /// Extra text (escalation reason, digest list).
        note: String,
    },
    /// Change the ticket's priority.
    SetPriority {
        /// The new priority.
        priority: Priority,
    },
    /// Resolve the ticket: the incident was closed locally (quiet for `engine.close_after`).
    /// Only queued for help desks that resolve on close (PagerDuty).
    Resolve {
        /// Incident snapshot at close time.
        incident: Box<IncidentSnapshot>,
    },
}

/// The incident fields a ticket operation needs, frozen when the operation is queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentSnapshot {
    /// Fingerprint (or digest key).
    pub fingerprint: String,
    /// Detector id.
    pub detector: String,
    /// Rendered title.
    pub title: String,
    /// Priority at queue time.
    pub priority: Priority,
    /// Severity.
    pub severity: String,
    /// Category.
    pub category: String,
    /// Asset criticality.
    pub criticality: String,
    /// Hit count.
    pub count: u64,
    /// First hit, ms.
    pub first_seen: Millis,
    /// Last hit, ms.
    pub last_seen: Millis,
    /// Source (file path, source name).
    pub source: String,
    /// Fields (ECS names).
    pub fields: BTreeMap<String, String>,
    /// Evidence lines.
    pub evidence: Vec<String>,
    /// The detector's description.
    #[serde(default)]
    pub description: String,
    /// The detector's response playbook.
    #[serde(default)]
    pub response: String,
    /// The detector's references.
    #[serde(default)]
    pub references: Vec<String>,
}

impl IncidentSnapshot {
    /// Adds the detector's texts (description, playbook, references).
    pub fn with_detector(mut self, d: &crate::detector::Detector) -> IncidentSnapshot {
        self.description.clone_from(&d.description);
        self.response.clone_from(&d.response);
        self.references.clone_from(&d.references);
        self
    }

    /// The content a ticket is rendered from, with secrets redacted from the attacker-side
    /// text (title, fields, evidence), so adapters that send it as data (webhooks) never
    /// carry them either.
    pub fn content(&self, previous_ticket: Option<String>) -> crate::ticket::TicketContent {
        use crate::ticket::render::redact;
        crate::ticket::TicketContent {
            fingerprint: self.fingerprint.clone(),
            detector: self.detector.clone(),
            title: redact(&self.title).into_owned(),
            priority: self.priority,
            severity: self.severity.clone(),
            category: self.category.clone(),
            criticality: self.criticality.clone(),
            count: self.count,
            first_seen: format_rfc3339(self.first_seen),
            last_seen: format_rfc3339(self.last_seen),
            source: self.source.clone(),
            fields: self
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), redact(v).into_owned()))
                .collect(),
            evidence: self
                .evidence
                .iter()
                .map(|l| redact(l).into_owned())
                .collect(),
            description: self.description.clone(),
            response: self.response.clone(),
            references: self.references.clone(),
            previous_ticket,
        }
    }

    /// Freezes an incident.
    pub fn of(i: &Incident) -> IncidentSnapshot {
        IncidentSnapshot {
            fingerprint: i.fingerprint.clone(),
            detector: i.detector.clone(),
            title: i.title.clone(),
            priority: i.priority,
            severity: i.severity.as_str().to_string(),
            category: i.category.as_str().to_string(),
            criticality: i.criticality.as_str().to_string(),
            count: i.count,
            first_seen: i.first_seen,
            last_seen: i.last_seen,
            source: i.source.clone(),
            fields: i.fields.clone(),
            evidence: i.evidence.lines(),
            description: String::new(),
            response: String::new(),
            references: Vec::new(),
        }
    }
}

/// What [`Lifecycle::on_incident`] decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Operations to queue: (fingerprint the operation belongs to, operation).
    pub ops: Vec<(String, Operation)>,
    /// Ticket records to store.
    pub records: Vec<TicketRecord>,
}

/// Keys of the creation quotas.
type Limiter = DefaultKeyedRateLimiter<String>;

/// Lifecycle decisions for one help desk, with its creation quotas.
pub struct Lifecycle {
    cfg: TicketsConfig,
    helpdesk: String,
    global: Arc<Limiter>,
    per_detector: Arc<Limiter>,
    per_priority: HashMap<Priority, Arc<Limiter>>,
    /// Incidents sent to a digest instead of their own ticket (for metrics).
    pub digested: u64,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("helpdesk", &self.helpdesk)
            .finish()
    }
}

fn per_hour(n: u32) -> Quota {
    // A quota of 0 means "never": the smallest governor allows is 1 per hour with no burst.
    Quota::per_hour(NonZeroU32::new(n.max(1)).expect("max(1) is non-zero"))
}

impl Lifecycle {
    /// Lifecycle for the help desk `helpdesk`.
    pub fn new(helpdesk: &str, cfg: TicketsConfig) -> Lifecycle {
        let per_priority = cfg
            .quota
            .per_priority_per_hour
            .iter()
            .map(|(p, n)| (*p, Arc::new(RateLimiter::keyed(per_hour(*n)))))
            .collect();
        Lifecycle {
            global: Arc::new(RateLimiter::keyed(per_hour(cfg.quota.global_per_hour))),
            per_detector: Arc::new(RateLimiter::keyed(per_hour(
                cfg.quota.per_detector_per_hour,
            ))),
            per_priority,
            helpdesk: helpdesk.to_string(),
            cfg,
            digested: 0,
        }
    }

    /// Whether the creation quotas allow one more ticket for this incident. The most
    /// specific quota is asked first (priority, detector, then global) and the first refusal
    /// stops: governor has no "peek", so a quota asked before the refusing one has spent a
    /// token; asking the narrow ones first keeps a storm of one detector from spending the
    /// global quota of everyone else.
    fn quota_allows(&self, i: &Incident) -> bool {
        let pkey = i.priority.to_string();
        self.per_priority
            .get(&i.priority)
            .is_none_or(|l| l.check_key(&pkey).is_ok())
            && self.per_detector.check_key(&i.detector).is_ok()
            && self.global.check_key(&String::new()).is_ok()
    }

    /// The digest key for an incident at time `now`: one per detector and window.
    pub fn digest_key(&self, detector: &str, now: Millis) -> String {
        let w = self.cfg.quota.digest_window.as_millis().max(1) as Millis;
        let start = now - now.rem_euclid(w);
        crate::incident::fingerprint(
            "sentinela.digest",
            &[
                ("detector".to_string(), detector.to_string()),
                ("window".to_string(), start.to_string()),
            ],
        )
    }

    /// Decides what a changed incident means for its ticket. `record` is the fingerprint's
    /// ticket record (None: never ticketed), `digest` the current digest record of its
    /// detector when it exists.
    pub fn on_incident(
        &mut self,
        incident: &Incident,
        detector: Option<&crate::detector::Detector>,
        record: Option<&TicketRecord>,
        digest: Option<&TicketRecord>,
        now: Millis,
    ) -> Decision {
        let mut d = Decision::default();
        let snap = || {
            let s = IncidentSnapshot::of(incident);
            Box::new(match detector {
                Some(det) => s.with_detector(det),
                None => s,
            })
        };
        let Some(rec) = record else {
            if self.quota_allows(incident) {
                d.ops.push((
                    incident.fingerprint.clone(),
                    Operation::Create { incident: snap() },
                ));
                d.records.push(self.new_record(
                    &incident.fingerprint,
                    incident.priority,
                    incident.count,
                    now,
                ));
                return d;
            }
            // Past a quota: the incident joins its detector's storm digest.
            self.digested += 1;
            let key = self.digest_key(&incident.detector, now);
            let line = format!(
                "{} ({} hits, {} - {})",
                incident.title,
                incident.count,
                format_rfc3339(incident.first_seen),
                format_rfc3339(incident.last_seen)
            );
            match digest {
                Some(dg) => {
                    let mut dg = dg.clone();
                    if dg.pending_digest.len() < DIGEST_LINES {
                        dg.pending_digest.push(line);
                    } else {
                        dg.pending_omitted += 1;
                    }
                    self.flush_digest(&mut dg, incident, now, &mut d);
                    d.records.push(dg);
                }
                None => {
                    let mut s = IncidentSnapshot::of(incident);
                    s.fingerprint = key.clone();
                    s.title = format!(
                        "Storm digest: {} incidents past the ticket quota",
                        incident.detector
                    );
                    s.evidence = vec![line];
                    d.ops.push((
                        key.clone(),
                        Operation::Create {
                            incident: Box::new(s),
                        },
                    ));
                    let mut rec = self.new_record(&key, incident.priority, 1, now);
                    rec.last_update_count = 1;
                    d.records.push(rec);
                }
            }
            // The incident is marked as handled by the digest, so its recurrences do not
            // open a ticket later.
            let mut own = self.new_record(
                &incident.fingerprint,
                incident.priority,
                incident.count,
                now,
            );
            own.ticket_ref = Some(format!("digest:{key}"));
            d.records.push(own);
            return d;
        };
        let mut rec = rec.clone();
        if rec
            .ticket_ref
            .as_deref()
            .is_some_and(|r| r.starts_with("digest:"))
        {
            // Recurrences of a digested incident are visible in the local record only.
            return d;
        }
        // Escalation: the count passed the next factor of the opening count.
        let step = rec.escalations as usize;
        if let Some(&factor) = self.cfg.escalate_factors.get(step) {
            if incident.count >= rec.opened_count.max(1).saturating_mul(factor) {
                let raised = raise(rec.priority);
                rec.escalations += 1;
                if raised != rec.priority {
                    rec.priority = raised;
                    d.ops.push((
                        incident.fingerprint.clone(),
                        Operation::SetPriority { priority: raised },
                    ));
                    // The snapshot carries the ticket's priority, not the incident's: help
                    // desks without a separate priority change (webhook, PagerDuty) learn the
                    // raised priority from this event.
                    let mut s = snap();
                    s.priority = raised;
                    d.ops.push((
                        incident.fingerprint.clone(),
                        Operation::Update {
                            incident: s,
                            kind: crate::ticket::UpdateKind::Escalation,
                            note: format!(
                                "Priority raised to {raised}: the incident grew to {} hits, {}x the {} hits that opened this ticket.",
                                incident.count, factor, rec.opened_count
                            ),
                        },
                    ));
                    rec.last_update_at = now;
                    rec.last_update_count = incident.count;
                    d.records.push(rec);
                    return d;
                }
            }
        }
        let due = now - rec.last_update_at >= self.cfg.update_interval.as_millis() as Millis;
        if due && incident.count > rec.last_update_count {
            let mut s = snap();
            s.priority = rec.priority;
            d.ops.push((
                incident.fingerprint.clone(),
                Operation::Update {
                    incident: s,
                    kind: crate::ticket::UpdateKind::Recurrence,
                    note: String::new(),
                },
            ));
            rec.last_update_at = now;
            rec.last_update_count = incident.count;
            d.records.push(rec);
        }
        d
    }

    /// Emits the digest's pending incidents as one comment when the update interval allows.
    fn flush_digest(
        &self,
        dg: &mut TicketRecord,
        incident: &Incident,
        now: Millis,
        d: &mut Decision,
    ) {
        if now - dg.last_update_at < self.cfg.update_interval.as_millis() as Millis {
            return;
        }
        let mut s = IncidentSnapshot::of(incident);
        s.fingerprint = dg.fingerprint.clone();
        let list = std::mem::take(&mut dg.pending_digest);
        let omitted = std::mem::take(&mut dg.pending_omitted);
        let total = list.len() as u64 + omitted;
        dg.last_update_count += total;
        d.ops.push((
            dg.fingerprint.clone(),
            Operation::Update {
                incident: Box::new(s),
                kind: crate::ticket::UpdateKind::Digest,
                note: format!(
                    "{} more incidents past the ticket quota:\n{}",
                    list.len(),
                    list.join("\n")
                ),
            },
        ));
        dg.last_update_at = now;
    }

    /// What closing an incident locally means for its ticket: a `Resolve` when a ticket was
    /// opened (or is queued) for it; nothing otherwise. Only for help desks whose
    /// capabilities say they resolve on close.
    pub fn on_close(
        &self,
        incident: &Incident,
        detector: Option<&crate::detector::Detector>,
        record: Option<&TicketRecord>,
    ) -> Option<(String, Operation)> {
        record?;
        let s = IncidentSnapshot::of(incident);
        let snap = match detector {
            Some(det) => s.with_detector(det),
            None => s,
        };
        Some((
            incident.fingerprint.clone(),
            Operation::Resolve {
                incident: Box::new(snap),
            },
        ))
    }

    fn new_record(&self, fp: &str, p: Priority, count: u64, now: Millis) -> TicketRecord {
        TicketRecord {
            fingerprint: fp.to_string(),
            helpdesk: self.helpdesk.clone(),
            ticket_ref: None,
            priority: p,
            opened_count: count,
            escalations: 0,
            last_update_at: now,
            last_update_count: count,
            previous_ref: None,
            pending_digest: Vec::new(),
            pending_omitted: 0,
        }
    }
}

/// One priority step up (P4 -> P3 ... P2 -> P1), P1 stays.
pub fn raise(p: Priority) -> Priority {
    match p {
        Priority::P4 => Priority::P3,
        Priority::P3 => Priority::P2,
        Priority::P2 | Priority::P1 => Priority::P1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{Category, Severity};
    use crate::incident::Evidence;
    use crate::policy::Criticality;

    fn incident(fp: &str, detector: &str, count: u64, p: Priority) -> Incident {
        Incident {
            fingerprint: fp.into(),
            detector: detector.into(),
            title: format!("t {fp}"),
            category: Category::IntrusionAttempts,
            severity: Severity::Medium,
            criticality: Criticality::Normal,
            priority: p,
            count,
            first_seen: 0,
            last_seen: 0,
            fields: BTreeMap::new(),
            key: vec![],
            source: "s".into(),
            evidence: Evidence::new(2),
        }
    }

    const MIN: Millis = 60_000;

    fn ops(d: &Decision) -> Vec<&'static str> {
        d.ops
            .iter()
            .map(|(_, o)| match o {
                Operation::Create { .. } => "create",
                Operation::Update { kind, .. } => match kind {
                    crate::ticket::UpdateKind::Recurrence => "update",
                    crate::ticket::UpdateKind::Escalation => "escalation-note",
                    crate::ticket::UpdateKind::Digest => "digest-note",
                    crate::ticket::UpdateKind::Reopen => "reopen",
                },
                Operation::SetPriority { .. } => "set-priority",
                Operation::Resolve { .. } => "resolve",
            })
            .collect()
    }

    #[test]
    fn new_then_recurrences_update_at_most_once_per_interval() {
        let mut l = Lifecycle::new("rt", TicketsConfig::default());
        let d = l.on_incident(&incident("a", "x", 5, Priority::P3), None, None, None, 0);
        assert_eq!(ops(&d), ["create"]);
        let rec = d.records[0].clone();
        // 5 minutes later: below the 15 minute update interval.
        let d = l.on_incident(
            &incident("a", "x", 6, Priority::P3),
            None,
            Some(&rec),
            None,
            5 * MIN,
        );
        assert!(d.ops.is_empty());
        let d = l.on_incident(
            &incident("a", "x", 9, Priority::P3),
            None,
            Some(&rec),
            None,
            16 * MIN,
        );
        assert_eq!(ops(&d), ["update"]);
        let rec = d.records[0].clone();
        assert_eq!(rec.last_update_count, 9);
        // Same count again: nothing new to say.
        let d = l.on_incident(
            &incident("a", "x", 9, Priority::P3),
            None,
            Some(&rec),
            None,
            40 * MIN,
        );
        assert!(d.ops.is_empty());
    }

    #[test]
    fn growth_past_the_factors_escalates_one_step_with_a_reason() {
        let mut l = Lifecycle::new("rt", TicketsConfig::default());
        let rec = l
            .on_incident(&incident("a", "x", 5, Priority::P3), None, None, None, 0)
            .records[0]
            .clone();
        let d = l.on_incident(
            &incident("a", "x", 50, Priority::P3),
            None,
            Some(&rec),
            None,
            MIN,
        );
        assert_eq!(ops(&d), ["set-priority", "escalation-note"]);
        let rec = d.records[0].clone();
        assert_eq!(rec.priority, Priority::P2);
        let Operation::Update {
            note,
            incident: escalated,
            ..
        } = &d.ops[1].1
        else {
            panic!()
        };
        assert!(note.contains("50 hits, 10x the 5 hits"), "{note}");
        // The escalation event carries the raised priority (webhooks and PagerDuty learn it
        // from there), and so do later updates.
        assert_eq!(escalated.priority, Priority::P2);
        let d = l.on_incident(
            &incident("a", "x", 70, Priority::P3),
            None,
            Some(&rec),
            None,
            40 * MIN,
        );
        assert_eq!(ops(&d), ["update"]);
        let Operation::Update { incident: snap, .. } = &d.ops[0].1 else {
            panic!()
        };
        assert_eq!(snap.priority, Priority::P2);
        // The next factor (100x) is needed for the next step.
        let d = l.on_incident(
            &incident("a", "x", 60, Priority::P3),
            None,
            Some(&rec),
            None,
            2 * MIN,
        );
        assert!(!ops(&d).contains(&"set-priority"));
        let d = l.on_incident(
            &incident("a", "x", 500, Priority::P3),
            None,
            Some(&rec),
            None,
            3 * MIN,
        );
        assert_eq!(ops(&d), ["set-priority", "escalation-note"]);
        assert_eq!(d.records[0].priority, Priority::P1);
    }

    #[test]
    fn past_the_p1_quota_incidents_go_to_one_digest_per_detector_and_window() {
        let mut l = Lifecycle::new("rt", TicketsConfig::default());
        let mut created = 0;
        let mut digest: Option<TicketRecord> = None;
        let mut digested = 0;
        for n in 0..10 {
            let i = incident(&format!("f{n}"), "ssh.success", 1, Priority::P1);
            let d = l.on_incident(&i, None, None, digest.as_ref(), n * MIN);
            for (fp, op) in &d.ops {
                if let Operation::Create { .. } = op {
                    if fp.starts_with('f') {
                        created += 1;
                    }
                }
            }
            for r in &d.records {
                if !r.fingerprint.starts_with('f') {
                    digest = Some(r.clone());
                }
                if r.ticket_ref
                    .as_deref()
                    .is_some_and(|t| t.starts_with("digest:"))
                {
                    digested += 1;
                }
            }
        }
        // "At most 3 P1 per hour": 3 tickets, 7 incidents in the digest.
        assert_eq!(created, 3);
        assert_eq!(digested, 7);
        assert_eq!(l.digested, 7);
        let dg = digest.unwrap();
        assert_eq!(dg.fingerprint, l.digest_key("ssh.success", 0));
        assert_ne!(
            l.digest_key("ssh.success", 0),
            l.digest_key("ssh.success", 3600 * 1000)
        );
        assert_ne!(l.digest_key("ssh.success", 0), l.digest_key("other", 0));
    }

    #[test]
    fn recurrences_of_a_digested_incident_do_not_open_tickets() {
        let mut l = Lifecycle::new("rt", TicketsConfig::default());
        let mut rec = l.new_record("f", Priority::P3, 1, 0);
        rec.ticket_ref = Some("digest:abc".into());
        let d = l.on_incident(
            &incident("f", "x", 50, Priority::P3),
            None,
            Some(&rec),
            None,
            60 * MIN,
        );
        assert!(d.ops.is_empty());
    }
}
