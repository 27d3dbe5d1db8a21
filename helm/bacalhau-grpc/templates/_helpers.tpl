{{/*
Names, labels, addresses and the pieces every pod shares.
*/}}

{{/* The chart's name (nameOverride wins). */}}
{{- define "bacalhau-grpc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's base name: fullnameOverride, else "<release>-<chart name>" (just the release name when it
already contains the chart name). Kept to 40 characters so that "<base>-requester" and the compute
StatefulSet's pod names ("<base>-compute-<ordinal>", with the controller-revision-hash label) stay
within Kubernetes' 63-character limits.
*/}}
{{- define "bacalhau-grpc.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<chart name>-<chart version>" for the helm.sh/chart label. */}}
{{- define "bacalhau-grpc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The name of one component's objects: (dict "ctx" $ "component" "requester"). */}}
{{- define "bacalhau-grpc.componentName" -}}
{{- printf "%s-%s" (include "bacalhau-grpc.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "bacalhau-grpc.labels" -}}
helm.sh/chart: {{ include "bacalhau-grpc.chart" . }}
app.kubernetes.io/name: {{ include "bacalhau-grpc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bacalhau-grpc
{{- end }}

{{/* Labels of one component's objects: (dict "ctx" $ "component" "requester"). */}}
{{- define "bacalhau-grpc.componentLabels" -}}
{{ include "bacalhau-grpc.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The labels that select one component's pods: (dict "ctx" $ "component" "requester"). */}}
{{- define "bacalhau-grpc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bacalhau-grpc.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The ServiceAccount every pod runs as. */}}
{{- define "bacalhau-grpc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bacalhau-grpc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Bacalhau-gRPC image; the tag defaults to the chart's appVersion. */}}
{{- define "bacalhau-grpc.image" -}}
{{- printf "%s:%s" .Values.image.repository (toString (default .Chart.AppVersion .Values.image.tag)) }}
{{- end }}

{{/* In-cluster DNS name of a Service of this release: (dict "ctx" $ "component" "requester"). */}}
{{- define "bacalhau-grpc.serviceHost" -}}
{{- printf "%s.%s.svc.%s" (include "bacalhau-grpc.componentName" .) .ctx.Release.Namespace .ctx.Values.clusterDomain }}
{{- end }}

{{/* host:port of the requester's API, as the compute nodes and the test pod dial it. */}}
{{- define "bacalhau-grpc.requesterAddress" -}}
{{- printf "%s:%v" (include "bacalhau-grpc.serviceHost" (dict "ctx" . "component" "requester")) .Values.requester.service.port }}
{{- end }}

{{/* host:port of the verifier, as the requester dials it. */}}
{{- define "bacalhau-grpc.verifierAddress" -}}
{{- printf "%s:%v" (include "bacalhau-grpc.serviceHost" (dict "ctx" . "component" "verifier")) .Values.verifier.port }}
{{- end }}

{{/* The pod-level securityContext (plus extra supplemental groups: (dict "ctx" $ "groups" (list 999))). */}}
{{- define "bacalhau-grpc.podSecurityContext" -}}
{{- $context := deepCopy .ctx.Values.podSecurityContext }}
{{- if .groups }}
{{- $_ := set $context "supplementalGroups" (concat (default (list) $context.supplementalGroups) .groups | uniq) }}
{{- end }}
{{- toYaml $context }}
{{- end }}

{{/* The POD_NAME and POD_NAMESPACE variables (the Downward API), first in every container's env. */}}
{{- define "bacalhau-grpc.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}

{{/*
The OpenTelemetry variables (after podEnv): the OTLP endpoint, the resource attributes naming the pod,
and the user's own attributes. Nothing when otlp.endpoint is empty (tracing off).
*/}}
{{- define "bacalhau-grpc.otlpEnv" -}}
{{- with .Values.otlp }}
{{- if .endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: grpc
{{- if .insecure }}
- name: OTEL_EXPORTER_OTLP_INSECURE
  value: "true"
{{- end }}
{{- $attributes := list "k8s.pod.name=$(POD_NAME)" "k8s.namespace.name=$(POD_NAMESPACE)" }}
{{- range $key, $value := .resourceAttributes }}
{{- $attributes = append $attributes (printf "%s=%v" $key $value) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attributes | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Every container's env: POD_NAME, POD_NAMESPACE, the OTLP variables, then the component's extraEnv
(so extraEnv may refer to the others as $(POD_NAME) and can override them).
(dict "ctx" $ "extraEnv" .Values.requester.extraEnv)
*/}}
{{- define "bacalhau-grpc.env" -}}
{{ include "bacalhau-grpc.podEnv" .ctx }}
{{- with include "bacalhau-grpc.otlpEnv" .ctx }}
{{ . }}
{{- end }}
{{- with .extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The native gRPC liveness and readiness probes on grpc.health.v1 (service ""): (dict "port" 1234). */}}
{{- define "bacalhau-grpc.probes" -}}
startupProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: 2
  failureThreshold: 60
readinessProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
livenessProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
{{- end }}

{{/* The flags every node's `serve` gets: (dict "ctx" $ "port" 1234). */}}
{{- define "bacalhau-grpc.serveFlags" -}}
- --host
- 0.0.0.0
- --port
- {{ .port | quote }}
- --log-level
- {{ .ctx.Values.logLevel | quote }}
{{- end }}

{{/* The pod's scheduling fields: (dict "values" .Values.requester). */}}
{{- define "bacalhau-grpc.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The writable /tmp of every container (the root filesystem is read-only). */}}
{{- define "bacalhau-grpc.tmpVolume" -}}
- name: tmp
  emptyDir: {{ if .Values.tmpDir.sizeLimit }}{sizeLimit: {{ .Values.tmpDir.sizeLimit }}}{{ else }}{}{{ end }}
{{- end }}

{{/* The OTLP endpoint's port (4317, OTLP/gRPC's, when it names none): for the NetworkPolicies. */}}
{{- define "bacalhau-grpc.otlpPort" -}}
{{- $host := .Values.otlp.endpoint }}
{{- if contains "://" $host }}
{{- $host = (urlParse $host).host }}
{{- end }}
{{- $parts := splitList ":" $host }}
{{- if and (gt (len $parts) 1) (regexMatch "^[0-9]+$" (last $parts)) }}
{{- last $parts }}
{{- else }}
{{- 4317 }}
{{- end }}
{{- end }}

{{/* Egress every pod needs in the NetworkPolicies: DNS, and the OTLP collector when tracing is on. */}}
{{- define "bacalhau-grpc.commonEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- if .Values.otlp.endpoint }}
- ports:
    - port: {{ include "bacalhau-grpc.otlpPort" . }}
      protocol: TCP
  {{- with .Values.networkPolicy.otlpTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
