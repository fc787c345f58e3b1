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
        name: {{ $rw.auth.existingSecret }}
        key: {{ $rw.auth.tokenKey }}
    {{- else if eq $rw.auth.type "basic" }}
    basicAuth:
      username:
        name: {{ $rw.auth.existingSecret }}
        key: {{ default "username" $rw.auth.usernameKey }}   # a Secret key holding {{ default "the user name" $rw.auth.username }}
      password:
        name: {{ $rw.auth.existingSecret }}
        key: {{ $rw.auth.passwordKey }}
    {{- end }}
    tlsConfig:
      insecureSkipVerify: {{ $tls.insecureSkipVerify }}
      {{- with $tls.serverName }}
      serverName: {{ . | quote }}
      {{- end }}
      {{- if and $tls.existingSecret $tls.caKey }}
      ca:
        secret:
          name: {{ $tls.existingSecret }}
          key: {{ $tls.caKey }}
      {{- end }}
      {{- if and $tls.existingSecret $tls.certKey $tls.keyKey }}
      cert:
        secret:
          name: {{ $tls.existingSecret }}
          key: {{ $tls.certKey }}
      keySecret:
        name: {{ $tls.existingSecret }}
        key: {{ $tls.keyKey }}
      {{- end }}
    {{- with $rw.queueConfig }}
    queueConfig:
      {{- $camel := dict "capacity" "capacity" "max_shards" "maxShards" "min_shards" "minShards" "max_samples_per_send" "maxSamplesPerSend" "batch_send_deadline" "batchSendDeadline" "min_backoff" "minBackoff" "max_backoff" "maxBackoff" }}
      {{- range $k, $v := . }}
      {{ index $camel $k }}: {{ $v }}
      {{- end }}
    {{- end }}
    writeRelabelConfigs:
      - sourceLabels: [__name__]
        regex: {{ include "kubecost-integration.rw.keepRegex" . | quote }}
        action: keep
{{- end -}}
