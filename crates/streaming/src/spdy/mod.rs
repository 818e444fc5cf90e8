//! SPDY/3.1, the multiplexing protocol kubectl, crictl and the kubelet
//! speak for exec, attach and port-forward.

pub mod conn;
mod dictionary;
pub mod frame;

pub use conn::{SpdyConnection, SpdyStream, StreamReader, StreamWriter};
pub use frame::{Frame, FrameError, Headers, header};
