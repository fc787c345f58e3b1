{{/* `external` mode: the remote_write for a prometheus-operator Prometheus resource (spec.remoteWrite), same
content as the agent's (rw.entry). Credentials stay in Secrets the operator reads. */}}
{{- define "kubecost-integration.external.operatorSnippet" -}}
{{- $rw := .Values.remoteWrite -}}
{{- $tls := $rw.tls -}}
remoteWrite:
  - name: {{ $rw.name | quote }}
    url: {{ tpl $rw.url . | quote }}
    remoteTimeout: {{ $rw.remoteTimeout | quote }}
    headers:
      {{- include "kubecost-integration.rw.headers" . | nindent 6 }}
    {{- if eq $rw.auth.type "bearer" }}
    authorization:
      type: Bearer
      credentials:
        name: {{ $rw.auth.existingSecret | quote }}
        key: {{ $rw.auth.tokenKey | quote }}
    {{- else if eq $rw.auth.type "basic" }}
    basicAuth:
      username:
        name: {{ $rw.auth.existingSecret | quote }}
        key: {{ default "username" $rw.auth.usernameKey | quote }}   # a Secret key holding {{ if $rw.auth.username }}{{ $rw.auth.username | quote }}{{ else }}the user name{{ end }}
      password:
        name: {{ $rw.auth.existingSecret | quote }}
        key: {{ $rw.auth.passwordKey | quote }}
    {{- end }}
    tlsConfig:
      insecureSkipVerify: {{ eq (toString $tls.insecureSkipVerify) "true" }}
      {{- with $tls.serverName }}
      serverName: {{ . | quote }}
      {{- end }}
      {{- if and $tls.existingSecret $tls.caKey }}
      ca:
        secret:
          name: {{ $tls.existingSecret | quote }}
          key: {{ $tls.caKey | quote }}
      {{- end }}
      {{- if and $tls.existingSecret $tls.certKey $tls.keyKey }}
      cert:
        secret:
          name: {{ $tls.existingSecret | quote }}
          key: {{ $tls.certKey | quote }}
      keySecret:
        name: {{ $tls.existingSecret | quote }}
        key: {{ $tls.keyKey | quote }}
      {{- end }}
    {{- with $rw.queueConfig }}
    queueConfig:
      {{- $camel := dict "capacity" "capacity" "max_shards" "maxShards" "min_shards" "minShards" "max_samples_per_send" "maxSamplesPerSend" "batch_send_deadline" "batchSendDeadline" "min_backoff" "minBackoff" "max_backoff" "maxBackoff" }}
      {{- range $k, $v := . }}
      {{ index $camel $k }}: {{ if kindIs "string" $v }}{{ $v | quote }}{{ else }}{{ $v | int64 }}{{ end }}
      {{- end }}
    {{- end }}
    writeRelabelConfigs:
      - sourceLabels: [__name__, job]
        regex: {{ include "kubecost-integration.rw.keepRegex" . | quote }}
        action: keep
{{- end -}}
