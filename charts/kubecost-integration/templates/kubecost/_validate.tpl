{{/* prometheus.mode=kubecost: Kubecost 2.x's bundled Prometheus must carry exactly our scrape job and remote_write.
Helm cannot pass this chart's computed values to a subchart, so the fix is always the block
kubecost-integration.kubecost.values prints. */}}
{{- define "kubecost-integration.kubecost.validate" -}}
{{- $ca := index .Values "cost-analyzer" | default dict -}}
{{- $global := $ca.global | default dict -}}
{{- if not $ca.enabled -}}
{{- include "kubecost-integration.fail" (list
  "prometheus.mode=kubecost uses the Prometheus bundled with the Kubecost 2.x engine, but cost-analyzer.enabled=false"
  "(Kubecost 3 has no Prometheus). Set kubecost.enabled=false and cost-analyzer.enabled=true, or use"
  "prometheus.mode=agent (default).") -}}
{{- end -}}
{{- if eq (toString ($global.prometheus | default dict).enabled) "false" -}}
{{- include "kubecost-integration.fail" (list
  "prometheus.mode=kubecost needs Kubecost's bundled Prometheus, but cost-analyzer.global.prometheus.enabled=false."
  "Set cost-analyzer.global.prometheus.enabled=true, or use prometheus.mode=agent (default).") -}}
{{- end -}}
{{- if or (($global.amp | default dict).enabled) (($global.ammsp | default dict).enabled) -}}
{{- include "kubecost-integration.fail" (list
  "prometheus.mode=kubecost cannot be combined with cost-analyzer.global.amp/ammsp (Kubecost would emit two remote_write sections)."
  "Set cost-analyzer.global.amp.enabled=false and cost-analyzer.global.ammsp.enabled=false, or use prometheus.mode=agent.") -}}
{{- end -}}
{{- $problems := concat
  (include "kubecost-integration.kubecost.remoteWriteProblems" . | fromJsonArray)
  (include "kubecost-integration.kubecost.scrapeProblems" . | fromJsonArray) -}}
{{- if $problems -}}
{{- include "kubecost-integration.fail" (include "kubecost-integration.kubecost.msg.notWired" (dict "problems" $problems "root" .)) -}}
{{- end -}}
{{- end -}}

{{/* remote_write and identity: the entry named like ours must equal ours (tenant header, URL, relabel, auth, TLS,
queue), the cluster_id external label must be clusterName. A JSON list of problems. */}}
{{- define "kubecost-integration.kubecost.remoteWriteProblems" -}}
{{- $server := ((index .Values "cost-analyzer").prometheus | default dict).server | default dict -}}
{{- $problems := list -}}
{{- $expected := include "kubecost-integration.rw.entry" . | fromYamlArray | first -}}
{{- $actual := dict -}}
{{- if kindIs "slice" $server.remoteWrite -}}
{{- range $server.remoteWrite -}}
{{- if and (kindIs "map" .) (eq (toString .name) (toString $expected.name)) -}}
{{- $actual = . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $tenant := include "kubecost-integration.tenantId" . -}}
{{- $cluster := include "kubecost-integration.clusterName" . -}}
{{- if not $actual -}}
{{- $problems = append $problems (printf "cost-analyzer.prometheus.server.remoteWrite has no entry named %q" $expected.name) -}}
{{- else if ne (toJson $actual) (toJson $expected) -}}
{{- $header := .Values.remoteWrite.tenantHeader -}}
{{- $actualTenant := index ($actual.headers | default dict) $header | default "<none>" -}}
{{- $problems = append $problems (printf
  "cost-analyzer.prometheus.server.remoteWrite[%s] differs from this chart's remote_write (its %s header is %q, tenantId is %q; URL, relabelling, auth, TLS and queue must match too)"
  $expected.name $header (toString $actualTenant) $tenant) -}}
{{- end -}}
{{- $clusterId := (($server.global | default dict).external_labels | default dict).cluster_id -}}
{{- if ne (toString $clusterId) $cluster -}}
{{- $problems = append $problems (printf
  "cost-analyzer.prometheus.server.global.external_labels.cluster_id is %q, clusterName is %q" (toString $clusterId) $cluster) -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Scrape configs (Kubecost's four default jobs plus ours: the string replaces Kubecost's default) and config
reload. A JSON list of problems. */}}
{{- define "kubecost-integration.kubecost.scrapeProblems" -}}
{{- $prom := (index .Values "cost-analyzer").prometheus | default dict -}}
{{- $problems := list -}}
{{- $scrape := toString $prom.extraScrapeConfigs -}}
{{- range list "kubecost" "kubecost-networking" "kubecost-aggregator" "kubecost-dcgm-exporter" "kubecost-allocation-exporter" -}}
{{- if not (regexMatch (printf "(?m)^\\s*-?\\s*job_name:\\s*[\"']?%s[\"']?\\s*$" .) $scrape) -}}
{{- $problems = append $problems (printf "cost-analyzer.prometheus.extraScrapeConfigs lacks the job %q" .) -}}
{{- end -}}
{{- end -}}
{{- $target := include "kubecost-integration.exporter.address" . -}}
{{- $targetExpr := include "kubecost-integration.exporter.addressExpr" . -}}
{{- $hasOurJob := regexMatch "job_name:\\s*[\"']?kubecost-allocation-exporter" $scrape -}}
{{- if and $hasOurJob (not (contains $target $scrape)) (not (contains $targetExpr $scrape)) -}}
{{- $problems = append $problems (printf
  "the kubecost-allocation-exporter job in cost-analyzer.prometheus.extraScrapeConfigs does not target %s" $target) -}}
{{- end -}}
{{- if not (((($prom.configmapReload | default dict).prometheus) | default dict).enabled) -}}
{{- $problems = append $problems "cost-analyzer.prometheus.configmapReload.prometheus.enabled is not true (Kubecost would not reload a changed scrape/remote_write config)" -}}
{{- end -}}
{{- toJson $problems -}}
{{- end -}}

{{/* Argument: dict "problems" "root". */}}
{{- define "kubecost-integration.kubecost.msg.notWired" -}}
prometheus.mode=kubecost: Kubecost's bundled Prometheus is not wired to this chart:
  - {{ join "\n  - " .problems }}

Helm cannot pass this chart's computed values to the Kubecost subchart, so add exactly this to your values
(it is computed from tenantId, clusterName, remoteWrite and prometheus.scrape*; re-run after changing them):

{{ include "kubecost-integration.kubecost.values" .root }}
{{ end -}}
