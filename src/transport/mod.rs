//! gRPC: the generated API, conversions between it and the domain, and thin
//! service implementations that validate, delegate to a manager and map errors.

mod codec;
mod consume;
mod convert;
mod deadline;
pub mod http2;
pub mod layers;
pub mod proto;
mod publish_stream;
mod publisher;
mod status;
mod subscribe;
mod subscriber;
pub mod tls;

pub use publish_stream::StreamLimits;
pub use publisher::Publisher;
pub use subscriber::Subscriber;
