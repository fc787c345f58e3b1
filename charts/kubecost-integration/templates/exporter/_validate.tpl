{{/* Where the Kubecost/OpenCost API is: an explicit http(s) URL without credentials, or one derived from the
bundled Kubecost. */}}
{{- define "kubecost-integration.exporter.validate" -}}
{{- $cfg := .Values.allocationExporter.config -}}
{{- $ca := index .Values "cost-analyzer" | default dict -}}
{{- if not $cfg.kubecostUrl -}}
{{- if not $ca.enabled -}}
{{- include "kubecost-integration.fail" (include "kubecost-integration.exporter.msg.noUrl" .) -}}
{{- end -}}
{{- if eq (toString ($ca.kubecostFrontend | default dict).enabled) "false" -}}
{{- include "kubecost-integration.fail" (list
  "cost-analyzer.kubecostFrontend.enabled=false: the frontend port (9090) that serves /model/allocation is not exposed."
  "Set allocationExporter.config.kubecostUrl explicitly, or keep cost-analyzer.kubecostFrontend.enabled=true.") -}}
{{- end -}}
{{- else -}}
{{- $url := tpl (toString $cfg.kubecostUrl) . -}}
{{- if not (regexMatch "^https?://[^/\\s]+(/\\S*)?$" $url) -}}
{{- include "kubecost-integration.fail" (printf
  "allocationExporter.config.kubecostUrl renders to %q; set it to an http(s) URL such as %s"
  $url "http://kubecost-cost-analyzer.kubecost.svc:9090") -}}
{{- end -}}
{{- include "kubecost-integration.validateNoUrlCredential" (dict
  "url" $url
  "where" "allocationExporter.config.kubecostUrl"
  "fix" "put the token or API key into a Secret and set allocationExporter.kubecostAuth (existingSecret, tokenKey or apiKeyKey): it is mounted as a file and sent as a header") -}}
{{- end -}}
{{- end -}}

{{- define "kubecost-integration.exporter.msg.noUrl" -}}
cost-analyzer.enabled=false, so the Kubecost/OpenCost API URL cannot be derived.
Set allocationExporter.config.kubecostUrl to your existing Kubecost or OpenCost, e.g.
  allocationExporter:
    config:
      kubecostUrl: http://kubecost-cost-analyzer.kubecost.svc:9090   # Kubecost 2.x (frontend)
      # kubecostUrl: http://kubecost-frontend.kubecost.svc:9090      # Kubecost 3.x
      # kubecostUrl: http://opencost.opencost.svc:9003               # OpenCost
{{- end -}}
