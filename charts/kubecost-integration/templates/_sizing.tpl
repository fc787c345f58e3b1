{{/*
Sizing presets (`sizing.preset`): the entry of files/sizing.yaml, the one table of the presets (resources of the
exporter and the agent, the exporter's settings that grow with a cluster; docs/benchmarks.md names the measurement
each rests on).
*/}}
{{- define "kubecost-integration.sizing" -}}
{{- $presets := .Files.Get "files/sizing.yaml" | fromYaml -}}
{{- $name := .Values.sizing.preset | toString -}}
{{- if not (hasKey $presets $name) -}}
{{- fail (printf "sizing.preset: %q is not a preset; use one of: %s" $name (keys $presets | sortAlpha | join ", ")) -}}
{{- end -}}
{{- get $presets $name | toYaml -}}
{{- end -}}

{{/*
Resources of one container, (list . "exporter") or (list . "agent"): the preset's, with every key the user set in
`allocationExporter.resources` / `prometheus.agent.resources` over them (one limit can be raised alone), and a key
set to null left out (`--set allocationExporter.resources.limits.cpu=null` drops the CPU limit, as it did when the
defaults were in values.yaml).
*/}}
{{- define "kubecost-integration.resources" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $preset := include "kubecost-integration.sizing" $root | fromYaml -}}
{{- $user := $root.Values.allocationExporter.resources -}}
{{- if eq $component "agent" -}}
{{- $user = $root.Values.prometheus.agent.resources -}}
{{- end -}}
{{- $resources := (get $preset $component).resources | deepCopy -}}
{{- $resources = mergeOverwrite $resources ($user | default dict | deepCopy) -}}
{{- range $side, $given := $user | default dict -}}
{{- if kindIs "map" $given -}}
{{- range $name, $value := $given -}}
{{- if kindIs "invalid" $value -}}
{{- $_ := unset (get $resources $side) $name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $resources | toYaml -}}
{{- end -}}

{{/*
The preset's exporter environment (MAX_SERIES, MAX_ROWS above `small`) as EnvVar entries, leaving out a name that
`allocationExporter.extraEnv` sets (a duplicate env name is refused by server-side apply).
*/}}
{{- define "kubecost-integration.sizing.exporterEnv" -}}
{{- $preset := include "kubecost-integration.sizing" . | fromYaml -}}
{{- $extra := list -}}
{{- range .Values.allocationExporter.extraEnv -}}
{{- $extra = append $extra .name -}}
{{- end -}}
{{- range $name, $value := $preset.exporter.env | default dict -}}
{{- if not (has $name $extra) }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end -}}
{{- end -}}
{{- end -}}
