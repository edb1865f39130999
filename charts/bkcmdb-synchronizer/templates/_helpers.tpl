{{/* Names, labels, and the synchronizer's config file. */}}

{{- define "bkcmdb-synchronizer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bkcmdb-synchronizer.fullname" -}}
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

{{- define "bkcmdb-synchronizer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bkcmdb-synchronizer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bkcmdb-synchronizer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "bkcmdb-synchronizer.labels" -}}
helm.sh/chart: {{ include "bkcmdb-synchronizer.chart" . }}
{{ include "bkcmdb-synchronizer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: synchronizer
app.kubernetes.io/part-of: bkcmdb-synchronizer
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "bkcmdb-synchronizer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bkcmdb-synchronizer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "bkcmdb-synchronizer.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name and key of the Secret holding the CMDB DSN. */}}
{{- define "bkcmdb-synchronizer.cmdbSecretName" -}}
{{- default (printf "%s-cmdb" (include "bkcmdb-synchronizer.fullname" .)) .Values.cmdb.existingSecret }}
{{- end }}

{{- define "bkcmdb-synchronizer.cmdbSecretKey" -}}
{{- if .Values.cmdb.existingSecret }}{{ .Values.cmdb.existingSecretKey }}{{ else }}dsn{{ end }}
{{- end }}

{{/* Name and key of the Secret holding the bk-cmdb app secret. */}}
{{- define "bkcmdb-synchronizer.bkcmdbSecretName" -}}
{{- default (printf "%s-bkcmdb" (include "bkcmdb-synchronizer.fullname" .)) .Values.bkcmdb.existingSecret }}
{{- end }}

{{- define "bkcmdb-synchronizer.bkcmdbSecretKey" -}}
{{- if .Values.bkcmdb.existingSecret }}{{ .Values.bkcmdb.existingSecretKey }}{{ else }}app-secret{{ end }}
{{- end }}

{{/* True (non-empty) when bk-cmdb is configured with an app secret from a Secret. */}}
{{- define "bkcmdb-synchronizer.bkcmdbSecret" -}}
{{- if and .Values.config.bkcmdb.url (or .Values.bkcmdb.existingSecret .Values.bkcmdb.appSecret) }}true{{ end }}
{{- end }}

{{/* Paths inside the container. */}}
{{- define "bkcmdb-synchronizer.configDir" -}}/etc/bkcmdb-synchronizer{{- end }}
{{- define "bkcmdb-synchronizer.kubeconfigDir" -}}/etc/bkcmdb-synchronizer/kubeconfigs{{- end }}

{{/* True (non-empty) when the pod talks to its own API server. */}}
{{- define "bkcmdb-synchronizer.needsToken" -}}
{{- if or .Values.inCluster.enabled .Values.registries.crd.enabled }}true{{ end }}
{{- end }}

{{/*
The synchronizer's config file (CONTRACT.md, "Config file"). No secret is ever rendered here:
instance.id, cmdb.dsn and bkcmdb.app_secret come from the environment (BKCMDB_INSTANCE__ID,
BKCMDB_CMDB__DSN, BKCMDB_BKCMDB__APP_SECRET).
*/}}
{{- define "bkcmdb-synchronizer.config" -}}
{{- $v := .Values }}
{{- if and (gt (int $v.replicas) 1) (not $v.config.zookeeper.hosts) }}
{{- fail "replicas > 1 needs config.zookeeper.hosts: standalone instances would each own every cluster" }}
{{- end }}
{{- if and $v.cmdb.dsn $v.cmdb.existingSecret }}
{{- fail "set cmdb.dsn or cmdb.existingSecret, not both" }}
{{- end }}
{{- $clusters := list }}
{{- $seen := dict }}
{{- range $v.config.clusters }}
{{- $c := deepCopy . }}
{{- if not (or .server .kubeconfig) }}
{{- if not $v.kubeconfigs.existingSecret }}
{{- fail (printf "cluster %q has neither server nor kubeconfig; set one, or set kubeconfigs.existingSecret holding %s.yaml" .id .id) }}
{{- end }}
{{- $_ := set $c "kubeconfig" (printf "%s/%s.yaml" (include "bkcmdb-synchronizer.kubeconfigDir" $) .id) }}
{{- end }}
{{- if hasKey $seen .id }}
{{- fail (printf "cluster id %q appears twice in config.clusters" .id) }}
{{- end }}
{{- $_ := set $seen .id true }}
{{- $clusters = append $clusters $c }}
{{- end }}
{{- if $v.inCluster.enabled }}
{{- if hasKey $seen $v.inCluster.id }}
{{- fail (printf "inCluster.id %q is also in config.clusters" $v.inCluster.id) }}
{{- end }}
{{- $c := dict "id" $v.inCluster.id "in_cluster" true }}
{{- if not (kindIs "invalid" $v.inCluster.bizId) }}
{{- $_ := set $c "biz_id" $v.inCluster.bizId }}
{{- end }}
{{- $clusters = append $clusters $c }}
{{- end }}
{{- $cfg := dict "instance" (dict "address" $v.config.instance.address "port" $v.ports.http "metric_port" $v.ports.metrics) }}
{{- if $v.config.zookeeper.hosts }}
{{- $_ := set $cfg "zookeeper" $v.config.zookeeper }}
{{- end }}
{{- $_ := set $cfg "sync" $v.config.sync }}
{{- $_ := set $cfg "clusters" $clusters }}
{{- $registries := dict }}
{{- if $v.registries.crd.enabled }}
{{- $_ := set $registries "crd" (dict "enabled" true "namespace" $v.registries.crd.namespace) }}
{{- end }}
{{- if $v.registries.http.url }}
{{- if not $v.registries.http.existingSecret }}
{{- fail "registries.http.url needs registries.http.existingSecret (the gateway token)" }}
{{- end }}
{{- $http := dict "url" $v.registries.http.url }}
{{- if not (kindIs "invalid" $v.registries.http.interval) }}
{{- $_ := set $http "interval" $v.registries.http.interval }}
{{- end }}
{{- $_ := set $registries "http" $http }}
{{- end }}
{{- if $registries }}
{{- $_ := set $cfg "registries" $registries }}
{{- end }}
{{- if $v.config.bkcmdb.url }}
{{- if and $v.bkcmdb.appSecret $v.bkcmdb.existingSecret }}
{{- fail "set bkcmdb.appSecret or bkcmdb.existingSecret, not both" }}
{{- end }}
{{- if and (eq (default "gateway" $v.config.bkcmdb.auth) "gateway") (not (include "bkcmdb-synchronizer.bkcmdbSecret" .)) }}
{{- fail "config.bkcmdb.auth gateway needs the app secret: set bkcmdb.existingSecret (or bkcmdb.appSecret)" }}
{{- end }}
{{- $_ := set $cfg "bkcmdb" $v.config.bkcmdb }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}
