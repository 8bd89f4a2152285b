{{/* Chart name, truncated to 63 characters (a DNS label). */}}
{{- define "modelserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless the release name already holds the chart name. */}}
{{- define "modelserve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "modelserve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelserve.commonLabels" -}}
helm.sh/chart: {{ include "modelserve.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelserve
{{- end }}

{{- define "modelserve.labels" -}}
{{ include "modelserve.commonLabels" . }}
{{ include "modelserve.selectorLabels" . }}
{{- end }}

{{- define "modelserve.redis.labels" -}}
{{ include "modelserve.commonLabels" . }}
{{ include "modelserve.redis.selectorLabels" . }}
{{- end }}

{{- define "modelserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "modelserve.redis.fullname" -}}
{{- printf "%s-redis" (include "modelserve.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelserve.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{- define "modelserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelserve.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest. */}}
{{- define "modelserve.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "modelserve.redis.image" -}}
{{- $img := .Values.redis.builtin.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository $img.tag }}
{{- end }}
{{- end }}

{{/* The Secret holding keys.yaml (created or existing). */}}
{{- define "modelserve.secretName" -}}
{{- default (include "modelserve.fullname" .) .Values.apiKeys.existingSecret }}
{{- end }}

{{/* Whether any Redis is configured (built-in, URL or URL secret). */}}
{{- define "modelserve.redis.enabled" -}}
{{- if or .Values.redis.builtin.enabled .Values.redis.url .Values.redis.existingSecret }}true{{ end }}
{{- end }}

{{/* The models YAML put into the ConfigMap. */}}
{{- define "modelserve.modelsYaml" -}}
{{- $doc := dict "models" .Values.config.models }}
{{- if .Values.config.server }}
{{- $_ := set $doc "server" .Values.config.server }}
{{- end }}
{{- toYaml $doc }}
{{- end }}

{{/* The generated admin key: kept from the live Secret on upgrades, else a new one. */}}
{{- define "modelserve.adminKey" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "modelserve.fullname" .) }}
{{- if and $existing (index ($existing.data | default dict) "admin-key") }}
{{- index $existing.data "admin-key" | b64dec }}
{{- else }}
{{- randAlphaNum 40 }}
{{- end }}
{{- end }}

{{/* Checks shared by the HPA and the KEDA ScaledObject: one owner of the replica count, and
at least one signal to scale on. */}}
{{- define "modelserve.autoscaling.check" -}}
{{- $as := .Values.autoscaling }}
{{- if and $as.enabled $as.keda.enabled }}
{{- fail "modelserve: autoscaling.enabled and autoscaling.keda.enabled are exclusive: KEDA makes its own HPA for the ScaledObject, and two HPAs on one Deployment fight over its replicas; turn one off" }}
{{- end }}
{{- if not (or $as.targetCPUUtilizationPercentage $as.inFlightRequests.enabled $as.waitingSequences.enabled) }}
{{- fail "modelserve: autoscaling needs inFlightRequests.enabled, waitingSequences.enabled or targetCPUUtilizationPercentage" }}
{{- end }}
{{- end }}

{{/* PromQL label matchers for the server pods' series (Deployment pods are named
<deployment>-<hash>-<id>, so the built-in Redis pods do not match). */}}
{{- define "modelserve.podMatchers" -}}
{{- printf "namespace=%q,pod=~%q" .Release.Namespace (printf "%s-[a-z0-9]+-[a-z0-9]+" (include "modelserve.fullname" .)) }}
{{- end }}
