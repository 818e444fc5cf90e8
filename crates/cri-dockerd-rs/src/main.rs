//! `cri-dockerd-rs`: a CRI server for Docker Engine.

mod authority;
mod cli;
mod docker;
mod duration;
mod listener;
mod logging;
mod metrics_endpoint;
mod systemd;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use cri_dockerd_core::DockerCri;
use cri_dockerd_core::streams;
use cri_dockerd_engine::Engine;
use cri_dockerd_server::{CriService, ObserveLayer};
use cri_dockerd_streaming::StreamingServer;

use crate::cli::Cli;
use crate::systemd::{Notifier, SystemdHandover};

/// Loopback and a free port: the kubelet on this node proxies the streams.
const DEFAULT_STREAMING_ADDR: &str = "127.0.0.1:0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        println!(
            "cri-dockerd-rs {} (flags compatible with cri-dockerd 0.3)",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    if cli.buildinfo {
        println!(
            "Program: cri-dockerd-rs\nVersion: {}\nCRI API: v1\nPackage: {}",
            env!("CARGO_PKG_VERSION"),
            env!("CARGO_PKG_NAME")
        );
        return ExitCode::SUCCESS;
    }
    logging::init(cli.log_format, &cli.log_filter());
    // SAFETY: no other thread exists yet (the async runtime starts below).
    let systemd = match unsafe { SystemdHandover::take() } {
        Ok(systemd) => systemd,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::FAILURE;
        }
    };

    let tokio_runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(tokio_runtime) => tokio_runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match tokio_runtime.block_on(run(cli, systemd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, mut systemd: SystemdHandover) -> anyhow::Result<()> {
    let settings = cli.runtime_settings().map_err(anyhow::Error::msg)?;
    // A socket systemd passed is taken at once, so a missing one is
    // reported before anything else starts; a path is bound once the shim
    // can serve it.
    let passed_listener = if cli.container_runtime_endpoint.starts_with("fd://") {
        Some(listener::Listener::bind(
            &cli.container_runtime_endpoint,
            &mut systemd,
        )?)
    } else {
        None
    };
    // Bound before anything starts, so a taken port stops the start.
    let metrics_listener = match cli.metrics_bind_addr.get() {
        Some(address) => Some(metrics_endpoint::bind(address.as_str()).await?),
        None => None,
    };
    for flag in cli.ignored_flags() {
        tracing::warn!("flag accepted but not acted on: {flag}");
    }
    let engine = docker::connect(&cli.docker_endpoint, cli.request_timeout()).await?;
    let streaming_addr = cli
        .streaming_bind_addr
        .as_ref()
        .map_or(DEFAULT_STREAMING_ADDR, |a| a.as_str());
    let backend = streams::backend(engine.clone());
    let limits = cri_dockerd_streaming::Limits {
        read_header_timeout: cli.streaming_read_header_timeout,
        idle_timeout: cli.streaming_connection_idle_timeout,
    };
    let streaming =
        StreamingServer::bind_with(streaming_addr, backend, cli.streaming_token_ttl, limits)
            .await
            .with_context(|| format!("binding the streaming server on {streaming_addr}"))?;
    tracing::info!(address = %streaming.local_addr(), "streaming server listening");
    let cri = DockerCri::new(engine.clone(), settings, Some(streaming))
        .await
        .context("initialising the CRI on Docker")?;
    cri.reconcile().await;
    {
        // Containers keep logging while the shim is down: catch up.
        let cri = cri.clone();
        tokio::spawn(async move {
            if let Err(e) = cri.resume_log_copies().await {
                tracing::warn!(error = %e, "could not resume container log copies");
            }
        });
    }
    {
        let cri = cri.clone();
        cri_dockerd_telemetry::metrics::set_node_state_source(move || cri.node_counts());
    }
    let service = CriService::new(cri);

    let listener = match passed_listener {
        Some(listener) => listener,
        None => listener::Listener::bind(&cli.container_runtime_endpoint, &mut systemd)?,
    };
    if let Some(metrics_listener) = metrics_listener {
        tracing::info!(address = %metrics_listener.local_addr()?, "metrics endpoint listening (/metrics, /healthz)");
        tokio::spawn(metrics_endpoint::serve(
            metrics_listener,
            engine.clone(),
            listener.cri_address(),
        ));
    }
    let notifier = systemd.notifier();
    if let (Some(notifier), Some(interval)) = (notifier.clone(), systemd.watchdog()) {
        tokio::spawn(watchdog(notifier, interval, engine));
    }
    tracing::info!(endpoint = %cli.container_runtime_endpoint, "serving the CRI");
    // The socket is bound: connections queue from here, so systemd may
    // start the kubelet.
    if let Some(notifier) = &notifier {
        notifier.send(&format!(
            "READY=1\nMAINPID={}\nSTATUS=serving the CRI on {}\n",
            std::process::id(),
            cli.container_runtime_endpoint
        ));
    }
    let observe = ObserveLayer::new(cli.slow_request_threshold);
    listener
        .serve(service, observe, shutdown_signal(notifier))
        .await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT, telling systemd the stop has begun.
/// SIGHUP (the stock unit's ExecReload) is logged and otherwise ignored:
/// every setting is a flag, read at start.
async fn shutdown_signal(notifier: Option<Notifier>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot watch SIGTERM, SIGINT and SIGHUP");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: draining in-flight calls");
                break;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: draining in-flight calls");
                break;
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: nothing to reload (settings are flags; restart to change them)");
            }
        }
    }
    if let Some(notifier) = notifier {
        notifier.send("STOPPING=1\nSTATUS=stopping\n");
    }
}

/// Pings systemd's watchdog at half its interval while Docker answers, so
/// that systemd restarts a shim whose daemon is gone for good.
async fn watchdog(notifier: Notifier, interval: std::time::Duration, engine: Engine) {
    let period = interval / 2;
    tracing::info!(?interval, "systemd watchdog enabled");
    loop {
        match tokio::time::timeout(period, engine.ping()).await {
            Ok(Ok(_)) => notifier.send("WATCHDOG=1\n"),
            Ok(Err(e)) => tracing::warn!(error = %e, "Docker does not answer: no watchdog ping"),
            Err(_) => tracing::warn!("Docker did not answer in time: no watchdog ping"),
        }
        tokio::time::sleep(period).await;
    }
}
