//! `istio.security`: the `Authorization` resource, istiod's L4 form of AuthorizationPolicy.
//!
//! Rules are OR-ed; the clauses of a rule AND-ed; the matches of a clause OR-ed; the fields of
//! a match AND-ed; the values of one field OR-ed (`not_` twins: none may match).

use prost::{Enumeration, Message, Oneof};

use super::Empty;

/// `type.googleapis.com/istio.security.Authorization`. Resource name: `namespace/name`.
#[derive(Clone, PartialEq, Message)]
pub struct Authorization {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub namespace: String,
    #[prost(enumeration = "Scope", tag = "3")]
    pub scope: i32,
    #[prost(enumeration = "Action", tag = "4")]
    pub action: i32,
    #[prost(message, repeated, tag = "5")]
    pub rules: Vec<Rule>,
    /// Evaluated and reported, never enforced.
    #[prost(bool, tag = "6")]
    pub dry_run: bool,
}

impl prost::Name for Authorization {
    const NAME: &'static str = "Authorization";
    const PACKAGE: &'static str = "istio.security";

    fn type_url() -> String {
        "type.googleapis.com/istio.security.Authorization".to_string()
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct Rule {
    #[prost(message, repeated, tag = "1")]
    pub clauses: Vec<Clause>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Clause {
    #[prost(message, repeated, tag = "2")]
    pub matches: Vec<Match>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Match {
    #[prost(message, repeated, tag = "1")]
    pub namespaces: Vec<StringMatch>,
    #[prost(message, repeated, tag = "2")]
    pub not_namespaces: Vec<StringMatch>,
    #[prost(message, repeated, tag = "11")]
    pub service_accounts: Vec<ServiceAccountMatch>,
    #[prost(message, repeated, tag = "12")]
    pub not_service_accounts: Vec<ServiceAccountMatch>,
    #[prost(message, repeated, tag = "3")]
    pub principals: Vec<StringMatch>,
    #[prost(message, repeated, tag = "4")]
    pub not_principals: Vec<StringMatch>,
    #[prost(message, repeated, tag = "5")]
    pub source_ips: Vec<Address>,
    #[prost(message, repeated, tag = "6")]
    pub not_source_ips: Vec<Address>,
    #[prost(message, repeated, tag = "7")]
    pub destination_ips: Vec<Address>,
    #[prost(message, repeated, tag = "8")]
    pub not_destination_ips: Vec<Address>,
    #[prost(uint32, repeated, tag = "9")]
    pub destination_ports: Vec<u32>,
    #[prost(uint32, repeated, tag = "10")]
    pub not_destination_ports: Vec<u32>,
}

/// A CIDR: 4 or 16 address bytes and a prefix length.
#[derive(Clone, PartialEq, Message)]
pub struct Address {
    #[prost(bytes = "vec", tag = "1")]
    pub address: Vec<u8>,
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct ServiceAccountMatch {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub service_account: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct StringMatch {
    #[prost(oneof = "string_match::MatchType", tags = "1, 2, 3, 4")]
    pub match_type: Option<string_match::MatchType>,
}

pub mod string_match {
    use super::{Empty, Oneof};

    #[derive(Clone, PartialEq, Oneof)]
    pub enum MatchType {
        #[prost(string, tag = "1")]
        Exact(String),
        #[prost(string, tag = "2")]
        Prefix(String),
        #[prost(string, tag = "3")]
        Suffix(String),
        /// Any non-empty value.
        #[prost(message, tag = "4")]
        Presence(Empty),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum Scope {
    /// Every workload of the mesh (policies of the root namespace).
    Global = 0,
    /// Every workload of the policy's namespace.
    Namespace = 1,
    /// The workloads whose `authorization_policies` name this policy.
    WorkloadSelector = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum Action {
    Allow = 0,
    Deny = 1,
}
