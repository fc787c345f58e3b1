{{/*
The platform's remote_write entry (Prometheus syntax), one definition for every place it appears: the agent's
prometheus.yml, the subchart values printed for `kubecost` mode, and the snippet for `external` mode.
Only fields that Prometheus 2.42 and 3.x both accept are used (`username_file` only when asked for).
*/}}

{{/* Job names of the exporter's scrape: the job the agent and Kubecost's Prometheus use, and in `external` mode the
job a ServiceMonitor gives it (the exporter Service's name). */}}
{{- define "kubecost-integration.rw.exporterJobs" -}}
{{- $jobs := list "kubecost-allocation-exporter" -}}
{{- if eq .Values.prometheus.mode "external" -}}
{{- $jobs = append $jobs (include "kubecost-integration.exporter.fullname" .) -}}
{{- end -}}
{{- toJson $jobs -}}
{{- end -}}

{{/* Regex over `__name__;job` of the series that may leave the cluster: cloudtuner_kubecost_* only from the exporter's
own scrape job (any other target of the same Prometheus could expose series with that prefix), and the names of
remoteWrite.extraMetricsAllowList from any job. */}}
{{- define "kubecost-integration.rw.keepRegex" -}}
{{- $jobs := list -}}
{{- range include "kubecost-integration.rw.exporterJobs" . | fromJsonArray -}}
{{- $jobs = append $jobs (regexQuoteMeta .) -}}
{{- end -}}
{{- $keep := printf "cloudtuner_kubecost_.*;(%s)" (join "|" $jobs) -}}
{{- with .Values.remoteWrite.extraMetricsAllowList -}}
{{- $keep = printf "%s|(%s);.*" $keep (join "|" .) -}}
{{- end -}}
{{- $keep -}}
{{- end -}}

{{/* remoteWrite.extraRemoteWrite as rendered: each entry as given, with its url and proxy_url through tpl. Nothing else
goes through tpl: any other string of an entry is data, never a template. */}}
{{- define "kubecost-integration.rw.extraEntries" -}}
{{- $out := list -}}
{{- range .Values.remoteWrite.extraRemoteWrite -}}
{{- $entry := deepCopy . -}}
{{- range $key := list "url" "proxy_url" -}}
{{- if hasKey $entry $key -}}
{{- $_ := set $entry $key (tpl (toString (index $entry $key)) $) -}}
{{- end -}}
{{- end -}}
{{- $out = append $out $entry -}}
{{- end -}}
{{- if $out -}}
{{- toYaml $out -}}
{{- end -}}
{{- end -}}

{{/* The tenant header and extra headers; the tenant header always comes from tenantId. */}}
{{- define "kubecost-integration.rw.headers" -}}
{{- $headers := dict -}}
{{- range $k, $v := .Values.remoteWrite.headers -}}
{{- $_ := set $headers $k (toString $v) -}}
{{- end -}}
{{- $_ := set $headers .Values.remoteWrite.tenantHeader (include "kubecost-integration.tenantId" .) -}}
{{- toYaml $headers -}}
{{- end -}}

{{- define "kubecost-integration.rw.entry" -}}
{{- $rw := .Values.remoteWrite -}}
{{- $auth := $rw.auth -}}
{{- $tls := $rw.tls -}}
{{- $authDir := include "kubecost-integration.rw.authDir" . -}}
{{- $tlsDir := include "kubecost-integration.rw.tlsDir" . -}}
- name: {{ $rw.name | quote }}
  url: {{ tpl $rw.url . | quote }}
  remote_timeout: {{ $rw.remoteTimeout | quote }}
  headers:
    {{- include "kubecost-integration.rw.headers" . | nindent 4 }}
  {{- if eq $auth.type "bearer" }}
  authorization:
    type: Bearer
    credentials_file: {{ printf "%s/%s" $authDir $auth.tokenKey | quote }}
  {{- else if eq $auth.type "basic" }}
  basic_auth:
    {{- if $auth.usernameKey }}
    username_file: {{ printf "%s/%s" $authDir $auth.usernameKey | quote }}
    {{- else }}
    username: {{ $auth.username | quote }}
    {{- end }}
    password_file: {{ printf "%s/%s" $authDir $auth.passwordKey | quote }}
  {{- end }}
  tls_config:
    insecure_skip_verify: {{ eq (toString $tls.insecureSkipVerify) "true" }}
    {{- with $tls.serverName }}
    server_name: {{ . | quote }}
    {{- end }}
    {{- if and $tls.existingSecret $tls.caKey }}
    ca_file: {{ printf "%s/%s" $tlsDir $tls.caKey | quote }}
    {{- end }}
    {{- if and $tls.existingSecret $tls.certKey $tls.keyKey }}
    cert_file: {{ printf "%s/%s" $tlsDir $tls.certKey | quote }}
    key_file: {{ printf "%s/%s" $tlsDir $tls.keyKey | quote }}
    {{- end }}
  {{- with $rw.queueConfig }}
  queue_config:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  write_relabel_configs:
    - source_labels: [__name__, job]
      regex: {{ include "kubecost-integration.rw.keepRegex" . | quote }}
      action: keep
{{- end -}}

{{/* Does the remote write need files from Secrets? */}}
{{- define "kubecost-integration.rw.needsAuthSecret" -}}
{{- if and (has .Values.remoteWrite.auth.type (list "bearer" "basic")) .Values.remoteWrite.auth.existingSecret -}}true{{- end -}}
{{- end -}}
{{- define "kubecost-integration.rw.needsTlsSecret" -}}
{{- $tls := .Values.remoteWrite.tls -}}
{{- if and $tls.existingSecret (or $tls.caKey (and $tls.certKey $tls.keyKey)) -}}true{{- end -}}
{{- end -}}

{{/* Volumes (pod spec) holding the remote-write Secrets; only the keys that are used are projected. */}}
{{- define "kubecost-integration.rw.volumes" -}}
{{- $auth := .Values.remoteWrite.auth -}}
{{- $tls := .Values.remoteWrite.tls -}}
{{- if include "kubecost-integration.rw.needsAuthSecret" . }}
- name: remote-write-auth
  secret:
    secretName: {{ $auth.existingSecret | quote }}
    defaultMode: 0440
    items:
      {{- if eq $auth.type "bearer" }}
      - key: {{ $auth.tokenKey | quote }}
        path: {{ $auth.tokenKey | quote }}
      {{- else }}
      {{- with $auth.usernameKey }}
      - key: {{ . | quote }}
        path: {{ . | quote }}
      {{- end }}
      - key: {{ $auth.passwordKey | quote }}
        path: {{ $auth.passwordKey | quote }}
      {{- end }}
{{- end }}
{{- if include "kubecost-integration.rw.needsTlsSecret" . }}
- name: remote-write-tls
  secret:
    secretName: {{ $tls.existingSecret | quote }}
    defaultMode: 0440
    items:
      {{- with $tls.caKey }}
      - key: {{ . | quote }}
        path: {{ . | quote }}
      {{- end }}
      {{- if and $tls.certKey $tls.keyKey }}
      - key: {{ $tls.certKey | quote }}
        path: {{ $tls.certKey | quote }}
      - key: {{ $tls.keyKey | quote }}
        path: {{ $tls.keyKey | quote }}
      {{- end }}
{{- end }}
{{- end -}}

{{- define "kubecost-integration.rw.volumeMounts" -}}
{{- if include "kubecost-integration.rw.needsAuthSecret" . }}
- name: remote-write-auth
  mountPath: {{ include "kubecost-integration.rw.authDir" . }}
  readOnly: true
{{- end }}
{{- if include "kubecost-integration.rw.needsTlsSecret" . }}
- name: remote-write-tls
  mountPath: {{ include "kubecost-integration.rw.tlsDir" . }}
  readOnly: true
{{- end }}
{{- end -}}
