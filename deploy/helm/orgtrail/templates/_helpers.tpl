{{/* The chart's name. */}}
{{- define "orgtrail.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name: RELEASE-orgtrail, or RELEASE when it already names the chart. */}}
{{- define "orgtrail.fullname" -}}
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

{{/* The collector's name: its StatefulSet, Service and the host name agents dial. */}}
{{- define "orgtrail.collector" -}}
{{- printf "%s-collector" (include "orgtrail.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "orgtrail.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "orgtrail.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: orgtrail
{{- end }}

{{- define "orgtrail.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orgtrail.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "orgtrail.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
A TOML table's keys from a map of scalars (strings, numbers, booleans) or lists of scalars,
sorted by key. JSON's strings, numbers and arrays of them are valid TOML. Call with
(dict "table" MAP "where" "a description for errors").
*/}}
{{- define "orgtrail.tomlKeys" -}}
{{- $where := .where }}
{{- range $k, $v := .table }}
{{- if kindIs "map" $v }}
{{- fail (printf "%s.%s: a nested table is not supported here; give plain values" $where $k) }}
{{- end }}
{{- if not (regexMatch "^[A-Za-z0-9_-]+$" $k) }}
{{- fail (printf "%s: %q is not a valid key" $where $k) }}
{{- end }}
{{ $k }} = {{ toJson $v }}
{{- end }}
{{- end }}

{{/* The agent's settings: agentDefaults, overridden by the agent's own entry. */}}
{{- define "orgtrail.agentValues" -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.agentDefaults) (deepCopy .agent)) }}
{{- end }}

{{/* Checks an agent's account: 12 digits, given as a string. */}}
{{- define "orgtrail.account" -}}
{{- $a := .account }}
{{- if not (kindIs "string" $a) }}
{{- fail (printf "agents: account %v must be quoted (a string of 12 digits), or YAML reads it as a number" $a) }}
{{- end }}
{{- if not (regexMatch "^[0-9]{12}$" $a) }}
{{- fail (printf "agents: account %q is not 12 digits" $a) }}
{{- end }}
{{- $a }}
{{- end }}

{{/* The volume of a Secret, all keys readable by the pod's group only. `optional: false`
is the default, written out because podman's kube play (4.3) fails without it. */}}
{{- define "orgtrail.secretVolume" -}}
- name: {{ .name }}
  secret:
    secretName: {{ .secretName }}
    defaultMode: 0440
    optional: false
{{- end }}

{{- define "orgtrail.env" -}}
- name: ORGTRAIL_LOG
  value: {{ .Values.log.level | quote }}
- name: ORGTRAIL_LOG_FORMAT
  value: {{ .Values.log.format | quote }}
{{- end }}

{{/* HOST:PORT for a listen address; an IPv6 host in brackets. Call with (list HOST PORT). */}}
{{- define "orgtrail.hostPort" -}}
{{- $h := index . 0 }}
{{- if contains ":" $h }}{{ printf "[%s]:%v" $h (index . 1) }}{{ else }}{{ printf "%s:%v" $h (index . 1) }}{{ end }}
{{- end }}

{{/* An agent's agent.toml. Call with (dict "root" $ "a" MERGED-AGENT-VALUES "account" ACCOUNT). */}}
{{- define "orgtrail.agentConfig" -}}
{{- $root := .root }}
{{- $a := .a }}
{{- $c := $root.Values.collector -}}
# orgtrail agent configuration for account {{ .account }}, rendered by the orgtrail Helm chart.
account = {{ .account | quote }}
collector = {{ printf "https://%s:%v" (include "orgtrail.collector" $root) $c.grpcPort | quote }}
spool_dir = "/var/lib/orgtrail/spool"
spool_max_bytes = {{ $a.spool.maxBytes | toJson }}
spool_min_free_bytes = {{ $a.spool.minFreeBytes | toJson }}

[tls]
cert = "/etc/orgtrail/tls/tls.crt"
key = "/etc/orgtrail/tls/tls.key"
ca = "/etc/orgtrail/ca/ca.pem"

[batch]
{{- include "orgtrail.tomlKeys" (dict "table" $a.batch "where" "batch") }}

[retry]
{{- include "orgtrail.tomlKeys" (dict "table" $a.retry "where" "retry") }}

[connection]
{{- include "orgtrail.tomlKeys" (dict "table" $a.connection "where" "connection") }}

[ops]
listen = {{ include "orgtrail.hostPort" (list $c.listenHost $a.opsPort) | quote }}
{{- range $i, $s := $a.sources }}

[[sources]]
{{- if not (kindIs "map" $s) }}
{{- fail (printf "agents (%s): sources[%d] must be a table (type, path, ...)" $.account $i) }}
{{- end }}
{{- include "orgtrail.tomlKeys" (dict "table" $s "where" (printf "sources[%d]" $i)) }}
{{- end }}
{{- end }}

{{/* The collector's accounts: organization.accounts, else the agents' accounts. */}}
{{- define "orgtrail.accounts" -}}
{{- $accounts := .Values.organization.accounts }}
{{- if not $accounts }}
{{- $accounts = list }}
{{- range .Values.agents }}
{{- $accounts = append $accounts (include "orgtrail.account" .) }}
{{- end }}
{{- end }}
{{- range $accounts }}
{{- if not (and (kindIs "string" .) (regexMatch "^[0-9]{12}$" .)) }}
{{- fail (printf "organization.accounts: %v is not a quoted string of 12 digits" .) }}
{{- end }}
{{- end }}
{{- toJson (uniq $accounts) }}
{{- end }}

{{/* "true" when the collector admits any account: organization.allowAnyAccount, or when
unset, whether no account is listed. */}}
{{- define "orgtrail.allowAnyAccount" -}}
{{- $accounts := include "orgtrail.accounts" . | fromJsonArray }}
{{- $any := .Values.organization.allowAnyAccount }}
{{- if kindIs "bool" $any }}
{{- if and (not $any) (not $accounts) }}
{{- fail "organization: allowAnyAccount is false and no account is listed (organization.accounts or agents): the collector would admit nobody" }}
{{- end }}
{{- $any }}
{{- else }}
{{- empty $accounts }}
{{- end }}
{{- end }}
