{{/*
Cost engines: Kubecost 3 (`kubecost`), Kubecost 2 (`cost-analyzer`) or OpenCost (`opencost`), each a dependency
with its own condition, at most one enabled; none: an existing API given as allocationExporter.config.kubecostUrl.
Every rule below follows the engine chart's own templates (checked against the real charts by
tests/test_engines_real.py), so the derived URL names a Service that chart renders:
  kubecost       <release>-frontend (63 characters), port frontend.service.port (9090), /model/allocation;
                 fullnameOverride/nameOverride do not change it (Kubecost 3's kubecost.frontend.fullname)
  cost-analyzer  fullnameOverride; else <release> when it contains nameOverride or "cost-analyzer"; else
                 <release>-<nameOverride or cost-analyzer>; port service.port (9090). With
                 kubecostFrontend.deployMethod=haMode the frontend has its own Service <release>-frontend.
  opencost       the same fullname rule with "opencost"; namespaceOverride; port opencost.exporter.apiPort (9003)
*/}}

{{/* The engine keys in Chart.yaml order. */}}
{{- define "kubecost-integration.engines.all" -}}
{{- list "kubecost" "cost-analyzer" "opencost" | toJson -}}
{{- end -}}

{{/* The enabled engines as a JSON list. */}}
{{- define "kubecost-integration.engines.enabled" -}}
{{- $on := list -}}
{{- range $key := include "kubecost-integration.engines.all" . | fromJsonArray -}}
{{- if (index $.Values $key | default dict).enabled -}}
{{- $on = append $on $key -}}
{{- end -}}
{{- end -}}
{{- toJson $on -}}
{{- end -}}

{{/* The enabled engine, "" for none (validations refuse more than one). */}}
{{- define "kubecost-integration.engine" -}}
{{- include "kubecost-integration.engines.enabled" . | fromJsonArray | first | default "" -}}
{{- end -}}

{{/* fullname rule shared by cost-analyzer and opencost. Argument: dict "values" (the engine's) "chartName" "release". */}}
{{- define "kubecost-integration.engine.fullname" -}}
{{- if .values.fullnameOverride -}}
{{- .values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .chartName .values.nameOverride -}}
{{- if contains $name .release -}}
{{- .release | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .release $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Where the enabled engine serves the Allocation API, as YAML {service, namespace, port, targetPort, selector};
empty without an engine (or with Kubecost 2's frontend switched off). */}}
{{- define "kubecost-integration.engine.endpoint" -}}
{{- $engine := include "kubecost-integration.engine" . -}}
{{- $v := index .Values $engine | default dict -}}
{{- $release := .Release.Name -}}
{{- if and (eq $engine "kubecost") (ne (toString ($v.frontend | default dict).enabled) "false") -}}
{{- $svc := ($v.frontend | default dict).service | default dict -}}
{{- toYaml (dict
  "service" (printf "%s-frontend" $release | trunc 63 | trimSuffix "-")
  "namespace" .Release.Namespace
  "port" ($svc.port | default 9090 | int)
  "targetPort" ($svc.targetPort | default 9090 | int)
  "selector" (dict "app" "cost-analyzer" "app.kubernetes.io/name" "frontend" "app.kubernetes.io/instance" $release)) -}}
{{- else if eq $engine "cost-analyzer" -}}
{{- $frontend := $v.kubecostFrontend | default dict -}}
{{- if ne (toString $frontend.enabled) "false" -}}
{{- $name := include "kubecost-integration.engine.fullname" (dict "values" $v "chartName" "cost-analyzer" "release" $release) -}}
{{- if eq (toString $frontend.deployMethod) "haMode" -}}
{{- $name = printf "%s-frontend" $release | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- $svc := $v.service | default dict -}}
{{- toYaml (dict
  "service" $name
  "namespace" .Release.Namespace
  "port" ($svc.port | default 9090 | int)
  "targetPort" ($svc.targetPort | default 9090 | int)
  "selector" (dict "app" "cost-analyzer" "app.kubernetes.io/instance" $release)) -}}
{{- end -}}
{{- else if eq $engine "opencost" -}}
{{- $port := (($v.opencost | default dict).exporter | default dict).apiPort | default 9003 | int -}}
{{- toYaml (dict
  "service" (include "kubecost-integration.engine.fullname" (dict "values" $v "chartName" "opencost" "release" $release))
  "namespace" (default .Release.Namespace $v.namespaceOverride)
  "port" $port
  "targetPort" $port
  "selector" (dict "app.kubernetes.io/name" (default "opencost" $v.nameOverride | trunc 63 | trimSuffix "-") "app.kubernetes.io/instance" $release)) -}}
{{- end -}}
{{- end -}}

{{/* The derived API URL of the enabled engine; "" when there is none. */}}
{{- define "kubecost-integration.engine.url" -}}
{{- with include "kubecost-integration.engine.endpoint" . | fromYaml -}}
{{- printf "http://%s.%s.svc:%d" .service .namespace (int .port) -}}
{{- end -}}
{{- end -}}

{{/* The exporter's API flavour: `auto` becomes `opencost` for the OpenCost engine. */}}
{{- define "kubecost-integration.engine.api" -}}
{{- $api := .Values.allocationExporter.config.api -}}
{{- if and (eq $api "auto") (eq (include "kubecost-integration.engine" .) "opencost") -}}
opencost
{{- else -}}
{{- $api -}}
{{- end -}}
{{- end -}}

{{/* The cluster id Kubecost 3 will use: global.clusterId, else kubecost.global.clusterId, else its default. */}}
{{- define "kubecost-integration.engine.kubecostClusterId" -}}
{{- $global := (.Values.global | default dict).clusterId | default "" -}}
{{- $own := ((.Values.kubecost | default dict).global | default dict).clusterId | default "" -}}
{{- include "kubecost-integration.str" (coalesce $global $own "cluster-one") -}}
{{- end -}}

{{/* One engine at a time; an explicit URL only repeats the derived one; Kubecost 3 knows the cluster by our name. */}}
{{- define "kubecost-integration.engine.validate" -}}
{{- $on := include "kubecost-integration.engines.enabled" . | fromJsonArray -}}
{{- if gt (len $on) 1 -}}
{{- $keep := first $on -}}
{{- $lines := list (printf "%s are enabled together; the exporter reads one cost engine, and two engines would both" (join ", " $on))
  "compute this cluster's costs. Keep one, e.g. the first:" -}}
{{- range $key := $on -}}
{{- $lines = append $lines (printf "  %s:\n    enabled: %t" $key (eq $key $keep)) -}}
{{- end -}}
{{- include "kubecost-integration.fail" $lines -}}
{{- end -}}
{{- $engine := include "kubecost-integration.engine" . -}}
{{- $explicit := .Values.allocationExporter.config.kubecostUrl -}}
{{- $derived := include "kubecost-integration.engine.url" . -}}
{{- if and $engine $explicit $derived -}}
{{- $url := tpl (toString $explicit) . | trimSuffix "/" -}}
{{- if ne $url $derived -}}
{{- include "kubecost-integration.fail" (list
  (printf "%s.enabled=true installs an engine whose API is %s, but allocationExporter.config.kubecostUrl is %s." $engine $derived $url)
  "Use one of them:"
  (printf "  - the bundled engine: remove allocationExporter.config.kubecostUrl (the URL is derived);")
  (printf "  - the existing API at %s: set %s.enabled=false." $url $engine)) -}}
{{- end -}}
{{- end -}}
{{- if eq $engine "kubecost" -}}
{{- $cluster := include "kubecost-integration.clusterName" . -}}
{{- $clusterId := include "kubecost-integration.engine.kubecostClusterId" . -}}
{{- if and $cluster (ne $clusterId $cluster) -}}
{{- include "kubecost-integration.fail" (list
  (printf "kubecost.enabled=true: Kubecost 3 would name this cluster %q, clusterName is %q." $clusterId $cluster)
  "Helm passes a dependency only its own and global values, so set Kubecost's cluster id to the same name:"
  "  global:"
  (printf "    clusterId: %s" $cluster)
  (printf "(--set global.clusterId=%s)" $cluster)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The enabled engine for people: "Kubecost 3 (chart kubecost)", ..., or "none (an existing API)". */}}
{{- define "kubecost-integration.engine.title" -}}
{{- $titles := dict "kubecost" "Kubecost 3 (chart kubecost)" "cost-analyzer" "Kubecost 2 (chart cost-analyzer)" "opencost" "OpenCost (chart opencost)" -}}
{{- index $titles (include "kubecost-integration.engine" .) | default "none (an existing API, allocationExporter.config.kubecostUrl)" -}}
{{- end -}}

{{/* The values that give the engine's PersistentVolumeClaims a StorageClass when the cluster has no default one. */}}
{{- define "kubecost-integration.engine.storageValues" -}}
{{- $engine := include "kubecost-integration.engine" . -}}
{{- if eq $engine "kubecost" -}}
global.defaultStorageClass
{{- else if eq $engine "cost-analyzer" -}}
cost-analyzer.persistentVolume.storageClass and cost-analyzer.prometheus.server.persistentVolume.storageClass
{{- end -}}
{{- end -}}
