{{/*
Naming and labels. Conventions of prometheus-community charts: 63-character truncation, fullnameOverride,
selector labels app.kubernetes.io/{name,instance,component}. No lookup, random or time functions anywhere in
this chart: `helm template` (Argo CD) renders exactly what `helm install` renders.
*/}}

{{- define "kubecost-integration.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubecost-integration.fullname" -}}
{{- include "kubecost-integration.fullnameFor" (dict "Release" .Release "chartName" .Chart.Name "nameOverride" .Values.nameOverride "fullnameOverride" .Values.fullnameOverride) -}}
{{- end -}}

{{/* The naming rule on explicit inputs, so it can also run where this chart's .Values are not visible (inside
Kubecost's tpl of extraScrapeConfigs in kubecost mode). Argument: dict Release chartName nameOverride fullnameOverride. */}}
{{- define "kubecost-integration.fullnameFor" -}}
{{- if .fullnameOverride -}}
{{- .fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .chartName .nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<suffix>" within 63 characters: the prefix is cut, never the suffix. */}}
{{- define "kubecost-integration.componentName" -}}
{{- $root := index . 0 -}}
{{- include "kubecost-integration.suffixed" (list (include "kubecost-integration.fullname" $root) (index . 1)) -}}
{{- end -}}

{{- define "kubecost-integration.suffixed" -}}
{{- $suffix := index . 1 -}}
{{- $prefix := index . 0 | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" -}}
{{- printf "%s-%s" $prefix $suffix -}}
{{- end -}}

{{- define "kubecost-integration.exporter.fullname" -}}
{{- include "kubecost-integration.componentName" (list . "exporter") -}}
{{- end -}}

{{- define "kubecost-integration.agent.fullname" -}}
{{- include "kubecost-integration.componentName" (list . "agent") -}}
{{- end -}}

{{- define "kubecost-integration.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. Argument: (list $ "component"). */}}
{{- define "kubecost-integration.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "kubecost-integration.chart" $root }}
{{ include "kubecost-integration.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: kubecost-integration
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels (immutable in Deployments: never add to these). Argument: (list $ "component"). */}}
{{- define "kubecost-integration.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "kubecost-integration.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "kubecost-integration.exporter.serviceAccountName" -}}
{{- if .Values.allocationExporter.serviceAccount.create -}}
{{- default (include "kubecost-integration.exporter.fullname" .) .Values.allocationExporter.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.allocationExporter.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kubecost-integration.agent.serviceAccountName" -}}
{{- if .Values.prometheus.agent.serviceAccount.create -}}
{{- default (include "kubecost-integration.agent.fullname" .) .Values.prometheus.agent.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.prometheus.agent.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image reference: repository[:tag][@digest]. Argument: (list imageValues defaultTag). */}}
{{- define "kubecost-integration.image" -}}
{{- $img := index . 0 -}}
{{- $tag := default (index . 1) $img.tag | toString -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "kubecost-integration.exporter.image" -}}
{{- include "kubecost-integration.image" (list .Values.allocationExporter.image .Chart.AppVersion) -}}
{{- end -}}

{{- define "kubecost-integration.agent.image" -}}
{{- include "kubecost-integration.image" (list .Values.prometheus.agent.image "") -}}
{{- end -}}

{{/* Agent-mode flag by Prometheus major version: 3.x has `--agent`, 2.x `--enable-feature=agent`. */}}
{{- define "kubecost-integration.agent.flag" -}}
{{- if regexMatch "^v?2\\." (toString .Values.prometheus.agent.image.tag) -}}
--enable-feature=agent
{{- else -}}
--agent
{{- end -}}
{{- end -}}

{{/* An int-or-string value (PDB maxUnavailable): a number as a number, a percentage as a quoted string. */}}
{{- define "kubecost-integration.intOrString" -}}
{{- if kindIs "string" . -}}{{ . | quote }}{{- else -}}{{ . | int64 }}{{- end -}}
{{- end -}}

{{/* DNS name of the exporter Service, as scraped by the agent and checked by the helm test. */}}
{{- define "kubecost-integration.exporter.address" -}}
{{- include "kubecost-integration.exporter.addressFor" (dict "Release" .Release "chartName" .Chart.Name "nameOverride" .Values.nameOverride "fullnameOverride" .Values.fullnameOverride "port" .Values.allocationExporter.port) -}}
{{- end -}}

{{- define "kubecost-integration.exporter.addressFor" -}}
{{- $svc := include "kubecost-integration.suffixed" (list (include "kubecost-integration.fullnameFor" .) "exporter") -}}
{{- printf "%s.%s.svc:%d" $svc .Release.Namespace (int .port) -}}
{{- end -}}

{{/* The same address as a template expression, for Kubecost's tpl of extraScrapeConfigs (kubecost mode): it is
evaluated with Kubecost's .Release, so the values a user pastes work under any release name and namespace. */}}
{{- define "kubecost-integration.exporter.addressExpr" -}}
{{- printf "{{ include \"kubecost-integration.exporter.addressFor\" (dict \"Release\" .Release \"chartName\" %q \"nameOverride\" %q \"fullnameOverride\" %q \"port\" %d) }}" .Chart.Name (toString .Values.nameOverride) (toString .Values.fullnameOverride) (int .Values.allocationExporter.port) -}}
{{- end -}}

{{/* Kubecost/OpenCost API base URL: the explicit `allocationExporter.config.kubecostUrl` (tpl'd), else the one
derived from the enabled engine (engines/_engines.tpl); "" when neither (validations then ask for a URL). */}}
{{- define "kubecost-integration.kubecostUrl" -}}
{{- with .Values.allocationExporter.config.kubecostUrl -}}
{{- tpl . $ | trimSuffix "/" -}}
{{- else -}}
{{- include "kubecost-integration.engine.url" . -}}
{{- end -}}
{{- end -}}

{{/* A Kubernetes quantity ("1Gi", "500M", "1.5Gi") in bytes, printed as a whole number; "" when it is not one. */}}
{{- define "kubecost-integration.quantityBytes" -}}
{{- $q := toString . -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $q -}}
{{- $unit := trimPrefix $number $q -}}
{{- $units := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 -}}
{{- if and $number (hasKey $units $unit) -}}
{{- printf "%.0f" (mulf (float64 $number) (index $units $unit)) -}}
{{- end -}}
{{- end -}}

{{/* The volume that holds the agent's WAL: the PVC (persistence.enabled) or the emptyDir's sizeLimit. */}}
{{- define "kubecost-integration.agent.walLimitName" -}}
{{- $agent := .Values.prometheus.agent -}}
{{- if $agent.persistence.enabled -}}
{{- printf "prometheus.agent.persistence.size (%s)" (toString $agent.persistence.size) -}}
{{- else -}}
{{- printf "prometheus.agent.walSizeLimit (%s)" (toString $agent.walSizeLimit) -}}
{{- end -}}
{{- end -}}

{{- define "kubecost-integration.agent.walLimitBytes" -}}
{{- $agent := .Values.prometheus.agent -}}
{{- include "kubecost-integration.quantityBytes" (ternary $agent.persistence.size $agent.walSizeLimit (eq (toString $agent.persistence.enabled) "true")) -}}
{{- end -}}

{{/* Mount point of the remote-write credentials and TLS files (agent pod and, in kubecost mode, Kubecost's Prometheus). */}}
{{- define "kubecost-integration.rw.authDir" -}}/etc/prometheus/remote-write/auth{{- end -}}
{{- define "kubecost-integration.rw.tlsDir" -}}/etc/prometheus/remote-write/tls{{- end -}}

{{/*
A value documented as a string that may also be given as a number (`--set tenantId=12345`,
`dataLag: 120` in a values file), as a string. YAML and JSON numbers reach templates as float64, which `toString`
would print as 1.2345e+07: an integral number renders as its digits, any other value through toString.
*/}}
{{- define "kubecost-integration.str" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) -}}
{{- printf "%.0f" . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}
