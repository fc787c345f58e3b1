{{/* Prometheus settings: external labels, scrape timing, the agent's WAL and its secret mounts. */}}
{{- define "kubecost-integration.agent.validate" -}}
{{- $prom := .Values.prometheus -}}
{{- range $k, $_ := $prom.externalLabels -}}
{{- if has $k (list "cluster" "tenant_id") -}}
{{- include "kubecost-integration.fail" (printf
  "prometheus.externalLabels.%s is set from %s; remove it from prometheus.externalLabels."
  $k (ternary "clusterName" "tenantId" (eq $k "cluster"))) -}}
{{- end -}}
{{- if not (regexMatch "^[a-zA-Z_][a-zA-Z0-9_]*$" $k) -}}
{{- include "kubecost-integration.fail" (printf
  "prometheus.externalLabels: %q is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)." $k) -}}
{{- end -}}
{{- end -}}
{{- $interval := include "kubecost-integration.durationMs" $prom.scrapeInterval -}}
{{- $timeout := include "kubecost-integration.durationMs" $prom.scrapeTimeout -}}
{{- if or (not $interval) (not $timeout) -}}
{{- include "kubecost-integration.fail" "prometheus.scrapeInterval and prometheus.scrapeTimeout must be Prometheus durations such as 60s or 1m." -}}
{{- end -}}
{{- if gt (int64 $timeout) (int64 $interval) -}}
{{- include "kubecost-integration.fail" (printf
  "prometheus.scrapeTimeout (%s) is longer than prometheus.scrapeInterval (%s); set prometheus.scrapeTimeout to at most the interval."
  $prom.scrapeTimeout $prom.scrapeInterval) -}}
{{- end -}}
{{- $agent := $prom.agent -}}
{{- if and (eq $prom.mode "agent") $agent.persistence.enabled (not $agent.persistence.size) -}}
{{- include "kubecost-integration.fail" "prometheus.agent.persistence.enabled=true: set prometheus.agent.persistence.size (e.g. 2Gi)." -}}
{{- end -}}
{{- range $agent.extraArgs -}}
{{- if hasPrefix "--storage.agent.retention.max-time" . -}}
{{- include "kubecost-integration.fail" (printf
  "prometheus.agent.extraArgs has %q; set prometheus.agent.walRetention instead (the chart always passes %s, and the WAL alert is sized from it)."
  . "--storage.agent.retention.max-time") -}}
{{- end -}}
{{- end -}}
{{- $hidden := list
  (include "kubecost-integration.rw.authDir" .)
  (include "kubecost-integration.rw.tlsDir" .) -}}
{{- $mounts := dict -}}
{{- range $agent.extraSecretMounts -}}
{{- if hasKey $mounts .name -}}
{{- include "kubecost-integration.fail" (printf "prometheus.agent.extraSecretMounts: the name %q is used twice." .name) -}}
{{- end -}}
{{- $_ := set $mounts .name true -}}
{{- $path := .mountPath -}}
{{- $hides := or (eq $path "/prometheus") (hasPrefix "/prometheus/" $path) (eq (trimSuffix "/" $path) "/etc/prometheus") -}}
{{- range $hidden -}}
{{- $hides = or $hides (hasPrefix . $path) -}}
{{- end -}}
{{- if $hides -}}
{{- include "kubecost-integration.fail" (printf
  "prometheus.agent.extraSecretMounts[%s].mountPath %q would hide the agent's WAL, config or remote-write credentials; mount it elsewhere, e.g. /etc/prometheus/secrets/%s."
  .name $path .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
