{{/*
Shared pieces of every ferry component. A component is called with a dict:
  root       the chart's top context ($)
  name       the process (queue-worker, gateway, ...): objects ferry-NAME, pods app: ferry-NAME
  values     the component's values (replicas, resources, env)
  env        the component's own variables, a list of {name, value}
  nats       true for processes that talk to NATS
  ports      extra container ports (list), volumes/mounts: extra volumes and mounts (lists)
  checksum   optional: a digest of the component's configuration, as a pod annotation
Nothing here is random or time-dependent: the same values render the same objects, so
`helm upgrade` replaces only what changed.
*/}}

{{- define "ferry.labels" -}}
app: ferry-{{ .name }}
app.kubernetes.io/name: ferry-{{ .name }}
app.kubernetes.io/component: {{ .name }}
app.kubernetes.io/part-of: ferry
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{/* Object labels: the pod labels plus the chart's version, never in a selector or a pod. */}}
{{- define "ferry.objectLabels" -}}
{{ include "ferry.labels" . }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ .root.Chart.Name }}-{{ .root.Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The one selector label: the same as the kustomize bases, and never the chart's own app. */}}
{{- define "ferry.selector" -}}
app: ferry-{{ .name }}
{{- end }}

{{/* The NATS server list every NATS user gets. */}}
{{- define "ferry.natsUrl" -}}
{{- if .Values.nats.enabled -}}
nats://ferry-nats:4222
{{- else -}}
{{ .Values.nats.url }}
{{- end -}}
{{- end }}

{{/* Variables every component sets, then its own, then NATS's, then values' `env`. */}}
{{- define "ferry.env" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $env := list -}}
{{- range .env }}
{{- $env = append $env . }}
{{- end }}
{{- if .nats }}
{{- $env = append $env (dict "name" "nats_url" "value" (include "ferry.natsUrl" $root)) }}
{{- with $v.nats.streamReplication }}
{{- $env = append $env (dict "name" "nats_stream_replicas" "value" (toString .)) }}
{{- end }}
{{- with $v.nats.pingInterval }}
{{- $env = append $env (dict "name" "nats_ping_interval" "value" (toString .)) }}
{{- end }}
{{- if $v.nats.credentialsSecret }}
{{- $env = append $env (dict "name" "nats_credentials_file" "value" "/etc/ferry/nats/user.creds") }}
{{- end }}
{{- if $v.nats.tokenSecret }}
{{- $env = append $env (dict "name" "nats_token_file" "value" "/etc/ferry/nats-token/token") }}
{{- end }}
{{- end }}
{{- if $v.basicAuth }}
{{- $env = append $env (dict "name" "basic_auth" "value" "true") }}
{{- $env = append $env (dict "name" "secret_mount_path" "value" $v.secretMountPath) }}
{{- end }}
{{- $env = append $env (dict "name" "log_encoding" "value" $v.logs.format) }}
{{- if $v.logs.debug }}
{{- $env = append $env (dict "name" "write_debug" "value" "true") }}
{{- end }}
{{- $env = append $env (dict "name" "graceful_timeout" "value" (toString $v.gracefulTimeout)) }}
{{- if ne (int $v.healthPort) 8081 }}
{{- $env = append $env (dict "name" "health_port" "value" (toString $v.healthPort)) }}
{{- end }}
{{- range $name, $value := .values.env }}
{{- $env = append $env (dict "name" $name "value" (toString $value)) }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{- define "ferry.volumes" -}}
{{- $v := .root.Values -}}
{{- $volumes := list (dict "name" "tmp" "emptyDir" (dict "medium" "Memory" "sizeLimit" "16Mi")) -}}
{{- $mounts := list (dict "name" "tmp" "mountPath" "/tmp") -}}
{{- if $v.basicAuth }}
{{- $volumes = append $volumes (dict "name" "auth" "secret" (dict "secretName" $v.basicAuthSecret)) }}
{{- $mounts = append $mounts (dict "name" "auth" "mountPath" $v.secretMountPath "readOnly" true) }}
{{- end }}
{{- if and .nats $v.nats.credentialsSecret }}
{{- $volumes = append $volumes (dict "name" "nats-credentials" "secret" (dict "secretName" $v.nats.credentialsSecret "defaultMode" 288)) }}
{{- $mounts = append $mounts (dict "name" "nats-credentials" "mountPath" "/etc/ferry/nats" "readOnly" true) }}
{{- end }}
{{- if and .nats $v.nats.tokenSecret }}
{{- $volumes = append $volumes (dict "name" "nats-token" "secret" (dict "secretName" $v.nats.tokenSecret "defaultMode" 288)) }}
{{- $mounts = append $mounts (dict "name" "nats-token" "mountPath" "/etc/ferry/nats-token" "readOnly" true) }}
{{- end }}
{{- range .volumes }}
{{- $volumes = append $volumes . }}
{{- end }}
{{- range .mounts }}
{{- $mounts = append $mounts . }}
{{- end }}
{{- toYaml (dict "volumes" $volumes "mounts" $mounts) }}
{{- end }}

{{- define "ferry.deployment" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $storage := include "ferry.volumes" . | fromYaml -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ferry-{{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "ferry.objectLabels" . | nindent 4 }}
spec:
  replicas: {{ .values.replicas }}
  selector:
    matchLabels:
      {{- include "ferry.selector" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "ferry.labels" . | nindent 8 }}
      {{- $annotations := dict }}
      {{- if $v.prometheus.scrape }}
      {{- $_ := set $annotations "prometheus.io/scrape" "true" }}
      {{- $_ := set $annotations "prometheus.io/port" (toString $v.healthPort) }}
      {{- $_ := set $annotations "prometheus.io/path" "/metrics" }}
      {{- end }}
      {{- with .checksum }}
      {{- $_ := set $annotations "checksum/config" . }}
      {{- end }}
      {{- $annotations = merge $annotations $v.podAnnotations }}
      {{- with $annotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      automountServiceAccountToken: false
      {{- with .serviceAccountName }}
      serviceAccountName: {{ . }}
      {{- end }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ .name }}
          image: "{{ $v.image.repository }}:{{ $v.image.tag }}"
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            - {{ .name }}
          env:
            {{- include "ferry.env" . | nindent 12 }}
          ports:
            {{- range .ports }}
            - {{ toYaml . | nindent 14 | trim }}
            {{- end }}
            - name: metrics
              containerPort: {{ $v.healthPort }}
              protocol: TCP
          livenessProbe:
            httpGet:
              path: /healthz
              port: metrics
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /readyz
              port: metrics
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          startupProbe:
            httpGet:
              path: /healthz
              port: metrics
            periodSeconds: 2
            failureThreshold: 30
          resources:
            {{- toYaml .values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          volumeMounts:
            {{- toYaml $storage.mounts | nindent 12 }}
      volumes:
        {{- toYaml $storage.volumes | nindent 8 }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{/* The metrics Service (port `metrics`) and the PodDisruptionBudget of a component. */}}
{{- define "ferry.metricsAndBudget" -}}
apiVersion: v1
kind: Service
metadata:
  name: ferry-{{ .name }}-metrics
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "ferry.objectLabels" . | nindent 4 }}
    ferry.dev/metrics: "true"
spec:
  selector:
    {{- include "ferry.selector" . | nindent 4 }}
  ports:
    - name: metrics
      port: {{ .root.Values.healthPort }}
      targetPort: metrics
      protocol: TCP
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: ferry-{{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "ferry.objectLabels" . | nindent 4 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "ferry.selector" . | nindent 6 }}
{{- end }}
