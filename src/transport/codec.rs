//! The protobuf codec of every RPC: prost's, except that a request whose bytes
//! are not the message its RPC takes fails as the client's fault
//! (UNDECODABLE_REQUEST, INVALID_ARGUMENT) with the gateway's error details,
//! where tonic's codec says INTERNAL, a code that tells the client the server is
//! broken. Unary and streamed requests alike come through here.

use crate::Error;
use tonic::{
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
    Status,
};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// prost's codec with the gateway's decoding errors; `build.rs` names it.
#[derive(Debug, Clone, Default)]
pub struct GatewayCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Codec for GatewayCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = GatewayDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        GatewayDecoder(self.0.decoder())
    }
}

/// prost's decoder, whose failures are [`Error::Undecodable`].
#[derive(Debug)]
pub struct GatewayDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for GatewayDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0
            .decode(src)
            .map_err(|status| Error::Undecodable(status.message().to_string()).into())
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
