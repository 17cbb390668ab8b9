//! Tower layers around every gRPC service: what is done to a request before any
//! service sees it, in the order the server stacks them. Authentication and
//! metrics join here; checks that need the decoded body (per-topic authorization)
//! run in the services, after decoding.

mod arrival;
mod grpc_only;
mod request_size;

pub use arrival::{Arrival, StampArrival, Stamped};
pub use grpc_only::{GrpcOnly, GrpcOnlyService};
pub use request_size::{RequestSize, RequestSizeService};
