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

{{/* host:port of the requester's client API, as in-cluster clients and the test pod dial it. */}}
{{- define "bacalhau-grpc.requesterAddress" -}}
{{- printf "%s:%v" (include "bacalhau-grpc.serviceHost" (dict "ctx" . "component" "requester")) .Values.requester.service.port }}
{{- end }}

{{/*
host:port where the compute nodes reach the requester: with TLS its node protocol's Service (mutual TLS),
in insecure mode its one port.
*/}}
{{- define "bacalhau-grpc.requesterNodeAddress" -}}
{{- if include "bacalhau-grpc.tlsEnabled" . }}
{{- printf "%s:%v" (include "bacalhau-grpc.serviceHost" (dict "ctx" . "component" "requester-node")) .Values.requester.nodeProtocolPort }}
{{- else }}
{{- include "bacalhau-grpc.requesterAddress" . }}
{{- end }}
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

{{/*
The native gRPC startup, readiness and liveness probes on grpc.health.v1 (service ""), at the pod's
plaintext health port (the kubelet's probes cannot speak TLS): (dict "port" 1238).
*/}}
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

{{/*
The flags every node's `serve` gets: where it listens, its plaintext health port, its log level and its
TLS files (or --insecure): (dict "ctx" $ "component" "requester" "port" 1234 "healthPort" 1238).
*/}}
{{- define "bacalhau-grpc.serveFlags" -}}
- --host
- 0.0.0.0
- --port
- {{ .port | quote }}
- --health-port
- {{ .healthPort | quote }}
- --log-level
- {{ .ctx.Values.logLevel | quote }}
- --log-format
- {{ .ctx.Values.logFormat | quote }}
{{- if .ctx.Values.metrics.enabled }}
- --metrics-port
- {{ .ctx.Values.metrics.port | quote }}
{{- end }}
{{ include "bacalhau-grpc.tlsFlags" . | trim }}
{{- end }}

{{/*
Prometheus' scrape annotations of a pod when metrics are on (metrics.enabled): the plaintext HTTP port
every node serves /metrics on.
*/}}
{{- define "bacalhau-grpc.metricsPodAnnotations" -}}
{{- if .Values.metrics.enabled }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* A node container's metrics port when metrics are on. */}}
{{- define "bacalhau-grpc.metricsContainerPort" -}}
{{- if .Values.metrics.enabled }}
- name: metrics
  containerPort: {{ .Values.metrics.port }}
  protocol: TCP
{{- end }}
{{- end }}

{{/* A Service's metrics port when metrics are on (what a ServiceMonitor scrapes). */}}
{{- define "bacalhau-grpc.metricsServicePort" -}}
{{- if .Values.metrics.enabled }}
- name: metrics
  port: {{ .Values.metrics.port }}
  targetPort: metrics
  protocol: TCP
  appProtocol: http
{{- end }}
{{- end }}

{{/*
The NetworkPolicy ingress rule of a pod's metrics port when metrics are on: from networkPolicy.metricsFrom
(the Prometheus pods), or from anywhere when it is empty.
*/}}
{{- define "bacalhau-grpc.metricsIngress" -}}
{{- if .Values.metrics.enabled }}
- {{- with .Values.networkPolicy.metricsFrom }}
  from:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - port: {{ .Values.metrics.port }}
      protocol: TCP
{{- end }}
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

{{/* ------------------------------------------------------------------------------------------- TLS */}}

{{/* Whether the services speak TLS (every mode but insecure). */}}
{{- define "bacalhau-grpc.tlsEnabled" -}}
{{- if ne .Values.tls.mode "insecure" }}true{{ end }}
{{- end }}

{{/* The Secret holding the cluster CA (tls.crt, tls.key) that the init containers issue from. */}}
{{- define "bacalhau-grpc.caSecretName" -}}
{{- default (printf "%s-ca" (include "bacalhau-grpc.fullname" .)) .Values.tls.ca.existingSecret }}
{{- end }}

{{/* The cert-manager issuer of every certificate (certManager mode): tls.certManager.issuerRef, else the
chart's CA Issuer. As YAML: name, kind, group. */}}
{{- define "bacalhau-grpc.issuerRef" -}}
{{- $ref := .Values.tls.certManager.issuerRef }}
{{- if $ref.name }}
name: {{ $ref.name }}
kind: {{ $ref.kind | default "Issuer" }}
group: {{ $ref.group | default "cert-manager.io" }}
{{- else }}
name: {{ include "bacalhau-grpc.componentName" (dict "ctx" . "component" "ca") }}
kind: Issuer
group: cert-manager.io
{{- end }}
{{- end }}

{{/*
Where one pod's certificate comes from, (dict "ctx" $ "component" "requester|verifier|compute|test|dashboard";
the `helm test` pod and the dashboard are clients, with a client certificate as an operator's):
  issue      an init container issues it from the CA's Secret (`bacalhau-grpc certs issue`) into an
             in-memory emptyDir
  secret     a Secret with tls.crt, tls.key and ca.crt (a cert-manager Certificate's, or yours)
  csi        cert-manager's csi-driver, per pod
  podSecret  existingSecret mode's compute Secret: <pod>.crt, <pod>.key and ca.crt
  caOnly     a client (the `helm test` pod, the dashboard) with no client certificate: the CA alone (the
             requester's ca.crt)
  none       plaintext
*/}}
{{- define "bacalhau-grpc.tlsSource" -}}
{{- $tls := .ctx.Values.tls }}
{{- $shared := has .component (list "requester" "verifier") }}
{{- if eq $tls.mode "insecure" }}none
{{- else if eq $tls.mode "generate" }}issue
{{- else if eq $tls.mode "certManager" }}
{{- if $shared }}secret
{{- else if eq $tls.certManager.compute "csi" }}csi
{{- else if $tls.certManager.issuerRef.name }}
{{- fail "tls.certManager.compute must be csi with tls.certManager.issuerRef: the chart holds no CA key to issue the compute pods' certificates from" }}
{{- else }}issue
{{- end }}
{{- else if $shared }}secret
{{- else if eq .component "compute" }}podSecret
{{- else if $tls.existingSecret.client }}secret
{{- else }}caOnly
{{- end }}
{{- end }}

{{/* The Secret a "secret" or "podSecret" pod mounts: (dict "ctx" $ "component" "requester"). */}}
{{- define "bacalhau-grpc.tlsSecretName" -}}
{{- $tls := .ctx.Values.tls }}
{{- if eq $tls.mode "certManager" }}
{{- printf "%s-tls" (include "bacalhau-grpc.componentName" .) }}
{{- else }}
{{- $key := ternary "client" .component (has .component (list "test" "dashboard")) }}
{{- $what := dict "requester" "the requester's certificate" "verifier" "the verifier's certificate" "compute" "the compute pods' certificates" "client" "a client certificate" }}
{{- required (printf "tls.existingSecret.%s is required with tls.mode=existingSecret: the Secret holding %s" $key (index $what $key)) (index $tls.existingSecret $key) }}
{{- end }}
{{- end }}

{{/* A Service's in-cluster DNS names, short to fully qualified, as JSON: (dict "ctx" $ "name" "x"). */}}
{{- define "bacalhau-grpc.serviceDnsNames" -}}
{{- $ns := .ctx.Release.Namespace }}
{{- list .name (printf "%s.%s" .name $ns) (printf "%s.%s.svc" .name $ns) (printf "%s.%s.svc.%s" .name $ns .ctx.Values.clusterDomain) | toJson }}
{{- end }}

{{/*
Who one pod is and where it is reached, as JSON {role, nodeId, dns, ips}: (dict "ctx" $ "component"
"requester|verifier|compute|test" "pod" "$(POD_NAME)"). `pod` is how the pod's own name is written:
$(POD_NAME) in a container's args, ${POD_NAME} in the csi-driver's attributes.
- requester: its node ID is its Deployment's name; reached at its two Services (clients, the node
  protocol) and tls.requesterDnsNames / tls.requesterIpAddresses;
- verifier: its pod (or, with one Certificate for every pod, its Service's) name; reached at its Service;
- compute: its pod name (its node ID); reached at the pod's own name under the headless Service, the
  name it advertises to the requester;
- test, dashboard: the `helm test` pod and the dashboard's pods, clients.
*/}}
{{- define "bacalhau-grpc.identity" -}}
{{- $ctx := .ctx }}
{{- $pod := .pod | default "$(POD_NAME)" }}
{{- $name := include "bacalhau-grpc.componentName" (dict "ctx" $ctx "component" .component) }}
{{- $id := dict "dns" (list) "ips" (list) }}
{{- if eq .component "requester" }}
{{- $node := include "bacalhau-grpc.componentName" (dict "ctx" $ctx "component" "requester-node") }}
{{- $dns := concat (include "bacalhau-grpc.serviceDnsNames" (dict "ctx" $ctx "name" $name) | fromJsonArray) (include "bacalhau-grpc.serviceDnsNames" (dict "ctx" $ctx "name" $node) | fromJsonArray) $ctx.Values.tls.requesterDnsNames }}
{{- $_ := set $id "role" "requester" }}
{{- $_ := set $id "nodeId" $name }}
{{- $_ := set $id "dns" (uniq $dns) }}
{{- $_ := set $id "ips" $ctx.Values.tls.requesterIpAddresses }}
{{- else if eq .component "verifier" }}
{{- $_ := set $id "role" "verifier" }}
{{- $_ := set $id "nodeId" $pod }}
{{- $_ := set $id "dns" (include "bacalhau-grpc.serviceDnsNames" (dict "ctx" $ctx "name" $name) | fromJsonArray) }}
{{- else if eq .component "compute" }}
{{- $_ := set $id "role" "compute" }}
{{- $_ := set $id "nodeId" $pod }}
{{- $dns := list }}
{{- range include "bacalhau-grpc.serviceDnsNames" (dict "ctx" $ctx "name" $name) | fromJsonArray }}
{{- $dns = append $dns (printf "%s.%s" $pod .) }}
{{- end }}
{{- $_ := set $id "dns" $dns }}
{{- else }}
{{- $_ := set $id "role" "client" }}
{{- $_ := set $id "nodeId" $pod }}
{{- end }}
{{- toJson $id }}
{{- end }}

{{/* The TLS files of one pod's container, as JSON {cert, key, ca} ("" when it has none). */}}
{{- define "bacalhau-grpc.tlsFiles" -}}
{{- $source := include "bacalhau-grpc.tlsSource" . }}
{{- $dir := "/run/bacalhau-grpc/tls" }}
{{- if eq $source "issue" }}
{{- $id := include "bacalhau-grpc.identity" . | fromJson }}
{{- dict "cert" (printf "%s/%s-%s.pem" $dir $id.role $id.nodeId) "key" (printf "%s/%s-%s-key.pem" $dir $id.role $id.nodeId) "ca" "/run/bacalhau-grpc/trust/ca.pem" | toJson }}
{{- else if eq $source "podSecret" }}
{{- dict "cert" (printf "%s/$(POD_NAME).crt" $dir) "key" (printf "%s/$(POD_NAME).key" $dir) "ca" (printf "%s/ca.crt" $dir) | toJson }}
{{- else if eq $source "caOnly" }}
{{- dict "cert" "" "key" "" "ca" (printf "%s/ca.crt" $dir) | toJson }}
{{- else if eq $source "none" }}
{{- dict "cert" "" "key" "" "ca" "" | toJson }}
{{- else }}
{{- dict "cert" (printf "%s/tls.crt" $dir) "key" (printf "%s/tls.key" $dir) "ca" (printf "%s/ca.crt" $dir) | toJson }}
{{- end }}
{{- end }}

{{/* `serve`'s TLS flags: the node's certificate, key and CA, or --insecure: (dict "ctx" $ "component" "requester"). */}}
{{- define "bacalhau-grpc.tlsFlags" -}}
{{- $files := include "bacalhau-grpc.tlsFiles" . | fromJson }}
{{- if $files.cert }}
- --tls-cert
- {{ $files.cert }}
- --tls-key
- {{ $files.key }}
- --tls-ca
- {{ $files.ca }}
{{- else }}
- --insecure
{{- end }}
{{- end }}

{{/*
The init container that issues the pod's certificate from the CA's Secret when the pod starts (the
"issue" source; nothing otherwise): `bacalhau-grpc certs issue`, the CA's key mounted in it alone.
(dict "ctx" $ "component" "compute")
*/}}
{{- define "bacalhau-grpc.tlsInitContainer" -}}
{{- if eq (include "bacalhau-grpc.tlsSource" .) "issue" }}
{{- $id := include "bacalhau-grpc.identity" . | fromJson }}
{{- $ctx := .ctx }}
# Issues this pod's certificate (spiffe://bacalhau-grpc/{{ $id.role }}/{{ $id.nodeId }}) from the cluster CA.
- name: tls
  image: {{ include "bacalhau-grpc.image" $ctx }}
  imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
  command: ["bacalhau-grpc"]
  args:
    - certs
    - issue
    - --ca
    - /run/bacalhau-grpc/ca
    - --role
    - {{ $id.role }}
    - --node-id
    - {{ $id.nodeId | quote }}
    {{- range $id.dns }}
    - --dns
    - {{ . | quote }}
    {{- end }}
    {{- range $id.ips }}
    - --ip
    - {{ . | quote }}
    {{- end }}
    - --days
    - {{ $ctx.Values.tls.certDays | quote }}
    - --out
    - /run/bacalhau-grpc/tls
  env:
    {{- include "bacalhau-grpc.podEnv" $ctx | nindent 4 }}
  securityContext:
    {{- toYaml $ctx.Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: tls-ca
      mountPath: /run/bacalhau-grpc/ca
      readOnly: true
    - name: tls
      mountPath: /run/bacalhau-grpc/tls
{{- end }}
{{- end }}

{{/* The main container's TLS volume mounts (read-only): (dict "ctx" $ "component" "compute"). */}}
{{- define "bacalhau-grpc.tlsMounts" -}}
{{- $source := include "bacalhau-grpc.tlsSource" . }}
{{- if ne $source "none" }}
- name: tls
  mountPath: /run/bacalhau-grpc/tls
  readOnly: true
{{- end }}
{{- if eq $source "issue" }}
- name: tls-trust
  mountPath: /run/bacalhau-grpc/trust
  readOnly: true
{{- end }}
{{- end }}

{{/* The pod's TLS volumes: (dict "ctx" $ "component" "compute"). */}}
{{- define "bacalhau-grpc.tlsVolumes" -}}
{{- $source := include "bacalhau-grpc.tlsSource" . }}
{{- $ctx := .ctx }}
{{- if eq $source "issue" }}
{{- $ca := include "bacalhau-grpc.caSecretName" $ctx }}
# The pod's certificate and key, written by the tls init container (in memory only).
- name: tls
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
# The cluster CA's certificate and key: mounted in the tls init container alone.
- name: tls-ca
  secret:
    secretName: {{ $ca }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: ca.pem
      - key: tls.key
        path: ca-key.pem
# The cluster CA's certificate alone: what the node verifies its peers with.
- name: tls-trust
  secret:
    secretName: {{ $ca }}
    defaultMode: 0444
    items:
      - key: tls.crt
        path: ca.pem
{{- else if eq $source "csi" }}
{{- $id := include "bacalhau-grpc.identity" (merge (dict "pod" "${POD_NAME}") .) | fromJson }}
{{- $issuer := include "bacalhau-grpc.issuerRef" $ctx | fromYaml }}
# The pod's own certificate from cert-manager's csi-driver (in memory, renewed by the driver).
- name: tls
  csi:
    driver: csi.cert-manager.io
    readOnly: true
    volumeAttributes:
      csi.cert-manager.io/issuer-name: {{ $issuer.name | quote }}
      csi.cert-manager.io/issuer-kind: {{ $issuer.kind | quote }}
      csi.cert-manager.io/issuer-group: {{ $issuer.group | quote }}
      csi.cert-manager.io/common-name: {{ $id.nodeId | quote }}
      csi.cert-manager.io/organizations: {{ $id.role | quote }}
      {{- with $id.dns }}
      csi.cert-manager.io/dns-names: {{ join "," . | quote }}
      {{- end }}
      csi.cert-manager.io/uri-sans: {{ printf "spiffe://bacalhau-grpc/%s/%s" $id.role $id.nodeId | quote }}
      csi.cert-manager.io/key-algorithm: ECDSA
      csi.cert-manager.io/key-size: "256"
      csi.cert-manager.io/key-encoding: PKCS8
      csi.cert-manager.io/key-usages: {{ ternary "digital signature,client auth" "digital signature,server auth,client auth" (eq $id.role "client") | quote }}
      csi.cert-manager.io/duration: {{ $ctx.Values.tls.certManager.duration | quote }}
      csi.cert-manager.io/fs-group: {{ $ctx.Values.podSecurityContext.fsGroup | default 10001 | quote }}
{{- else if eq $source "caOnly" }}
# The CA's certificate alone (from the requester's Secret): a client of the requester's API alone.
- name: tls
  secret:
    secretName: {{ include "bacalhau-grpc.tlsSecretName" (dict "ctx" $ctx "component" "requester") }}
    defaultMode: 0444
    items:
      - key: ca.crt
        path: ca.crt
{{- else if ne $source "none" }}
- name: tls
  secret:
    secretName: {{ include "bacalhau-grpc.tlsSecretName" . }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{/*
The CA that generate mode keeps in its Secret, as JSON {cert, key} (PEM): the Secret's own when it exists
(`lookup`: upgrades keep the CA), else a new one, an ECDSA P-256 key (genPrivateKey) and its self-signed
CA certificate (genCAWithKey). Made once per render (kept on .Release), so that the Secret and the pods'
checksum annotation see the same CA.
*/}}
{{- define "bacalhau-grpc.generatedCa" -}}
{{- if not (hasKey .Release "bacalhauGrpcCa") }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "bacalhau-grpc.caSecretName" .) }}
{{- $ca := dict }}
{{- if and $existing $existing.data (index $existing.data "tls.crt") (index $existing.data "tls.key") }}
{{- $ca = dict "cert" (index $existing.data "tls.crt" | b64dec) "key" (index $existing.data "tls.key" | b64dec) }}
{{- else }}
{{- $made := genCAWithKey (printf "bacalhau-grpc %s/%s CA" .Release.Namespace .Release.Name) (int .Values.tls.ca.days) (genPrivateKey "ecdsa") }}
{{- $ca = dict "cert" $made.Cert "key" $made.Key }}
{{- end }}
{{- $_ := set .Release "bacalhauGrpcCa" $ca }}
{{- end }}
{{- toJson .Release.bacalhauGrpcCa }}
{{- end }}

{{/*
The pod template's annotation that changes with the CA (generate mode: the CA's certificate; otherwise
the cert-manager objects), so that every pod restarts, and issues or reads its certificate anew, when the
CA is replaced: nothing in insecure mode.
*/}}
{{- define "bacalhau-grpc.tlsPodAnnotations" -}}
{{- if include "bacalhau-grpc.tlsEnabled" . }}
{{- if and (eq .Values.tls.mode "generate") (not .Values.tls.ca.existingSecret) }}
bacalhau-grpc/tls-checksum: {{ (include "bacalhau-grpc.generatedCa" . | fromJson).cert | sha256sum }}
{{- else }}
bacalhau-grpc/tls-checksum: {{ include (print .Template.BasePath "/tls.yaml") . | sha256sum }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The NetworkPolicy ingress rule of a pod's plaintext health port: from networkPolicy.healthFrom (for a CNI
that applies policies to the kubelet's probes); nothing when it is empty (the kubelet is not a pod a
policy can name; most CNIs let a node's kubelet reach its pods whatever the policies say).
(dict "ctx" $ "port" 1238)
*/}}
{{- define "bacalhau-grpc.healthIngress" -}}
{{- with .ctx.Values.networkPolicy.healthFrom }}
- from:
    {{- toYaml . | nindent 4 }}
  ports:
    - port: {{ $.port }}
      protocol: TCP
{{- end }}
{{- end }}
