{{/* Names, labels and the checks every template relies on. */}}

{{- define "strait.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "strait.fullname" -}}
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

{{/* FULLNAME-SUFFIX within 63 characters: (list . "suffix"). */}}
{{- define "strait.suffixedName" -}}
{{- $suffix := index . 1 }}
{{- printf "%s-%s" (include "strait.fullname" (index . 0) | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{- define "strait.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The selector: kept to name + instance, as in the chart's first version (immutable). */}}
{{- define "strait.selectorLabels" -}}
app.kubernetes.io/name: {{ include "strait.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "strait.labels" -}}
helm.sh/chart: {{ include "strait.chart" . }}
{{ include "strait.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: ingress-controller
app.kubernetes.io/part-of: strait
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "strait.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "strait.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "strait.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{- define "strait.leaseName" -}}
{{- default (include "strait.suffixedName" (list . "leader")) .Values.controller.leaderElection.leaseName }}
{{- end }}

{{/*
  The sidecar injector's MutatingWebhookConfiguration (mesh-webhook.yaml), whose caBundle the
  controller keeps (--mesh-webhook-config); "" when it is not rendered.
*/}}
{{- define "strait.meshWebhookName" -}}
{{- $ctl := .Values.controller }}
{{- if and $ctl.mesh.enabled $ctl.mesh.injection.enabled (eq .Values.mode "cluster") }}
{{- printf "%s-inject" (include "strait.suffixedName" (list . "controller")) }}
{{- end }}
{{- end }}

{{/* The ConfigMap of manifests mounted in file mode ("" = the image's examples). */}}
{{- define "strait.manifestsConfigMap" -}}
{{- if .Values.fileMode.configMap }}
{{- .Values.fileMode.configMap }}
{{- else if .Values.fileMode.manifests }}
{{- include "strait.suffixedName" (list . "manifests") }}
{{- end }}
{{- end }}

{{/* A number for a command-line flag: whole numbers without an exponent (1e+06). */}}
{{- define "strait.num" -}}
{{- $f := float64 . }}
{{- if eq $f (floor $f) }}{{ int64 $f }}{{ else }}{{ $f }}{{ end }}
{{- end }}

{{- define "strait.httpsRedirectPort" -}}
{{- if not (kindIs "invalid" .Values.dataplane.httpsRedirectPort) }}
{{- include "strait.num" .Values.dataplane.httpsRedirectPort }}
{{- else if .Values.hostNetwork }}
{{- include "strait.num" .Values.dataplane.containerPorts.https }}
{{- else }}
{{- include "strait.num" .Values.service.ports.https }}
{{- end }}
{{- end }}

{{- define "strait.terminationGracePeriodSeconds" -}}
{{- if not (kindIs "invalid" .Values.terminationGracePeriodSeconds) }}
{{- include "strait.num" .Values.terminationGracePeriodSeconds }}
{{- else }}
{{- add (int64 .Values.dataplane.preStopSleepSeconds) (int64 (ceil (float64 .Values.dataplane.drainTimeout))) 10 }}
{{- end }}
{{- end }}

{{/* preStop: the sleep action exists from Kubernetes 1.30 (beta, on by default). */}}
{{- define "strait.preStop" -}}
{{- if and (gt (int64 .Values.dataplane.preStopSleepSeconds) 0) (semverCompare ">=1.30-0" .Capabilities.KubeVersion.Version) }}
lifecycle:
  preStop:
    sleep:
      seconds: {{ int64 .Values.dataplane.preStopSleepSeconds }}
{{- end }}
{{- end }}

{{/* Combinations the schema cannot refuse; called once, from the workload template. */}}
{{- define "strait.validate" -}}
{{- $le := .Values.controller.leaderElection }}
{{- if not (gt (float64 $le.leaseDuration) (float64 $le.renewDeadline)) }}
{{- fail "controller.leaderElection: leaseDuration must be greater than renewDeadline" }}
{{- end }}
{{- if not (gt (float64 $le.renewDeadline) (mulf 1.2 (float64 $le.retryPeriod))) }}
{{- fail "controller.leaderElection: renewDeadline must be greater than 1.2 x retryPeriod" }}
{{- end }}
{{- $as := .Values.autoscaling }}
{{- if and $as.enabled (kindIs "invalid" $as.targetCPUUtilizationPercentage) (kindIs "invalid" $as.targetMemoryUtilizationPercentage) }}
{{- fail "autoscaling.enabled needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if and $as.enabled (gt (int64 $as.minReplicas) (int64 $as.maxReplicas)) }}
{{- fail "autoscaling: minReplicas is greater than maxReplicas" }}
{{- end }}
{{- if and (eq .Values.kind "DaemonSet") .Values.autoscaling.enabled }}
{{- fail "autoscaling.enabled needs kind: Deployment (a DaemonSet runs one pod per node)" }}
{{- end }}
{{- if and (eq .Values.mode "cluster") .Values.controller.publishService.enabled (not .Values.controller.publishStatusAddress) (not .Values.controller.publishService.pathOverride) (not .Values.service.enabled) }}
{{- fail "controller.publishService.enabled needs service.enabled or controller.publishService.pathOverride (or set controller.publishStatusAddress)" }}
{{- end }}
{{- if and .Values.controller.publishService.pathOverride (ne (len (splitList "/" .Values.controller.publishService.pathOverride)) 2) }}
{{- fail "controller.publishService.pathOverride must be NAMESPACE/NAME" }}
{{- end }}
{{- if and (eq .Values.mode "file") .Values.controller.watchNamespace }}
{{- fail "controller.watchNamespace is for mode: cluster (file mode reads the ConfigMap)" }}
{{- end }}
{{- end }}
