{{/* Labels Helm recommends on every object it manages (never on selectors or the pod template). */}}
{{- define "m3stripe.chartLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Deployment's selector: fixed, as in deploy/base (selectors are immutable). */}}
{{- define "m3stripe.selectorLabels" -}}
app.kubernetes.io/name: m3stripe
app.kubernetes.io/component: operator
{{- end }}

{{- define "m3stripe.labels" -}}
{{ include "m3stripe.selectorLabels" . }}
app.kubernetes.io/part-of: m3stripe
{{ include "m3stripe.chartLabels" . }}
{{- end }}

{{- define "m3stripe.monitoringLabels" -}}
app.kubernetes.io/name: m3stripe
app.kubernetes.io/component: monitoring
app.kubernetes.io/part-of: m3stripe
{{ include "m3stripe.chartLabels" . }}
{{- end }}

{{- define "m3stripe.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}:{{ $tag }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end }}

{{/* The operator's environment from the ConfigMap (README "Deploy"); the hash rolls the Deployment on change. */}}
{{- define "m3stripe.config" -}}
M3STRIPE_METRICS_PORT: {{ .Values.metrics.port | quote }}
{{- range $name, $value := .Values.config }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
M3STRIPE_LEASE_NAME: {{ .Values.leaderElection.leaseName | quote }}
M3STRIPE_LEASE_DURATION: {{ .Values.leaderElection.leaseDuration | quote }}
M3STRIPE_LEASE_RENEW_DEADLINE: {{ .Values.leaderElection.renewDeadline | quote }}
M3STRIPE_LEASE_RETRY_PERIOD: {{ .Values.leaderElection.retryPeriod | quote }}
{{- with .Values.smtp }}
{{- if .host }}
M3STRIPE_SMTP_HOST: {{ .host | quote }}
M3STRIPE_SMTP_PORT: {{ .port | toString | quote }}
M3STRIPE_SMTP_SECURITY: {{ .security | quote }}
{{- if .from }}
M3STRIPE_SMTP_FROM: {{ .from | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Values the schema cannot relate: fail with a message naming them. */}}
{{- define "m3stripe.validate" -}}
{{- $duration := .Values.leaderElection.leaseDuration | trimSuffix "s" | int -}}
{{- $renew := .Values.leaderElection.renewDeadline | trimSuffix "s" | int -}}
{{- if gt (add $renew 2) $duration -}}
{{- fail (printf "leaderElection.renewDeadline (%s) must stay at least 2s below leaderElection.leaseDuration (%s): the writer stops before the Lease can move" .Values.leaderElection.renewDeadline .Values.leaderElection.leaseDuration) -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor selects that Service" -}}
{{- end -}}
{{- end }}
