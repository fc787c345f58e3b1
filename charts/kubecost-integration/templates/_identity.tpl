{{/*
tenantId / clusterName as strings (numbers accepted); the argument is the root context. The top-level value wins;
`allocationExporter.config.<key>` (chart 0.1.0) is still read when the top-level one is empty, and an unset
clusterName is `global.clusterId` (Kubecost 3's cluster id), so the default engine's users give the name once. Both set to different
values is refused by the identity validation, so "wins" never hides a disagreement.
*/}}
{{- define "kubecost-integration.tenantId" -}}
{{- include "kubecost-integration.identity" (list . "tenantId") -}}
{{- end -}}

{{- define "kubecost-integration.clusterName" -}}
{{- include "kubecost-integration.identity" (list . "clusterName") -}}
{{- end -}}

{{- define "kubecost-integration.identity" -}}
{{- $top := include "kubecost-integration.identity.top" . -}}
{{- $value := ternary $top (include "kubecost-integration.identity.deprecated" .) (ne $top "") -}}
{{- if and (eq $value "") (eq (index . 1) "clusterName") -}}
{{- /* Kubecost 3 takes the name from global.clusterId only: given there alone, it names the cluster for us too */ -}}
{{- $value = include "kubecost-integration.str" (((index . 0).Values.global | default dict).clusterId | default "") -}}
{{- end -}}
{{- $value -}}
{{- end -}}

{{/* The top-level value and the deprecated `allocationExporter.config.<key>`, "" when unset. Argument: (list $ key). */}}
{{- define "kubecost-integration.identity.top" -}}
{{- $v := index (index . 0).Values (index . 1) -}}
{{- if not (kindIs "invalid" $v) -}}{{ include "kubecost-integration.str" $v }}{{- end -}}
{{- end -}}

{{- define "kubecost-integration.identity.deprecated" -}}
{{- $v := index ((index . 0).Values.allocationExporter.config | default dict) (index . 1) -}}
{{- if not (kindIs "invalid" $v) -}}{{ include "kubecost-integration.str" $v }}{{- end -}}
{{- end -}}

{{/*
One source of truth for labels, external_labels and the tenant header. Both values are checked before failing,
so a first install without either names both values to set. The deprecated path is refused only when it disagrees
with the top-level value (the same value in both places is the usual state in the middle of a migration).
*/}}
{{- define "kubecost-integration.identity.validate" -}}
{{- $label := "^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$" -}}
{{- $examples := dict "tenantId" "acme" "clusterName" "prod-eu-1" -}}
{{- $what := dict "tenantId" "your platform tenant" "clusterName" "this cluster's name" -}}
{{- $problems := list -}}
{{- range $key := list "tenantId" "clusterName" -}}
{{- $top := include "kubecost-integration.identity.top" (list $ $key) -}}
{{- $old := include "kubecost-integration.identity.deprecated" (list $ $key) -}}
{{- if and $top $old (ne $top $old) -}}
{{- include "kubecost-integration.fail" (list
  (printf "%s is set twice with different values: %s=%q and allocationExporter.config.%s=%q (deprecated)." $key $key $top $key $old)
  (printf "Keep only the top-level one, e.g.\n  %s: %s\nand remove allocationExporter.config.%s (UPGRADING.md)." $key $top $key)) -}}
{{- end -}}
{{- $value := include "kubecost-integration.identity" (list $ $key) -}}
{{- if not (regexMatch $label $value) -}}
{{- $problems = append $problems (list
  (printf "%s is %q; set it to %s (letters, digits, '.', '_', '-'; at most 63 characters), e.g." $key $value (index $what $key))
  (printf "  --set %s=%s%s" $key (index $examples $key) (ternary "   (Kubecost 3: --set global.clusterId=prod-eu-1 names it for both)" "" (and (eq $key "clusterName") (eq (include "kubecost-integration.engine" $) "kubecost")))) | join "\n") -}}
{{- end -}}
{{- end -}}
{{- if $problems -}}
{{- include "kubecost-integration.fail" (join "\nkubecost-integration: " $problems) -}}
{{- end -}}
{{- end -}}

{{/* The deprecated paths in use, for NOTES: "" when none. */}}
{{- define "kubecost-integration.identity.deprecatedKeys" -}}
{{- $used := list -}}
{{- range $key := list "tenantId" "clusterName" -}}
{{- if include "kubecost-integration.identity.deprecated" (list $ $key) -}}
{{- $used = append $used (printf "allocationExporter.config.%s" $key) -}}
{{- end -}}
{{- end -}}
{{- join ", " $used -}}
{{- end -}}
