{{/* The exporter scrape job, shared by the agent and (as literal text) by Kubecost's Prometheus in kubecost mode.
static_configs to the exporter Service's DNS name: no Kubernetes service discovery, so no API token or RBAC. */}}
{{- define "kubecost-integration.scrapeJob" -}}
{{- $target := index . 1 -}}
{{- with index . 0 -}}
- job_name: kubecost-allocation-exporter
  honor_labels: true
  scrape_interval: {{ .Values.prometheus.scrapeInterval | quote }}
  scrape_timeout: {{ .Values.prometheus.scrapeTimeout | quote }}
  metrics_path: /metrics
  scheme: http
  static_configs:
    - targets:
        - {{ $target | squote }}
{{- end -}}
{{- end -}}

{{/* external_labels: cluster and tenant_id from the exporter config (one source of truth), plus extras. */}}
{{- define "kubecost-integration.externalLabels" -}}
{{- $labels := dict -}}
{{- range $k, $v := .Values.prometheus.externalLabels -}}
{{- $_ := set $labels $k (toString $v) -}}
{{- end -}}
{{- $_ := set $labels "cluster" (include "kubecost-integration.clusterName" .) -}}
{{- $_ := set $labels "tenant_id" (include "kubecost-integration.tenantId" .) -}}
{{- toYaml $labels -}}
{{- end -}}

{{/* prometheus.yml of the agent. Loads in Prometheus 3.x (--agent) and 2.42 (--enable-feature=agent). */}}
{{- define "kubecost-integration.agent.config" -}}
global:
  scrape_interval: {{ .Values.prometheus.scrapeInterval | quote }}
  scrape_timeout: {{ .Values.prometheus.scrapeTimeout | quote }}
  external_labels:
    {{- include "kubecost-integration.externalLabels" . | nindent 4 }}
scrape_configs:
  {{- include "kubecost-integration.scrapeJob" (list . (include "kubecost-integration.exporter.address" .)) | nindent 2 }}
    # The scraped data cannot choose its tenant: tenant_id is always the chart's value (Thanos Receive
    # also masks it with the THANOS-TENANT header's tenant; both come from tenantId).
    metric_relabel_configs:
      - action: replace
        target_label: tenant_id
        replacement: {{ include "kubecost-integration.tenantId" . | quote }}
  {{- with .Values.prometheus.agent.extraScrapeConfigs }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
remote_write:
  {{- include "kubecost-integration.rw.entry" . | nindent 2 }}
  {{- with include "kubecost-integration.rw.extraEntries" . }}
  {{- . | nindent 2 }}
  {{- end }}
{{- end -}}
