//! Running a plugin binary with the CNI environment.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::config::NetworkConfigList;
use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
        }
    }
}

/// libcni's RuntimeConf: who the attachment is for.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConf {
    pub container_id: String,
    /// Empty when the namespace is gone (DEL only).
    pub netns: String,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    pub capability_args: serde_json::Map<String, Value>,
}

impl RuntimeConf {
    pub fn cni_args(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

pub(crate) fn find_plugin(plugin_type: &str, bin_dirs: &[PathBuf]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    bin_dirs.iter().map(|d| d.join(plugin_type)).find(|p| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

#[derive(Debug, Clone)]
pub struct PluginRunner {
    pub bin_dirs: Vec<PathBuf>,
    pub timeout: Duration,
}

impl PluginRunner {
    fn cni_path(&self) -> String {
        self.bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Runs plugin `index` of `list`. ADD returns the plugin's result.
    pub async fn run(
        &self,
        command: Command,
        list: &NetworkConfigList,
        index: usize,
        prev_result: Option<&Value>,
        rt: &RuntimeConf,
    ) -> Result<Option<Value>, Error> {
        let plugin_type = &list.plugins[index].plugin_type;
        let path =
            find_plugin(plugin_type, &self.bin_dirs).ok_or_else(|| Error::PluginNotFound {
                plugin: plugin_type.clone(),
                dirs: self.cni_path(),
            })?;
        let stdin = list.plugin_config(index, prev_result, &rt.capability_args);
        tracing::debug!(
            plugin = %plugin_type,
            network = %list.name,
            command = command.as_str(),
            container_id = %rt.container_id,
            "running CNI plugin"
        );
        let output = self
            .exec(&path, command, &stdin, rt, list, plugin_type)
            .await?;
        if command == Command::Del {
            return Ok(None);
        }
        let value: Value = serde_json::from_slice(&output).map_err(|e| Error::BadResult {
            plugin: plugin_type.clone(),
            reason: format!("{e}: {}", String::from_utf8_lossy(&output)),
        })?;
        crate::result::CniResult::parse(&value).map_err(|reason| Error::BadResult {
            plugin: plugin_type.clone(),
            reason,
        })?;
        Ok(Some(value))
    }

    async fn exec(
        &self,
        path: &Path,
        command: Command,
        stdin: &[u8],
        rt: &RuntimeConf,
        list: &NetworkConfigList,
        plugin_type: &str,
    ) -> Result<Vec<u8>, Error> {
        let mut child = tokio::process::Command::new(path)
            .env("CNI_COMMAND", command.as_str())
            .env("CNI_CONTAINERID", &rt.container_id)
            .env("CNI_NETNS", &rt.netns)
            .env("CNI_IFNAME", &rt.ifname)
            .env("CNI_ARGS", rt.cni_args())
            .env("CNI_PATH", self.cni_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(Error::io(format!("starting CNI plugin {}", path.display())))?;
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let input = stdin.to_vec();
        let feed = async move {
            // A plugin that exits without reading stdin is not our error.
            let _ = pipe.write_all(&input).await;
            drop(pipe);
        };
        let run = async {
            let (_, output) = tokio::join!(feed, child.wait_with_output());
            output
        };
        let output = match tokio::time::timeout(self.timeout, run).await {
            Ok(output) => output.map_err(Error::io(format!("running {}", path.display())))?,
            Err(_) => {
                return Err(Error::Timeout {
                    plugin: plugin_type.to_string(),
                    network: list.name.clone(),
                    command: command.as_str(),
                    seconds: self.timeout.as_secs(),
                });
            }
        };
        if !output.stderr.is_empty() {
            tracing::debug!(plugin = %plugin_type, stderr = %String::from_utf8_lossy(&output.stderr), "CNI plugin stderr");
        }
        if output.status.success() {
            return Ok(output.stdout);
        }
        Err(Error::Plugin {
            plugin: plugin_type.to_string(),
            network: list.name.clone(),
            command: command.as_str(),
            message: plugin_error_message(&output.stdout, &output.stderr, output.status),
        })
    }
}

/// A failing plugin prints `{"code":..,"msg":..,"details":..}` on stdout.
fn plugin_error_message(stdout: &[u8], stderr: &[u8], status: std::process::ExitStatus) -> String {
    if let Ok(Value::Object(err)) = serde_json::from_slice::<Value>(stdout) {
        let msg = err.get("msg").and_then(Value::as_str).unwrap_or("");
        let details = err.get("details").and_then(Value::as_str).unwrap_or("");
        let code = err.get("code").and_then(Value::as_u64);
        let mut message = msg.to_string();
        if !details.is_empty() {
            message = format!("{message}; {details}");
        }
        if let Some(code) = code {
            message = format!("{message} (code {code})");
        }
        if !message.trim().is_empty() {
            return message;
        }
    }
    let text = String::from_utf8_lossy(if stdout.is_empty() { stderr } else { stdout });
    let text = text.trim();
    if text.is_empty() {
        format!("exited with {status}")
    } else {
        format!("{text} ({status})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn list(plugin: &str) -> NetworkConfigList {
        NetworkConfigList::from_list_bytes(
            format!(r#"{{"cniVersion":"1.0.0","name":"n","plugins":[{{"type":"{plugin}"}}]}}"#)
                .as_bytes(),
            None,
        )
        .unwrap()
    }

    fn rt() -> RuntimeConf {
        RuntimeConf {
            container_id: "c1".into(),
            netns: "/proc/1/ns/net".into(),
            ifname: "eth0".into(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAME".into(), "p".into()),
            ],
            capability_args: Default::default(),
        }
    }

    #[tokio::test]
    async fn environment_and_stdin_reach_the_plugin() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "echoenv",
            r#"cat > "$(dirname "$0")/stdin"; echo "{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.9.9.9/24\"}],\"env\":\"$CNI_COMMAND|$CNI_CONTAINERID|$CNI_NETNS|$CNI_IFNAME|$CNI_ARGS|$CNI_PATH\"}""#,
        );
        let runner = PluginRunner {
            bin_dirs: vec![dir.path().into()],
            timeout: Duration::from_secs(10),
        };
        let out = runner
            .run(Command::Add, &list("echoenv"), 0, None, &rt())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            out["env"],
            format!(
                "ADD|c1|/proc/1/ns/net|eth0|IgnoreUnknown=1;K8S_POD_NAME=p|{}",
                dir.path().display()
            )
        );
        let stdin: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("stdin")).unwrap()).unwrap();
        assert_eq!(stdin["name"], "n");
    }

    #[tokio::test]
    async fn plugin_errors_carry_the_plugin_message() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "fail",
            r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"failed to allocate","details":"range full"}'; exit 1"#,
        );
        let runner = PluginRunner {
            bin_dirs: vec![dir.path().into()],
            timeout: Duration::from_secs(10),
        };
        let err = runner
            .run(Command::Add, &list("fail"), 0, None, &rt())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("failed to allocate; range full (code 11)"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn slow_plugins_time_out_and_missing_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "slow", "sleep 5");
        let runner = PluginRunner {
            bin_dirs: vec![dir.path().into()],
            timeout: Duration::from_millis(200),
        };
        let err = runner
            .run(Command::Del, &list("slow"), 0, None, &rt())
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        let err = runner
            .run(Command::Add, &list("absent"), 0, None, &rt())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::PluginNotFound { .. }), "{err}");
    }

    #[tokio::test]
    async fn garbage_results_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "garbage", "echo not-json");
        let runner = PluginRunner {
            bin_dirs: vec![dir.path().into()],
            timeout: Duration::from_secs(10),
        };
        let err = runner
            .run(Command::Add, &list("garbage"), 0, None, &rt())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BadResult { .. }), "{err}");
    }
}
