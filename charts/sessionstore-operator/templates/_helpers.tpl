{{/*
Object names are the release name and the same suffixes config/default
gives after its "sessionstore-" prefix, so `helm install sessionstore`
makes the objects `kubectl apply -k config/default` makes.
*/}}
{{- define "sessionstore.name" -}}
{{- printf "%s-%s" .root.Release.Name .suffix | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sessionstore.labels" -}}
app.kubernetes.io/name: sessionstore-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "sessionstore.tag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "sessionstore.selectorLabels" -}}
control-plane: controller-manager
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sessionstore.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "sessionstore.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "sessionstore.tag" .) -}}
{{- end -}}

{{/* The rules of one of config/rbac's roles, copied into files/ (make manifests). */}}
{{- define "sessionstore.rules" -}}
{{- $role := .root.Files.Get (printf "files/%s" .file) | fromYaml -}}
{{- if not $role.rules -}}
{{- fail (printf "files/%s has no rules: run make manifests" .file) -}}
{{- end -}}
{{- toYaml $role.rules -}}
{{- end -}}

{{- define "sessionstore.serviceAccount" -}}
- kind: ServiceAccount
  name: {{ include "sessionstore.name" (dict "root" . "suffix" "controller-manager") }}
  namespace: {{ .Release.Namespace }}
{{- end -}}
