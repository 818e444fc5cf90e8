//! `GET /events`: one JSON object a line.

use std::collections::HashMap;

use super::lenient::{docker_enum, docker_model};

docker_enum! {
    pub enum EventType {
        "builder" => Builder,
        "config" => Config,
        "container" => Container,
        "daemon" => Daemon,
        "image" => Image,
        "network" => Network,
        "node" => Node,
        "plugin" => Plugin,
        "secret" => Secret,
        "service" => Service,
        "volume" => Volume,
    }
}

docker_model! {
    pub struct EventMessage {
        "Type" => typ: EventType,
        "Action" => action: String,
        "Actor" => actor: EventActor,
        "scope" => scope: String,
        "time" => time: i64,
        "timeNano" => time_nano: i64,
    }
}

docker_model! {
    pub struct EventActor {
        "ID" => id: String,
        "Attributes" => attributes: HashMap<String, String>,
    }
}
