//! Names a Docker Engine API request for the metrics: `container_create`,
//! `container_inspect`, `image_pull`. Ids and image names never become
//! label values, so the set of names is fixed and small.

/// The operation `method path` performs; `other` for paths we do not name.
pub fn operation(method: &str, path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or("");
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Versioned paths: /v1.47/containers/json.
    if segments
        .first()
        .is_some_and(|s| s.starts_with('v') && s[1..].contains('.'))
    {
        segments.remove(0);
    }
    let delete = method.eq_ignore_ascii_case("DELETE");
    match segments.as_slice() {
        ["_ping"] => "ping",
        ["version"] => "version",
        ["info"] => "info",
        ["events"] => "events",
        ["system", "df"] => "system_df",
        ["containers", "json"] => "container_list",
        ["containers", "create"] => "container_create",
        ["containers", "prune"] => "container_prune",
        ["containers", _id] if delete => "container_remove",
        ["containers", _id, action] => container_action(action),
        ["exec", _id, action] => exec_action(action),
        ["images", "json"] => "image_list",
        ["images", "create"] => "image_pull",
        ["images", "search"] => "image_search",
        ["images", "prune"] => "image_prune",
        ["images", "load"] => "image_load",
        // Image names hold slashes: the action is the last segment.
        ["images", .., action] if !delete && segments.len() > 2 => image_action(action),
        ["images", ..] if delete => "image_remove",
        ["distribution", .., "json"] => "distribution_inspect",
        ["networks", ..] => "network",
        ["volumes", ..] => "volume",
        _ => "other",
    }
}

fn container_action(action: &str) -> &'static str {
    match action {
        "json" => "container_inspect",
        "start" => "container_start",
        "stop" => "container_stop",
        "kill" => "container_kill",
        "wait" => "container_wait",
        "logs" => "container_logs",
        "stats" => "container_stats",
        "update" => "container_update",
        "attach" => "container_attach",
        "exec" => "exec_create",
        "top" => "container_top",
        "resize" => "container_resize",
        "restart" => "container_restart",
        "rename" => "container_rename",
        "pause" => "container_pause",
        "unpause" => "container_unpause",
        "archive" => "container_archive",
        "changes" => "container_changes",
        "export" => "container_export",
        "checkpoints" => "container_checkpoint",
        _ => "other",
    }
}

fn exec_action(action: &str) -> &'static str {
    match action {
        "start" => "exec_start",
        "json" => "exec_inspect",
        "resize" => "exec_resize",
        _ => "other",
    }
}

fn image_action(action: &str) -> &'static str {
    match action {
        "json" => "image_inspect",
        "history" => "image_history",
        "push" => "image_push",
        "tag" => "image_tag",
        "get" => "image_export",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::operation;

    #[test]
    fn requests_are_named_without_ids() {
        for (method, path, name) in [
            ("GET", "/_ping", "ping"),
            ("GET", "/v1.41/version", "version"),
            (
                "GET",
                "/v1.41/containers/json?all=true&filters=%7B%7D",
                "container_list",
            ),
            (
                "POST",
                "/v1.41/containers/create?name=k8s_POD_x",
                "container_create",
            ),
            (
                "GET",
                "/v1.41/containers/0123abcd/json",
                "container_inspect",
            ),
            (
                "POST",
                "/v1.41/containers/0123abcd/start",
                "container_start",
            ),
            (
                "POST",
                "/v1.41/containers/0123abcd/stop?t=30",
                "container_stop",
            ),
            (
                "DELETE",
                "/v1.41/containers/0123abcd?force=true&v=true",
                "container_remove",
            ),
            ("POST", "/v1.41/containers/0123abcd/exec", "exec_create"),
            ("POST", "/v1.41/exec/feed/start", "exec_start"),
            ("GET", "/v1.41/exec/feed/json", "exec_inspect"),
            (
                "POST",
                "/v1.41/images/create?fromImage=busybox&tag=1",
                "image_pull",
            ),
            ("GET", "/v1.41/images/json", "image_list"),
            (
                "GET",
                "/v1.41/images/127.0.0.1:5000/team/app:1.0/json",
                "image_inspect",
            ),
            ("GET", "/v1.41/images/sha256:abc/json", "image_inspect"),
            (
                "DELETE",
                "/v1.41/images/127.0.0.1:5000/team/app:1.0?force=false",
                "image_remove",
            ),
            ("GET", "/v1.41/events?since=1&filters=x", "events"),
            ("GET", "/v1.41/info", "info"),
            ("GET", "/v1.41/system/df", "system_df"),
            ("GET", "/v1.41/plugins", "other"),
            ("GET", "/v1.41/containers/0123abcd/frobnicate", "other"),
        ] {
            assert_eq!(operation(method, path), name, "{method} {path}");
        }
    }
}
