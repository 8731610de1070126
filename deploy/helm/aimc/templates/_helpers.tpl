{{/* Names and labels. */}}
{{- define "aimc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "aimc.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "aimc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "aimc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aimc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The replicas' pods; the migration Job's pods have component "migrate" and stay out of
the Service and the PodDisruptionBudget. */}}
{{- define "aimc.serverSelectorLabels" -}}
{{ include "aimc.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "aimc.labels" -}}
helm.sh/chart: {{ include "aimc.chart" . }}
{{ include "aimc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "aimc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aimc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "aimc.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Values that cannot work fail the render with a message naming them. */}}
{{- define "aimc.validate" -}}
{{- $method := .Values.vault.auth.method }}
{{- if not (has $method (list "token" "approle" "kubernetes")) }}
{{- fail (printf "vault.auth.method must be token, approle or kubernetes, not %q" $method) }}
{{- end }}
{{- if and (eq $method "kubernetes") (not .Values.vault.auth.kubernetes.role) }}
{{- fail "vault.auth.kubernetes.role is required with vault.auth.method=kubernetes" }}
{{- end }}
{{- if and (eq $method "token") (not .Values.vault.auth.token.existingSecret) }}
{{- fail "vault.auth.token.existingSecret is required with vault.auth.method=token" }}
{{- end }}
{{- if and (eq $method "approle") (not .Values.vault.auth.approle.existingSecret) }}
{{- fail "vault.auth.approle.existingSecret is required with vault.auth.method=approle" }}
{{- end }}
{{- $jwt := .Values.jwt }}
{{- if not (or $jwt.hs256.existingSecret $jwt.publicKey.existingSecret $jwt.jwks.existingSecret $jwt.jwksUrl) }}
{{- fail "set at least one of jwt.hs256.existingSecret, jwt.publicKey.existingSecret, jwt.jwks.existingSecret, jwt.jwksUrl" }}
{{- end }}
{{- if not .Values.database.existingSecret }}
{{- fail "database.existingSecret is required: a Secret holding the PostgreSQL URL" }}
{{- end }}
{{- $managed := list "AIMC_LISTEN" "AIMC_DATABASE_URL" "AIMC_KEYRING" "AIMC_VAULT_ADDR" "AIMC_VAULT_TOKEN" "AIMC_VAULT_AUTH" "AIMC_VAULT_APPROLE_ROLE_ID" "AIMC_VAULT_APPROLE_SECRET_ID" "AIMC_VAULT_KUBERNETES_ROLE" "AIMC_JWT_HS256_SECRET" "AIMC_JWT_PUBLIC_KEY_FILE" "AIMC_JWT_JWKS_FILE" "AIMC_SYSTEM_KEYS_FILE" }}
{{- range $name, $value := .Values.settings }}
{{- if not (hasPrefix "AIMC_" $name) }}
{{- fail (printf "settings.%s: only AIMC_* settings go here; use extraEnv for other variables" $name) }}
{{- end }}
{{- if has $name $managed }}
{{- fail (printf "settings.%s is set by the chart from its own values" $name) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The settings every aimc container gets: the database and the plain settings. */}}
{{- define "aimc.commonEnv" -}}
- name: AIMC_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.urlKey }}
{{- with .Values.database.maxConnections }}
- name: AIMC_DATABASE_MAX_CONNECTIONS
  value: {{ . | quote }}
{{- end }}
{{- range $name, $value := .Values.settings }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* What `aimc serve` needs besides: Vault and its login, and how tokens are checked. */}}
{{- define "aimc.serveEnv" -}}
- name: AIMC_LISTEN
  value: "0.0.0.0:8080"
- name: AIMC_KEYRING
  value: vault
- name: AIMC_VAULT_ADDR
  value: {{ .Values.vault.addr | quote }}
- name: AIMC_VAULT_TRANSIT_MOUNT
  value: {{ .Values.vault.transitMount | quote }}
- name: AIMC_VAULT_KEY_PREFIX
  value: {{ .Values.vault.keyPrefix | quote }}
- name: AIMC_VAULT_TIMEOUT_SECONDS
  value: {{ .Values.vault.timeoutSeconds | toString | quote }}
- name: AIMC_VAULT_AUTH
  value: {{ .Values.vault.auth.method | quote }}
{{- with .Values.vault.auth.mount }}
- name: AIMC_VAULT_AUTH_MOUNT
  value: {{ . | quote }}
{{- end }}
{{- if eq .Values.vault.auth.method "token" }}
- name: AIMC_VAULT_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.vault.auth.token.existingSecret }}
      key: {{ .Values.vault.auth.token.key }}
{{- else if eq .Values.vault.auth.method "approle" }}
- name: AIMC_VAULT_APPROLE_ROLE_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.vault.auth.approle.existingSecret }}
      key: {{ .Values.vault.auth.approle.roleIdKey }}
- name: AIMC_VAULT_APPROLE_SECRET_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.vault.auth.approle.existingSecret }}
      key: {{ .Values.vault.auth.approle.secretIdKey }}
{{- else if eq .Values.vault.auth.method "kubernetes" }}
- name: AIMC_VAULT_KUBERNETES_ROLE
  value: {{ .Values.vault.auth.kubernetes.role | quote }}
{{- end }}
- name: AIMC_JWT_ISSUER
  value: {{ .Values.jwt.issuer | quote }}
- name: AIMC_JWT_AUDIENCE
  value: {{ .Values.jwt.audience | quote }}
{{- with .Values.jwt.hs256.existingSecret }}
- name: AIMC_JWT_HS256_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.jwt.hs256.key }}
{{- end }}
{{- if .Values.jwt.publicKey.existingSecret }}
- name: AIMC_JWT_PUBLIC_KEY_FILE
  value: /etc/aimc/jwt-public-key/{{ .Values.jwt.publicKey.key }}
{{- with .Values.jwt.publicKey.keyId }}
- name: AIMC_JWT_PUBLIC_KEY_ID
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if .Values.jwt.jwks.existingSecret }}
- name: AIMC_JWT_JWKS_FILE
  value: /etc/aimc/jwks/{{ .Values.jwt.jwks.key }}
{{- end }}
{{- with .Values.jwt.jwksUrl }}
- name: AIMC_JWT_JWKS_URL
  value: {{ . | quote }}
{{- end }}
{{- if .Values.systemKeys.existingSecret }}
- name: AIMC_SYSTEM_KEYS_FILE
  value: /etc/aimc/system-keys/{{ .Values.systemKeys.key }}
{{- end }}
{{- end }}

{{/* Secrets mounted as files, and a writable /tmp under the read-only root. */}}
{{- define "aimc.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- with .Values.jwt.publicKey.existingSecret }}
- name: jwt-public-key
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $.Values.jwt.publicKey.key }}
        path: {{ $.Values.jwt.publicKey.key }}
{{- end }}
{{- with .Values.jwt.jwks.existingSecret }}
- name: jwks
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $.Values.jwt.jwks.key }}
        path: {{ $.Values.jwt.jwks.key }}
{{- end }}
{{- with .Values.systemKeys.existingSecret }}
- name: system-keys
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $.Values.systemKeys.key }}
        path: {{ $.Values.systemKeys.key }}
{{- end }}
{{- end }}

{{- define "aimc.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.jwt.publicKey.existingSecret }}
- name: jwt-public-key
  mountPath: /etc/aimc/jwt-public-key
  readOnly: true
{{- end }}
{{- if .Values.jwt.jwks.existingSecret }}
- name: jwks
  mountPath: /etc/aimc/jwks
  readOnly: true
{{- end }}
{{- if .Values.systemKeys.existingSecret }}
- name: system-keys
  mountPath: /etc/aimc/system-keys
  readOnly: true
{{- end }}
{{- end }}
