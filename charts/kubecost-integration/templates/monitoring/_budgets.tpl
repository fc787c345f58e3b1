{{/*
prometheusRule.budgets: each entry becomes one recording rule cloudtuner_kubecost:<level>_budget:monthly_usd whose
value is the monthly budget in USD and whose labels are those of the level's month-to-date series, so the budget
alerts of files/alerts/cloudtuner-kubecost.rules.yaml (group kubecost-integration.budget) and the dashboards'
budget panels divide one by the other. The series exists for each cluster of prometheusRule.budgetClusters (this
release's clusterName by default) that has a month-to-date cost for the entry; every such cluster gets the whole
amount. values.schema.json checks the types; the rules here are the ones a schema cannot say clearly.
*/}}

{{/* The entry's level: "namespace", "breakdown" or "cluster". Argument: the entry. */}}
{{- define "kubecost-integration.budgets.level" -}}
{{- if hasKey . "namespace" -}}namespace{{- else if hasKey . "label" -}}breakdown{{- else -}}cluster{{- end -}}
{{- end -}}

{{/* What the entry budgets, for messages and duplicate detection. Argument: the entry. */}}
{{- define "kubecost-integration.budgets.key" -}}
{{- if hasKey . "namespace" -}}namespace={{ .namespace }}
{{- else if hasKey . "label" -}}label:{{ .label }}={{ .value }}
{{- else -}}cluster{{- end -}}
{{- end -}}

{{- define "kubecost-integration.budgets.validate" -}}
{{- $cfg := .Values.prometheusRule -}}
{{- if and $cfg.enabled $cfg.budgets (not (has "budget" $cfg.groups)) -}}
{{- include "kubecost-integration.fail" (list "prometheusRule.budgets is set but prometheusRule.groups leaves out budget, so no budget would ever alert." (printf "Add budget (and forecast, whose series it reads) to prometheusRule.groups, e.g.\n  groups: %s" (toJson (concat $cfg.groups (list "forecast" "budget") | uniq)))) -}}
{{- end -}}
{{- $example := "e.g.\n  prometheusRule:\n    budgets:\n      - {namespace: payments, monthlyUSD: 400}\n      - {label: team, value: checkout, monthlyUSD: 250}\n      - {cluster: true, monthlyUSD: 3000}" -}}
{{- $seen := dict -}}
{{- range $i, $b := .Values.prometheusRule.budgets | default list -}}
{{- $where := printf "prometheusRule.budgets[%d] (%s)" $i (toJson $b) -}}
{{- $kinds := list -}}
{{- range $k := list "namespace" "label" "cluster" -}}
{{- if hasKey $b $k -}}{{- $kinds = append $kinds $k -}}{{- end -}}
{{- end -}}
{{- if ne (len $kinds) 1 -}}
{{- include "kubecost-integration.fail" (list (printf "%s must say what it budgets with exactly one of namespace, label (with value) or cluster: true; it has %s." $where (ternary "none" (join ", " $kinds) (empty $kinds))) $example) -}}
{{- end -}}
{{- if and (hasKey $b "value") (not (hasKey $b "label")) -}}
{{- include "kubecost-integration.fail" (list (printf "%s has a value but no label: value is the label's value, e.g. {label: team, value: checkout, monthlyUSD: 250}." $where)) -}}
{{- end -}}
{{- if and (hasKey $b "label") (not (hasKey $b "value")) -}}
{{- include "kubecost-integration.fail" (list (printf "%s budgets label %q: give the label's value too, e.g. {label: %s, value: checkout, monthlyUSD: %v}." $where $b.label $b.label $b.monthlyUSD)) -}}
{{- end -}}
{{- if and (hasKey $b "cluster") (ne (toString $b.cluster) "true") -}}
{{- include "kubecost-integration.fail" (list (printf "%s: cluster can only be true (the whole cluster's budget); leave the entry out instead." $where)) -}}
{{- end -}}
{{- $key := include "kubecost-integration.budgets.key" $b -}}
{{- if hasKey $seen $key -}}
{{- include "kubecost-integration.fail" (list (printf "%s budgets %s, as prometheusRule.budgets[%v] does: keep one entry per namespace, label value or cluster." $where $key (index $seen $key))) -}}
{{- end -}}
{{- $_ := set $seen $key $i -}}
{{- end -}}
{{- end -}}

{{/* The budget recording rules (a YAML list, "[]" when there are no budgets). Argument: the root context. */}}
{{- define "kubecost-integration.budgets.rules" -}}
{{- $cfg := .Values.prometheusRule -}}
{{- $clusters := $cfg.budgetClusters | default (list (include "kubecost-integration.clusterName" .)) -}}
{{- $quoted := list -}}
{{- range $clusters -}}{{- $quoted = append $quoted (regexQuoteMeta (toString .)) -}}{{- end -}}
{{- $clusterMatcher := printf "cluster=~%q" (join "|" $quoted) -}}
{{- $by := dict "namespace" "cluster, tenant_id, namespace" "breakdown" "cluster, tenant_id, breakdown, value" "cluster" "cluster, tenant_id" -}}
{{- $rules := list -}}
{{- range $b := $cfg.budgets | default list -}}
{{- $level := include "kubecost-integration.budgets.level" $b -}}
{{- $matchers := list $clusterMatcher -}}
{{- if eq $level "namespace" -}}
{{- $matchers = append $matchers (printf "namespace=%q" (toString $b.namespace)) -}}
{{- else if eq $level "breakdown" -}}
{{- $matchers = concat $matchers (list (printf "breakdown=%q" (printf "label:%s" $b.label)) (printf "value=%q" (toString $b.value))) -}}
{{- end -}}
{{- $expr := printf "%v * group by (%s) (last_over_time(cloudtuner_kubecost:%s_cost:month_to_date_usd{%s}[10m]))" $b.monthlyUSD (index $by $level) $level (join ", " $matchers) -}}
{{- $rules = append $rules (dict "record" (printf "cloudtuner_kubecost:%s_budget:monthly_usd" $level) "expr" $expr) -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}
