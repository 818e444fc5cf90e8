//! prost's codec, except that a message that does not decode is the
//! sender's mistake: `InvalidArgument`, where tonic (like grpc-go) says
//! `Internal`. Clients then see a malformed request for what it is.

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstCodec;

#[derive(Debug)]
pub struct CriCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for CriCodec<T, U> {
    fn default() -> Self {
        Self(ProstCodec::default())
    }
}

impl<T, U> Codec for CriCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = InvalidArgumentOnDecode<<ProstCodec<T, U> as Codec>::Decoder>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        InvalidArgumentOnDecode(self.0.decoder())
    }
}

#[derive(Debug)]
pub struct InvalidArgumentOnDecode<D>(D);

impl<D: Decoder<Error = Status>> Decoder for InvalidArgumentOnDecode<D> {
    type Item = D::Item;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        self.0.decode(src).map_err(|status| {
            Status::invalid_argument(format!(
                "the message is not a valid protobuf encoding of its type: {}",
                status.message()
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
