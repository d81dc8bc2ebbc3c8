//! Jira: not supported yet. This placeholder keeps the kind registered while its adapter is
//! written; a config that uses it is refused with a clear message.

use std::ops::Range;

use super::{Api, Capabilities, HelpdeskConfig, Secrets};
use crate::policy::Priority;
use crate::ticket::render::BodyFormat;
use crate::ticket::{DeliveryError, HttpRequest, TicketContent, TicketRef, UpdateKind};

/// The keys only Jira uses.
pub(crate) const KEYS: &[&str] = &[];

/// Jira-specific problems of a `[[helpdesk]]` entry.
pub(crate) fn problems(cfg: &HelpdeskConfig, err: &mut dyn FnMut(Option<Range<usize>>, String)) {
    err(
        Some(cfg.kind.span()),
        "kind = \"jira\" is not supported yet".into(),
    );
}

/// A Jira help desk (placeholder: never built).
#[derive(Debug)]
pub struct Jira;

impl Jira {
    pub(crate) fn new(cfg: &HelpdeskConfig, _secrets: Secrets) -> Result<Jira, String> {
        Err(format!(
            "helpdesk {:?}: kind = \"jira\" is not supported yet",
            cfg.name.get_ref()
        ))
    }
}

impl Api for Jira {
    fn capabilities(&self) -> Capabilities {
        unreachable!("never built")
    }
    fn body_format(&self) -> BodyFormat {
        unreachable!("never built")
    }
    fn create_request(&self, _c: &TicketContent, _body: &str, _now: u64) -> HttpRequest {
        unreachable!("never built")
    }
    fn parse_create(
        &self,
        _c: &TicketContent,
        _status: u16,
        _headers: &[(String, String)],
        _body: &[u8],
    ) -> Result<TicketRef, DeliveryError> {
        unreachable!("never built")
    }
    fn comment_request(
        &self,
        _t: &TicketRef,
        _c: &TicketContent,
        _kind: UpdateKind,
        _text: &str,
        _now: u64,
    ) -> HttpRequest {
        unreachable!("never built")
    }
    fn reopen_request(&self, _t: &TicketRef, _now: u64) -> Option<HttpRequest> {
        unreachable!("never built")
    }
    fn set_priority_request(&self, _t: &TicketRef, _p: Priority, _now: u64) -> Option<HttpRequest> {
        unreachable!("never built")
    }
}
