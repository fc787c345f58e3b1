{{- define "kubecost-integration.agent.pvcSpec" -}}
{{- $p := .Values.prometheus.agent.persistence -}}
accessModes:
  {{- toYaml $p.accessModes | nindent 2 }}
{{- with $p.storageClassName }}
storageClassName: {{ . | quote }}
{{- end }}
resources:
  requests:
    storage: {{ $p.size | quote }}
{{- end -}}

{{/* Pod template of the agent, shared by the Deployment and the StatefulSet. */}}
{{- define "kubecost-integration.agent.podTemplate" -}}
{{- $agent := .Values.prometheus.agent -}}
metadata:
  labels:
    {{- include "kubecost-integration.selectorLabels" (list . "agent") | nindent 4 }}
    {{- with $agent.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # Rolls the agent when its rendered config changes (no reloader sidecar, no --web.enable-lifecycle).
    checksum/config: {{ include "kubecost-integration.agent.config" . | sha256sum }}
    {{- with $agent.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "kubecost-integration.agent.serviceAccountName" . | quote }}
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $agent.priorityClassName }}
  priorityClassName: {{ . | quote }}
  {{- end }}
  terminationGracePeriodSeconds: 60
  securityContext:
    {{- toYaml $agent.podSecurityContext | nindent 4 }}
  containers:
    - name: prometheus
      image: {{ include "kubecost-integration.agent.image" . | quote }}
      imagePullPolicy: {{ $agent.image.pullPolicy | quote }}
      args:
        - {{ include "kubecost-integration.agent.flag" . }}
        - --config.file=/etc/prometheus/prometheus.yml
        - --storage.agent.path=/prometheus
        # Samples older than this are dropped at the next WAL truncation (every 2h) even when unsent: it bounds
        # the WAL during a long Thanos outage, so the volume (walSizeLimit / persistence.size) cannot fill.
        - {{ printf "--storage.agent.retention.max-time=%s" $agent.walRetention | quote }}
        - --web.listen-address=:9090
        - {{ printf "--log.level=%s" $agent.logLevel | quote }}
        {{- with $agent.extraArgs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: 9090
          protocol: TCP
      readinessProbe:
        httpGet:
          path: /-/ready
          port: http
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 6
      livenessProbe:
        httpGet:
          path: /-/healthy
          port: http
        initialDelaySeconds: 30
        periodSeconds: 30
        timeoutSeconds: 5
        failureThreshold: 4
      resources:
        {{- include "kubecost-integration.resources" (list . "agent") | nindent 8 }}
      securityContext:
        {{- toYaml $agent.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/prometheus
          readOnly: true
        - name: wal
          mountPath: /prometheus
        {{- with include "kubecost-integration.rw.volumeMounts" . }}
        {{- . | trim | nindent 8 }}
        {{- end }}
        {{- range $agent.extraSecretMounts }}
        - name: {{ printf "extra-secret-%s" .name | quote }}
          mountPath: {{ .mountPath | quote }}
          readOnly: true
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "kubecost-integration.agent.fullname" . }}
    {{- if not $agent.persistence.enabled }}
    - name: wal
      emptyDir:
        sizeLimit: {{ $agent.walSizeLimit | quote }}
    {{- else if eq $agent.kind "Deployment" }}
    - name: wal
      persistentVolumeClaim:
        claimName: {{ include "kubecost-integration.agent.fullname" . }}-wal
    {{- end }}
    {{- with include "kubecost-integration.rw.volumes" . }}
    {{- . | trim | nindent 4 }}
    {{- end }}
    {{- range $agent.extraSecretMounts }}
    - name: {{ printf "extra-secret-%s" .name | quote }}
      secret:
        secretName: {{ .secretName | quote }}
        defaultMode: 0440
    {{- end }}
  {{- with $agent.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $agent.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $agent.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
