//! Services that run inside lab namespaces. Each takes sockets someone else bound and a
//! swappable table someone else owns, so none of them knows about namespaces.

// Only tests call these until the supervisor (src/lab/) wires them in; remove then.
#[allow(dead_code, reason = "called by the supervisor, which lands separately")]
pub mod dns;
#[allow(dead_code, reason = "called by the supervisor, which lands separately")]
pub mod metadata;
