{{/*
The platform's remote_write entry (Prometheus syntax), one definition for every place it appears: the agent's
prometheus.yml, the subchart values printed for `kubecost` mode, and the snippet for `external` mode.
Only fields that Prometheus 2.42 and 3.x both accept are used (`username_file` only when asked for).
*/}}

{{/* Regex of metric names that may leave the cluster. */}}
{{- define "kubecost-integration.rw.keepRegex" -}}
{{- $names := list "cloudtuner_kubecost_.*" -}}
{{- range .Values.remoteWrite.extraMetricsAllowList -}}
{{- $names = append $names . -}}
{{- end -}}
{{- join "|" $names -}}
{{- end -}}

{{/* The tenant header and extra headers; the tenant header always comes from allocationExporter.config.tenantId. */}}
{{- define "kubecost-integration.rw.headers" -}}
{{- $headers := dict -}}
{{- range $k, $v := .Values.remoteWrite.headers -}}
{{- $_ := set $headers $k (toString $v) -}}
{{- end -}}
{{- $_ := set $headers .Values.remoteWrite.tenantHeader (toString .Values.allocationExporter.config.tenantId) -}}
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
    insecure_skip_verify: {{ $tls.insecureSkipVerify }}
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
    - source_labels: [__name__]
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
    secretName: {{ $auth.existingSecret }}
    defaultMode: 0440
    items:
      {{- if eq $auth.type "bearer" }}
      - key: {{ $auth.tokenKey }}
        path: {{ $auth.tokenKey }}
      {{- else }}
      {{- with $auth.usernameKey }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
      - key: {{ $auth.passwordKey }}
        path: {{ $auth.passwordKey }}
      {{- end }}
{{- end }}
{{- if include "kubecost-integration.rw.needsTlsSecret" . }}
- name: remote-write-tls
  secret:
    secretName: {{ $tls.existingSecret }}
    defaultMode: 0440
    items:
      {{- with $tls.caKey }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
      {{- if and $tls.certKey $tls.keyKey }}
      - key: {{ $tls.certKey }}
        path: {{ $tls.certKey }}
      - key: {{ $tls.keyKey }}
        path: {{ $tls.keyKey }}
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
