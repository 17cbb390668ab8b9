//! gRPC: the generated API, conversions between it and the domain, and thin
//! service implementations that validate, delegate to a manager and map errors.

mod convert;
mod deadline;
pub mod proto;
mod publisher;
mod status;
mod subscriber;

pub use publisher::Publisher;
pub use subscriber::Subscriber;
