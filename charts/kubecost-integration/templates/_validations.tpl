{{/*
Cross-field rules that values.schema.json cannot express. Every message names the value to set and, where it
helps, prints the exact YAML to add. Rendered by templates/validations.yaml before anything else matters:
bad input fails the whole render, it never produces a half-right manifest.
*/}}

{{- define "kubecost-integration.fail" -}}
{{- fail (printf "\n\nkubecost-integration: %s\n" .) -}}
{{- end -}}

{{/* Prometheus duration ("1m30s", "500ms", "2h") in milliseconds; "" for anything else. */}}
{{- define "kubecost-integration.durationMs" -}}
{{- $d := toString . -}}
{{- if regexMatch "^([0-9]+(ms|s|m|h|d|w|y))+$" $d -}}
{{- $ms := 0 -}}
{{- $units := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 "w" 604800000 "y" 31536000000 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d|w|y)" $d -1 -}}
{{- $unit := regexFind "(ms|s|m|h|d|w|y)$" . -}}
{{- $n := trimSuffix $unit . | int64 -}}
{{- $ms = add $ms (mul $n (index $units $unit)) -}}
{{- end -}}
{{- $ms -}}
{{- end -}}
{{- end -}}

{{/* Prometheus' reserved remote_write header names (config.go `reservedHeaders`, plus Authorization, refused with its
own message, and the hop-by-hop headers Go's HTTP client manages), lower case, as a JSON list. A header named like
one of these makes the agent refuse its configuration at start. */}}
{{- define "kubecost-integration.rw.reservedHeaders" -}}
{{- list "authorization" "host" "content-encoding" "content-length" "content-type" "user-agent" "connection" "keep-alive" "proxy-authenticate" "proxy-authorization" "www-authenticate" "accept-encoding" "x-prometheus-remote-write-version" "x-prometheus-remote-read-version" "x-amz-date" "x-amz-security-token" "x-amz-content-sha256" "transfer-encoding" "upgrade" "te" "trailer" | toJson -}}
{{- end -}}

{{/*
Rules for one set of remote_write headers. Argument: dict "headers" "where" (the value path, for messages) "platform"
(true for remoteWrite.headers, the platform queue) "root". Each message names its rule:
  header name     an HTTP token (RFC 9110): letters, digits and !#$%&'*+.^_`|~-
  header value    no CR, LF or other control character (Go's HTTP client refuses them when it sends)
  reserved        Prometheus sets it itself and refuses it in remote_write (agent start fails)
  credential      Authorization would put a credential into the ConfigMap: remoteWrite.auth / *_file instead
  tenant          the tenant comes only from allocationExporter.config.tenantId: the configured tenant header never
                  in remoteWrite.headers; THANOS-TENANT, X-Scope-OrgID (Cortex, Mimir) or the configured one elsewhere
                  only with remoteWrite.allowTenantHeaderOverride=true
*/}}
{{- define "kubecost-integration.validateHeaders" -}}
{{- $root := .root -}}
{{- $rw := $root.Values.remoteWrite -}}
{{- $where := .where -}}
{{- $platform := .platform -}}
{{- $reserved := include "kubecost-integration.rw.reservedHeaders" $root | fromJsonArray -}}
{{- $tenantHeaders := list (lower $rw.tenantHeader) "thanos-tenant" "x-scope-orgid" -}}
{{- range $k, $v := .headers -}}
{{- $name := lower (toString $k) -}}
{{- if not (regexMatch "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$" (toString $k)) -}}
{{- include "kubecost-integration.fail" (printf "%s: %q is not a valid HTTP header name (rule: header name, an HTTP token of letters, digits and !#$%%&'*+.^_`|~-)." $where (toString $k)) -}}
{{- end -}}
{{- if not (kindIs "string" $v) -}}
{{- include "kubecost-integration.fail" (printf "%s.%s must be a string (rule: header value); quote it." $where $k) -}}
{{- end -}}
{{- if regexMatch "[\\x00-\\x08\\x0a-\\x1f\\x7f]" $v -}}
{{- include "kubecost-integration.fail" (printf "%s.%s contains a line break or another control character (rule: header value, no CR, LF or control characters; Prometheus would fail on every send); remove it." $where $k) -}}
{{- end -}}
{{- if eq $name "authorization" -}}
{{- include "kubecost-integration.fail" (printf "%s.Authorization would put a credential into a ConfigMap (rule: credentials only from Secrets; Prometheus also reserves this header); remove it and set remoteWrite.auth with an existing Secret instead:\n  remoteWrite:\n    auth:\n      type: bearer\n      existingSecret: <secret name>\n      tokenKey: token" $where) -}}
{{- end -}}
{{- if has $name $reserved -}}
{{- include "kubecost-integration.fail" (printf "%s.%s is a header Prometheus sets itself and refuses in remote_write (rule: reserved header; the agent would not start); remove it." $where $k) -}}
{{- end -}}
{{- if and $platform (eq $name (lower $rw.tenantHeader)) -}}
{{- include "kubecost-integration.fail" (printf "%s.%s would override the tenant header (rule: tenant header); remove it and set allocationExporter.config.tenantId instead (it feeds the header, the exporter's tenant_id label and external_labels)." $where $k) -}}
{{- end -}}
{{- if and (has $name $tenantHeaders) (not $rw.allowTenantHeaderOverride) -}}
{{- include "kubecost-integration.fail" (printf "%s.%s is a tenant header (rule: tenant header, the tenant comes only from allocationExporter.config.tenantId): it could send this cluster's costs to another tenant. Remove it; if this endpoint really needs its own tenant, set remoteWrite.allowTenantHeaderOverride=true (chart README, \"Tenant header\")." $where $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A URL must not carry a credential (rule: credentials only from Secrets): no user:password@, no credential-like
query parameter. Argument: dict "url" "where" "fix". */}}
{{- define "kubecost-integration.validateNoUrlCredential" -}}
{{- if regexMatch "^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@" .url -}}
{{- include "kubecost-integration.fail" (printf "%s has user:password@ in it, which would put a credential into a manifest (rule: credentials only from Secrets); remove it and %s." .where .fix) -}}
{{- end -}}
{{- with regexFind "(?i)[?&](access_token|token|api[_-]?key|key|password|passwd|pwd|secret|auth|authorization|credentials?|signature|sig)=" .url -}}
{{- include "kubecost-integration.fail" (printf "%s has a credential in its query (%s...), which would put it into a manifest (rule: credentials only from Secrets); remove it and %s." $.where (trimPrefix "&" (trimPrefix "?" .)) $.fix) -}}
{{- end -}}
{{- end -}}

{{- define "kubecost-integration.validations" -}}
{{- $cfg := .Values.allocationExporter.config -}}
{{- $mode := .Values.prometheus.mode -}}
{{- $ca := index .Values "cost-analyzer" | default dict -}}
{{- $rw := .Values.remoteWrite -}}
{{- $label := "^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$" -}}

{{- /* 1. identity: one source of truth for labels, external_labels and the tenant header */ -}}
{{- /* Both are checked before failing, so a first install without either names both values to set. */ -}}
{{- $identity := list -}}
{{- if not (regexMatch $label (include "kubecost-integration.tenantId" $)) -}}
{{- $identity = append $identity (printf "allocationExporter.config.tenantId is %q; set it to your platform tenant (letters, digits, '.', '_', '-'; at most 63 characters), e.g.\n  --set allocationExporter.config.tenantId=acme" (include "kubecost-integration.tenantId" $)) -}}
{{- end -}}
{{- if not (regexMatch $label (include "kubecost-integration.clusterName" $)) -}}
{{- $identity = append $identity (printf "allocationExporter.config.clusterName is %q; set it to this cluster's name (letters, digits, '.', '_', '-'; at most 63 characters), e.g.\n  --set allocationExporter.config.clusterName=prod-eu-1" (include "kubecost-integration.clusterName" $)) -}}
{{- end -}}
{{- if $identity -}}
{{- include "kubecost-integration.fail" (join "\nkubecost-integration: " $identity) -}}
{{- end -}}

{{- /* 2. where the Kubecost API is */ -}}
{{- if not $cfg.kubecostUrl -}}
{{- if not $ca.enabled -}}
{{- include "kubecost-integration.fail" "cost-analyzer.enabled=false, so the Kubecost/OpenCost API URL cannot be derived.\nSet allocationExporter.config.kubecostUrl to your existing Kubecost or OpenCost, e.g.\n  allocationExporter:\n    config:\n      kubecostUrl: http://kubecost-cost-analyzer.kubecost.svc:9090   # Kubecost 2.x (frontend)\n      # kubecostUrl: http://kubecost-frontend.kubecost.svc:9090      # Kubecost 3.x\n      # kubecostUrl: http://opencost.opencost.svc:9003               # OpenCost" -}}
{{- end -}}
{{- if eq (toString ($ca.kubecostFrontend | default dict).enabled) "false" -}}
{{- include "kubecost-integration.fail" "cost-analyzer.kubecostFrontend.enabled=false: the frontend port (9090) that serves /model/allocation is not exposed.\nSet allocationExporter.config.kubecostUrl explicitly, or keep cost-analyzer.kubecostFrontend.enabled=true." -}}
{{- end -}}
{{- else -}}
{{- $url := tpl (toString $cfg.kubecostUrl) . -}}
{{- if not (regexMatch "^https?://[^/\\s]+(/\\S*)?$" $url) -}}
{{- include "kubecost-integration.fail" (printf "allocationExporter.config.kubecostUrl renders to %q; set it to an http(s) URL such as http://kubecost-cost-analyzer.kubecost.svc:9090" $url) -}}
{{- end -}}
{{- include "kubecost-integration.validateNoUrlCredential" (dict "url" $url "where" "allocationExporter.config.kubecostUrl" "fix" "put the token or API key into a Secret and set allocationExporter.kubecostAuth (existingSecret, tokenKey or apiKeyKey): it is mounted as a file and sent as a header") -}}
{{- end -}}

{{- /* 3. remote write endpoint, headers, auth and TLS */ -}}
{{- $rwUrl := tpl (toString $rw.url) . -}}
{{- if not (regexMatch "^https?://[^/\\s]+(/\\S*)?$" $rwUrl) -}}
{{- include "kubecost-integration.fail" (printf "remoteWrite.url renders to %q; set it to the Thanos Receive endpoint, e.g. https://thanos-receive.cloudtuner.ai/api/v1/receive" $rwUrl) -}}
{{- end -}}
{{- include "kubecost-integration.validateNoUrlCredential" (dict "url" $rwUrl "where" "remoteWrite.url" "fix" "set remoteWrite.auth with an existing Secret instead") -}}
{{- if has (lower $rw.tenantHeader) (include "kubecost-integration.rw.reservedHeaders" . | fromJsonArray) -}}
{{- include "kubecost-integration.fail" (printf "remoteWrite.tenantHeader is %q, a header Prometheus reserves (rule: reserved remote_write header); set it to your Thanos Receive's --receive.tenant-header (default THANOS-TENANT)." $rw.tenantHeader) -}}
{{- end -}}
{{- include "kubecost-integration.validateHeaders" (dict "headers" $rw.headers "where" "remoteWrite.headers" "platform" true "root" .) -}}
{{- $auth := $rw.auth -}}
{{- if has $auth.type (list "bearer" "basic") -}}
{{- if not $auth.existingSecret -}}
{{- include "kubecost-integration.fail" (printf "remoteWrite.auth.type=%s needs the credentials in an existing Secret; set remoteWrite.auth.existingSecret, e.g.\n  kubectl -n %s create secret generic thanos-remote-write --from-literal=%s=...\n  --set remoteWrite.auth.existingSecret=thanos-remote-write" $auth.type .Release.Namespace (ternary $auth.tokenKey $auth.passwordKey (eq $auth.type "bearer"))) -}}
{{- end -}}
{{- if and (eq $auth.type "bearer") (not $auth.tokenKey) -}}
{{- include "kubecost-integration.fail" "remoteWrite.auth.type=bearer: set remoteWrite.auth.tokenKey to the key of the token in remoteWrite.auth.existingSecret." -}}
{{- end -}}
{{- if eq $auth.type "basic" -}}
{{- if not (or $auth.username $auth.usernameKey) -}}
{{- include "kubecost-integration.fail" "remoteWrite.auth.type=basic: set remoteWrite.auth.username (or remoteWrite.auth.usernameKey to read it from the Secret)." -}}
{{- end -}}
{{- if and $auth.username $auth.usernameKey -}}
{{- include "kubecost-integration.fail" "remoteWrite.auth: set either username or usernameKey, not both." -}}
{{- end -}}
{{- if not $auth.passwordKey -}}
{{- include "kubecost-integration.fail" "remoteWrite.auth.type=basic: set remoteWrite.auth.passwordKey to the key of the password in remoteWrite.auth.existingSecret." -}}
{{- end -}}
{{- end -}}
{{- else if $auth.existingSecret -}}
{{- include "kubecost-integration.fail" "remoteWrite.auth.existingSecret is set but remoteWrite.auth.type is none; set remoteWrite.auth.type to bearer or basic (or remove existingSecret)." -}}
{{- end -}}
{{- $tls := $rw.tls -}}
{{- if and (or $tls.caKey $tls.certKey $tls.keyKey) (not $tls.existingSecret) -}}
{{- include "kubecost-integration.fail" "remoteWrite.tls.caKey/certKey/keyKey name keys of a Secret; set remoteWrite.tls.existingSecret to that Secret's name." -}}
{{- end -}}
{{- if and $tls.existingSecret (not (or $tls.caKey $tls.certKey $tls.keyKey)) -}}
{{- include "kubecost-integration.fail" "remoteWrite.tls.existingSecret is set but no key is used; set remoteWrite.tls.caKey (e.g. ca.crt) and/or remoteWrite.tls.certKey + remoteWrite.tls.keyKey." -}}
{{- end -}}
{{- if or (and $tls.certKey (not $tls.keyKey)) (and $tls.keyKey (not $tls.certKey)) -}}
{{- include "kubecost-integration.fail" "remoteWrite.tls: a client certificate needs both remoteWrite.tls.certKey and remoteWrite.tls.keyKey (e.g. tls.crt and tls.key)." -}}
{{- end -}}
{{- range $rw.extraRemoteWrite -}}
{{- if not (and (kindIs "map" .) .url) -}}
{{- include "kubecost-integration.fail" "every remoteWrite.extraRemoteWrite entry must be a map with a url (Prometheus remote_write syntax)." -}}
{{- end -}}
{{- end -}}
{{- range $i, $entry := include "kubecost-integration.rw.extraEntries" . | fromYamlArray -}}
{{- $where := printf "remoteWrite.extraRemoteWrite[%d]" $i -}}
{{- if eq (toString $entry.name) (toString $rw.name) -}}
{{- include "kubecost-integration.fail" (printf "remoteWrite.extraRemoteWrite has an entry named %q, the name of the platform queue; give it another name." $rw.name) -}}
{{- end -}}
{{- range $key := list "url" "proxy_url" -}}
{{- with index $entry $key -}}
{{- include "kubecost-integration.validateNoUrlCredential" (dict "url" (toString .) "where" (printf "%s.%s" $where $key) "fix" "use basic_auth.password_file or authorization.credentials_file with prometheus.agent.extraSecretMounts") -}}
{{- end -}}
{{- end -}}
{{- with regexFind "\"(password|credentials|bearer_token|client_secret|secret_key)\":" (toJson $entry) -}}
{{- include "kubecost-integration.fail" (printf "%s sets %s inline, which would put a credential into the agent's ConfigMap (rule: credentials only from Secrets). Mount the Secret with prometheus.agent.extraSecretMounts and use the matching file field instead (password_file, credentials_file, client_secret_file; for sigv4 a profile or role_arn), e.g.\n  prometheus:\n    agent:\n      extraSecretMounts:\n        - name: backup-rw\n          secretName: backup-remote-write\n          mountPath: /etc/prometheus/secrets/backup-rw\n  remoteWrite:\n    extraRemoteWrite:\n      - url: https://backup.example/api/v1/receive\n        basic_auth:\n          username: kci\n          password_file: /etc/prometheus/secrets/backup-rw/password" $where (trimSuffix ":" . | trimAll "\"")) -}}
{{- end -}}
{{- if $entry.headers -}}
{{- include "kubecost-integration.validateHeaders" (dict "headers" $entry.headers "where" (printf "%s.headers" $where) "platform" false "root" $) -}}
{{- end -}}
{{- end -}}

{{- /* 4. Prometheus settings */ -}}
{{- range $k, $_ := .Values.prometheus.externalLabels -}}
{{- if has $k (list "cluster" "tenant_id") -}}
{{- include "kubecost-integration.fail" (printf "prometheus.externalLabels.%s is set from allocationExporter.config (%s); remove it from prometheus.externalLabels." $k (ternary "clusterName" "tenantId" (eq $k "cluster"))) -}}
{{- end -}}
{{- if not (regexMatch "^[a-zA-Z_][a-zA-Z0-9_]*$" $k) -}}
{{- include "kubecost-integration.fail" (printf "prometheus.externalLabels: %q is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)." $k) -}}
{{- end -}}
{{- end -}}
{{- $interval := include "kubecost-integration.durationMs" .Values.prometheus.scrapeInterval -}}
{{- $timeout := include "kubecost-integration.durationMs" .Values.prometheus.scrapeTimeout -}}
{{- if or (not $interval) (not $timeout) -}}
{{- include "kubecost-integration.fail" "prometheus.scrapeInterval and prometheus.scrapeTimeout must be Prometheus durations such as 60s or 1m." -}}
{{- end -}}
{{- if gt (int64 $timeout) (int64 $interval) -}}
{{- include "kubecost-integration.fail" (printf "prometheus.scrapeTimeout (%s) is longer than prometheus.scrapeInterval (%s); set prometheus.scrapeTimeout to at most the interval." .Values.prometheus.scrapeTimeout .Values.prometheus.scrapeInterval) -}}
{{- end -}}
{{- if and (eq $mode "agent") .Values.prometheus.agent.persistence.enabled (not .Values.prometheus.agent.persistence.size) -}}
{{- include "kubecost-integration.fail" "prometheus.agent.persistence.enabled=true: set prometheus.agent.persistence.size (e.g. 2Gi)." -}}
{{- end -}}
{{- range .Values.prometheus.agent.extraArgs -}}
{{- if hasPrefix "--storage.agent.retention.max-time" . -}}
{{- include "kubecost-integration.fail" (printf "prometheus.agent.extraArgs has %q; set prometheus.agent.walRetention instead (the chart always passes --storage.agent.retention.max-time, and the WAL alert is sized from it)." .) -}}
{{- end -}}
{{- end -}}
{{- $mounts := dict -}}
{{- range .Values.prometheus.agent.extraSecretMounts -}}
{{- if hasKey $mounts .name -}}
{{- include "kubecost-integration.fail" (printf "prometheus.agent.extraSecretMounts: the name %q is used twice." .name) -}}
{{- end -}}
{{- $_ := set $mounts .name true -}}
{{- if or (eq .mountPath "/prometheus") (hasPrefix "/prometheus/" .mountPath) (eq (trimSuffix "/" .mountPath) "/etc/prometheus") (hasPrefix (include "kubecost-integration.rw.authDir" $) .mountPath) (hasPrefix (include "kubecost-integration.rw.tlsDir" $) .mountPath) -}}
{{- include "kubecost-integration.fail" (printf "prometheus.agent.extraSecretMounts[%s].mountPath %q would hide the agent's WAL, config or remote-write credentials; mount it elsewhere, e.g. /etc/prometheus/secrets/%s." .name .mountPath .name) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled (eq $mode "external") (not .Values.networkPolicy.extraIngressFrom) -}}
{{- include "kubecost-integration.fail" "networkPolicy.enabled=true in external mode would block your Prometheus; set networkPolicy.extraIngressFrom to its peers, e.g.\n  networkPolicy:\n    extraIngressFrom:\n      - namespaceSelector:\n          matchLabels:\n            kubernetes.io/metadata.name: monitoring" -}}
{{- end -}}
{{- if include "kubecost-integration.np.egress" . -}}
{{- $kc := include "kubecost-integration.np.kubecostRule" . | fromYaml -}}
{{- if not $kc.to -}}
{{- include "kubecost-integration.fail" (printf "networkPolicy.egress: the exporter's egress to the Kubecost/OpenCost API cannot be derived from allocationExporter.config.kubecostUrl (host %q is neither <service>.<namespace>.svc[.cluster.local], a bare <service> nor an IP address; write an in-cluster API as http://<service>.<namespace>.svc:<port>).\nSet networkPolicy.egress.kubecost.to to the API's peers (and networkPolicy.egress.kubecost.ports if its pods listen on another port than the URL's), e.g.\n  networkPolicy:\n    egress:\n      kubecost:\n        to:\n          - ipBlock:\n              cidr: 10.0.0.0/24   # the addresses %s resolves to\n          # or an in-cluster namespace:\n          # - namespaceSelector:\n          #     matchLabels:\n          #       kubernetes.io/metadata.name: kubecost\nor set networkPolicy.egress.enabled=false to restrict ingress only." $kc.hostname $kc.hostname) -}}
{{- end -}}
{{- end -}}

{{- /* 5. kubecost mode: Kubecost's bundled Prometheus must carry exactly our scrape job and remote_write */ -}}
{{- if eq $mode "kubecost" -}}
{{- include "kubecost-integration.validateKubecostMode" . -}}
{{- end -}}
{{- end -}}

{{- define "kubecost-integration.validateKubecostMode" -}}
{{- $ca := index .Values "cost-analyzer" | default dict -}}
{{- $global := $ca.global | default dict -}}
{{- if not $ca.enabled -}}
{{- include "kubecost-integration.fail" "prometheus.mode=kubecost uses the Prometheus bundled with the Kubecost 2.x subchart, but cost-analyzer.enabled=false.\nSet cost-analyzer.enabled=true, or use prometheus.mode=agent (default) with an external Kubecost." -}}
{{- end -}}
{{- if eq (toString ($global.prometheus | default dict).enabled) "false" -}}
{{- include "kubecost-integration.fail" "prometheus.mode=kubecost needs Kubecost's bundled Prometheus, but cost-analyzer.global.prometheus.enabled=false.\nSet cost-analyzer.global.prometheus.enabled=true, or use prometheus.mode=agent (default)." -}}
{{- end -}}
{{- if or (($global.amp | default dict).enabled) (($global.ammsp | default dict).enabled) -}}
{{- include "kubecost-integration.fail" "prometheus.mode=kubecost cannot be combined with cost-analyzer.global.amp/ammsp (Kubecost would emit two remote_write sections).\nSet cost-analyzer.global.amp.enabled=false and cost-analyzer.global.ammsp.enabled=false, or use prometheus.mode=agent." -}}
{{- end -}}
{{- $prom := $ca.prometheus | default dict -}}
{{- $server := $prom.server | default dict -}}
{{- $problems := list -}}
{{- /* remote_write: the entry named like ours must equal ours (tenant header, URL, relabel, auth, TLS, queue) */ -}}
{{- $expected := include "kubecost-integration.rw.entry" . | fromYamlArray | first -}}
{{- $actual := dict -}}
{{- if kindIs "slice" $server.remoteWrite -}}
{{- range $server.remoteWrite -}}
{{- if and (kindIs "map" .) (eq (toString .name) (toString $expected.name)) -}}
{{- $actual = . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $actual -}}
{{- $problems = append $problems (printf "cost-analyzer.prometheus.server.remoteWrite has no entry named %q" $expected.name) -}}
{{- else if ne (toJson $actual) (toJson $expected) -}}
{{- $actualTenant := index ($actual.headers | default dict) .Values.remoteWrite.tenantHeader | default "<none>" -}}
{{- $problems = append $problems (printf "cost-analyzer.prometheus.server.remoteWrite[%s] differs from this chart's remote_write (its %s header is %q, allocationExporter.config.tenantId is %q; URL, relabelling, auth, TLS and queue must match too)" $expected.name .Values.remoteWrite.tenantHeader (toString $actualTenant) (include "kubecost-integration.tenantId" .)) -}}
{{- end -}}
{{- /* cluster identity */ -}}
{{- $clusterId := (($server.global | default dict).external_labels | default dict).cluster_id -}}
{{- if ne (toString $clusterId) (include "kubecost-integration.clusterName" .) -}}
{{- $problems = append $problems (printf "cost-analyzer.prometheus.server.global.external_labels.cluster_id is %q, allocationExporter.config.clusterName is %q" (toString $clusterId) (include "kubecost-integration.clusterName" .)) -}}
{{- end -}}
{{- /* scrape configs: Kubecost's four default jobs plus ours (the string replaces Kubecost's default) */ -}}
{{- $scrape := toString $prom.extraScrapeConfigs -}}
{{- range list "kubecost" "kubecost-networking" "kubecost-aggregator" "kubecost-dcgm-exporter" "kubecost-allocation-exporter" -}}
{{- if not (regexMatch (printf "(?m)^\\s*-?\\s*job_name:\\s*[\"']?%s[\"']?\\s*$" .) $scrape) -}}
{{- $problems = append $problems (printf "cost-analyzer.prometheus.extraScrapeConfigs lacks the job %q" .) -}}
{{- end -}}
{{- end -}}
{{- $target := include "kubecost-integration.exporter.address" . -}}
{{- $targetExpr := include "kubecost-integration.exporter.addressExpr" . -}}
{{- if and (regexMatch "job_name:\\s*[\"']?kubecost-allocation-exporter" $scrape) (not (contains $target $scrape)) (not (contains $targetExpr $scrape)) -}}
{{- $problems = append $problems (printf "the kubecost-allocation-exporter job in cost-analyzer.prometheus.extraScrapeConfigs does not target %s" $target) -}}
{{- end -}}
{{- /* config changes must reach the running Prometheus */ -}}
{{- if not (((($prom.configmapReload | default dict).prometheus) | default dict).enabled) -}}
{{- $problems = append $problems "cost-analyzer.prometheus.configmapReload.prometheus.enabled is not true (Kubecost would not reload a changed scrape/remote_write config)" -}}
{{- end -}}
{{- if $problems -}}
{{- include "kubecost-integration.fail" (printf "prometheus.mode=kubecost: Kubecost's bundled Prometheus is not wired to this chart:\n  - %s\n\nHelm cannot pass this chart's computed values to the Kubecost subchart, so add exactly this to your values\n(it is computed from allocationExporter.config, remoteWrite and prometheus.scrape*; re-run after changing them):\n\n%s\n" (join "\n  - " $problems) (include "kubecost-integration.kubecost.values" .)) -}}
{{- end -}}
{{- end -}}
