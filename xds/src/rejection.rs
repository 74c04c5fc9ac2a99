//! Why a resource was refused; sent back to the server as a NACK's `error_detail`.

use std::fmt;

use control::{Diagnostics, Location};
use envoy_types::pb::google::rpc::Status;
use serde::Serialize;

use crate::resource::ResourceType;

/// `google.rpc.Code.INVALID_ARGUMENT`.
const INVALID_ARGUMENT: i32 = 3;

/// One refused resource and the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Type URL of the resource (any string: unknown types are rejected too).
    pub type_url: String,
    /// Resource name; empty when the problem is the response as a whole.
    pub name: String,
    pub reason: String,
}

impl Rejection {
    pub fn new(
        type_url: impl Into<String>,
        name: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Rejection {
            type_url: type_url.into(),
            name: name.into(),
            reason: reason.into(),
        }
    }

    pub fn of(ty: ResourceType, name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(ty.type_url(), name, reason)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty: &str = match ResourceType::from_type_url(&self.type_url) {
            Some(t) => t.name(),
            None => &self.type_url,
        };
        match (ty.is_empty(), self.name.is_empty()) {
            (_, true) => write!(f, "{ty}: {}", self.reason),
            // Not a resource: a local file:line, from `from_diagnostics`.
            (true, false) => write!(f, "{}: {}", self.name, self.reason),
            (false, false) => write!(f, "{ty} {}: {}", self.name, self.reason),
        }
    }
}

/// Every problem of one response; one line each when displayed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Rejections(pub Vec<Rejection>);

impl Rejections {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn push(&mut self, r: Rejection) {
        self.0.push(r);
    }

    /// The compiler's errors as rejections: a diagnostic at a resource's [`location`] names
    /// that resource (e.g. "too many rules" at the Authorization that passed the limit).
    pub fn from_diagnostics(diags: &Diagnostics) -> Rejections {
        Rejections(
            diags
                .errors()
                .map(|d| match parse_location(&d.location) {
                    Some((ty, name)) => Rejection::of(ty, name, d.message.clone()),
                    None => Rejection::new("", d.location.to_string(), d.message.clone()),
                })
                .collect(),
        )
    }

    /// The NACK's `error_detail`.
    pub fn to_status(&self) -> Status {
        Status {
            code: INVALID_ARGUMENT,
            message: self.to_string(),
            details: Vec::new(),
        }
    }
}

impl fmt::Display for Rejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejections {}

impl From<Rejection> for Rejections {
    fn from(r: Rejection) -> Self {
        Rejections(vec![r])
    }
}

const LOCATION_PREFIX: &str = "xds:";

/// Where a resource "is", for control's diagnostics: `xds:Authorization/ns/name` (line 0: the
/// resource as a whole).
pub fn location(ty: ResourceType, name: &str) -> Location {
    Location::new(format!("{LOCATION_PREFIX}{}/{name}", ty.name()), 0)
}

/// The resource a [`location`] names.
pub fn parse_location(loc: &Location) -> Option<(ResourceType, String)> {
    let rest = loc.file.strip_prefix(LOCATION_PREFIX)?;
    let (ty, name) = rest.split_once('/')?;
    let ty = ResourceType::ALL.into_iter().find(|t| t.name() == ty)?;
    Some((ty, name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_status() {
        let r: Rejections = Rejections(vec![
            Rejection::of(
                ResourceType::Authorization,
                "ns/a",
                "port 0 is out of range (1-65535)",
            ),
            Rejection::new("type.googleapis.com/x.Y", "", "unknown type URL"),
        ]);
        let text = r.to_string();
        assert_eq!(
            text,
            "Authorization ns/a: port 0 is out of range (1-65535)\ntype.googleapis.com/x.Y: unknown type URL"
        );
        let status = r.to_status();
        assert_eq!(status.code, 3);
        assert_eq!(status.message, text);
    }

    #[test]
    fn diagnostics_name_their_resource() {
        let mut d = Diagnostics::new();
        d.error(
            location(ResourceType::Authorization, "ns/big"),
            "too many rules",
        );
        d.error(Location::new("local.yaml", 3), "bad");
        let r = Rejections::from_diagnostics(&d);
        assert_eq!(
            r.0[0],
            Rejection::of(ResourceType::Authorization, "ns/big", "too many rules")
        );
        assert_eq!(r.0[1].name, "local.yaml:3");
        assert_eq!(r.0[1].to_string(), "local.yaml:3: bad");
        assert_eq!(
            parse_location(&location(ResourceType::Address, "cluster/pod/x")),
            Some((ResourceType::Address, "cluster/pod/x".to_string()))
        );
    }
}
