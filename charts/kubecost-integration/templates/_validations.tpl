{{/*
Cross-field rules that values.schema.json cannot express, each kept next to its domain:
  identity (tenantId, clusterName)   _identity.tpl                 kubecost-integration.identity.validate
  cost engines                       engines/_engines.tpl          kubecost-integration.engine.validate
  Kubecost/OpenCost API              exporter/_validate.tpl        kubecost-integration.exporter.validate
  remote write                       _remotewrite_validate.tpl     kubecost-integration.rw.validate
  Prometheus agent and scraping      agent/_validate.tpl           kubecost-integration.agent.validate
  NetworkPolicies                    _networkpolicy.tpl            kubecost-integration.np.validate
  prometheus.mode=kubecost           kubecost/_validate.tpl        kubecost-integration.kubecost.validate
  budgets (prometheusRule.budgets)   monitoring/_budgets.tpl       kubecost-integration.budgets.validate
Every message names the value to set and, where it helps, prints the exact YAML to add. Rendered by
templates/validations.yaml before anything else matters: bad input fails the whole render, it never produces a
half-right manifest.
*/}}
{{- define "kubecost-integration.validations" -}}
{{- include "kubecost-integration.identity.validate" . -}}
{{- include "kubecost-integration.engine.validate" . -}}
{{- include "kubecost-integration.exporter.validate" . -}}
{{- include "kubecost-integration.rw.validate" . -}}
{{- include "kubecost-integration.agent.validate" . -}}
{{- include "kubecost-integration.np.validate" . -}}
{{- include "kubecost-integration.budgets.validate" . -}}
{{- if eq .Values.prometheus.mode "kubecost" -}}
{{- include "kubecost-integration.kubecost.validate" . -}}
{{- end -}}
{{- end -}}

{{/* Fails the render. Argument: the message, a string or a list of lines. */}}
{{- define "kubecost-integration.fail" -}}
{{- $msg := ternary (join "\n" .) (toString .) (kindIs "slice" .) -}}
{{- fail (printf "\n\nkubecost-integration: %s\n" $msg) -}}
{{- end -}}

{{/* Prometheus duration ("1m30s", "500ms", "2h") in milliseconds; "" for anything else. */}}
{{- define "kubecost-integration.durationMs" -}}
{{- $d := toString . -}}
{{- if regexMatch "^([0-9]+(ms|s|m|h|d|w|y))+$" $d -}}
{{- $ms := 0 -}}
{{- $units := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 "w" 604800000 "y" 31536000000 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d|w|y)" $d -1 -}}
{{- $unit := regexFind "(ms|s|m|h|d|w|y)$" . -}}
{{- $n := trimSuffix $unit . | int64 -}}
{{- $ms = add $ms (mul $n (index $units $unit)) -}}
{{- end -}}
{{- $ms -}}
{{- end -}}
{{- end -}}
