{{/*
NetworkPolicy building blocks (networkPolicy.*). Every pod the chart renders is selected by exactly one policy:
the exporter, the agent (agent mode) and the helm test pod (only when egress is restricted). The peers and ports
of the Kubecost API and the remote-write endpoints are derived from their URLs unless set explicitly; the
derivation rules are written once here and used by both the policies and the validations.
*/}}

{{/* Is egress restricted? */}}
{{- define "kubecost-integration.np.egress" -}}
{{- if and .Values.networkPolicy.enabled .Values.networkPolicy.egress.enabled -}}true{{- end -}}
{{- end -}}

{{/* policyTypes of a policy. */}}
{{- define "kubecost-integration.np.policyTypes" -}}
{{- if include "kubecost-integration.np.egress" . -}}
["Ingress", "Egress"]
{{- else -}}
["Ingress"]
{{- end -}}
{{- end -}}

{{/*
Where a URL points, as YAML {hostname, port, to}. Argument: dict "url" "namespace".
  port: the URL's port, else 443 (https) / 80 (http);
  to:   `<service>.<namespace>.svc[.<cluster domain>]` -> every pod of that namespace; a name without dots
        (`<service>`) -> every pod of the release namespace; an IP literal -> that address (/32, /128);
        anything else (a DNS name outside the cluster) -> [] (not derivable).
The port is the one in the URL, i.e. the Service port: NetworkPolicies see the pod's port after the Service's
translation, so a Service whose targetPort differs needs its ports set explicitly.
*/}}
{{- define "kubecost-integration.np.endpoint" -}}
{{- $u := urlParse (toString .url) -}}
{{- $hostname := lower (toString $u.hostname) -}}
{{- $port := regexFind ":[0-9]+$" (toString $u.host) | trimPrefix ":" -}}
{{- if not $port -}}
{{- $port = ternary "443" "80" (eq (lower (toString $u.scheme)) "https") -}}
{{- end -}}
{{- $label := "[a-z0-9]([-a-z0-9]*[a-z0-9])?" -}}
{{- $svcRe := printf "^%s\\.(%s)\\.svc(\\.[-a-z0-9.]*)?$" $label $label -}}
{{- $to := list -}}
{{- if regexMatch "^[0-9]{1,3}(\\.[0-9]{1,3}){3}$" $hostname -}}
{{- $to = list (dict "ipBlock" (dict "cidr" (printf "%s/32" $hostname))) -}}
{{- else if contains ":" $hostname -}}
{{- $to = list (dict "ipBlock" (dict "cidr" (printf "%s/128" $hostname))) -}}
{{- else if regexMatch $svcRe $hostname -}}
{{- $ns := regexReplaceAll $svcRe $hostname "${2}" -}}
{{- $to = list (dict "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" $ns))) -}}
{{- else if regexMatch (printf "^%s$" $label) $hostname -}}
{{- $to = list (dict "podSelector" dict) -}}
{{- end -}}
{{- toYaml (dict "hostname" $hostname "port" (int $port) "to" $to) -}}
{{- end -}}

{{/*
The exporter's egress rule to the Kubecost/OpenCost API as YAML {to, ports, derivable, hostname}. Explicit
networkPolicy.egress.kubecost.to/ports win. Derived: the enabled engine (no kubecostUrl) -> the pods behind its API
Service and their targetPort (engine.endpoint); an explicit URL -> np.endpoint.
*/}}
{{- define "kubecost-integration.np.kubecostRule" -}}
{{- $np := .Values.networkPolicy.egress.kubecost -}}
{{- $to := list -}}
{{- $port := 0 -}}
{{- $hostname := "" -}}
{{- if .Values.allocationExporter.config.kubecostUrl -}}
{{- $ep := include "kubecost-integration.np.endpoint" (dict "url" (include "kubecost-integration.kubecostUrl" .) "namespace" .Release.Namespace) | fromYaml -}}
{{- $to = $ep.to -}}
{{- $port = $ep.port -}}
{{- $hostname = $ep.hostname -}}
{{- else -}}
{{- with include "kubecost-integration.engine.endpoint" . | fromYaml -}}
{{- $peer := dict "podSelector" (dict "matchLabels" .selector) -}}
{{- if ne .namespace $.Release.Namespace -}}
{{- $_ := set $peer "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" .namespace)) -}}
{{- end -}}
{{- $to = list $peer -}}
{{- $port = .targetPort -}}
{{- end -}}
{{- end -}}
{{- $ports := list (dict "port" $port "protocol" "TCP") -}}
{{- with $np.ports -}}
{{- $ports = . -}}
{{- end -}}
{{- with $np.to -}}
{{- $to = . -}}
{{- end -}}
{{- toYaml (dict "to" $to "ports" $ports "hostname" $hostname) -}}
{{- end -}}

{{/* Peers of a remote-write endpoint when not set explicitly: np.endpoint, and for a host outside the cluster
any address (0.0.0.0/0, ::/0) except networkPolicy.egress.clusterCIDRs. Argument: dict "url" "root". */}}
{{- define "kubecost-integration.np.remoteWriteRule" -}}
{{- $root := .root -}}
{{- $ep := include "kubecost-integration.np.endpoint" (dict "url" .url "namespace" $root.Release.Namespace) | fromYaml -}}
{{- $to := $ep.to -}}
{{- if not $to -}}
{{- $v4 := list -}}
{{- $v6 := list -}}
{{- range $root.Values.networkPolicy.egress.clusterCIDRs -}}
{{- if contains ":" . -}}
{{- $v6 = append $v6 . -}}
{{- else -}}
{{- $v4 = append $v4 . -}}
{{- end -}}
{{- end -}}
{{- $any4 := dict "cidr" "0.0.0.0/0" -}}
{{- if $v4 }}{{ $_ := set $any4 "except" $v4 }}{{ end -}}
{{- $any6 := dict "cidr" "::/0" -}}
{{- if $v6 }}{{ $_ := set $any6 "except" $v6 }}{{ end -}}
{{- $to = list (dict "ipBlock" $any4) (dict "ipBlock" $any6) -}}
{{- end -}}
{{- toYaml (dict "to" $to "ports" (list (dict "port" $ep.port "protocol" "TCP"))) -}}
{{- end -}}

{{/* The agent's egress rules to every remote-write endpoint: the platform's Thanos Receive (remoteWrite.url;
networkPolicy.egress.thanos.to/ports win) and each remoteWrite.extraRemoteWrite entry (its proxy_url when set). */}}
{{- define "kubecost-integration.np.remoteWriteRules" -}}
{{- $np := .Values.networkPolicy.egress.thanos -}}
{{- $rules := list -}}
{{- $platform := include "kubecost-integration.np.remoteWriteRule" (dict "url" (tpl (toString .Values.remoteWrite.url) .) "root" .) | fromYaml -}}
{{- with $np.to }}{{ $_ := set $platform "to" . }}{{ end -}}
{{- with $np.ports }}{{ $_ := set $platform "ports" . }}{{ end -}}
{{- $rules = append $rules $platform -}}
{{- range include "kubecost-integration.rw.extraEntries" . | fromYamlArray -}}
{{- $url := .proxy_url | default .url -}}
{{- $rules = append $rules (include "kubecost-integration.np.remoteWriteRule" (dict "url" $url "root" $) | fromYaml) -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}

{{/* DNS egress rule; with an empty networkPolicy.egress.dns.to, any destination on the DNS ports. */}}
{{- define "kubecost-integration.np.dnsRule" -}}
{{- $dns := .Values.networkPolicy.egress.dns -}}
- ports:
    {{- toYaml $dns.ports | nindent 4 }}
  {{- with $dns.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* Egress rule to the exporter pods on the metrics port (agent, helm test pod). */}}
{{- define "kubecost-integration.np.toExporterRule" -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "kubecost-integration.selectorLabels" (list . "allocation-exporter") | nindent 10 }}
  ports:
    - port: {{ int .Values.allocationExporter.port }}
      protocol: TCP
{{- end -}}

{{/* Policies that would cut a needed path: the scraper in external mode, an underivable Kubecost API peer. */}}
{{- define "kubecost-integration.np.validate" -}}
{{- if and .Values.networkPolicy.enabled (eq .Values.prometheus.mode "external") (not .Values.networkPolicy.extraIngressFrom) -}}
{{- include "kubecost-integration.fail" (include "kubecost-integration.np.msg.externalIngress" .) -}}
{{- end -}}
{{- if include "kubecost-integration.np.egress" . -}}
{{- $kc := include "kubecost-integration.np.kubecostRule" . | fromYaml -}}
{{- if not $kc.to -}}
{{- include "kubecost-integration.fail" (include "kubecost-integration.np.msg.kubecostPeer" $kc) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kubecost-integration.np.msg.externalIngress" -}}
networkPolicy.enabled=true in external mode would block your Prometheus;
set networkPolicy.extraIngressFrom to its peers, e.g.
  networkPolicy:
    extraIngressFrom:
      - namespaceSelector:
          matchLabels:
            kubernetes.io/metadata.name: monitoring
{{- end -}}

{{/* Argument: the derived Kubecost rule (hostname, to). */}}
{{- define "kubecost-integration.np.msg.kubecostPeer" -}}
networkPolicy.egress: the exporter's egress to the Kubecost/OpenCost API cannot be derived from
allocationExporter.config.kubecostUrl (host {{ .hostname | quote }} is neither <service>.<namespace>.svc[.cluster.local],
a bare <service> nor an IP address; write an in-cluster API as http://<service>.<namespace>.svc:<port>).
Set networkPolicy.egress.kubecost.to to the API's peers (and networkPolicy.egress.kubecost.ports if its pods
listen on another port than the URL's), e.g.
  networkPolicy:
    egress:
      kubecost:
        to:
          - ipBlock:
              cidr: 10.0.0.0/24   # the addresses {{ .hostname }} resolves to
          # or an in-cluster namespace:
          # - namespaceSelector:
          #     matchLabels:
          #       kubernetes.io/metadata.name: kubecost
or set networkPolicy.egress.enabled=false to restrict ingress only.
{{- end -}}
