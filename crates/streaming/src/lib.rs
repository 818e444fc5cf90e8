//! The CRI streaming server: exec, attach and port-forward for kubectl,
//! crictl and the kubelet, over SPDY/3.1 and WebSocket.

pub mod spdy;
