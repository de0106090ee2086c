//! Every field of an `apps/v1` DaemonSet, as Kubernetes defines it, marked honoured or not.
//!
//! This table is what tells an ignored Kubernetes field (a warning) from a typo (an error
//! with the nearest name). A test checks that it agrees with the serde model both ways.

use super::schema::{f, ignored, ignored_if_not, note, req, Kind::*, Schema};

const LABEL_OPS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];
const NODE_OPS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"];
const SERVER_SET: &str = "set by the Kubernetes API server; ignored";

pub(crate) static DAEMONSET: Schema = Schema::new(
    "DaemonSet",
    &[
        f("apiVersion", Str),
        f("kind", Str),
        f("metadata", Object(&OBJECT_META)),
        f("spec", Object(&DAEMONSET_SPEC)),
        note("status", "status is reported by everynode itself; ignored"),
    ],
);

static OBJECT_META: Schema = Schema::new(
    "ObjectMeta",
    &[
        f("name", Str),
        f("namespace", Str),
        f("labels", StrMap),
        f("annotations", StrMap),
        note("generateName", "everynode needs a fixed name: set metadata.name"),
        note("uid", SERVER_SET),
        note("resourceVersion", SERVER_SET),
        note("generation", SERVER_SET),
        note("creationTimestamp", SERVER_SET),
        note("deletionTimestamp", SERVER_SET),
        note("deletionGracePeriodSeconds", SERVER_SET),
        note("selfLink", SERVER_SET),
        note("managedFields", SERVER_SET),
        note("ownerReferences", "there is no garbage collector; ignored"),
        note("finalizers", "there is no garbage collector; ignored"),
    ],
);

static TEMPLATE_META: Schema = Schema::new(
    "ObjectMeta",
    &[
        f("labels", StrMap),
        f("annotations", StrMap),
        note("name", "instances are named after the DaemonSet and the node"),
        note("namespace", "instances live in the DaemonSet's namespace"),
        note(
            "generateName",
            "instances are named after the DaemonSet and the node",
        ),
        note("uid", SERVER_SET),
        note("resourceVersion", SERVER_SET),
        note("generation", SERVER_SET),
        note("creationTimestamp", SERVER_SET),
        note("deletionTimestamp", SERVER_SET),
        note("deletionGracePeriodSeconds", SERVER_SET),
        note("selfLink", SERVER_SET),
        note("managedFields", SERVER_SET),
        ignored("ownerReferences"),
        ignored("finalizers"),
    ],
);

static DAEMONSET_SPEC: Schema = Schema::new(
    "DaemonSetSpec",
    &[
        f("selector", Object(&LABEL_SELECTOR)),
        f("template", Object(&POD_TEMPLATE)),
        f("updateStrategy", Object(&UPDATE_STRATEGY)),
        f("minReadySeconds", Int32),
        f("revisionHistoryLimit", Int32),
        note("templateGeneration", "a field of extensions/v1beta1; ignored"),
    ],
);

static LABEL_SELECTOR: Schema = Schema::new(
    "LabelSelector",
    &[
        f("matchLabels", StrMap),
        f("matchExpressions", ObjectList(&LABEL_SELECTOR_REQUIREMENT)),
    ],
);

static LABEL_SELECTOR_REQUIREMENT: Schema = Schema::new(
    "LabelSelectorRequirement",
    &[
        f("key", Str),
        req("operator", Enum(LABEL_OPS)),
        f("values", StrList),
    ],
);

static UPDATE_STRATEGY: Schema = Schema::new(
    "DaemonSetUpdateStrategy",
    &[
        f("type", Enum(&["RollingUpdate", "OnDelete"])),
        f("rollingUpdate", Object(&ROLLING_UPDATE)),
    ],
);

static ROLLING_UPDATE: Schema = Schema::new(
    "RollingUpdateDaemonSet",
    &[f("maxUnavailable", IntOrStr), f("maxSurge", IntOrStr)],
);

static POD_TEMPLATE: Schema = Schema::new(
    "PodTemplateSpec",
    &[
        f("metadata", Object(&TEMPLATE_META)),
        f("spec", Object(&POD_SPEC)),
    ],
);

static POD_SPEC: Schema = Schema::new(
    "PodSpec",
    &[
        f("containers", ObjectList(&CONTAINER)),
        f("initContainers", ObjectList(&CONTAINER)),
        f("volumes", ObjectList(&VOLUME)),
        f("hostNetwork", Bool),
        f("hostPID", Bool),
        f("hostIPC", Bool),
        f("nodeSelector", StrMap),
        f("nodeName", Str),
        f("affinity", Object(&AFFINITY)),
        f("tolerations", ObjectList(&TOLERATION)),
        f("terminationGracePeriodSeconds", Int64),
        f("restartPolicy", Enum(&["Always", "OnFailure", "Never"])),
        note(
            "serviceAccountName",
            "there is no Kubernetes API, so there are no service accounts",
        ),
        note(
            "serviceAccount",
            "there is no Kubernetes API, so there are no service accounts",
        ),
        ignored_if_not("automountServiceAccountToken", "false"),
        note(
            "imagePullSecrets",
            "log the container runtime of each host in to the registry instead",
        ),
        note(
            "securityContext",
            "set containers[].securityContext.runAsUser or privileged instead",
        ),
        note(
            "priorityClassName",
            "every selected node runs the DaemonSet; there is no preemption",
        ),
        ignored("priority"),
        ignored("preemptionPolicy"),
        ignored_if_not("dnsPolicy", "ClusterFirst"),
        ignored("dnsConfig"),
        ignored_if_not("schedulerName", "default-scheduler"),
        ignored_if_not("enableServiceLinks", "true"),
        ignored("activeDeadlineSeconds"),
        ignored("ephemeralContainers"),
        ignored("hostAliases"),
        ignored("hostUsers"),
        ignored("hostname"),
        ignored("hostnameOverride"),
        ignored("os"),
        ignored("overhead"),
        ignored("readinessGates"),
        ignored("resourceClaims"),
        ignored("resources"),
        ignored("runtimeClassName"),
        ignored("schedulingGates"),
        ignored("setHostnameAsFQDN"),
        ignored("shareProcessNamespace"),
        ignored("subdomain"),
        note(
            "topologySpreadConstraints",
            "a DaemonSet runs on every selected node; spreading does not apply",
        ),
    ],
);

static CONTAINER: Schema = Schema::new(
    "Container",
    &[
        f("name", Str),
        f("image", Str),
        f("command", StrList),
        f("args", StrList),
        f("workingDir", Str),
        f("envFrom", ObjectList(&ENV_FROM_SOURCE)),
        f("env", ObjectList(&ENV_VAR)),
        f("ports", ObjectList(&CONTAINER_PORT)),
        f("resources", Object(&RESOURCES)),
        f("volumeMounts", ObjectList(&VOLUME_MOUNT)),
        f("imagePullPolicy", Enum(&["Always", "IfNotPresent", "Never"])),
        f("readinessProbe", Object(&PROBE)),
        f("livenessProbe", Object(&PROBE)),
        f("startupProbe", Object(&PROBE)),
        f("securityContext", Object(&SECURITY_CONTEXT)),
        note("lifecycle", "postStart and preStop hooks are not run"),
        ignored("resizePolicy"),
        // Only init containers may set it (a sidecar); validation refuses it elsewhere.
        f("restartPolicy", Enum(&["Always"])),
        ignored_if_not("stdin", "false"),
        ignored_if_not("stdinOnce", "false"),
        ignored_if_not("tty", "false"),
        ignored_if_not("terminationMessagePath", "/dev/termination-log"),
        ignored_if_not("terminationMessagePolicy", "File"),
        ignored("volumeDevices"),
    ],
);

static ENV_VAR: Schema = Schema::new(
    "EnvVar",
    &[
        f("name", Str),
        f("value", Str),
        f("valueFrom", Object(&ENV_VAR_SOURCE)),
    ],
);

static ENV_VAR_SOURCE: Schema = Schema::keeping_ignored(
    "EnvVarSource",
    &[
        f("fieldRef", Object(&FIELD_REF)),
        f("resourceFieldRef", Object(&RESOURCE_FIELD_REF)),
        f("configMapKeyRef", Object(&KEY_SELECTOR)),
        f("secretKeyRef", Object(&KEY_SELECTOR)),
        note("fileKeyRef", "the variable is not set"),
    ],
);

static RESOURCE_FIELD_REF: Schema = Schema::new(
    "ResourceFieldSelector",
    &[
        f("containerName", Str),
        f("resource", Str),
        f("divisor", Quantity),
    ],
);

/// `ConfigMapKeySelector` and `SecretKeySelector` have the same fields.
static KEY_SELECTOR: Schema = Schema::new(
    "KeySelector",
    &[f("name", Str), f("key", Str), f("optional", Bool)],
);

static ENV_FROM_SOURCE: Schema = Schema::new(
    "EnvFromSource",
    &[
        f("prefix", Str),
        f("configMapRef", Object(&ENV_SOURCE_REF)),
        f("secretRef", Object(&ENV_SOURCE_REF)),
    ],
);

/// `ConfigMapEnvSource` and `SecretEnvSource` have the same fields.
static ENV_SOURCE_REF: Schema = Schema::new("EnvSource", &[f("name", Str), f("optional", Bool)]);

static FIELD_REF: Schema = Schema::new(
    "ObjectFieldSelector",
    &[f("fieldPath", Str), f("apiVersion", Str)],
);

static CONTAINER_PORT: Schema = Schema::new(
    "ContainerPort",
    &[
        f("name", Str),
        f("containerPort", Int32),
        f("hostPort", Int32),
        f("protocol", Enum(&["TCP", "UDP", "SCTP"])),
        note("hostIP", "host ports are bound on every address of the host"),
    ],
);

static RESOURCES: Schema = Schema::new(
    "ResourceRequirements",
    &[
        f("limits", QuantityMap),
        f("requests", QuantityMap),
        ignored("claims"),
    ],
);

static VOLUME_MOUNT: Schema = Schema::new(
    "VolumeMount",
    &[
        f("name", Str),
        f("mountPath", Str),
        f("readOnly", Bool),
        f("subPath", Str),
        f(
            "mountPropagation",
            Enum(&["None", "HostToContainer", "Bidirectional"]),
        ),
        note(
            "subPathExpr",
            "variables are not expanded in mount paths; the whole volume is mounted",
        ),
        ignored("recursiveReadOnly"),
    ],
);

static PROBE: Schema = Schema::keeping_ignored(
    "Probe",
    &[
        f("exec", Object(&EXEC)),
        f("httpGet", Object(&HTTP_GET)),
        f("tcpSocket", Object(&TCP_SOCKET)),
        f("initialDelaySeconds", Int32),
        f("timeoutSeconds", Int32),
        f("periodSeconds", Int32),
        f("successThreshold", Int32),
        f("failureThreshold", Int32),
        note("grpc", "gRPC probes are not run; use exec, httpGet or tcpSocket"),
        ignored("terminationGracePeriodSeconds"),
    ],
);

static EXEC: Schema = Schema::new("ExecAction", &[f("command", StrList)]);

static HTTP_GET: Schema = Schema::new(
    "HTTPGetAction",
    &[
        f("path", Str),
        req("port", IntOrStr),
        f("host", Str),
        f("scheme", Enum(&["HTTP", "HTTPS"])),
        f("httpHeaders", ObjectList(&HTTP_HEADER)),
    ],
);

static HTTP_HEADER: Schema = Schema::new("HTTPHeader", &[f("name", Str), f("value", Str)]);

static TCP_SOCKET: Schema = Schema::new("TCPSocketAction", &[req("port", IntOrStr), f("host", Str)]);

static SECURITY_CONTEXT: Schema = Schema::new(
    "SecurityContext",
    &[
        f("privileged", Bool),
        f("runAsUser", Int64),
        f("runAsGroup", Int64),
        f("runAsNonRoot", Bool),
        f("readOnlyRootFilesystem", Bool),
        f("allowPrivilegeEscalation", Bool),
        f("capabilities", Object(&CAPABILITIES)),
        f("seccompProfile", Object(&SECCOMP_PROFILE)),
        note(
            "appArmorProfile",
            "AppArmor profiles are not set; the runtime's default applies",
        ),
        ignored_if_not("procMount", "Default"),
        note(
            "seLinuxOptions",
            "SELinux labels are not set; the runtime's default applies",
        ),
        ignored("windowsOptions"),
    ],
);

static CAPABILITIES: Schema = Schema::new("Capabilities", &[f("add", StrList), f("drop", StrList)]);

static SECCOMP_PROFILE: Schema = Schema::new(
    "SeccompProfile",
    &[
        req("type", Enum(&["RuntimeDefault", "Unconfined", "Localhost"])),
        f("localhostProfile", Str),
    ],
);

const NOT_MOUNTED: &str = "only hostPath, configMap, secret, downwardAPI, projected and emptyDir volumes are mounted; this volume is not";
const NO_API: &str = "no service accounts or certificates exist here; the source is skipped";

static VOLUME: Schema = Schema::keeping_ignored(
    "Volume",
    &[
        f("name", Str),
        f("hostPath", Object(&HOST_PATH)),
        f("configMap", Object(&CONFIG_MAP_VOLUME)),
        f("secret", Object(&SECRET_VOLUME)),
        f("downwardAPI", Object(&DOWNWARD_API_VOLUME)),
        f("projected", Object(&PROJECTED_VOLUME)),
        f("emptyDir", Object(&EMPTY_DIR)),
        note("persistentVolumeClaim", NOT_MOUNTED),
        note("ephemeral", NOT_MOUNTED),
        note("csi", NOT_MOUNTED),
        note("image", NOT_MOUNTED),
        note("nfs", NOT_MOUNTED),
        note("iscsi", NOT_MOUNTED),
        note("fc", NOT_MOUNTED),
        note("rbd", NOT_MOUNTED),
        note("cephfs", NOT_MOUNTED),
        note("glusterfs", NOT_MOUNTED),
        note("gitRepo", NOT_MOUNTED),
        note("flexVolume", NOT_MOUNTED),
        note("flocker", NOT_MOUNTED),
        note("awsElasticBlockStore", NOT_MOUNTED),
        note("azureDisk", NOT_MOUNTED),
        note("azureFile", NOT_MOUNTED),
        note("cinder", NOT_MOUNTED),
        note("gcePersistentDisk", NOT_MOUNTED),
        note("photonPersistentDisk", NOT_MOUNTED),
        note("portworxVolume", NOT_MOUNTED),
        note("quobyte", NOT_MOUNTED),
        note("scaleIO", NOT_MOUNTED),
        note("storageos", NOT_MOUNTED),
        note("vsphereVolume", NOT_MOUNTED),
    ],
);

static KEY_TO_PATH: Schema = Schema::new("KeyToPath", &[f("key", Str), f("path", Str), f("mode", Int32)]);

static CONFIG_MAP_VOLUME: Schema = Schema::new(
    "ConfigMapVolumeSource",
    &[
        f("name", Str),
        f("items", ObjectList(&KEY_TO_PATH)),
        f("defaultMode", Int32),
        f("optional", Bool),
    ],
);

static SECRET_VOLUME: Schema = Schema::new(
    "SecretVolumeSource",
    &[
        f("secretName", Str),
        f("items", ObjectList(&KEY_TO_PATH)),
        f("defaultMode", Int32),
        f("optional", Bool),
    ],
);

static DOWNWARD_API_FILE: Schema = Schema::new(
    "DownwardAPIVolumeFile",
    &[
        f("path", Str),
        f("fieldRef", Object(&FIELD_REF)),
        f("resourceFieldRef", Object(&RESOURCE_FIELD_REF)),
        f("mode", Int32),
    ],
);

static DOWNWARD_API_VOLUME: Schema = Schema::new(
    "DownwardAPIVolumeSource",
    &[
        f("items", ObjectList(&DOWNWARD_API_FILE)),
        f("defaultMode", Int32),
    ],
);

static PROJECTED_VOLUME: Schema = Schema::new(
    "ProjectedVolumeSource",
    &[
        f("sources", ObjectList(&VOLUME_PROJECTION)),
        f("defaultMode", Int32),
    ],
);

static VOLUME_PROJECTION: Schema = Schema::keeping_ignored(
    "VolumeProjection",
    &[
        f("configMap", Object(&CONFIG_MAP_PROJECTION)),
        f("secret", Object(&CONFIG_MAP_PROJECTION)),
        f("downwardAPI", Object(&DOWNWARD_API_PROJECTION)),
        note("serviceAccountToken", NO_API),
        note("clusterTrustBundle", NO_API),
        note("podCertificate", NO_API),
    ],
);

/// `ConfigMapProjection` and `SecretProjection` have the same fields.
static CONFIG_MAP_PROJECTION: Schema = Schema::new(
    "KeyProjection",
    &[
        f("name", Str),
        f("items", ObjectList(&KEY_TO_PATH)),
        f("optional", Bool),
    ],
);

static DOWNWARD_API_PROJECTION: Schema = Schema::new(
    "DownwardAPIProjection",
    &[f("items", ObjectList(&DOWNWARD_API_FILE))],
);

static EMPTY_DIR: Schema = Schema::new(
    "EmptyDirVolumeSource",
    &[f("medium", Enum(&["", "Memory"])), f("sizeLimit", Quantity)],
);

static HOST_PATH: Schema = Schema::new(
    "HostPathVolumeSource",
    &[
        f("path", Str),
        f(
            "type",
            Enum(&[
                "",
                "DirectoryOrCreate",
                "Directory",
                "FileOrCreate",
                "File",
                "Socket",
                "CharDevice",
                "BlockDevice",
            ]),
        ),
    ],
);

static AFFINITY: Schema = Schema::new(
    "Affinity",
    &[
        f("nodeAffinity", Object(&NODE_AFFINITY)),
        note(
            "podAffinity",
            "pod affinity does not apply: one instance per node",
        ),
        note(
            "podAntiAffinity",
            "pod anti-affinity does not apply: one instance per node",
        ),
    ],
);

static NODE_AFFINITY: Schema = Schema::new(
    "NodeAffinity",
    &[
        f(
            "requiredDuringSchedulingIgnoredDuringExecution",
            Object(&NODE_SELECTOR),
        ),
        note(
            "preferredDuringSchedulingIgnoredDuringExecution",
            "preferences do not apply: the DaemonSet runs on every node that matches",
        ),
    ],
);

static NODE_SELECTOR: Schema = Schema::new(
    "NodeSelector",
    &[f("nodeSelectorTerms", ObjectList(&NODE_SELECTOR_TERM))],
);

static NODE_SELECTOR_TERM: Schema = Schema::new(
    "NodeSelectorTerm",
    &[
        f("matchExpressions", ObjectList(&NODE_SELECTOR_REQUIREMENT)),
        f("matchFields", ObjectList(&NODE_SELECTOR_REQUIREMENT)),
    ],
);

static NODE_SELECTOR_REQUIREMENT: Schema = Schema::new(
    "NodeSelectorRequirement",
    &[
        f("key", Str),
        req("operator", Enum(NODE_OPS)),
        f("values", StrList),
    ],
);

static TOLERATION: Schema = Schema::new(
    "Toleration",
    &[
        f("key", Str),
        f("operator", Enum(&["", "Equal", "Exists"])),
        f("value", Str),
        f(
            "effect",
            Enum(&["", "NoSchedule", "PreferNoSchedule", "NoExecute"]),
        ),
        f("tolerationSeconds", Int64),
    ],
);

pub(crate) static CONFIG_MAP: Schema = Schema::new(
    "ConfigMap",
    &[
        f("apiVersion", Str),
        f("kind", Str),
        f("metadata", Object(&OBJECT_META)),
        f("data", StrMap),
        f("binaryData", StrMap),
        f("immutable", Bool),
    ],
);

pub(crate) static SECRET: Schema = Schema::new(
    "Secret",
    &[
        f("apiVersion", Str),
        f("kind", Str),
        f("metadata", Object(&OBJECT_META)),
        f("data", StrMap),
        f("stringData", StrMap),
        f("type", Str),
        f("immutable", Bool),
    ],
);

pub(crate) static NAMESPACE: Schema = Schema::new(
    "Namespace",
    &[
        f("apiVersion", Str),
        f("kind", Str),
        f("metadata", Object(&OBJECT_META)),
        note("spec", "namespaces exist implicitly here; ignored"),
        note("status", SERVER_SET),
    ],
);
