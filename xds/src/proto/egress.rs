//! `meshward.v1alpha1`: the EgressPolicy resource; the contract is `xds/proto/meshward.proto`.

use std::collections::BTreeMap;

use prost::{Enumeration, Message};

/// `type.googleapis.com/meshward.v1alpha1.EgressPolicy`. Resource name: `namespace/name`.
#[derive(Clone, PartialEq, Message)]
pub struct EgressPolicy {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, optional, tag = "3")]
    pub selector: Option<WorkloadSelector>,
    #[prost(string, repeated, tag = "4")]
    pub binaries: Vec<String>,
    #[prost(enumeration = "Action", tag = "5")]
    pub action: i32,
    #[prost(message, repeated, tag = "6")]
    pub rules: Vec<EgressRule>,
}

impl prost::Name for EgressPolicy {
    const NAME: &'static str = "EgressPolicy";
    const PACKAGE: &'static str = "meshward.v1alpha1";

    fn type_url() -> String {
        "type.googleapis.com/meshward.v1alpha1.EgressPolicy".to_string()
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct WorkloadSelector {
    #[prost(btree_map = "string, string", tag = "1")]
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct EgressRule {
    #[prost(message, repeated, tag = "1")]
    pub to: Vec<EgressTarget>,
}

#[derive(Clone, PartialEq, Message)]
pub struct EgressTarget {
    #[prost(string, repeated, tag = "1")]
    pub hosts: Vec<String>,
    #[prost(uint32, repeated, tag = "2")]
    pub ports: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum Action {
    Allow = 0,
    Deny = 1,
    Audit = 2,
}
