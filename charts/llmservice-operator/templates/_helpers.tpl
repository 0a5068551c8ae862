{{/* Names, labels and shared snippets. Every helper is prefixed with the chart name. */}}

{{/* The chart name, overridable. */}}
{{- define "llmservice-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The full name of every object: <release>-<chart>, or the release name if it contains it. */}}
{{- define "llmservice-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* chart label value: name-version. */}}
{{- define "llmservice-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: fixed at install, never user-supplied (a Deployment selector is immutable). */}}
{{- define "llmservice-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmservice-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels on every object. */}}
{{- define "llmservice-operator.labels" -}}
helm.sh/chart: {{ include "llmservice-operator.chart" . }}
{{ include "llmservice-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llmservice-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "llmservice-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llmservice-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.create is false: set serviceAccount.name to an existing ServiceAccount" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator image (also used for puller init containers and routers): by digest if set. */}}
{{- define "llmservice-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The operator's permissions, derived from operator/llmsvc/controller/*.py and proven by
e2e/test_chart.py (the operator reconciles every example as this ServiceAccount). Keep in sync.
*/}}
{{- define "llmservice-operator.rules" -}}
# kopf watches LLMServices and keeps its state in their annotations; the reconciler GETs them.
- apiGroups: ["llmsvc.io"]
  resources: ["llmservices"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["llmsvc.io"]
  resources: ["llmservices/status"]
  verbs: ["patch"]
# Scale to zero: the operator moves a service with autoscaling.minReplicas 0 between 0 and 1.
- apiGroups: ["llmsvc.io"]
  resources: ["llmservices/scale"]
  verbs: ["patch"]
# Children carry ownerReferences with blockOwnerDeletion, which the
# OwnerReferencesPermissionEnforcement admission plugin allows only with update on finalizers.
- apiGroups: ["llmsvc.io"]
  resources: ["llmservices/finalizers"]
  verbs: ["update"]
# Groups (StatefulSets) and routers (Deployments): listed, watched (pokes), applied, pruned.
- apiGroups: ["apps"]
  resources: ["statefulsets", "deployments"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Pods: watched (pokes) and deleted group by group (a rank cannot rejoin a running NCCL world).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "delete"]
# Server-side apply creates (create) and updates (patch); pruning deletes.
- apiGroups: [""]
  resources: ["services", "serviceaccounts"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Ingress NetworkPolicies per group and for the router (spec.networkPolicy, on by default).
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# autoscaling.metrics: keda renders a KEDA ScaledObject instead of an HPA.
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# A budget per group (no eviction takes one rank); a gang PodGroup per group where the cluster
# serves them (create also covers the dry-run that probes topology-aware placement).
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["scheduling.k8s.io"]
  resources: ["podgroups"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Cordoned nodes: groups on them are moved before a drain evicts them. Nodes are cluster-scoped,
# so in a namespaced install (a Role) this grants nothing and drains are not anticipated.
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["list", "watch"]
# The routers' Role grants endpointslices get/list/watch; RBAC lets the operator create that
# Role only if it holds the same permissions (no escalate or bind verbs are granted).
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
# Events on LLMServices (kopf posts them; it never updates them).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{/* Impossible combinations fail the render with what to change. */}}
{{- define "llmservice-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) -}}
{{- fail (printf "replicaCount=%d needs leaderElection.enabled=true (replicas would reconcile the same objects at once): enable leader election or run one replica" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled=true needs metrics.enabled=true (the ServiceMonitor scrapes the metrics Service): enable metrics or disable the ServiceMonitor" -}}
{{- end -}}
{{- if and .Values.metricsApi.enabled .Values.watchNamespaces -}}
{{- fail "metricsApi.enabled=true registers a cluster-scoped APIService and auth-delegator binding, which watchNamespaces mode does not create: set metricsApi.enabled=false (and use autoscaling.metrics: prometheus or keda) or drop watchNamespaces" -}}
{{- end -}}
{{- if and .Values.metricsApi.enabled (has (int .Values.metricsApi.port) (list (int .Values.health.port) (int .Values.metrics.port))) -}}
{{- fail (printf "metricsApi.port %d is already the health or metrics port: give it its own port" (int .Values.metricsApi.port)) -}}
{{- end -}}
{{- if eq (int .Values.health.port) (int .Values.metrics.port) -}}
{{- if .Values.metrics.enabled -}}
{{- fail (printf "health.port and metrics.port are both %d: give them different ports" (int .Values.health.port)) -}}
{{- end -}}
{{- end -}}
{{- $interval := .Values.metrics.serviceMonitor.interval -}}
{{- $timeout := .Values.metrics.serviceMonitor.scrapeTimeout -}}
{{- if and .Values.metrics.serviceMonitor.enabled (gt (include "llmservice-operator.seconds" $timeout | int) (include "llmservice-operator.seconds" $interval | int)) -}}
{{- fail (printf "metrics.serviceMonitor.scrapeTimeout (%s) is longer than its interval (%s): shorten the timeout" $timeout $interval) -}}
{{- end -}}
{{- end -}}

{{/* A duration like 30s, 2m, 500ms, 1h in whole seconds (ms round down). */}}
{{- define "llmservice-operator.seconds" -}}
{{- $d := toString . -}}
{{- if hasSuffix "ms" $d -}}{{ div (trimSuffix "ms" $d | int) 1000 }}
{{- else if hasSuffix "s" $d -}}{{ trimSuffix "s" $d | int }}
{{- else if hasSuffix "m" $d -}}{{ mul (trimSuffix "m" $d | int) 60 }}
{{- else if hasSuffix "h" $d -}}{{ mul (trimSuffix "h" $d | int) 3600 }}
{{- else -}}0{{- end -}}
{{- end -}}

{{/* The names of imagePullSecrets, comma-separated (LLMSVC_IMAGE_PULL_SECRETS). */}}
{{- define "llmservice-operator.pullSecretNames" -}}
{{- $names := list -}}
{{- range .Values.imagePullSecrets -}}{{- $names = append $names .name -}}{{- end -}}
{{- join "," $names -}}
{{- end -}}
