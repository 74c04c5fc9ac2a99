//! `istio.workload`: the `Address` resource (a Workload or a Service).

use prost::{Enumeration, Message, Oneof};

/// `type.googleapis.com/istio.workload.Address`. Resource name: the workload's `uid`, or
/// `namespace/hostname` for a service.
#[derive(Clone, PartialEq, Message)]
pub struct Address {
    #[prost(oneof = "address::Type", tags = "1, 2")]
    pub r#type: Option<address::Type>,
}

pub mod address {
    use super::{Oneof, Service, Workload};

    #[derive(Clone, PartialEq, Oneof)]
    pub enum Type {
        #[prost(message, tag = "1")]
        Workload(Workload),
        #[prost(message, tag = "2")]
        Service(Service),
    }
}

impl prost::Name for Address {
    const NAME: &'static str = "Address";
    const PACKAGE: &'static str = "istio.workload";

    fn type_url() -> String {
        "type.googleapis.com/istio.workload.Address".to_string()
    }
}

/// One workload (a pod, a VM, a WorkloadEntry).
#[derive(Clone, PartialEq, Message)]
pub struct Workload {
    #[prost(string, tag = "20")]
    pub uid: String,
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub namespace: String,
    /// 4 bytes (IPv4) or 16 bytes (IPv6) each.
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub addresses: Vec<Vec<u8>>,
    #[prost(string, tag = "21")]
    pub hostname: String,
    #[prost(string, tag = "4")]
    pub network: String,
    /// Empty means the mesh default (`cluster.local`).
    #[prost(string, tag = "6")]
    pub trust_domain: String,
    /// Empty means `default`.
    #[prost(string, tag = "7")]
    pub service_account: String,
    #[prost(string, tag = "9")]
    pub node: String,
    /// `namespace/name` of every WORKLOAD_SELECTOR Authorization that selects this workload.
    #[prost(string, repeated, tag = "16")]
    pub authorization_policies: Vec<String>,
    #[prost(enumeration = "WorkloadStatus", tag = "17")]
    pub status: i32,
    #[prost(enumeration = "NetworkMode", tag = "25")]
    pub network_mode: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum WorkloadStatus {
    Healthy = 0,
    Unhealthy = 1,
}

/// HOST_NETWORK workloads share their node's address, so the address names no one workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum NetworkMode {
    Standard = 0,
    HostNetwork = 1,
}

/// A service: a group of workloads reachable together. meshward reads no policy from it.
#[derive(Clone, PartialEq, Message)]
pub struct Service {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub namespace: String,
    #[prost(string, tag = "3")]
    pub hostname: String,
    #[prost(message, repeated, tag = "4")]
    pub addresses: Vec<NetworkAddress>,
}

/// An address on a network; `length` set makes it a CIDR.
#[derive(Clone, PartialEq, Message)]
pub struct NetworkAddress {
    #[prost(string, tag = "1")]
    pub network: String,
    #[prost(bytes = "vec", tag = "2")]
    pub address: Vec<u8>,
    #[prost(uint32, optional, tag = "3")]
    pub length: Option<u32>,
}
