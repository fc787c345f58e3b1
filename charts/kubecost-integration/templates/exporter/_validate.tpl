{{/* Where the Kubecost/OpenCost API is: an explicit http(s) URL without credentials, or one derived from the
enabled engine (engines/_engines.tpl). */}}
{{- define "kubecost-integration.exporter.validate" -}}
{{- $cfg := .Values.allocationExporter.config -}}
{{- $engine := include "kubecost-integration.engine" . -}}
{{- if not $cfg.kubecostUrl -}}
{{- if not $engine -}}
{{- include "kubecost-integration.fail" (include "kubecost-integration.exporter.msg.noUrl" .) -}}
{{- end -}}
{{- if not (include "kubecost-integration.engine.url" .) -}}
{{- include "kubecost-integration.fail" (list
  (printf "%s: the frontend that serves /model/allocation is switched off (cost-analyzer.kubecostFrontend.enabled or kubecost.frontend.enabled is false)." $engine)
  "Keep the frontend enabled, or set allocationExporter.config.kubecostUrl to the aggregator (Kubecost 3: http://<release>-aggregator.<namespace>.svc:9004).") -}}
{{- end -}}
{{- else -}}
{{- $url := tpl (toString $cfg.kubecostUrl) . -}}
{{- if not (regexMatch "^https?://[^/\\s]+(/\\S*)?$" $url) -}}
{{- include "kubecost-integration.fail" (printf
  "allocationExporter.config.kubecostUrl renders to %q; set it to an http(s) URL such as %s"
  $url "http://kubecost-frontend.kubecost.svc:9090") -}}
{{- end -}}
{{- include "kubecost-integration.validateNoUrlCredential" (dict
  "url" $url
  "where" "allocationExporter.config.kubecostUrl"
  "fix" "put the token or API key into a Secret and set allocationExporter.kubecostAuth (existingSecret, tokenKey or apiKeyKey): it is mounted as a file and sent as a header") -}}
{{- end -}}
{{- end -}}

{{- define "kubecost-integration.exporter.msg.noUrl" -}}
No cost engine is enabled (kubecost, cost-analyzer and opencost .enabled are all false), so the Kubecost/OpenCost
API URL cannot be derived. Set allocationExporter.config.kubecostUrl to your existing Kubecost or OpenCost, e.g.
  allocationExporter:
    config:
      kubecostUrl: http://kubecost-frontend.kubecost.svc:9090          # Kubecost 3.x
      # kubecostUrl: http://kubecost-cost-analyzer.kubecost.svc:9090 # Kubecost 2.x (frontend)
      # kubecostUrl: http://opencost.opencost.svc:9003              # OpenCost
{{- end -}}
