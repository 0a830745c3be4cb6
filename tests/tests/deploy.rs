//! The deployment files: the manifests of `deploy/kubernetes` (the ones its kustomization
//! lists) and the `Dockerfile`, parsed and checked for what a replicated deployment relies on
//! (docs/scaling.md): several replicas on the Kafka bus, probes on the gateway's port, resource
//! limits, a locked-down pod, secrets only by reference, and a `databot.yaml` that the real
//! configuration loader accepts. No cluster and no Docker needed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use databot::config::{BusKind, Config, RagStoreKind};
use serde_yaml::Value;

/// The Secret every secret of the pods comes from (never part of the repository).
const SECRET_NAME: &str = "databot-secrets";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_owned()
}

fn manifests() -> PathBuf {
    repository().join("deploy/kubernetes")
}

/// One YAML document of a file; `file` names it in messages (`deploy/kubernetes/x.yaml#0`).
struct Document {
    file: String,
    value: Value,
}

impl Document {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }

    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }
}

/// The documents of one file, split on `---` lines. A document holding only comments and
/// blank lines is skipped.
fn documents_of(path: &Path) -> Vec<Document> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let shown = path
        .strip_prefix(repository())
        .unwrap_or(path)
        .display()
        .to_string();
    let mut chunks = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            chunks.push(String::new());
        } else if let Some(chunk) = chunks.last_mut() {
            chunk.push_str(line);
            chunk.push('\n');
        }
    }
    chunks
        .iter()
        .enumerate()
        .filter(|(_, chunk)| {
            chunk.lines().any(|line| {
                let line = line.trim_start();
                !line.is_empty() && !line.starts_with('#')
            })
        })
        .map(|(index, chunk)| {
            let file = format!("{shown}#{index}");
            let value = serde_yaml::from_str::<Value>(chunk)
                .unwrap_or_else(|e| panic!("{file} is not YAML: {e}"));
            Document { file, value }
        })
        .collect()
}

/// The `.yaml`/`.yml` files under `dir`, in every subfolder when `recursive`, sorted.
fn yaml_files(dir: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            if recursive {
                files.extend(yaml_files(&path, true));
            }
            continue;
        }
        if path
            .extension()
            .is_some_and(|extension| extension == "yaml" || extension == "yml")
        {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The files `kustomization.yaml` lists under `resources`, each checked to exist.
fn listed_files() -> Vec<PathBuf> {
    let kustomization = documents_of(&manifests().join("kustomization.yaml"));
    assert_eq!(
        kustomization.len(),
        1,
        "deploy/kubernetes/kustomization.yaml holds one document"
    );
    let kustomization = &kustomization[0];
    assert_eq!(
        kustomization.kind(),
        "Kustomization",
        "{}: kind",
        kustomization.file
    );
    let resources = kustomization.value["resources"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{}: `resources` is not a list", kustomization.file));
    assert!(
        !resources.is_empty(),
        "{}: `resources` is empty",
        kustomization.file
    );
    resources
        .iter()
        .map(|resource| {
            let name = resource.as_str().unwrap_or_else(|| {
                panic!(
                    "{}: resource {resource:?} is not a file name",
                    kustomization.file
                )
            });
            let path = manifests().join(name);
            assert!(
                path.is_file(),
                "{}: lists {name}, which is not a file in deploy/kubernetes",
                kustomization.file
            );
            path
        })
        .collect()
}

/// Every document of every file the kustomization lists.
fn kustomized() -> Vec<Document> {
    listed_files()
        .iter()
        .flat_map(|path| documents_of(path.as_path()))
        .collect()
}

/// The one document of `kind`.
fn one<'a>(documents: &'a [Document], kind: &str) -> &'a Document {
    let found: Vec<&Document> = documents.iter().filter(|d| d.kind() == kind).collect();
    assert_eq!(
        found.len(),
        1,
        "deploy/kubernetes should hold exactly one {kind}, found {}",
        found.len()
    );
    found[0]
}

fn pod_spec(deployment: &Document) -> &Value {
    let spec = &deployment.value["spec"]["template"]["spec"];
    assert!(
        spec.is_mapping(),
        "{}: spec.template.spec is missing",
        deployment.file
    );
    spec
}

fn pod_labels(deployment: &Document) -> &Value {
    &deployment.value["spec"]["template"]["metadata"]["labels"]
}

/// `containers` and `initContainers` of a pod spec.
fn all_containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|key| pod[*key].as_sequence())
        .flatten()
        .collect()
}

/// The Deployment's databot container: the one running `serve`.
fn databot_container(deployment: &Document) -> &Value {
    let containers = pod_spec(deployment)["containers"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{}: no containers", deployment.file));
    containers
        .iter()
        .find(|container| strings(&container["args"]).contains(&"serve"))
        .unwrap_or_else(|| panic!("{}: no container has `serve` in its args", deployment.file))
}

/// The strings of a YAML list (anything else: none).
fn strings(value: &Value) -> Vec<&str> {
    value
        .as_sequence()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Does the label selector `selector` (a `matchLabels` mapping) select `labels`?
fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(selector) = selector.as_mapping() else {
        return false;
    };
    !selector.is_empty()
        && selector
            .iter()
            .all(|(key, value)| key.as_str().is_some_and(|key| &labels[key] == value))
}

/// A container port given as a number or by name, as a number.
fn port_number(container: &Value, port: &Value, what: &str) -> u64 {
    if let Some(number) = port.as_u64() {
        return number;
    }
    let name = port
        .as_str()
        .unwrap_or_else(|| panic!("{what}: port {port:?} is neither a number nor a name"));
    container["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|declared| declared["name"].as_str() == Some(name))
        .and_then(|declared| declared["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("{what}: the container declares no port named `{name}`"))
}

/// The `databot.yaml` the Deployment runs with: the key of the ConfigMap mounted where the
/// container's `--config` points. Returns a name for messages and the text.
fn embedded_config(documents: &[Document]) -> (String, String) {
    let deployment = one(documents, "Deployment");
    let container = databot_container(deployment);
    let args = strings(&container["args"]);
    let path = args
        .iter()
        .position(|arg| *arg == "--config")
        .and_then(|index| args.get(index + 1))
        .map(Path::new)
        .unwrap_or_else(|| panic!("{}: the container has no `--config FILE`", deployment.file));
    let folder = path.parent().expect("the config file has a folder");
    let key = path
        .file_name()
        .and_then(|name| name.to_str())
        .expect("the config file has a name");
    let mount = container["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|mount| mount["mountPath"].as_str().map(Path::new) == Some(folder))
        .unwrap_or_else(|| {
            panic!(
                "{}: nothing is mounted at {}, where --config points",
                deployment.file,
                folder.display()
            )
        });
    let volume_name = mount["name"].as_str().expect("a mount names its volume");
    let config_map = pod_spec(deployment)["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|volume| volume["name"].as_str() == Some(volume_name))
        .and_then(|volume| volume["configMap"]["name"].as_str())
        .unwrap_or_else(|| {
            panic!(
                "{}: volume `{volume_name}` (the config folder) is not a ConfigMap",
                deployment.file
            )
        });
    let document = documents
        .iter()
        .find(|d| d.kind() == "ConfigMap" && d.name() == config_map)
        .unwrap_or_else(|| {
            panic!("the ConfigMap `{config_map}` the Deployment mounts is not listed")
        });
    let text = document.value["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{}: data.{key} is missing", document.file));
    (format!("{} (data.{key})", document.file), text.to_owned())
}

/// The embedded config as plain YAML (placeholders left as they are).
fn embedded_yaml(documents: &[Document]) -> (String, Value) {
    let (origin, text) = embedded_config(documents);
    let value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{origin} is not YAML: {e}"));
    (origin, value)
}

/// `${NAME}` and nothing else.
fn is_placeholder(text: &str) -> bool {
    text.strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
        .is_some_and(|name| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// The seconds a `preStop` `sleep N` holds the pod before SIGTERM (0 without one).
fn pre_stop_seconds(container: &Value) -> u64 {
    let command = strings(&container["lifecycle"]["preStop"]["exec"]["command"]);
    let native = container["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64();
    match command.as_slice() {
        ["sleep", seconds] => seconds.parse().unwrap_or(0),
        _ => native.unwrap_or(0),
    }
}

#[test]
fn every_listed_manifest_exists_and_parses() {
    let listed = listed_files();
    for path in &listed {
        let documents = documents_of(path);
        assert!(
            !documents.is_empty(),
            "{} holds no YAML document",
            path.display()
        );
        for document in &documents {
            assert!(
                document.value["apiVersion"].as_str().is_some(),
                "{}: apiVersion is missing",
                document.file
            );
            assert!(
                !document.kind().is_empty(),
                "{}: kind is missing",
                document.file
            );
            assert!(
                !document.name().is_empty(),
                "{}: metadata.name is missing",
                document.file
            );
        }
    }
    for file in yaml_files(&manifests(), false) {
        if file
            .file_name()
            .is_some_and(|name| name == "kustomization.yaml")
        {
            continue;
        }
        assert!(
            listed.contains(&file),
            "{} is not in kustomization.yaml's resources: `kubectl apply -k` would leave it out",
            file.display()
        );
    }
}

#[test]
fn the_deployment_runs_several_replicas_on_the_kafka_bus() {
    let documents = kustomized();
    let deployment = one(&documents, "Deployment");
    let replicas = deployment.value["spec"]["replicas"]
        .as_u64()
        .unwrap_or_else(|| panic!("{}: spec.replicas is missing", deployment.file));
    assert!(
        replicas > 1,
        "{}: spec.replicas is {replicas}; the deployment is for several replicas",
        deployment.file
    );
    let (origin, config) = embedded_yaml(&documents);
    assert_eq!(
        config["bus"]["kind"].as_str(),
        Some("kafka"),
        "{origin}: bus.kind"
    );
    let sessions = config["agent"]["sessions_url"]
        .as_str()
        .unwrap_or_else(|| panic!("{origin}: agent.sessions_url is missing"));
    assert!(
        is_placeholder(sessions),
        "{origin}: agent.sessions_url should be a ${{VAR}} placeholder (it holds a password), not `{sessions}`"
    );
    // Replica names must differ between running pods: the pod's name.
    let replica = config["bus"]["kafka"]["replica"]
        .as_str()
        .unwrap_or_else(|| panic!("{origin}: bus.kafka.replica is missing"));
    assert!(
        is_placeholder(replica),
        "{origin}: bus.kafka.replica should be a placeholder"
    );
    let variable = &replica[2..replica.len() - 1];
    let container = databot_container(deployment);
    let from_pod_name = container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .any(|env| {
            env["name"].as_str() == Some(variable)
                && env["valueFrom"]["fieldRef"]["fieldPath"].as_str() == Some("metadata.name")
        });
    assert!(
        from_pod_name,
        "{}: env {variable} (bus.kafka.replica) should come from the downward API's metadata.name",
        deployment.file
    );
}

#[test]
fn probes_service_and_gateway_agree_on_one_port() {
    let documents = kustomized();
    let deployment = one(&documents, "Deployment");
    let container = databot_container(deployment);
    let what = &deployment.file;
    let mut ports = Vec::new();
    for (probe, path) in [
        ("readinessProbe", "/ready"),
        ("livenessProbe", "/health"),
        ("startupProbe", "/health"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(
            get["path"].as_str(),
            Some(path),
            "{what}: {probe}.httpGet.path"
        );
        ports.push((
            probe,
            port_number(container, &get["port"], &format!("{what}: {probe}")),
        ));
    }
    let service = one(&documents, "Service");
    assert!(
        selects(&service.value["spec"]["selector"], pod_labels(deployment)),
        "{}: spec.selector does not select the Deployment's pods",
        service.file
    );
    let service_ports = service.value["spec"]["ports"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{}: spec.ports is missing", service.file));
    assert!(
        !service_ports.is_empty(),
        "{}: spec.ports is empty",
        service.file
    );
    for port in service_ports {
        let target = &port["targetPort"];
        let target = if target.is_null() {
            &port["port"]
        } else {
            target
        };
        ports.push((
            "the Service's targetPort",
            port_number(container, target, &format!("{}: targetPort", service.file)),
        ));
    }
    let (origin, config) = embedded_yaml(&documents);
    let bind = config["gateway"]["bind"]
        .as_str()
        .unwrap_or_else(|| panic!("{origin}: gateway.bind is missing"));
    let bind: SocketAddr = bind
        .parse()
        .unwrap_or_else(|_| panic!("{origin}: gateway.bind `{bind}` is not an address"));
    assert!(
        !bind.ip().is_loopback(),
        "{origin}: gateway.bind {bind} is loopback: neither the Service nor the kubelet can reach it"
    );
    let keys = ["api_keys", "admin_keys"]
        .iter()
        .filter_map(|key| config["gateway"][*key].as_sequence())
        .map(Vec::len)
        .sum::<usize>();
    assert!(
        keys > 0,
        "{origin}: a gateway bound to {bind} needs gateway.api_keys (the host refuses to start)"
    );
    for (source, port) in ports {
        assert_eq!(
            port,
            u64::from(bind.port()),
            "{source} is port {port}, the gateway listens on {} ({origin})",
            bind.port()
        );
    }
}

#[test]
fn every_container_has_cpu_and_memory_requests_and_limits() {
    let documents = kustomized();
    let deployment = one(&documents, "Deployment");
    let containers = all_containers(pod_spec(deployment));
    assert!(!containers.is_empty(), "{}: no containers", deployment.file);
    for container in containers {
        let name = container["name"].as_str().unwrap_or("?");
        for bound in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                let value = &container["resources"][bound][resource];
                assert!(
                    value.as_str().is_some() || value.as_u64().is_some(),
                    "{}: container {name}: resources.{bound}.{resource} is missing",
                    deployment.file
                );
            }
        }
    }
}

#[test]
fn pods_run_as_non_root_on_a_read_only_root() {
    let documents = kustomized();
    let deployment = one(&documents, "Deployment");
    let pod = pod_spec(deployment);
    let file = &deployment.file;
    let pod_security = &pod["securityContext"];
    assert_eq!(
        pod["automountServiceAccountToken"].as_bool(),
        Some(false),
        "{file}: automountServiceAccountToken (databot does not use the Kubernetes API)"
    );
    for container in all_containers(pod) {
        let name = container["name"].as_str().unwrap_or("?");
        let security = &container["securityContext"];
        let either = |key: &str| {
            if security[key].is_null() {
                &pod_security[key]
            } else {
                &security[key]
            }
        };
        assert_eq!(
            either("runAsNonRoot").as_bool(),
            Some(true),
            "{file}: container {name}: runAsNonRoot"
        );
        assert_ne!(
            either("runAsUser").as_u64(),
            Some(0),
            "{file}: container {name}: runAsUser is root"
        );
        assert_eq!(
            security["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{file}: container {name}: securityContext.readOnlyRootFilesystem"
        );
        assert_eq!(
            security["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{file}: container {name}: securityContext.allowPrivilegeEscalation"
        );
        assert!(
            strings(&security["capabilities"]["drop"]).contains(&"ALL"),
            "{file}: container {name}: securityContext.capabilities.drop should hold ALL"
        );
        assert!(
            security["capabilities"]["add"].is_null(),
            "{file}: container {name}: adds capabilities"
        );
        assert_eq!(
            either("seccompProfile")["type"].as_str(),
            Some("RuntimeDefault"),
            "{file}: container {name}: seccompProfile.type"
        );
    }
    // SIGTERM comes after preStop; the replica then drains for up to drain_seconds.
    let (origin, config) = embedded_yaml(&documents);
    let drain = config["bus"]["kafka"]["drain_seconds"]
        .as_u64()
        .unwrap_or(25);
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    let pre_stop = pre_stop_seconds(databot_container(deployment));
    assert!(
        grace > pre_stop + drain,
        "{file}: terminationGracePeriodSeconds {grace} leaves no room for preStop ({pre_stop} s) \
         and bus.kafka.drain_seconds ({drain} s, {origin})"
    );
}

/// An environment variable name that says it holds a secret.
fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"]
        .iter()
        .any(|word| name.contains(word))
}

/// A URL with a password in it (`scheme://user:password@host`).
fn credentials_in_url(text: &str) -> bool {
    text.split("://").skip(1).any(|rest| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        authority
            .rsplit_once('@')
            .is_some_and(|(user, _)| user.contains(':') && !user.contains("${"))
    })
}

/// Every string of a YAML value with its path (`plugins.openai.config.model`).
fn scalars<'a>(value: &'a Value, path: &str, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(text) => out.push((path.to_owned(), text.as_str())),
        Value::Sequence(items) => {
            for (index, item) in items.iter().enumerate() {
                scalars(item, &format!("{path}[{index}]"), out);
            }
        }
        Value::Mapping(entries) => {
            for (key, item) in entries {
                let key = key.as_str().unwrap_or("?");
                let path = if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                };
                scalars(item, &path, out);
            }
        }
        _ => {}
    }
}

#[test]
fn secrets_come_from_secret_references_only() {
    // Every manifest under deploy/, listed or not: no Secret carries a value.
    for path in yaml_files(&repository().join("deploy"), true) {
        for document in documents_of(&path) {
            if document.kind() == "Secret" {
                for field in ["data", "stringData"] {
                    let empty = match &document.value[field] {
                        Value::Null => true,
                        Value::Mapping(entries) => entries.is_empty(),
                        _ => false,
                    };
                    assert!(
                        empty,
                        "{}: a Secret with {field}; secret values stay out of the repository",
                        document.file
                    );
                }
            }
            for container in all_containers(&document.value["spec"]["template"]["spec"]) {
                let name = container["name"].as_str().unwrap_or("?");
                for env in container["env"].as_sequence().into_iter().flatten() {
                    let variable = env["name"].as_str().unwrap_or("?");
                    if let Some(value) = env["value"].as_str() {
                        assert!(
                            !secret_name(variable),
                            "{}: container {name}: env {variable} has a plain `value`; \
                             take it from the Secret `{SECRET_NAME}` (secretKeyRef)",
                            document.file
                        );
                        assert!(
                            !credentials_in_url(value),
                            "{}: container {name}: env {variable} is a URL with a password",
                            document.file
                        );
                    }
                    let reference = &env["valueFrom"]["secretKeyRef"];
                    assert!(
                        reference.is_null() || reference["name"].as_str() == Some(SECRET_NAME),
                        "{}: container {name}: env {variable} reads a Secret other than {SECRET_NAME}",
                        document.file
                    );
                }
                for source in container["envFrom"].as_sequence().into_iter().flatten() {
                    let reference = &source["secretRef"];
                    assert!(
                        reference.is_null() || reference["name"].as_str() == Some(SECRET_NAME),
                        "{}: container {name}: envFrom reads a Secret other than {SECRET_NAME}",
                        document.file
                    );
                }
            }
        }
    }
    // The config: keys and credentials only as ${VAR}s.
    let documents = kustomized();
    let (origin, config) = embedded_yaml(&documents);
    let mut found = Vec::new();
    scalars(&config, "", &mut found);
    for (path, text) in found {
        assert!(
            !credentials_in_url(text),
            "{origin}: {path} is a URL with a password; use a ${{VAR}}"
        );
        let last = path.rsplit('.').next().unwrap_or("");
        let secret_key = ["api_keys", "admin_keys", "api_key", "password", "token"]
            .iter()
            .any(|key| {
                last.strip_prefix(*key)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('['))
            })
            || (path.contains(".secrets[") && last == "value");
        assert!(
            !secret_key || text.is_empty() || text.contains("${"),
            "{origin}: {path} holds a literal secret; use a ${{VAR}}"
        );
    }
}

#[test]
fn the_hpa_and_the_pdb_follow_the_deployment() {
    let documents = kustomized();
    let deployment = one(&documents, "Deployment");
    let labels = pod_labels(deployment);
    let hpa = one(&documents, "HorizontalPodAutoscaler");
    assert_eq!(
        hpa.value["apiVersion"].as_str(),
        Some("autoscaling/v2"),
        "{}: apiVersion",
        hpa.file
    );
    let target = &hpa.value["spec"]["scaleTargetRef"];
    assert_eq!(
        target["kind"].as_str(),
        Some("Deployment"),
        "{}: scaleTargetRef.kind",
        hpa.file
    );
    assert_eq!(
        target["name"].as_str(),
        Some(deployment.name()),
        "{}: scaleTargetRef.name",
        hpa.file
    );
    let min = hpa.value["spec"]["minReplicas"]
        .as_u64()
        .unwrap_or_else(|| panic!("{}: spec.minReplicas is missing", hpa.file));
    let max = hpa.value["spec"]["maxReplicas"]
        .as_u64()
        .unwrap_or_else(|| panic!("{}: spec.maxReplicas is missing", hpa.file));
    assert!(min >= 2, "{}: minReplicas {min} is below 2", hpa.file);
    assert!(
        max >= min,
        "{}: maxReplicas {max} is below minReplicas {min}",
        hpa.file
    );
    let on_cpu = hpa.value["spec"]["metrics"]
        .as_sequence()
        .into_iter()
        .flatten()
        .any(|metric| metric["resource"]["name"].as_str() == Some("cpu"));
    assert!(on_cpu, "{}: no CPU metric", hpa.file);
    // A partition has one owner: replicas past the partition count run no turns.
    let (origin, config) = embedded_yaml(&documents);
    let partitions = config["bus"]["kafka"]["partitions"].as_u64().unwrap_or(12);
    assert!(
        partitions >= max,
        "{origin}: bus.kafka.partitions {partitions} is below the HPA's maxReplicas {max} ({})",
        hpa.file
    );

    let pdb = one(&documents, "PodDisruptionBudget");
    assert_eq!(
        pdb.value["apiVersion"].as_str(),
        Some("policy/v1"),
        "{}: apiVersion",
        pdb.file
    );
    assert!(
        selects(&pdb.value["spec"]["selector"]["matchLabels"], labels),
        "{}: spec.selector.matchLabels does not select the Deployment's pods",
        pdb.file
    );
    if let Some(available) = pdb.value["spec"]["minAvailable"].as_u64() {
        assert!(
            available >= 1 && available < min,
            "{}: minAvailable {available} should be at least 1 and below minReplicas {min}, \
             or no pod could ever be evicted",
            pdb.file
        );
    }
}

#[test]
fn the_network_policy_selects_the_pods_and_limits_both_ways() {
    let documents = kustomized();
    let deployment = one(&documents, "Deployment");
    let container = databot_container(deployment);
    let policy = one(&documents, "NetworkPolicy");
    let spec = &policy.value["spec"];
    let types = strings(&spec["policyTypes"]);
    assert!(
        types.contains(&"Ingress") && types.contains(&"Egress"),
        "{}: policyTypes should hold Ingress and Egress, holds {types:?}",
        policy.file
    );
    assert!(
        selects(&spec["podSelector"]["matchLabels"], pod_labels(deployment)),
        "{}: podSelector does not select the Deployment's pods",
        policy.file
    );
    let (origin, config) = embedded_yaml(&documents);
    let gateway: SocketAddr = config["gateway"]["bind"]
        .as_str()
        .and_then(|bind| bind.parse().ok())
        .unwrap_or_else(|| panic!("{origin}: gateway.bind"));
    let rules = spec["ingress"].as_sequence().unwrap_or_else(|| {
        panic!(
            "{}: no ingress rules (nothing could reach the gateway)",
            policy.file
        )
    });
    for rule in rules {
        let ports = rule["ports"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{}: an ingress rule open on every port", policy.file));
        for port in ports {
            assert_eq!(
                port_number(container, &port["port"], &policy.file),
                u64::from(gateway.port()),
                "{}: ingress open on a port other than the gateway's",
                policy.file
            );
        }
    }
    let egress = spec["egress"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{}: no egress rules", policy.file));
    let ports: Vec<(Option<&str>, Option<u64>)> = egress
        .iter()
        .flat_map(|rule| rule["ports"].as_sequence().into_iter().flatten())
        .map(|port| (port["protocol"].as_str(), port["port"].as_u64()))
        .collect();
    for (protocol, port, what) in [
        ("UDP", 53, "DNS"),
        ("TCP", 5432, "PostgreSQL"),
        ("TCP", 9092, "Kafka"),
        ("TCP", 6334, "Qdrant (gRPC)"),
    ] {
        assert!(
            ports.contains(&(Some(protocol), Some(port))),
            "{}: egress to {what} ({protocol} {port}) is not allowed",
            policy.file
        );
    }
    let open = egress
        .iter()
        .any(|rule| rule["ports"].is_null() && rule["to"].is_null());
    assert!(!open, "{}: an egress rule allows everything", policy.file);
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_as_non_root() {
    let path = repository().join("Dockerfile");
    let text = std::fs::read_to_string(&path).expect("reading the Dockerfile");
    // Instructions: the first word of each line that does not continue the previous one.
    let mut instructions: Vec<(String, String)> = Vec::new();
    let mut continued = false;
    for line in text.lines() {
        let trimmed = line.trim();
        let starts = !continued && !trimmed.is_empty() && !trimmed.starts_with('#');
        if starts {
            let (word, rest) = trimmed
                .split_once(char::is_whitespace)
                .unwrap_or((trimmed, ""));
            instructions.push((word.to_ascii_uppercase(), rest.trim().to_owned()));
        }
        if !trimmed.starts_with('#') {
            continued = trimmed.ends_with('\\');
        }
    }
    let stages = instructions
        .iter()
        .filter(|(word, _)| word == "FROM")
        .count();
    assert!(
        stages >= 2,
        "Dockerfile: {stages} FROM; a builder stage and a runtime stage are expected"
    );
    let last_from = instructions
        .iter()
        .rposition(|(word, _)| word == "FROM")
        .expect("a FROM");
    let user = instructions[last_from..]
        .iter()
        .rev()
        .find(|(word, _)| word == "USER")
        .map(|(_, user)| user.clone())
        .expect("Dockerfile: the runtime stage sets no USER (it would run as root)");
    let name = user.split(':').next().unwrap_or("");
    assert!(
        !name.is_empty() && name != "root" && name != "0",
        "Dockerfile: the runtime stage runs as `{user}`"
    );
    let entrypoint = instructions
        .iter()
        .rev()
        .find(|(word, _)| word == "ENTRYPOINT")
        .map(|(_, entrypoint)| entrypoint.as_str())
        .unwrap_or("");
    assert!(
        entrypoint.contains("databot"),
        "Dockerfile: ENTRYPOINT `{entrypoint}` does not run databot"
    );
    // The port the image documents is the deployment's gateway port.
    let documents = kustomized();
    let (origin, config) = embedded_yaml(&documents);
    let gateway: SocketAddr = config["gateway"]["bind"]
        .as_str()
        .and_then(|bind| bind.parse().ok())
        .unwrap_or_else(|| panic!("{origin}: gateway.bind"));
    let exposed = instructions
        .iter()
        .filter(|(word, _)| word == "EXPOSE")
        .flat_map(|(_, ports)| ports.split_whitespace())
        .any(|port| port.split('/').next() == Some(gateway.port().to_string().as_str()));
    assert!(
        exposed,
        "Dockerfile: EXPOSE does not name the gateway's port {}",
        gateway.port()
    );
}

/// A value for a placeholder the pod provides: loopback URLs, and keys of 16+ characters
/// that differ from each other.
fn harmless(name: &str) -> String {
    match name {
        "DATABOT_POSTGRES_URL" => "postgres://databot:test@127.0.0.1:5432/databot".to_owned(),
        "POD_NAME" => "databot-5d8f7c9b6-x2v4q".to_owned(),
        other => format!("{}-0123456789abcdef", other.to_ascii_lowercase()),
    }
}

#[test]
fn the_embedded_config_loads_with_the_real_loader() {
    let documents = kustomized();
    let deployment = one(&documents, "Deployment");
    let container = databot_container(deployment);
    // Only what the pod sets is set: a ${VAR} the Deployment does not provide fails here as it
    // would at start-up.
    let provided: Vec<&str> = container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|env| env["name"].as_str())
        .collect();
    let (origin, text) = embedded_config(&documents);
    let config = Config::parse(&text, &origin, |name| {
        provided.contains(&name).then(|| harmless(name))
    })
    .unwrap_or_else(|e| panic!("the real loader refuses the deployment's config: {e}"));
    assert_eq!(config.bus.kind, BusKind::Kafka, "{origin}: bus.kind");
    assert!(
        config.sessions_url().starts_with("postgres://"),
        "{origin}: agent.sessions_url is not PostgreSQL"
    );
    assert_eq!(
        config.rag.store,
        RagStoreKind::Qdrant,
        "{origin}: rag.store"
    );
    let bound = databot::gateway::check_bind(&config.gateway)
        .unwrap_or_else(|e| panic!("{origin}: `serve` would refuse the gateway: {e:#}"));
    assert!(
        !bound.ip().is_loopback(),
        "{origin}: gateway.bind is loopback"
    );
    databot::capabilities::validate_config(&config)
        .unwrap_or_else(|e| panic!("{origin}: `databot config check` refuses it: {e}"));
    // Folders: absolute (a relative path resolves against the read-only config folder),
    // plugins mounted read-only, the data folder writable.
    let mounts: Vec<(&str, bool)> = container["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|mount| {
            let path = mount["mountPath"].as_str()?;
            Some((path, mount["readOnly"].as_bool().unwrap_or(false)))
        })
        .collect();
    for (key, folder, read_only) in [
        ("runtime.plugins_dir", &config.runtime.plugins_dir, true),
        ("runtime.data_dir", &config.runtime.data_dir, false),
    ] {
        assert!(
            folder.is_absolute(),
            "{origin}: {key} {} is relative",
            folder.display()
        );
        let mounted = mounts
            .iter()
            .find(|(path, _)| Path::new(path) == folder.as_path());
        assert_eq!(
            mounted.map(|(_, mounted_read_only)| *mounted_read_only),
            Some(read_only),
            "{}: {key} {} should be a volume mounted {}",
            deployment.file,
            folder.display(),
            if read_only { "read-only" } else { "writable" }
        );
    }
}
