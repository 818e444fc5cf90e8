//! The project's CRI definition (proto/, cri-api v0.36) against the one the
//! `k8s-cri` crate compiles (cri-api v0.32): every message of the old
//! definition, filled with random contents, encoded with ours, decoded with
//! the old, encoded again and decoded with ours must come back equal field
//! by field; and ours round-trips itself. A renumbered field, a changed
//! type or enum value fails here.

use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value,
};

/// Fields cri-api added after v0.32: the old definition cannot carry them.
/// By name, or by full name where the name is older elsewhere.
const NEWER_FIELDS: [&str; 6] = [
    "image_sub_path",
    "stop_signal",
    "io",
    "psi",
    "runtime.v1.ImageSpec.image_ref",
    "runtime.v1.RuntimeFeatures.user_namespaces_host_network",
];

fn is_newer(field: &FieldDescriptor) -> bool {
    NEWER_FIELDS.contains(&field.name()) || NEWER_FIELDS.contains(&field.full_name())
}
const ROUNDS: usize = 25;

/// A small deterministic generator, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn text(&mut self) -> String {
        let len = 1 + self.below(12) as usize;
        (0..len)
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect()
    }
}

/// A value of `field`'s kind that proto3 will encode (never the default).
fn scalar(kind: &Kind, rng: &mut Rng, depth: usize) -> Value {
    let nonzero = |rng: &mut Rng| 1 + rng.below(1 << 40);
    match kind {
        Kind::Double => Value::F64(nonzero(rng) as f64 / 7.0),
        Kind::Float => Value::F32((1 + rng.below(1000)) as f32 / 8.0),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32((1 + rng.below(1 << 30)) as i32 * if rng.below(2) == 0 { 1 } else { -1 })
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(nonzero(rng) as i64 * if rng.below(2) == 0 { 1 } else { -1 })
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(1 + rng.below(1 << 31) as u32),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(nonzero(rng)),
        Kind::Bool => Value::Bool(true),
        Kind::String => Value::String(rng.text()),
        Kind::Bytes => Value::Bytes(rng.text().into_bytes().into()),
        Kind::Enum(e) => {
            let values: Vec<i32> = e.values().map(|v| v.number()).filter(|n| *n != 0).collect();
            Value::EnumNumber(values[rng.below(values.len() as u64) as usize])
        }
        Kind::Message(m) => Value::Message(random_message(m, rng, depth + 1)),
    }
}

fn map_key(kind: &Kind, rng: &mut Rng) -> MapKey {
    match kind {
        Kind::String => MapKey::String(rng.text()),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(1 + rng.below(1000) as i32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => MapKey::I64(1 + rng.below(1000) as i64),
        Kind::Uint32 | Kind::Fixed32 => MapKey::U32(1 + rng.below(1000) as u32),
        Kind::Uint64 | Kind::Fixed64 => MapKey::U64(1 + rng.below(1000)),
        Kind::Bool => MapKey::Bool(true),
        other => panic!("no map key of kind {other:?}"),
    }
}

fn field_value(field: &FieldDescriptor, rng: &mut Rng, depth: usize) -> Value {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            unreachable!("a map field's kind is its entry message")
        };
        let (key, value) = (entry.map_entry_key_field(), entry.map_entry_value_field());
        let entries = (0..1 + rng.below(3))
            .map(|_| (map_key(&key.kind(), rng), scalar(&value.kind(), rng, depth)))
            .collect();
        Value::Map(entries)
    } else if field.is_list() {
        Value::List(
            (0..1 + rng.below(3))
                .map(|_| scalar(&field.kind(), rng, depth))
                .collect(),
        )
    } else {
        scalar(&field.kind(), rng, depth)
    }
}

fn random_message(descriptor: &MessageDescriptor, rng: &mut Rng, depth: usize) -> DynamicMessage {
    let mut message = DynamicMessage::new(descriptor.clone());
    if depth > 4 {
        return message;
    }
    for field in descriptor.fields() {
        if is_newer(&field) || rng.below(5) == 0 {
            continue;
        }
        message.set_field(&field, field_value(&field, rng, depth));
    }
    message
}

fn check<Old: Message + Default, Ours: Message + Default>(
    pool: &DescriptorPool,
    name: &str,
    rng: &mut Rng,
) {
    let descriptor = pool
        .get_message_by_name(&format!("runtime.v1.{name}"))
        .unwrap_or_else(|| panic!("proto/ lacks message {name}"));
    for round in 0..ROUNDS {
        let original = random_message(&descriptor, rng, 0);
        let bytes = original.encode_to_vec();
        let old = Old::decode(bytes.as_slice()).unwrap_or_else(|e| {
            panic!("{name} round {round}: the old definition refuses ours: {e}")
        });
        let through_old =
            DynamicMessage::decode(descriptor.clone(), old.encode_to_vec().as_slice())
                .unwrap_or_else(|e| panic!("{name} round {round}: ours refuses the old's: {e}"));
        assert_eq!(
            through_old, original,
            "{name} round {round}: changed through the old definition"
        );
        let ours = Ours::decode(bytes.as_slice()).expect("ours decodes ours");
        let through_ours =
            DynamicMessage::decode(descriptor.clone(), ours.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            through_ours, original,
            "{name} round {round}: changed through ours"
        );
    }
}

/// `Name` or `RustName = "ProtoName"` where prost renamed it (DNSConfig).
macro_rules! check_all {
    (@one $pool:expr, $rng:expr, $rust:ident, $proto:expr) => {
        check::<k8s_cri::v1::$rust, cri_dockerd_api::v1::$rust>($pool, $proto, $rng)
    };
    ($pool:expr, $rng:expr, $($rust:ident $(= $proto:literal)?),* $(,)?) => {{
        let mut checked = 0;
        $(
            check_all!(@one $pool, $rng, $rust, check_all!(@name $rust $(, $proto)?));
            checked += 1;
        )*
        checked
    }};
    (@name $rust:ident) => { stringify!($rust) };
    (@name $rust:ident, $proto:literal) => { $proto };
}

#[test]
fn every_message_of_the_old_definition_round_trips() {
    let pool = DescriptorPool::decode(cri_dockerd_api::FILE_DESCRIPTOR_SET).unwrap();
    let mut rng = Rng(0x5eed_0034_c0ff_ee11);
    let checked = check_all!(
        &pool,
        &mut rng,
        VersionRequest,
        VersionResponse,
        DnsConfig = "DNSConfig",
        PortMapping,
        Mount,
        IdMapping = "IDMapping",
        UserNamespace,
        NamespaceOption,
        Int64Value,
        LinuxSandboxSecurityContext,
        SecurityProfile,
        LinuxPodSandboxConfig,
        PodSandboxMetadata,
        PodSandboxConfig,
        RunPodSandboxRequest,
        RunPodSandboxResponse,
        StopPodSandboxRequest,
        StopPodSandboxResponse,
        RemovePodSandboxRequest,
        RemovePodSandboxResponse,
        PodSandboxStatusRequest,
        PodIp = "PodIP",
        PodSandboxNetworkStatus,
        Namespace,
        LinuxPodSandboxStatus,
        PodSandboxStatus,
        PodSandboxStatusResponse,
        PodSandboxStateValue,
        PodSandboxFilter,
        ListPodSandboxRequest,
        PodSandbox,
        ListPodSandboxResponse,
        PodSandboxStatsRequest,
        PodSandboxStatsResponse,
        PodSandboxStatsFilter,
        ListPodSandboxStatsRequest,
        ListPodSandboxStatsResponse,
        PodSandboxAttributes,
        PodSandboxStats,
        LinuxPodSandboxStats,
        WindowsPodSandboxStats,
        NetworkUsage,
        WindowsNetworkUsage,
        NetworkInterfaceUsage,
        WindowsNetworkInterfaceUsage,
        ProcessUsage,
        WindowsProcessUsage,
        ImageSpec,
        KeyValue,
        LinuxContainerResources,
        HugepageLimit,
        SeLinuxOption = "SELinuxOption",
        Capability,
        LinuxContainerSecurityContext,
        LinuxContainerConfig,
        LinuxContainerUser,
        WindowsNamespaceOption,
        WindowsSandboxSecurityContext,
        WindowsPodSandboxConfig,
        WindowsContainerSecurityContext,
        WindowsContainerConfig,
        WindowsContainerResources,
        WindowsCpuGroupAffinity,
        ContainerMetadata,
        Device,
        CdiDevice = "CDIDevice",
        ContainerConfig,
        CreateContainerRequest,
        CreateContainerResponse,
        StartContainerRequest,
        StartContainerResponse,
        StopContainerRequest,
        StopContainerResponse,
        RemoveContainerRequest,
        RemoveContainerResponse,
        ContainerStateValue,
        ContainerFilter,
        ListContainersRequest,
        Container,
        ListContainersResponse,
        ContainerStatusRequest,
        ContainerStatus,
        ContainerStatusResponse,
        ContainerResources,
        ContainerUser,
        UpdateContainerResourcesRequest,
        UpdateContainerResourcesResponse,
        ExecSyncRequest,
        ExecSyncResponse,
        ExecRequest,
        ExecResponse,
        AttachRequest,
        AttachResponse,
        PortForwardRequest,
        PortForwardResponse,
        ImageFilter,
        ListImagesRequest,
        Image,
        ListImagesResponse,
        ImageStatusRequest,
        ImageStatusResponse,
        AuthConfig,
        PullImageRequest,
        PullImageResponse,
        RemoveImageRequest,
        RemoveImageResponse,
        NetworkConfig,
        RuntimeConfig,
        UpdateRuntimeConfigRequest,
        UpdateRuntimeConfigResponse,
        RuntimeCondition,
        RuntimeStatus,
        StatusRequest,
        RuntimeHandlerFeatures,
        RuntimeHandler,
        RuntimeFeatures,
        StatusResponse,
        ImageFsInfoRequest,
        UInt64Value,
        FilesystemIdentifier,
        FilesystemUsage,
        WindowsFilesystemUsage,
        ImageFsInfoResponse,
        ContainerStatsRequest,
        ContainerStatsResponse,
        ListContainerStatsRequest,
        ContainerStatsFilter,
        ListContainerStatsResponse,
        ContainerAttributes,
        ContainerStats,
        WindowsContainerStats,
        CpuUsage,
        WindowsCpuUsage,
        MemoryUsage,
        SwapUsage,
        WindowsMemoryUsage,
        ReopenContainerLogRequest,
        ReopenContainerLogResponse,
        CheckpointContainerRequest,
        CheckpointContainerResponse,
        GetEventsRequest,
        ContainerEventResponse,
        ListMetricDescriptorsRequest,
        ListMetricDescriptorsResponse,
        MetricDescriptor,
        ListPodSandboxMetricsRequest,
        ListPodSandboxMetricsResponse,
        PodSandboxMetrics,
        ContainerMetrics,
        Metric,
        RuntimeConfigRequest,
        RuntimeConfigResponse,
        LinuxRuntimeConfiguration,
    );
    assert_eq!(checked, 153, "the old definition has 153 messages");
}

#[test]
fn the_new_definition_has_what_kubernetes_1_34_added() {
    let pool = DescriptorPool::decode(cri_dockerd_api::FILE_DESCRIPTOR_SET).unwrap();
    let field = |message: &str, name: &str| {
        pool.get_message_by_name(&format!("runtime.v1.{message}"))
            .and_then(|m| m.get_field_by_name(name))
            .map(|f| f.number())
    };
    assert_eq!(field("Mount", "image_sub_path"), Some(10));
    assert_eq!(field("ContainerConfig", "stop_signal"), Some(18));
    assert_eq!(field("ContainerStatus", "stop_signal"), Some(19));
    assert_eq!(
        field("UpdatePodSandboxResourcesRequest", "resources"),
        Some(3)
    );
    let signal = pool.get_enum_by_name("runtime.v1.Signal").unwrap();
    assert_eq!(signal.get_value_by_name("SIGUSR1").unwrap().number(), 29);
    assert_eq!(signal.get_value_by_name("SIGRTMAX").unwrap().number(), 65);
    let service = pool
        .get_service_by_name("runtime.v1.RuntimeService")
        .unwrap();
    assert!(
        service
            .methods()
            .any(|m| m.name() == "UpdatePodSandboxResources")
    );
}

#[test]
fn the_new_definition_has_what_kubernetes_1_36_added() {
    let pool = DescriptorPool::decode(cri_dockerd_api::FILE_DESCRIPTOR_SET).unwrap();
    let message = |name: &str| {
        pool.get_message_by_name(&format!("runtime.v1.{name}"))
            .unwrap_or_else(|| panic!("{name}"))
    };
    let field = |m: &str, name: &str| {
        message(m)
            .get_field_by_name(name)
            .map(|f| (f.number(), f.kind()))
    };
    assert_eq!(field("ImageSpec", "image_ref"), Some((20, Kind::String)));
    assert_eq!(
        field("RuntimeFeatures", "user_namespaces_host_network"),
        Some((2, Kind::Bool))
    );
    // v0.36.3: an env value is bytes (a Secret's need not be UTF-8).
    assert_eq!(field("KeyValue", "value"), Some((2, Kind::Bytes)));
    let streams = [
        (
            "RuntimeService",
            "StreamPodSandboxes",
            "StreamPodSandboxesResponse",
            "pod_sandboxes",
        ),
        (
            "RuntimeService",
            "StreamContainers",
            "StreamContainersResponse",
            "containers",
        ),
        (
            "RuntimeService",
            "StreamContainerStats",
            "StreamContainerStatsResponse",
            "container_stats",
        ),
        (
            "RuntimeService",
            "StreamPodSandboxStats",
            "StreamPodSandboxStatsResponse",
            "pod_sandbox_stats",
        ),
        (
            "RuntimeService",
            "StreamPodSandboxMetrics",
            "StreamPodSandboxMetricsResponse",
            "pod_sandbox_metrics",
        ),
        (
            "ImageService",
            "StreamImages",
            "StreamImagesResponse",
            "images",
        ),
    ];
    for (service, method, response, items) in streams {
        let service = pool
            .get_service_by_name(&format!("runtime.v1.{service}"))
            .unwrap();
        let method = service
            .methods()
            .find(|m| m.name() == method)
            .unwrap_or_else(|| panic!("{method}"));
        assert!(method.is_server_streaming() && !method.is_client_streaming());
        assert_eq!(method.output().name(), response);
        let items = message(response).get_field_by_name(items).unwrap();
        assert_eq!(items.number(), 1);
        assert!(items.is_list());
    }
}

/// An env value that is not UTF-8, as the kubelet of 1.36 may send it:
/// the old definition (a string) refuses the message, ours takes it.
#[test]
fn an_env_value_that_is_not_utf8_decodes() {
    let ours = cri_dockerd_api::v1::KeyValue {
        key: "SECRET".into(),
        value: vec![0xff, 0xfe, b'a'],
    };
    let bytes = ours.encode_to_vec();
    assert!(k8s_cri::v1::KeyValue::decode(bytes.as_slice()).is_err());
    let back = cri_dockerd_api::v1::KeyValue::decode(bytes.as_slice()).unwrap();
    assert_eq!(back.value, vec![0xff, 0xfe, b'a']);
}
