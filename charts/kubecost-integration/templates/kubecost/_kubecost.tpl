{{/*
`kubecost` mode: Kubecost 2.x's bundled Prometheus scrapes the exporter and remote-writes to Thanos.
Helm cannot pass this chart's computed values to a subchart, so the user sets them under `cost-analyzer:`; the
validation compares what is set with what is expected and, on any difference, fails printing the exact YAML below.

`prometheus.extraScrapeConfigs` is one string that REPLACES Kubecost's default, so it re-declares Kubecost's four
default jobs (as in cost-analyzer 2.x values.yaml: kubecost, kubecost-networking, kubecost-aggregator,
kubecost-dcgm-exporter) plus the exporter job. Kubecost renders it with `tpl` in its own context, which is why the
Kubecost service names stay template expressions here.
*/}}

{{- define "kubecost-integration.kubecost.defaultJobs" -}}
- job_name: kubecost
  honor_labels: true
  scrape_interval: 1m
  scrape_timeout: 60s
  metrics_path: /metrics
  scheme: http
  dns_sd_configs:
    - names:
        - {{ "{{ template \"cost-analyzer.serviceName\" . }}" }}
      type: A
      port: 9003
- job_name: kubecost-networking
  kubernetes_sd_configs:
    - role: pod
  relabel_configs:
    - source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_instance]
      action: keep
      regex: kubecost
    - source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_name]
      action: keep
      regex: network-costs
- job_name: kubecost-aggregator
  scrape_interval: 1m
  scrape_timeout: 60s
  metrics_path: /metrics
  scheme: http
  dns_sd_configs:
    - names:
        - {{ "{{ template \"aggregator.serviceName\" . }}" }}
      type: A
      port: {{ "{{ if or (.Values.saml).enabled (.Values.oidc).enabled }}9008{{ else }}9004{{ end }}" }}
- job_name: kubecost-dcgm-exporter
  kubernetes_sd_configs:
    - role: endpoints
  relabel_configs:
    - source_labels: [__meta_kubernetes_pod_label_app, __meta_kubernetes_pod_label_app_kubernetes_io_component, __meta_kubernetes_pod_label_app_kubernetes_io_name]
      action: keep
      regex: (?i)(.*dcgm-exporter.*|.*dcgm-exporter.*|.*dcgm-exporter.*)
{{- end -}}

{{- define "kubecost-integration.kubecost.extraScrapeConfigs" -}}
{{ include "kubecost-integration.kubecost.defaultJobs" . }}
{{ include "kubecost-integration.scrapeJob" (list . (include "kubecost-integration.exporter.addressExpr" .)) }}
{{- end -}}

{{- define "kubecost-integration.kubecost.secretMounts" -}}
{{- if include "kubecost-integration.rw.needsAuthSecret" . }}
- name: remote-write-auth
  mountPath: {{ include "kubecost-integration.rw.authDir" . }}
  secretName: {{ .Values.remoteWrite.auth.existingSecret | quote }}
  readOnly: true
  subPath: ""
{{- end }}
{{- if include "kubecost-integration.rw.needsTlsSecret" . }}
- name: remote-write-tls
  mountPath: {{ include "kubecost-integration.rw.tlsDir" . }}
  secretName: {{ .Values.remoteWrite.tls.existingSecret | quote }}
  readOnly: true
  subPath: ""
{{- end }}
{{- end -}}

{{/* The exact values block to add for `kubecost` mode. */}}
{{- define "kubecost-integration.kubecost.values" -}}
kubecost:
  enabled: false
cost-analyzer:
  enabled: true
  kubecostProductConfigs:
    clusterName: {{ include "kubecost-integration.clusterName" . | quote }}
  prometheus:
    configmapReload:
      prometheus:
        enabled: true
    server:
      global:
        external_labels:
          cluster_id: {{ include "kubecost-integration.clusterName" . | quote }}
      {{- with include "kubecost-integration.kubecost.secretMounts" . }}
      extraSecretMounts:
        {{- . | nindent 8 }}
      {{- end }}
      remoteWrite:
        {{- include "kubecost-integration.rw.entry" . | nindent 8 }}
    extraScrapeConfigs: |
      {{- include "kubecost-integration.kubecost.extraScrapeConfigs" . | nindent 6 }}
{{- end -}}
