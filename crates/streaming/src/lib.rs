//! The CRI streaming server: exec, attach and port-forward for kubectl,
//! crictl and the kubelet, over SPDY/3.1 and WebSocket, speaking the
//! kubelet streaming library's protocols.

pub mod backend;
mod limits;
pub mod portforward;
pub mod remotecommand;
mod server;
pub mod spdy;
pub mod status;
mod tokens;
pub mod tunnel;
pub mod websocket;

pub use backend::{
    AttachParams, Backend, ExecParams, Outcome, PortForwardParams, StreamIo, StreamRequest,
    TerminalSize,
};
pub use limits::Limits;
pub use server::{ACCEPTED_PROTOCOLS_HEADER, PROTOCOL_HEADER, StreamingServer};
pub use tokens::{TOKEN_TTL, TokenCache, TokenError};
