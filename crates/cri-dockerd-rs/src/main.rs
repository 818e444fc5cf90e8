//! `cri-dockerd-rs`: a CRI server for Docker Engine.

mod cli;
mod docker;
mod duration;
mod listener;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use cri_dockerd_core::Runtime;
use cri_dockerd_core::streams::{self, DockerEndpoint};
use cri_dockerd_server::CriService;
use cri_dockerd_streaming::StreamingServer;
use tracing_subscriber::EnvFilter;

use crate::cli::Cli;

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
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(cli.log_filter()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.runtime_settings().map_err(anyhow::Error::msg)?;
    for flag in cli.ignored_flags() {
        tracing::warn!("flag accepted but not acted on: {flag}");
    }
    let docker = docker::connect(&cli.docker_endpoint, cli.request_timeout()).await?;
    let endpoint = DockerEndpoint::parse(&cli.docker_endpoint)
        .with_context(|| format!("unsupported --docker-endpoint {}", cli.docker_endpoint))?;
    let streaming_addr = cli
        .streaming_bind_addr
        .as_deref()
        .unwrap_or(DEFAULT_STREAMING_ADDR);
    let backend = streams::backend(docker.clone(), endpoint);
    let streaming =
        StreamingServer::bind_with_ttl(streaming_addr, backend, cli.streaming_token_ttl)
            .await
            .with_context(|| format!("binding the streaming server on {streaming_addr}"))?;
    tracing::info!(address = %streaming.local_addr(), "streaming server listening");
    let runtime = Runtime::new(docker, settings, Some(streaming))
        .await
        .context("initialising the runtime")?;
    {
        // Containers keep logging while the shim is down: catch up.
        let runtime = runtime.clone();
        tokio::spawn(async move {
            if let Err(e) = runtime.resume_log_copies().await {
                tracing::warn!(error = %e, "could not resume container log copies");
            }
        });
    }
    let service = CriService::new(runtime);

    let listener = listener::Listener::bind(&cli.container_runtime_endpoint)?;
    tracing::info!(endpoint = %cli.container_runtime_endpoint, "serving the CRI");
    listener.serve(service, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining in-flight calls"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining in-flight calls"),
    }
}
