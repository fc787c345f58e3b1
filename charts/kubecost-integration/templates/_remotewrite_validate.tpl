{{/*
remote_write rules: the platform endpoint, its headers, auth and TLS, and remoteWrite.extraRemoteWrite.
The rule each message names:
  header name     an HTTP token (RFC 9110): letters, digits and !#$%&'*+.^_`|~-
  header value    no CR, LF or other control character (Go's HTTP client refuses them when it sends)
  reserved        Prometheus sets it itself and refuses it in remote_write (agent start fails)
  credential      Authorization would put a credential into the ConfigMap: remoteWrite.auth / *_file instead
  tenant          the tenant comes only from tenantId: the configured tenant header never in remoteWrite.headers;
                  THANOS-TENANT, X-Scope-OrgID (Cortex, Mimir) or the configured one elsewhere only with
                  remoteWrite.allowTenantHeaderOverride=true
*/}}
{{- define "kubecost-integration.rw.validate" -}}
{{- $rw := .Values.remoteWrite -}}
{{- $rwUrl := tpl (toString $rw.url) . -}}
{{- if not (regexMatch "^https?://[^/\\s]+(/\\S*)?$" $rwUrl) -}}
{{- include "kubecost-integration.fail" (printf
  "remoteWrite.url renders to %q; set it to the Thanos Receive endpoint, e.g. %s"
  $rwUrl "https://thanos-receive.cloudtuner.ai/api/v1/receive") -}}
{{- end -}}
{{- include "kubecost-integration.validateNoUrlCredential" (dict
  "url" $rwUrl "where" "remoteWrite.url" "fix" "set remoteWrite.auth with an existing Secret instead") -}}
{{- if has (lower $rw.tenantHeader) (include "kubecost-integration.rw.reservedHeaders" . | fromJsonArray) -}}
{{- include "kubecost-integration.fail" (printf
  "remoteWrite.tenantHeader is %q, a header Prometheus reserves (rule: reserved remote_write header); %s"
  $rw.tenantHeader "set it to your Thanos Receive's --receive.tenant-header (default THANOS-TENANT).") -}}
{{- end -}}
{{- include "kubecost-integration.validateHeaders" (dict
  "headers" $rw.headers "where" "remoteWrite.headers" "platform" true "root" .) -}}
{{- include "kubecost-integration.rw.validateAuth" . -}}
{{- include "kubecost-integration.rw.validateTls" . -}}
{{- include "kubecost-integration.rw.validateExtra" . -}}
{{- end -}}

{{- define "kubecost-integration.rw.validateAuth" -}}
{{- $auth := .Values.remoteWrite.auth -}}
{{- if has $auth.type (list "bearer" "basic") -}}
{{- if not $auth.existingSecret -}}
{{- include "kubecost-integration.fail" (list
  (printf "remoteWrite.auth.type=%s needs the credentials in an existing Secret; set remoteWrite.auth.existingSecret, e.g." $auth.type)
  (printf "  kubectl -n %s create secret generic thanos-remote-write --from-literal=%s=..."
    .Release.Namespace (ternary $auth.tokenKey $auth.passwordKey (eq $auth.type "bearer")))
  "  --set remoteWrite.auth.existingSecret=thanos-remote-write") -}}
{{- end -}}
{{- if and (eq $auth.type "bearer") (not $auth.tokenKey) -}}
{{- include "kubecost-integration.fail" (list
  "remoteWrite.auth.type=bearer: set remoteWrite.auth.tokenKey to the key of the token"
  "in remoteWrite.auth.existingSecret.") -}}
{{- end -}}
{{- if eq $auth.type "basic" -}}
{{- if not (or $auth.username $auth.usernameKey) -}}
{{- include "kubecost-integration.fail" (list
  "remoteWrite.auth.type=basic: set remoteWrite.auth.username"
  "(or remoteWrite.auth.usernameKey to read it from the Secret).") -}}
{{- end -}}
{{- if and $auth.username $auth.usernameKey -}}
{{- include "kubecost-integration.fail" "remoteWrite.auth: set either username or usernameKey, not both." -}}
{{- end -}}
{{- if not $auth.passwordKey -}}
{{- include "kubecost-integration.fail" (list
  "remoteWrite.auth.type=basic: set remoteWrite.auth.passwordKey to the key of the password"
  "in remoteWrite.auth.existingSecret.") -}}
{{- end -}}
{{- end -}}
{{- else if $auth.existingSecret -}}
{{- include "kubecost-integration.fail" (list
  "remoteWrite.auth.existingSecret is set but remoteWrite.auth.type is none;"
  "set remoteWrite.auth.type to bearer or basic (or remove existingSecret).") -}}
{{- end -}}
{{- end -}}

{{- define "kubecost-integration.rw.validateTls" -}}
{{- $tls := .Values.remoteWrite.tls -}}
{{- if and (or $tls.caKey $tls.certKey $tls.keyKey) (not $tls.existingSecret) -}}
{{- include "kubecost-integration.fail" (list
  "remoteWrite.tls.caKey/certKey/keyKey name keys of a Secret;"
  "set remoteWrite.tls.existingSecret to that Secret's name.") -}}
{{- end -}}
{{- if and $tls.existingSecret (not (or $tls.caKey $tls.certKey $tls.keyKey)) -}}
{{- include "kubecost-integration.fail" (list
  "remoteWrite.tls.existingSecret is set but no key is used;"
  "set remoteWrite.tls.caKey (e.g. ca.crt) and/or remoteWrite.tls.certKey + remoteWrite.tls.keyKey.") -}}
{{- end -}}
{{- if or (and $tls.certKey (not $tls.keyKey)) (and $tls.keyKey (not $tls.certKey)) -}}
{{- include "kubecost-integration.fail" (list
  "remoteWrite.tls: a client certificate needs both remoteWrite.tls.certKey and remoteWrite.tls.keyKey"
  "(e.g. tls.crt and tls.key).") -}}
{{- end -}}
{{- end -}}

{{- define "kubecost-integration.rw.validateExtra" -}}
{{- $rw := .Values.remoteWrite -}}
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
{{- include "kubecost-integration.validateNoUrlCredential" (dict
  "url" (toString .)
  "where" (printf "%s.%s" $where $key)
  "fix" "use basic_auth.password_file or authorization.credentials_file with prometheus.agent.extraSecretMounts") -}}
{{- end -}}
{{- end -}}
{{- with regexFind "\"(password|credentials|bearer_token|client_secret|secret_key)\":" (toJson $entry) -}}
{{- include "kubecost-integration.fail" (include "kubecost-integration.rw.msg.inlineCredential" (dict "where" $where "field" (trimSuffix ":" . | trimAll "\""))) -}}
{{- end -}}
{{- if $entry.headers -}}
{{- include "kubecost-integration.validateHeaders" (dict
  "headers" $entry.headers "where" (printf "%s.headers" $where) "platform" false "root" $) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kubecost-integration.rw.msg.inlineCredential" -}}
{{ .where }} sets {{ .field }} inline, which would put a credential into the agent's ConfigMap
(rule: credentials only from Secrets). Mount the Secret with prometheus.agent.extraSecretMounts and use the matching
file field instead (password_file, credentials_file, client_secret_file; for sigv4 a profile or role_arn), e.g.
  prometheus:
    agent:
      extraSecretMounts:
        - name: backup-rw
          secretName: backup-remote-write
          mountPath: /etc/prometheus/secrets/backup-rw
  remoteWrite:
    extraRemoteWrite:
      - url: https://backup.example/api/v1/receive
        basic_auth:
          username: kci
          password_file: /etc/prometheus/secrets/backup-rw/password
{{- end -}}

{{/* Prometheus' reserved remote_write header names (config.go `reservedHeaders`, plus Authorization, refused with
its own message, and the hop-by-hop headers Go's HTTP client manages), lower case, as a JSON list. A header named
like one of these makes the agent refuse its configuration at start. */}}
{{- define "kubecost-integration.rw.reservedHeaders" -}}
{{- list
  "authorization" "host" "content-encoding" "content-length" "content-type" "user-agent"
  "connection" "keep-alive" "proxy-authenticate" "proxy-authorization" "www-authenticate" "accept-encoding"
  "x-prometheus-remote-write-version" "x-prometheus-remote-read-version"
  "x-amz-date" "x-amz-security-token" "x-amz-content-sha256"
  "transfer-encoding" "upgrade" "te" "trailer" | toJson -}}
{{- end -}}

{{/* Rules for one set of remote_write headers (rules named above). Argument: dict "headers" "where" (the value
path, for messages) "platform" (true for remoteWrite.headers, the platform queue) "root". */}}
{{- define "kubecost-integration.validateHeaders" -}}
{{- $rw := .root.Values.remoteWrite -}}
{{- $where := .where -}}
{{- $platform := .platform -}}
{{- $reserved := include "kubecost-integration.rw.reservedHeaders" .root | fromJsonArray -}}
{{- $tenantHeaders := list (lower $rw.tenantHeader) "thanos-tenant" "x-scope-orgid" -}}
{{- range $k, $v := .headers -}}
{{- $name := lower (toString $k) -}}
{{- if not (regexMatch "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$" (toString $k)) -}}
{{- include "kubecost-integration.fail" (printf
  "%s: %q is not a valid HTTP header name (rule: header name, an HTTP token of letters, digits and %s)."
  $where (toString $k) "!#$%&'*+.^_`|~-") -}}
{{- end -}}
{{- if not (kindIs "string" $v) -}}
{{- include "kubecost-integration.fail" (printf "%s.%s must be a string (rule: header value); quote it." $where $k) -}}
{{- end -}}
{{- if regexMatch "[\\x00-\\x08\\x0a-\\x1f\\x7f]" $v -}}
{{- include "kubecost-integration.fail" (printf
  "%s.%s contains a line break or another control character (rule: header value, %s); remove it."
  $where $k "no CR, LF or control characters; Prometheus would fail on every send") -}}
{{- end -}}
{{- if eq $name "authorization" -}}
{{- include "kubecost-integration.fail" (list
  (printf "%s.Authorization would put a credential into a ConfigMap" $where)
  "(rule: credentials only from Secrets; Prometheus also reserves this header);"
  "remove it and set remoteWrite.auth with an existing Secret instead:"
  "  remoteWrite:"
  "    auth:"
  "      type: bearer"
  "      existingSecret: <secret name>"
  "      tokenKey: token") -}}
{{- end -}}
{{- if has $name $reserved -}}
{{- include "kubecost-integration.fail" (printf
  "%s.%s is a header Prometheus sets itself and refuses in remote_write (rule: reserved header; the agent would not start); remove it."
  $where $k) -}}
{{- end -}}
{{- if and $platform (eq $name (lower $rw.tenantHeader)) -}}
{{- include "kubecost-integration.fail" (printf
  "%s.%s would override the tenant header (rule: tenant header); remove it and set tenantId instead (it feeds the header, the exporter's tenant_id label and external_labels)."
  $where $k) -}}
{{- end -}}
{{- if and (has $name $tenantHeaders) (not $rw.allowTenantHeaderOverride) -}}
{{- include "kubecost-integration.fail" (printf
  "%s.%s is a tenant header (rule: tenant header, the tenant comes only from tenantId): it could send this cluster's costs to another tenant. %s"
  $where $k "Remove it; if this endpoint really needs its own tenant, set remoteWrite.allowTenantHeaderOverride=true (chart README, \"Tenant header\").") -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A URL must not carry a credential (rule: credentials only from Secrets): no user:password@, no credential-like
query parameter. Argument: dict "url" "where" "fix". */}}
{{- define "kubecost-integration.validateNoUrlCredential" -}}
{{- if regexMatch "^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@" .url -}}
{{- include "kubecost-integration.fail" (printf
  "%s has user:password@ in it, which would put a credential into a manifest (rule: credentials only from Secrets); remove it and %s."
  .where .fix) -}}
{{- end -}}
{{- $credentialParam := "(?i)[?&](access_token|token|api[_-]?key|key|password|passwd|pwd|secret|auth|authorization|credentials?|signature|sig)=" -}}
{{- with regexFind $credentialParam .url -}}
{{- include "kubecost-integration.fail" (printf
  "%s has a credential in its query (%s...), which would put it into a manifest (rule: credentials only from Secrets); remove it and %s."
  $.where (trimPrefix "&" (trimPrefix "?" .)) $.fix) -}}
{{- end -}}
{{- end -}}
