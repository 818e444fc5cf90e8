//! The CRI's Stream* calls (Kubernetes 1.36, gate CRIListStreaming): a list
//! answered as a stream of messages of at least one item each, so that a
//! node with thousands of containers never meets gRPC's message limit.
//!
//! The list's entries are selected at once (as the List* twin selects
//! them, from the node state); each is turned into its CRI item only when
//! its message is due: a task builds one message ahead, into a channel of
//! one, as the client reads. A client that stops reading holds at most two
//! messages, and for [`STALLED_READER`] only: then the building stops, what
//! it held is dropped, and the stream ends with DeadlineExceeded (never a
//! silent, shortened list). Every stream is a task of its own, so a slow
//! reader holds up nobody else.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::to_status;

/// Items go into one message until it holds this many bytes (a single
/// bigger item goes alone): far below the 16 MiB the kubelet accepts.
pub(crate) const MESSAGE_BYTES: usize = 1 << 20;

/// How long a client may leave a built message unread.
pub(crate) const STALLED_READER: Duration = Duration::from_secs(30);

pub(crate) type PagedStream<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

/// Builds one entry's item; `None` when the entry is gone by then.
pub(crate) type Build<E, T> =
    Box<dyn FnMut(E) -> BoxFuture<'static, cri_dockerd_core::Result<Option<T>>> + Send>;

/// Streams `entries` as messages `wrap` makes of their items.
pub(crate) fn paged<E, T, R>(
    entries: Vec<E>,
    build: Build<E, T>,
    wrap: fn(Vec<T>) -> R,
) -> PagedStream<R>
where
    E: Send + 'static,
    T: Message + Send + 'static,
    R: Send + 'static,
{
    paged_with(entries, build, wrap, MESSAGE_BYTES, STALLED_READER)
}

pub(crate) fn paged_with<E, T, R>(
    entries: Vec<E>,
    mut build: Build<E, T>,
    wrap: fn(Vec<T>) -> R,
    message_bytes: usize,
    stalled_reader: Duration,
) -> PagedStream<R>
where
    E: Send + 'static,
    T: Message + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<R, Status>>(1);
    let given_up = Arc::new(AtomicBool::new(false));
    let flag = given_up.clone();
    tokio::spawn(async move {
        let mut message: Vec<T> = Vec::new();
        let mut bytes = 0;
        for entry in entries {
            let item = match build(entry).await {
                Ok(Some(item)) => item,
                Ok(None) => continue,
                Err(e) => {
                    let _ = tx.send(Err(to_status(e))).await;
                    return;
                }
            };
            let size = item.encoded_len();
            if !message.is_empty() && bytes + size > message_bytes {
                let full = std::mem::take(&mut message);
                bytes = 0;
                if !send(&tx, wrap(full), stalled_reader, &flag).await {
                    return;
                }
            }
            bytes += size;
            message.push(item);
        }
        // The last message; an empty list is an empty stream.
        if !message.is_empty() {
            send(&tx, wrap(message), stalled_reader, &flag).await;
        }
    });
    // After what was queued: why the list stopped short, if it did.
    let why = futures::stream::once(async move {
        given_up.load(Ordering::SeqCst).then(|| {
            Err(Status::deadline_exceeded(format!(
                "the client read nothing for {}s: the list was given up",
                stalled_reader.as_secs()
            )))
        })
    })
    .filter_map(futures::future::ready);
    ReceiverStream::new(rx).chain(why).boxed()
}

/// Hands a message to the client's stream; false when the client is gone
/// or has not read for `stalled_reader` (then `given_up` is set).
async fn send<R>(
    tx: &mpsc::Sender<Result<R, Status>>,
    message: R,
    stalled_reader: Duration,
    given_up: &AtomicBool,
) -> bool {
    match tx.send_timeout(Ok(message), stalled_reader).await {
        Ok(()) => true,
        Err(mpsc::error::SendTimeoutError::Closed(_)) => false,
        Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
            tracing::warn!(
                seconds = stalled_reader.as_secs(),
                "a list stream's client stopped reading; the stream is given up"
            );
            given_up.store(true, Ordering::SeqCst);
            false
        }
    }
}

/// An entry whose container or pod was removed after the selection is
/// left out, as if the list had been taken a moment later.
pub(crate) fn gone_is_none<T>(
    built: cri_dockerd_core::Result<T>,
) -> cri_dockerd_core::Result<Option<T>> {
    match built {
        Ok(item) => Ok(Some(item)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Entries that already are their items.
pub(crate) fn ready<T: Send + 'static>() -> Build<T, T> {
    Box::new(|item| Box::pin(async move { Ok(Some(item)) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_dockerd_api::v1::{Container, StreamContainersResponse};

    fn container(id: &str, filler: usize) -> Container {
        Container {
            id: id.to_string(),
            image_ref: "x".repeat(filler),
            ..Default::default()
        }
    }

    fn wrap(containers: Vec<Container>) -> StreamContainersResponse {
        StreamContainersResponse { containers }
    }

    #[tokio::test]
    async fn messages_are_bounded_and_every_item_comes_once() {
        // Ids of one width, so that every item has the same size.
        let entries: Vec<Container> = (0..100)
            .map(|i| container(&format!("c{i:03}"), 100))
            .collect();
        let one = entries[0].encoded_len();
        let stream = paged_with(entries, ready(), wrap, one * 10, STALLED_READER);
        let messages: Vec<_> = stream.map(Result::unwrap).collect().await;
        assert_eq!(messages.len(), 10);
        let ids: Vec<String> = messages
            .iter()
            .flat_map(|m| m.containers.iter().map(|c| c.id.clone()))
            .collect();
        assert_eq!(
            ids,
            (0..100).map(|i| format!("c{i:03}")).collect::<Vec<_>>()
        );
        assert!(messages.iter().all(|m| m.encoded_len() <= one * 10 + 32));
    }

    #[tokio::test]
    async fn a_big_item_goes_alone_and_an_empty_list_is_an_empty_stream() {
        let entries = vec![
            container("small", 1),
            container("big", 5000),
            container("small2", 1),
        ];
        let messages: Vec<_> = paged_with(entries, ready(), wrap, 1000, STALLED_READER)
            .map(Result::unwrap)
            .collect()
            .await;
        let sizes: Vec<usize> = messages.iter().map(|m| m.containers.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
        let none: Vec<_> = paged_with(Vec::new(), ready(), wrap, 1000, STALLED_READER)
            .collect()
            .await;
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn entries_gone_are_left_out_and_an_error_ends_the_stream() {
        let build: Build<u32, Container> = Box::new(|n| {
            Box::pin(async move {
                match n {
                    2 => Ok(None),
                    4 => Err(cri_dockerd_core::Error::Unavailable(
                        "docker is gone".into(),
                    )),
                    n => Ok(Some(container(&format!("c{n}"), 1))),
                }
            })
        });
        let out: Vec<_> = paged_with(vec![1, 2, 3, 4, 5], build, wrap, 1 << 20, STALLED_READER)
            .collect()
            .await;
        // 1 and 3 were due in one message when 4 failed: the error alone.
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].as_ref().unwrap_err().code(),
            tonic::Code::Unavailable
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_is_given_up_and_holds_nothing_after() {
        let entries: Vec<Container> = (0..50).map(|i| container(&format!("c{i}"), 100)).collect();
        let one = entries[0].encoded_len();
        let built = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = built.clone();
        let build: Build<Container, Container> = Box::new(move |c| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move { Ok(Some(c)) })
        });
        let mut stream = paged_with(entries, build, wrap, one, Duration::from_secs(30));
        // The client reads one message, then stops.
        assert!(stream.next().await.unwrap().is_ok());
        tokio::time::sleep(Duration::from_secs(5)).await;
        let early = built.load(std::sync::atomic::Ordering::SeqCst);
        assert!(early <= 4, "built ahead only a message or two: {early}");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            built.load(std::sync::atomic::Ordering::SeqCst),
            early,
            "nothing more is built for a reader that stopped"
        );
        // Reading again: what was queued, then the reason, then the end.
        let mut rest = Vec::new();
        while let Some(item) = stream.next().await {
            rest.push(item);
        }
        assert_eq!(rest.len(), 2, "{rest:?}");
        assert!(rest[0].is_ok());
        assert_eq!(
            rest[1].as_ref().unwrap_err().code(),
            tonic::Code::DeadlineExceeded
        );
    }
}
