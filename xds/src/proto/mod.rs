//! Wire types of the resources meshward takes over xDS, written by hand as prost messages.
//!
//! `istio.workload` and `istio.security` keep the package names, message names and field
//! numbers of istio/ztunnel's `proto/workload.proto` and `proto/authorization.proto`, so that
//! istiod's bytes decode here. Only the fields meshward reads are declared; prost skips the
//! others. `meshward.v1alpha1` is meshward's own contract (`xds/proto/meshward.proto`).

pub mod authorization;
pub mod egress;
pub mod workload;

/// `google.protobuf.Empty`: the value of presence-only oneof members.
#[derive(Clone, Copy, PartialEq, Eq, ::prost::Message)]
pub struct Empty {}
